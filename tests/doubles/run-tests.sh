#!/usr/bin/env bash
# Runs every test double's own unit tests (tests/doubles/test_*.py, Python 3 stdlib only).
# Prints unittest's "Ran N tests" and "OK" (or the failures) for each file; exits non-zero on any failure.
set -u
cd "$(dirname "$0")/../.."
status=0
for f in tests/doubles/test_*.py; do
    [ -e "$f" ] || continue
    echo "== $f"
    python3 -m unittest "$f" || status=1
done
exit $status
