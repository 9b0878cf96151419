#!/usr/bin/env bash
# Installs what the test suite needs on a fresh Debian machine (as root), then runs it.
# Usage: bash contrib/test.sh [pytest arguments]
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v redis-server >/dev/null || need+=(redis-server)
command -v pg_ctlcluster >/dev/null || need+=(postgresql)
command -v systemd-analyze >/dev/null || need+=(systemd)
if [ ${#need[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ]; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
    else
        echo "missing ${need[*]}: install them (apt-get install ${need[*]}) or run as root" >&2
    fi
fi

if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
# synsup with its test extra, and real Synapse for tests/e2e (run with --python .venv/bin/python)
.venv/bin/pip install -q --disable-pip-version-check -e '.[test]' 'matrix-synapse[postgres,redis]'

# PostgreSQL for tests/e2e: a running cluster and a role that may create databases
if [ "$(id -u)" = 0 ]; then
    bash contrib/postgres.sh synsup synsup
fi

export PATH="$PWD/.venv/bin:$PATH"
exec .venv/bin/python -m pytest "$@"
