#!/usr/bin/env bash
# `make test`: set up what the tests need, check types and layers (the gates), then run every
# test: first all but the timing-sensitive ones on two pytest workers (a module stays on one
# worker, so its servers start once), then the timing-sensitive ones (marked `serial`) alone.
# pytest's exit 5 (no tests collected) is a failure here, not a success.
# `bash scripts/test.sh ARGS...` runs the gates and then just `pytest ARGS` (one process).
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/ci-setup.sh || { echo "scripts/ci-setup.sh failed"; exit 1; }
export RAY_AUTH_MODE=disabled RAY_USAGE_STATS_ENABLED=0
# Compiled once, not in every process the tests start (a machine may set PYTHONDONTWRITEBYTECODE,
# and then each `python flow.py run` would compile Keel from source again).
unset PYTHONDONTWRITEBYTECODE
.venv/bin/python -m compileall -q -j 0 src/keel tests >/dev/null || true

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

pytest=(.venv/bin/python -m pytest -q -p no:cacheprovider)
check() {  # check CODE WHAT: exit 5 (nothing collected) fails too
  if [ "$1" -eq 5 ]; then echo "pytest collected no tests ($2): failing"; return 1; fi
  return "$1"
}

if [ "$#" -gt 0 ]; then
  "${pytest[@]}" --durations=30 "$@"
  check $? "pytest $*"
  exit $?
fi
"${pytest[@]}" -n "${KEEL_TEST_WORKERS:-2}" --dist loadgroup -m "not serial" --durations=30
parallel=$?
"${pytest[@]}" -m serial --durations=10
serial=$?
check "$parallel" "the parallel part"; parallel=$?
check "$serial" "the serial part"; serial=$?
echo "make test: parallel part exit $parallel, serial part exit $serial"
[ "$parallel" -eq 0 ] && [ "$serial" -eq 0 ]
