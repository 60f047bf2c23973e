#!/usr/bin/env bash
# Install the libtorch that alcf-trainer links against (tch 0.26 pins libtorch 2.13.0) into a
# project-local virtual environment, from the PyPI torch wheel.
#
#   bash scripts/setup-torch.sh            # CPU-minimal set without a GPU, full set with one
#   bash scripts/setup-torch.sh --full     # force the full set (CUDA libraries, `import torch` works)
#   bash scripts/setup-torch.sh --bench    # the full set, so that `import torch` works (needed only by
#                                          # the eager-PyTorch baseline trainer/bench/throughput.py)
#
# Environment: ALCF_VENV (default <repo>/.venv), PYTHON (default: python3.11, else python3).
# Idempotent: a step whose result is already present at the pinned version is skipped.
# Afterwards <venv>/libtorch is a symlink to the wheel's torch/ directory; .cargo/config.toml points
# LIBTORCH there, and the trainer's build.rs bakes an rpath to <venv>/libtorch/lib into the binary, so
# neither building nor running needs environment variables.
set -euo pipefail

TORCH_VERSION=2.13.0
CUDA_RUNTIME_VERSION=13.0.96
CUDA_CUPTI_VERSION=13.0.85

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${ALCF_VENV:-$ROOT/.venv}"

MODE=auto
BENCH=0
for arg in "$@"; do
  case "$arg" in
    --full) MODE=full ;;
    --cpu) MODE=cpu ;;
    --bench) BENCH=1 ;;
    -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
    *) echo "setup-torch: unknown argument '$arg' (expected --full, --cpu, --bench)" >&2; exit 2 ;;
  esac
done
if [ "$BENCH" = 1 ]; then
  # `import torch` loads libtorch_python.so, which needs libtorch_cuda.so and with it cuDNN, cuBLAS,
  # NCCL, ... even on a CPU: the eager-Python baseline needs the full install.
  if [ "$MODE" = cpu ]; then
    echo "setup-torch: --bench needs the full install (import torch loads the CUDA libraries); ignoring --cpu" >&2
  fi
  MODE=full
fi
if [ "$MODE" = auto ]; then
  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    MODE=full
    echo "setup-torch: nvidia-smi found a GPU -> full install (CUDA libraries included)"
  else
    MODE=cpu
    echo "setup-torch: no GPU (nvidia-smi absent or found none) -> CPU-minimal install"
  fi
fi

pick_python() {
  if [ -n "${PYTHON:-}" ]; then echo "$PYTHON"; return; fi
  for p in python3.11 python3.12 python3.13 python3.10 python3; do
    if command -v "$p" >/dev/null 2>&1 && "$p" -c 'import sys; sys.exit(0 if (3,10) <= sys.version_info[:2] < (3,15) else 1)' 2>/dev/null; then
      echo "$p"; return
    fi
  done
  echo "setup-torch: no Python 3.10-3.14 found; install one or set PYTHON=/path/to/python3" >&2
  exit 1
}

if [ ! -x "$VENV/bin/python" ]; then
  PY="$(pick_python)"
  echo "setup-torch: creating virtual environment $VENV with $PY ($("$PY" --version 2>&1))"
  "$PY" -m venv "$VENV"
else
  echo "setup-torch: using existing virtual environment $VENV ($("$VENV/bin/python" --version 2>&1))"
fi
VPY="$VENV/bin/python"
SITE="$("$VPY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"

installed_version() { # name -> version or empty (reads dist-info metadata; works without importing)
  "$VPY" - "$1" <<'PY'
import sys
from importlib import metadata
try:
    print(metadata.version(sys.argv[1]))
except metadata.PackageNotFoundError:
    pass
PY
}

PIP=("$VPY" -m pip --disable-pip-version-check --no-input)
need_install() { # name version
  local have; have="$(installed_version "$1")"
  if [ "$have" = "$2" ]; then echo "setup-torch: $1==$2 already installed, skipping"; return 1; fi
  if [ -n "$have" ]; then echo "setup-torch: $1 is $have, want $2"; fi
  return 0
}

if [ "$MODE" = full ]; then
  if [ "$(installed_version torch)" = "$TORCH_VERSION" ] && "$VPY" -c 'import torch' >/dev/null 2>&1; then
    echo "setup-torch: torch==$TORCH_VERSION (full, importable) already installed, skipping"
  else
    echo "setup-torch: pip install torch==$TORCH_VERSION with all dependencies (~4.7 GB, a few minutes)"
    "${PIP[@]}" install "torch==$TORCH_VERSION"
  fi
else
  pkgs=()
  need_install torch "$TORCH_VERSION" && pkgs+=("torch==$TORCH_VERSION")
  need_install nvidia-cuda-runtime "$CUDA_RUNTIME_VERSION" && pkgs+=("nvidia-cuda-runtime==$CUDA_RUNTIME_VERSION")
  need_install nvidia-cuda-cupti "$CUDA_CUPTI_VERSION" && pkgs+=("nvidia-cuda-cupti==$CUDA_CUPTI_VERSION")
  if [ ${#pkgs[@]} -gt 0 ]; then
    echo "setup-torch: pip install --no-deps ${pkgs[*]} (CPU-minimal set, ~1.2 GB)"
    "${PIP[@]}" install --no-deps "${pkgs[@]}"
  fi
fi

TORCH_DIR="$SITE/torch"
for lib in libtorch_cpu.so libc10.so; do
  if [ ! -e "$TORCH_DIR/lib/$lib" ]; then
    echo "setup-torch: $TORCH_DIR/lib/$lib is missing after the install; remove $VENV and run again" >&2
    exit 1
  fi
done
ln -sfn "$TORCH_DIR" "$VENV/libtorch"
echo "setup-torch: $VENV/libtorch -> $TORCH_DIR"
echo "setup-torch: done. Build the trainer with: cargo build -p alcf-trainer --release"
