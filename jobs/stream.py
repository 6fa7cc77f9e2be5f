"""spark-submit entry point: ``spark-submit jobs/stream.py --env cluster [--available-now]``.

Same options as ``shoprec stream``; the logic lives in ``shoprec``.
"""

import sys

from shoprec.cli import main

if __name__ == "__main__":
    sys.exit(main(["stream", *sys.argv[1:]]))
