#!/usr/bin/env bash
# Installs and prepares what the test suite needs beyond the Python virtualenv.
# Called by `make test` (scripts/test.sh). Idempotent: cheap when everything is there.
set -euo pipefail
cd "$(dirname "$0")/.."

# Data Engine tests: Java 17 for Spark (pyspark's own jars), PostgreSQL for export.
need=()
command -v java >/dev/null 2>&1 || need+=(openjdk-17-jre-headless)
compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || need+=(postgresql)
if [ ${#need[@]} -gt 0 ]; then
    sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}"
fi
