#!/usr/bin/env bash
# System packages the test suite and `make stack` need beyond the Python virtualenv, from Debian's
# archive:
#   chromium      headless browser that renders the HTML audit report in tests/eval
#   postgresql    lineage store and Airflow metadata DB, tested against a real PostgreSQL server
#   redis-server  the Celery broker of the CeleryExecutor stack (tests/deploy, scripts/stack.sh)
# Idempotent: does nothing when all are already installed. Called by .ci/run; needs root.
# The packages' own services are not used: tests and scripts/stack.sh start their own servers on
# loopback with their own data directories.
set -euo pipefail

need=()
[ -x /usr/bin/chromium ] || need+=(chromium)
if ! command -v pg_ctlcluster >/dev/null 2>&1 && ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then
    need+=(postgresql)
fi
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)

if [ "${#need[@]}" -eq 0 ]; then
    echo "install-system-deps: chromium, postgresql and redis-server already present"
    exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
echo "install-system-deps: installing ${need[*]}"
$SUDO apt-get update -q
$SUDO apt-get install -y -q "${need[@]}"
