"""spark-submit entry point: ``spark-submit jobs/bundles.py --env cluster --as-of YYYY-MM-DD``.

Same options as ``shoprec bundles``; the logic lives in ``shoprec``.
"""

import sys

from shoprec.cli import main

if __name__ == "__main__":
    sys.exit(main(["bundles", *sys.argv[1:]]))
