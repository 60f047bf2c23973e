#!/usr/bin/env bash
# Install the real globus-compute-sdk from PyPI into its own venv, so that tests/globus/ can check the
# Globus Compute double's wire format (serializers, ShellResult) against the SDK itself.
#
#   bash scripts/setup-globus-sdk.sh      # prints the venv's python path on its last line
#
# Environment: ALCF_GLOBUS_SDK (default <repo>/target/globus-sdk): where the venv goes.
# Needs a python >= 3.10 with the venv module (the SDK's Requires-Python; ALCF_GLOBUS_PYTHON, default python3)
# and pip access to PyPI the first time.
# Idempotent: when the venv already imports the pinned version, it only prints the path.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${ALCF_GLOBUS_SDK:-$ROOT/target/globus-sdk}"
VERSION="4.19.0" # the version tests/globus/README.md was verified against
PY="$VENV/bin/python"

have() {
  [ -x "$PY" ] && "$PY" - "$VERSION" <<'PYEOF' >/dev/null 2>&1
import sys
from importlib.metadata import version
import globus_compute_sdk.serialize  # noqa: F401
sys.exit(0 if version("globus-compute-sdk") == sys.argv[1] else 1)
PYEOF
}

if ! have; then
  BASE="${ALCF_GLOBUS_PYTHON:-python3}"
  if ! "$BASE" -c 'import sys; sys.exit(sys.version_info < (3, 10))'; then
    echo "setup-globus-sdk: $BASE is $("$BASE" -V 2>&1); globus-compute-sdk $VERSION needs >= 3.10 (set ALCF_GLOBUS_PYTHON)" >&2
    exit 1
  fi
  echo "setup-globus-sdk: installing globus-compute-sdk==$VERSION into $VENV ($("$BASE" -V 2>&1))" >&2
  "$BASE" -m venv "$VENV"
  "$PY" -m pip install --quiet --disable-pip-version-check "globus-compute-sdk==$VERSION" >&2
  have || { echo "setup-globus-sdk: globus-compute-sdk $VERSION does not import from $PY" >&2; exit 1; }
fi
echo "$PY"
