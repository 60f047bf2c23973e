#!/usr/bin/env bash
# Runs the unit tests of every test double here (each tests/doubles/test_*.py, stdlib unittest
# only); prints unittest's "Ran N tests" and "OK".
set -euo pipefail
cd "$(dirname "$0")"
exec timeout 600 python3 -m unittest discover -s . -p 'test_*.py' "$@"
