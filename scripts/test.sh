#!/usr/bin/env bash
# Sets everything up and runs every test: the wasm target, libtorch for the trainer, the host,
# the plugins and test guests, then lints and the whole workspace's tests, the trainer's (also with
# its XPU shim), the Python SDK's and the Python trial program's.
#
#   bash scripts/test.sh            # everything
#   bash scripts/test.sh --no-lint  # skip rustfmt/clippy
#
# Needs: a Rust toolchain (rustup), Python 3.10+ with venv (for the libtorch wheel), network access
# to crates.io and PyPI on the first run.
# The ssh tests also need /usr/sbin/sshd and ssh (Debian: openssh-server, openssh-client).
set -euo pipefail
cd "$(dirname "$0")/.."

lint=1
for arg in "$@"; do
  case "$arg" in
    --no-lint) lint=0 ;;
    *) echo "test.sh: unknown argument '$arg'" >&2; exit 2 ;;
  esac
done

step() { printf '\n==> %s\n' "$*"; }

step "toolchain: wasm32-wasip2 target, rustfmt, clippy"
rustup target add wasm32-wasip2 >/dev/null
[ "$lint" = 0 ] || rustup component add rustfmt clippy >/dev/null 2>&1 || true

step "libtorch for alcf-trainer (project-local .venv)"
bash scripts/setup-torch.sh

step "plugins and test guests (wasm32-wasip2)"
bash scripts/build-plugins.sh --tests

if [ "$lint" = 1 ]; then
  step "cargo fmt --check"
  cargo fmt --all --check
  step "cargo clippy (workspace, all targets, -D warnings)"
  cargo clippy --workspace --all-targets -- -D warnings
  step "cargo clippy (alcf-trainer with the XPU shim: --features xpu)"
  cargo clippy -p alcf-trainer --all-targets --features xpu -- -D warnings
fi

log=$(mktemp)
trap 'rm -f "$log"' EXIT
set -o pipefail

step "tests: host, SDK, strategies, end-to-end"
ALCF_TEST_SKIP_PLUGIN_BUILD=1 cargo test --workspace --exclude alcf-trainer 2>&1 | tee -a "$log"

step "tests: the Python SDK (plugins/sdk-python) and the Python plugins, natively"
# The export layer is also checked against the bindings componentize-py really generates.
bindings=$(pwd)/target/wit-bindings
rm -rf "$bindings"
"$(bash scripts/setup-componentize-py.sh | tail -n1)" -d wit -w strategy-plugin bindings "$bindings" >/dev/null
for t in plugins/sdk-python/tests plugins/*/; do
  t=${t%/}
  case "$t" in
    plugins/sdk-python/tests) ALCF_WIT_BINDINGS=$bindings python3 -m unittest discover -s "$t" -v 2>&1 | tee -a "$log" ;;
    *) if [ -f "$t/test_app.py" ]; then (cd "$t" && python3 -m unittest -v test_app) 2>&1 | tee -a "$log"; fi ;;
  esac
done

step "tests: the PBS Pro emulator (the test double of Aurora's scheduler)"
# unittest prints "Ran N tests" and "OK"/"FAILED (failures=F, errors=E)"; both feed the closing line.
bash tests/pbs/run-tests.sh 2>&1 | tee -a "$log"

step "tests: the test doubles of Sophia's gateway and Globus Auth (tests/doubles)"
bash tests/doubles/run-tests.sh 2>&1 | tee -a "$log"

step "tests: the Globus Compute service double, its wire format against the real globus-compute-sdk (tests/globus)"
bash scripts/setup-globus-sdk.sh >/dev/null
bash tests/globus/run-tests.sh 2>&1 | tee -a "$log"

# First, so that target/release/alcf-trainer is the default build again afterwards.
step "tests: alcf-trainer --features xpu (the XPU shim compiles and links; --device xpu refuses on this CPU-only libtorch)"
cargo test -p alcf-trainer --release --features xpu --lib --test xpu 2>&1 | tee -a "$log"

step "tests: alcf-trainer (release: real libtorch training runs)"
cargo test -p alcf-trainer --release 2>&1 | tee -a "$log"

step "tests: the Python trial program trainer/python/alcf_train.py (CPU torch, next to alcf-trainer)"
bash scripts/setup-pytorch-cpu.sh
"${ALCF_PYTORCH_CPU:-target/pytorch-cpu}/python" trainer/python/test_alcf_train.py -v 2>&1 | tee -a "$log"

# One closing line for all test binaries together.
awk '
  /^test result:/ { p += $4; f += $6 }
  /^Ran [0-9]+ tests? in/ { ran = $2 }
  /^(OK|FAILED)/ && ran != "" {
    bad = 0
    if (match($0, /failures=[0-9]+/)) bad += substr($0, RSTART + 9, RLENGTH - 9)
    if (match($0, /errors=[0-9]+/)) bad += substr($0, RSTART + 7, RLENGTH - 7)
    p += ran - bad; f += bad; ran = ""
  }
  END { printf "\ntests: %d passed, %d failed\n", p, f }' "$log"
