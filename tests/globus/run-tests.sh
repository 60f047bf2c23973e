#!/usr/bin/env bash
# Runs the Globus Compute double's tests (tests/globus/test_*.py, stdlib unittest). With the SDK venv of
# scripts/setup-globus-sdk.sh (${ALCF_GLOBUS_SDK:-<repo>/target/globus-sdk}) they run under its python, so
# the wire-format tests use the real globus-compute-sdk; without it those are skipped (unittest says why).
set -euo pipefail
cd "$(dirname "$0")"
ROOT="$(cd ../.. && pwd)"
VENV="${ALCF_GLOBUS_SDK:-$ROOT/target/globus-sdk}"
PY=python3
if [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c 'import globus_compute_sdk' 2>/dev/null; then
  PY="$VENV/bin/python"
  echo "run-tests: using $PY (globus-compute-sdk $("$PY" -c 'from globus_compute_sdk.version import __version__ as v; print(v)'))" >&2
else
  echo "run-tests: no globus-compute-sdk venv at $VENV: the SDK wire-format tests are SKIPPED" >&2
  echo "run-tests: run 'bash scripts/setup-globus-sdk.sh' first to include them" >&2
fi
exec timeout 300 "$PY" -m unittest discover -s . -p 'test_*.py' "$@"
