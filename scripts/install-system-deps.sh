#!/usr/bin/env bash
# System packages the test suite needs beyond the Python virtualenv, from Debian's archive:
#   chromium    headless browser that renders the HTML audit report in tests/eval
#   postgresql  lineage store backend tested against a real PostgreSQL server
# Idempotent: does nothing when both are already installed. Called by .ci/run; needs root.
set -euo pipefail

need=()
[ -x /usr/bin/chromium ] || need+=(chromium)
if ! command -v pg_ctlcluster >/dev/null 2>&1 && ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then
    need+=(postgresql)
fi

if [ "${#need[@]}" -eq 0 ]; then
    echo "install-system-deps: chromium and postgresql already present"
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
