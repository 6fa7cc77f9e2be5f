"""spark-submit entry point: ``spark-submit jobs/maintain.py --env cluster``.

Same options as ``shoprec maintain``; the logic lives in ``shoprec``.
"""

import sys

from shoprec.cli import main

if __name__ == "__main__":
    sys.exit(main(["maintain", *sys.argv[1:]]))
