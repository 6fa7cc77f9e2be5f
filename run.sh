#!/usr/bin/env bash
# Quickstart command 1: run the main job (shoprec pipeline) end to end on the embedded
# default: the shipped Online Retail data, Delta tables and MLflow under ./lakehouse.
# Extra arguments go to `shoprec pipeline` (e.g. --data-root /tmp/lh).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
source scripts/bootstrap.sh
exec shoprec pipeline "$@"
