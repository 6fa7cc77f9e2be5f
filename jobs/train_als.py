"""spark-submit entry point: ``spark-submit jobs/train_als.py --env cluster --as-of YYYY-MM-DD``.

Same options as ``shoprec train-als``; the logic lives in ``shoprec``.
"""

import sys

from shoprec.cli import main

if __name__ == "__main__":
    sys.exit(main(["train-als", *sys.argv[1:]]))
