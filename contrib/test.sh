#!/usr/bin/env bash
# Installs what the test suite needs on a fresh Debian machine (as root), then runs it.
# Usage: bash contrib/test.sh [pytest arguments]
set -euo pipefail
cd "$(dirname "$0")/.."

bash contrib/debian-packages.sh || echo "continuing: the tests that need those parts skip"

if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
# synsup with its test and dev extras, and real Synapse for tests/e2e (run with --python
# .venv/bin/python). Strict editable mode: the import names are links into this checkout that
# type checkers follow (no import hook); a module added later needs this line again.
.venv/bin/pip install -q --disable-pip-version-check --config-settings editable_mode=strict \
    -e '.[test,dev]' 'matrix-synapse[postgres,redis]'
bash contrib/bytecode.sh .venv/bin/python

# code health first: lint and import order, then types (config in pyproject.toml)
.venv/bin/ruff check .
.venv/bin/mypy

# PostgreSQL for tests/e2e: a running cluster and a role that may create databases
if [ "$(id -u)" = 0 ]; then
    bash contrib/postgres.sh synsup synsup
fi

export PATH="$PWD/.venv/bin:$PATH"
exec .venv/bin/python -m pytest "$@"
