#!/usr/bin/env bash
# `make test`: set up what the tests need, then run every test. pytest's exit 5 (no tests
# collected) is a failure here, not a success.
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/ci-setup.sh || { echo "scripts/ci-setup.sh failed"; exit 1; }
export RAY_AUTH_MODE=disabled RAY_USAGE_STATS_ENABLED=0
# The gates first (configured in pyproject.toml): either failing fails the build before pytest.
gate() {  # gate NAME COMMAND...: run it, say how long it took, stop the build if it fails
  local name="$1" start=$SECONDS
  shift
  if ! "$@"; then
    echo "gate failed: $name ($*); fix the errors above, then: make test"
    exit 1
  fi
  echo "gate passed: $name in $((SECONDS - start)) s"
}
gate "mypy (strict for keel.flow, keel.store, keel.runtime)" .venv/bin/python -m mypy
gate "import layers (lint-imports; the layers of docs/ARCHITECTURE.md)" .venv/bin/lint-imports --no-cache
.venv/bin/python -m pytest -q -p no:cacheprovider --durations=30 "$@"
code=$?
if [ "$code" -eq 5 ]; then
  echo "pytest collected no tests: failing"
  exit 1
fi
exit "$code"
