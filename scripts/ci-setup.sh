#!/usr/bin/env bash
# Installs and prepares what the test suite needs beyond the Python virtualenv.
# Called by `make test` (scripts/test.sh). Idempotent: cheap when everything is there.
set -euo pipefail
cd "$(dirname "$0")/.."
