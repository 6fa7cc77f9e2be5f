"""spark-submit entry point: ``spark-submit jobs/pipeline.py --env cluster``. Same options as ``shoprec pipeline``."""

import sys

from shoprec.cli import main

if __name__ == "__main__":
    sys.exit(main(["pipeline", *sys.argv[1:]]))
