"""spark-submit entry point: ``spark-submit jobs/train_ranker.py --env cluster --as-of YYYY-MM-DD``.

Same options as ``shoprec train-ranker``; the logic lives in ``shoprec``.
"""

import sys

from shoprec.cli import main

if __name__ == "__main__":
    sys.exit(main(["train-ranker", *sys.argv[1:]]))
