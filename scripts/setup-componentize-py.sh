#!/usr/bin/env bash
# Install componentize-py (the Python -> WebAssembly component compiler) from PyPI into its own
# venv, for scripts/build-plugins.sh and the tests that build Python plugins.
# (`alcf-host plugin build` installs its own copy into a project's .venv instead.)
#
#   bash scripts/setup-componentize-py.sh     # prints the componentize-py path on its last line
#
# Environment: ALCF_COMPONENTIZE_VENV (default <repo>/target/componentize-py): where the venv goes.
# Needs python3 >= 3.10 with venv and pip access to PyPI the first time. Idempotent.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${ALCF_COMPONENTIZE_VENV:-$ROOT/target/componentize-py}"
VERSION="0.25.1" # the version the Python SDK is tested with (host/src/cli/plugin/build_project.rs)
BIN="$VENV/bin/componentize-py"

if ! { [ -x "$BIN" ] && [ "$("$BIN" --version 2>/dev/null)" = "componentize-py $VERSION" ]; }; then
  if ! python3 -c 'import sys; sys.exit(sys.version_info < (3, 10))'; then
    echo "setup-componentize-py: python3 is $(python3 -V 2>&1); need >= 3.10" >&2
    exit 1
  fi
  echo "setup-componentize-py: installing componentize-py==$VERSION into $VENV" >&2
  python3 -m venv "$VENV"
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "componentize-py==$VERSION" >&2
  [ "$("$BIN" --version 2>/dev/null)" = "componentize-py $VERSION" ] ||
    { echo "setup-componentize-py: $BIN does not report version $VERSION" >&2; exit 1; }
fi
echo "$BIN"
