#!/usr/bin/env bash
# Runs the PBS Pro emulator's own tests (stdlib unittest only; about half a minute).
set -euo pipefail
cd "$(dirname "$0")"
exec timeout 300 python3 -m unittest discover -s . -p 'test_*.py' "$@"
