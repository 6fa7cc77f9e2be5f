"""spark-submit entry point: ``spark-submit jobs/ingest.py --env cluster [--input ...]``.

Same options as ``shoprec ingest``; the logic lives in ``shoprec``.
"""

import sys

from shoprec.cli import main

if __name__ == "__main__":
    sys.exit(main(["ingest", *sys.argv[1:]]))
