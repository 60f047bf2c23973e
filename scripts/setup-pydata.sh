#!/usr/bin/env bash
# Install pandas from PyPI into its own venv, so the tests can check that `alcf-host study export`
# loads straight into pandas (read_csv, read_json) as a user's notebook would.
#
#   bash scripts/setup-pydata.sh      # prints the venv's python path on its last line
#
# Environment: ALCF_PYDATA (default <repo>/target/pydata): where the venv goes; ALCF_PYDATA_PYTHON
# (default python3, >= 3.11 for pandas 3). Needs pip access to PyPI the first time; idempotent after.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${ALCF_PYDATA:-$ROOT/target/pydata}"
VERSION="3.1.1"
PY="$VENV/bin/python"

have() {
  [ -x "$PY" ] && "$PY" -c "import sys, pandas; sys.exit(pandas.__version__ != sys.argv[1])" "$VERSION" >/dev/null 2>&1
}

if ! have; then
  BASE="${ALCF_PYDATA_PYTHON:-python3}"
  echo "setup-pydata: installing pandas==$VERSION into $VENV ($("$BASE" -V 2>&1))" >&2
  "$BASE" -m venv "$VENV"
  "$PY" -m pip install --quiet --disable-pip-version-check "pandas==$VERSION" >&2
  have || { echo "setup-pydata: pandas $VERSION does not import from $PY" >&2; exit 1; }
fi
echo "$PY"
