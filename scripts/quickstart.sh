#!/usr/bin/env bash
# Sets everything up and runs the main job: gp_ucb (a WebAssembly strategy plugin) tunes a small
# CNN trained by alcf-trainer (native libtorch) on a synthetic dataset in the real CIFAR-100
# binary format. Offline after the first setup; a few minutes on 2 cores.
#
#   bash scripts/quickstart.sh           # set up (idempotent), then run or continue the study
#   bash scripts/quickstart.sh --fresh   # delete the quickstart study first
set -euo pipefail
cd "$(dirname "$0")/.."

fresh=0
for arg in "$@"; do
  case "$arg" in
    --fresh) fresh=1 ;;
    *) echo "quickstart.sh: unknown argument '$arg' (use --fresh)" >&2; exit 2 ;;
  esac
done
step() { printf '\n==> %s\n' "$*"; }

step "toolchain: wasm32-wasip2 target"
rustup target add wasm32-wasip2 >/dev/null

step "libtorch for alcf-trainer (project-local .venv)"
bash scripts/setup-torch.sh

step "build: alcf-host, alcf-trainer (release)"
cargo build --release -p alcf-host -p alcf-trainer

step "build: strategy plugins"
bash scripts/build-plugins.sh

if [ ! -f data/synthetic/cifar-100-binary/train.bin ]; then
  step "data: synthetic CIFAR-100 (binary format) in data/synthetic"
  target/release/alcf-trainer gen-data --out data/synthetic --train-per-class 40 --test-per-class 10
fi

[ "$fresh" = 1 ] && rm -rf studies/quickstart
resume=()
[ -f studies/quickstart/study.db ] && resume=(--resume)

step "run: alcf-host run --config config/quickstart.toml ${resume[*]:-}"
target/release/alcf-host run --config config/quickstart.toml "${resume[@]}"
target/release/alcf-host study show quickstart | head -n 30
step "report: alcf-host report quickstart"
target/release/alcf-host report quickstart
echo "open studies/quickstart/report/index.html in a browser: every figure of the study, one self-contained file"

