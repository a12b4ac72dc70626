#!/usr/bin/env bash
# One command on a fresh Debian machine (as root): install, start two local registries, seed a
# synthetic pytorch/cuda image, then policy check → plan → sync → sync again (a no-op).
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v docker-registry >/dev/null || ! command -v skopeo >/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq docker-registry skopeo python3-venv >/dev/null
fi
VENV=${VENV:-.venv}
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$VENV/bin/pip" install -q -e '.[test]'
exec "$VENV/bin/python" -m examples.quickstart.demo "$@"
