#!/usr/bin/env bash
# `make demo`: run a real pipeline end to end on the embedded defaults (KEEL_HOME=./.keel),
# then read it back from the command line and from Python.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
say() { printf '\n\033[1m$ %s\033[0m\n' "$*"; }

say python examples/train_demo.py run --rows 5000
$BIN/python examples/train_demo.py run --rows 5000
say keel runs TrainDemo
$BIN/keel runs TrainDemo --limit 5
run=$($BIN/python -c "from keel import Flow; print(Flow('TrainDemo').latest_run.pathspec)")
say keel show "$run"
$BIN/keel show "$run"
say keel logs "$run/train"
$BIN/keel logs "$run/train"
say python examples/read_back.py
$BIN/python examples/read_back.py
