"""spark-submit entry point: ``spark-submit jobs/recommend.py --env cluster --as-of YYYY-MM-DD``.

Same options as ``shoprec recommend``; the logic lives in ``shoprec``.
"""

import sys

from shoprec.cli import main

if __name__ == "__main__":
    sys.exit(main(["recommend", *sys.argv[1:]]))
