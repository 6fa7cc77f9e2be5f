"""Entry point for the synthetic generator: ``python jobs/generate.py --events 10000000 --out DIR``."""

import sys

from shoprec.cli import main

if __name__ == "__main__":
    sys.exit(main(["generate", *sys.argv[1:]]))
