#!/usr/bin/env bash
# `make test`: set up what the tests need, then run every test. pytest's exit 5 (no tests
# collected) is a failure here, not a success.
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/ci-setup.sh || { echo "scripts/ci-setup.sh failed"; exit 1; }
export RAY_AUTH_MODE=disabled RAY_USAGE_STATS_ENABLED=0
# Types and layers first (configured in pyproject.toml): either failing fails the build.
echo "mypy (strict for keel.flow, keel.store, keel.runtime)"
.venv/bin/python -m mypy || { echo "mypy found type errors: failing"; exit 1; }
echo "lint-imports (the layers of docs/ARCHITECTURE.md)"
.venv/bin/lint-imports --no-cache || { echo "an import breaks the layers: failing"; exit 1; }
.venv/bin/python -m pytest -q -p no:cacheprovider --durations=30 "$@"
code=$?
if [ "$code" -eq 5 ]; then
  echo "pytest collected no tests: failing"
  exit 1
fi
exit "$code"
