#!/usr/bin/env bash
# Installs and prepares what the test suite needs beyond the Python virtualenv.
# Called by `make test` (scripts/test.sh). Idempotent: cheap when everything is there.
set -euo pipefail
cd "$(dirname "$0")/.."

# The dashboard's browser tests (tests/ui) drive Debian's Chromium through Playwright; the
# browser comes from apt, never from `playwright install`.
if ! [ -x /usr/bin/chromium ]; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium
  else
    echo "ci-setup: /usr/bin/chromium is missing (apt-get install chromium); tests/ui's browser tests will be skipped" >&2
  fi
fi
