#!/usr/bin/env bash
# Regenerate requirements/lock.txt from requirements/base.in: resolve with pip (metadata only,
# nothing installed), keep every version already in the lock that still fits (-c), print the diff.
# Usage: scripts/lock.sh            (after editing base.in)
#        scripts/lock.sh --upgrade  (resolve afresh, ignoring the current lock)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
py="${SHOPREC_PYTHON:-python3.11}"
tmp="$(mktemp -d)"; trap 'rm -rf "$tmp"' EXIT
"$py" -m venv "$tmp/venv"
"$tmp/venv/bin/python" -m pip install --quiet --upgrade "pip>=24"
constraints=()
if [ "${1:-}" != "--upgrade" ]; then
  # Old pins as constraints, minus the packages base.in pins exactly (its pin wins).
  grep -v -i -f <(sed -n 's/^\([A-Za-z0-9_.-]*\)==.*/^\1==/p' "$root/requirements/base.in") \
    "$root/requirements/lock.txt" > "$tmp/constraints.txt" || true
  constraints=(-c "$tmp/constraints.txt")
fi
"$tmp/venv/bin/pip" install --quiet --dry-run --ignore-installed --report "$tmp/report.json" \
  -r "$root/requirements/base.in" "${constraints[@]}"
"$tmp/venv/bin/python" - "$tmp/report.json" > "$tmp/lock.txt" <<'PY'
import json, sys
report = json.load(open(sys.argv[1]))
pins = sorted((i["metadata"]["name"], i["metadata"]["version"]) for i in report["install"])
for name, version in sorted(pins, key=lambda p: p[0].lower()):
    print(f"{name}=={version}")
PY
diff "$root/requirements/lock.txt" "$tmp/lock.txt" || true
cp "$tmp/lock.txt" "$root/requirements/lock.txt"
