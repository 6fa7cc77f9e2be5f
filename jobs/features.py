"""spark-submit entry point: ``spark-submit jobs/features.py --env cluster --as-of YYYY-MM-DD``.

Same options as ``shoprec features``; the logic lives in ``shoprec``.
"""

import sys

from shoprec.cli import main

if __name__ == "__main__":
    sys.exit(main(["features", *sys.argv[1:]]))
