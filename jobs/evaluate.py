"""spark-submit entry point: ``spark-submit jobs/evaluate.py --env cluster --as-of YYYY-MM-DD``.

Same options as ``shoprec evaluate``; the logic lives in ``shoprec``.
"""

import sys

from shoprec.cli import main

if __name__ == "__main__":
    sys.exit(main(["evaluate", *sys.argv[1:]]))
