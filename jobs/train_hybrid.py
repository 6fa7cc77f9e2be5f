"""spark-submit entry point: ``spark-submit jobs/train_hybrid.py --env cluster --as-of YYYY-MM-DD``.

Same options as ``shoprec train-hybrid``; the logic lives in ``shoprec``.
"""

import sys

from shoprec.cli import main

if __name__ == "__main__":
    sys.exit(main(["train-hybrid", *sys.argv[1:]]))
