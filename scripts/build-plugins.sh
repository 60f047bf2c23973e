#!/usr/bin/env bash
# Builds every strategy plugin under plugins/ (all crates but the SDK) for wasm32-wasip2 and
# copies plugins/<name>.wasm next to its crate; every Python plugin (a directory with app.py)
# with componentize-py against wit/ and the Python SDK (plugins/sdk-python) into
# plugins/<name>.wasm, skipped when the .wasm is newer than its sources. With --tests, also every
# guest crate under tests/guests/ (to tests/guests/<name>.wasm). Honours CARGO_TARGET_DIR and
# ALCF_COMPONENTIZE_PY (default: scripts/setup-componentize-py.sh installs one under target/).
#
#   scripts/build-plugins.sh [--tests] [--debug]
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

with_tests=0
profile=release
for arg in "$@"; do
  case "$arg" in
    --tests) with_tests=1 ;;
    --debug) profile=debug ;;
    -h|--help) sed -n '2,6p' "$0"; exit 0 ;;
    *) echo "build-plugins.sh: unknown argument '$arg' (use --tests, --debug)" >&2; exit 2 ;;
  esac
done

target=wasm32-wasip2
# Line tables of std would make a guest ~3 MB; keep symbol names (for wasm backtraces), drop the rest.
export CARGO_PROFILE_RELEASE_STRIP=${CARGO_PROFILE_RELEASE_STRIP:-debuginfo}
if command -v rustup >/dev/null 2>&1; then
  if ! rustup target list --installed | grep -qx "$target"; then
    echo "build-plugins.sh: installing the $target target" >&2
    rustup target add "$target"
  fi
fi

target_dir=${CARGO_TARGET_DIR:-$root/target}
case "$target_dir" in /*) ;; *) target_dir="$root/$target_dir" ;; esac
out_dir="$target_dir/$target/$profile"
cargo_profile=()
[ "$profile" = release ] && cargo_profile=(--release)

# crate name = [package] name of each crate directory
crate_name() { sed -n 's/^name *= *"\(.*\)".*/\1/p' "$1/Cargo.toml" | head -n1; }

build_dir() { # $1: directory holding crates, $2: directory to skip (or empty)
  local dir=$1 skip=$2 names=() crate name
  for crate in "$dir"/*/; do
    crate=${crate%/}
    [ -f "$crate/Cargo.toml" ] || continue
    [ -n "$skip" ] && [ "$(basename "$crate")" = "$skip" ] && continue
    names+=("$(crate_name "$crate")")
  done
  [ ${#names[@]} -gt 0 ] || return 0
  # One cargo invocation per crate: a strategy may link another one as an rlib (region_ucb uses
  # gp_ucb without its exports); building them together would unify features and duplicate exports.
  for name in "${names[@]}"; do
    echo "build-plugins.sh: building $name ($profile)" >&2
    cargo build --target "$target" "${cargo_profile[@]}" -p "$name"
    local file=${name//-/_}.wasm
    [ -f "$out_dir/$file" ] || { echo "build-plugins.sh: $out_dir/$file was not produced (is $name a cdylib?)" >&2; exit 1; }
    cp "$out_dir/$file" "$dir/$file"
    echo "build-plugins.sh: $dir/$file ($(wc -c <"$dir/$file") bytes)" >&2
  done
}

# Python plugins: the same command line `alcf-host plugin build` runs, without needing the host
# built first.
build_python() {
  local dir cpy=${ALCF_COMPONENTIZE_PY:-} name out
  for dir in plugins/*/; do
    dir=${dir%/}
    [ -f "$dir/app.py" ] && [ ! -f "$dir/Cargo.toml" ] || continue
    name=$(basename "$dir")
    out="plugins/$name.wasm"
    if [ -f "$out" ] && [ -z "$(find "$dir" plugins/sdk-python/alcf_strategy wit -name '*.py' -newer "$out" -o -name '*.wit' -newer "$out" | head -n1)" ]; then
      echo "build-plugins.sh: $out is up to date" >&2
      continue
    fi
    [ -n "$cpy" ] || cpy=$(bash scripts/setup-componentize-py.sh | tail -n1)
    echo "build-plugins.sh: building $name (Python, componentize-py)" >&2
    "$cpy" -d wit -w strategy-plugin componentize -p "$dir" -p plugins/sdk-python app -o "$out" >&2
    echo "build-plugins.sh: $out ($(wc -c <"$out") bytes)" >&2
  done
}

build_dir plugins sdk
build_python
if [ "$with_tests" = 1 ] && [ -d tests/guests ]; then
  build_dir tests/guests ""
fi
