#!/usr/bin/env bash
# The test command README.md gives: creates/updates the venv, then runs the whole suite in parallel.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$VENV/bin/pip" install -q --upgrade pip >/dev/null
"$VENV/bin/pip" install -q -e '.[test]'
# The type check first (pyproject.toml [tool.mypy]): seconds, and it fails before the servers start.
"$VENV/bin/mypy" regsync
# pytest exits 5 when it collected no test: that is a failure here, and set -e makes it one.
exec "$VENV/bin/pytest" -n "${PYTEST_WORKERS:-auto}" -q "$@"
