#!/usr/bin/env bash
# Quickstart command 2: run the tests (default: everything but tests marked gpu).
# Extra arguments go to pytest (e.g. ./test.sh -m "not slow" or ./test.sh tests/unit).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
source scripts/bootstrap.sh
exec python -m pytest "$@"
