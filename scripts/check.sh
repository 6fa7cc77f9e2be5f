#!/usr/bin/env bash
# Static checks run by CI before the tests (needs the environment: source scripts/bootstrap.sh).
# Each tool prints its own findings; the first failing check stops the run.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
_step() { echo "[check] $*" >&2; }
# (checks are added here by the changes that configure them)
_step "import layers (import-linter: the contract in pyproject.toml)"
lint-imports
_step "static checks passed"
