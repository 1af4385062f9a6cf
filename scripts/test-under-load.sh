#!/usr/bin/env bash
# `bash scripts/test-under-load.sh N [ARGS...]`: run tests while N busy loops load the machine,
# to find the tests that fail only on a slow or crowded CI machine. With ARGS it runs
# `pytest ARGS`; without, the whole `bash scripts/test.sh`. The busy loops are this script's
# own children, stopped (by their pids) when it ends, however it ends. Prints the load average
# at the start and the end, and exits with the tests' status.
set -uo pipefail
cd "$(dirname "$0")/.."
if ! [[ "${1:-}" =~ ^[0-9]+$ ]]; then
  echo "usage: bash scripts/test-under-load.sh N [PYTEST ARGS...]  (N busy loops, e.g. 6 on 2 cores)" >&2
  exit 2
fi
loops=$1
shift
pids=()
stop() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null; done
  wait 2>/dev/null
}
trap stop EXIT
trap 'exit 130' INT TERM
for _ in $(seq "$loops"); do
  python3 -c "while True: pass" &
  pids+=($!)
done
echo "[load] at the start: $(cut -d' ' -f1-3 /proc/loadavg), $loops busy loops"
export RAY_AUTH_MODE=disabled RAY_USAGE_STATS_ENABLED=0
if [ "$#" -gt 0 ]; then
  .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
else
  bash scripts/test.sh
fi
status=$?
echo "[load] at the end: $(cut -d' ' -f1-3 /proc/loadavg); tests exited $status"
exit "$status"
