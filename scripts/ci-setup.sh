#!/usr/bin/env bash
# Installs and prepares what the test suite needs beyond the Python virtualenv.
# Called by `make test` (scripts/test.sh). Idempotent: cheap when everything is there.
set -euo pipefail
cd "$(dirname "$0")/.."

# PostgreSQL: tests/store starts a throwaway server from Debian's binaries (initdb, pg_ctl).
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1; then
    SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq postgresql >/dev/null
  else
    echo "ci-setup: PostgreSQL is missing and apt-get is not available; the PostgreSQL tests will be skipped"
  fi
fi
