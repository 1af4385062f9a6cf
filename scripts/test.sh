#!/usr/bin/env bash
# `make test`: set up what the tests need, then run every test. pytest's exit 5 (no tests
# collected) is a failure here, not a success.
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/ci-setup.sh || { echo "scripts/ci-setup.sh failed"; exit 1; }
export RAY_AUTH_MODE=disabled RAY_USAGE_STATS_ENABLED=0
.venv/bin/python -m pytest -q -p no:cacheprovider --durations=30 "$@"
code=$?
if [ "$code" -eq 5 ]; then
  echo "pytest collected no tests: failing"
  exit 1
fi
exit "$code"
