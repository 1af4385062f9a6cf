#!/usr/bin/env bash
# Installs and prepares what the test suite needs beyond the Python virtualenv.
# Called by `make test` (scripts/test.sh). Idempotent: cheap when everything is there.
set -euo pipefail
cd "$(dirname "$0")/.."

# The queue add-on's tests start Debian's redis-server on loopback (tests/addons/conftest.py).
if ! command -v redis-server >/dev/null 2>&1; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq redis-server >/dev/null
fi
