#!/usr/bin/env bash
# Static checks run by CI before the tests (needs the environment: source scripts/bootstrap.sh).
# Each tool prints its own findings; the first failing check stops the run.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
_step() { echo "[check] $*" >&2; }
# (checks are added here by the changes that configure them)
_step "lint: ruff check (the rules in pyproject.toml)"
ruff check .
_step "format: ruff format --check (run ruff format . to apply)"
ruff format --check .
_step "types: mypy on libs/shoprec (the settings in pyproject.toml)"
mypy
_step "import layers (import-linter: the contract in pyproject.toml)"
lint-imports
_step "docs: mkdocs build --strict (broken links, pages missing from the nav, modules the API reference cannot find)"
site_dir="$(mktemp -d)"
trap 'rm -rf "$site_dir"' EXIT
NO_MKDOCS_2_WARNING=1 mkdocs build --strict --quiet --site-dir "$site_dir"
_step "static checks passed"
