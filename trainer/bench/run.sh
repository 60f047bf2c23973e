#!/usr/bin/env bash
# Training throughput (images/s) of alcf-trainer vs the same model and settings in eager PyTorch
# (trainer/bench/throughput.py) on the same libtorch (the torch 2.13.0 wheel in .venv), side by
# side: for each model the two alternate (which goes first alternates too), REPEATS times each, and the table shows the median over
# runs of each run's median epoch rate (the first epoch of every run is warm-up and not counted),
# both per wall-clock second and per CPU-second of the process (all its threads): on a shared,
# loaded machine the second is the steadier measure of work per image, especially with THREADS=1.
#
#   bash trainer/bench/run.sh                     # cnn and resnet18, threads = cores
#   MODELS="cnn resnet18 vgg16" THREADS=2 REPEATS=3 bash trainer/bench/run.sh
#
# Settings per model: IMAGES (per epoch), BATCH, EPOCHS; override with e.g. RESNET18="512 64 3".
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
MODELS="${MODELS:-cnn resnet18}"
THREADS="${THREADS:-$(nproc)}"
REPEATS="${REPEATS:-2}"
PY="$ROOT/.venv/bin/python"
export PYTHONWARNINGS=ignore   # torch warns that numpy is absent; the baseline does not use it

bash scripts/setup-torch.sh --bench >/dev/null
if ! "$PY" -c 'import torch' 2>/dev/null; then
  echo "bench: 'import torch' fails in .venv; run: bash scripts/setup-torch.sh --bench" >&2
  exit 1
fi
cargo build -p alcf-trainer --release --quiet
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release/alcf-trainer"

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
"$BIN" gen-data --out "$WORK/data" --train-per-class 25 --test-per-class 1 2>/dev/null

settings() { # model -> "images batch epochs"
  local var; var="$(echo "$1" | tr '[:lower:]' '[:upper:]')"
  if [ -n "${!var:-}" ]; then echo "${!var}"; return; fi
  case "$1" in
    cnn) echo "2048 128 4" ;;
    resnet18|resnet34|vgg16) echo "512 64 3" ;;
    *) echo "256 32 3" ;;
  esac
}

median_rate() { # metrics.jsonl or the baseline's JSON, wall|cpu -> median over epochs 2.. of
  # images per wall-clock second, or images per CPU-second of the process (all threads)
  "$PY" -c '
import json, statistics, sys
src, kind = sys.argv[1], sys.argv[2]
if src.endswith(".jsonl"):
    lines = [json.loads(l) for l in open(src) if l.strip()]
    if kind == "wall":
        r = [m["images_per_s"] for m in lines]
    else:
        r = [m["images_per_s"] * m["train_time_s"] / m["train_cpu_s"] for m in lines]
else:
    d = json.loads(open(src).read())
    r = d["images_per_s"] if kind == "wall" else d["images_per_cpu_s"]
r = r[1:] or r
print(f"{statistics.median(r):.1f}")' "$1" "$2"
}

echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores; torch $("$PY" -c 'import torch; print(torch.__version__)'); threads=$THREADS"
RESULTS="$WORK/results.txt"
for m in $MODELS; do
  read -r images batch epochs <<<"$(settings "$m")"
  for r in $(seq 1 "$REPEATS"); do
    out="$WORK/rust-$m-$r"
    run_rust() {
      "$BIN" train --data "$WORK/data" --model "$m" --limit-train "$images" --limit-val 100 --val-split 0.04 \
        --batch-size "$batch" --epochs "$epochs" --lr 0.05 --weight-decay 5e-4 --momentum 0.9 \
        --threads "$THREADS" --device cpu --quiet --out "$out"
    }
    run_py() {
      "$PY" trainer/bench/throughput.py --data "$WORK/data" --model "$m" --images "$images" \
        --batch-size "$batch" --epochs "$epochs" --threads "$THREADS" >"$WORK/py-$m-$r.json"
    }
    # Alternate which goes first, so that a change in background load does not favour one side.
    if [ $((r % 2)) = 1 ]; then run_rust; run_py; else run_py; run_rust; fi
    rust="$(median_rate "$out/metrics.jsonl" wall)"
    py="$(median_rate "$WORK/py-$m-$r.json" wall)"
    rust_cpu="$(median_rate "$out/metrics.jsonl" cpu)"
    py_cpu="$(median_rate "$WORK/py-$m-$r.json" cpu)"
    echo "  $m run $r: alcf-trainer $rust img/s ($rust_cpu per CPU-s), eager PyTorch $py img/s ($py_cpu per CPU-s)" >&2
    echo "$m $images $batch $epochs $rust $py $rust_cpu $py_cpu" >>"$RESULTS"
  done
done

echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
"$PY" - "$RESULTS" "$THREADS" <<'PY'
import statistics, sys
rows = {}
for line in open(sys.argv[1]):
    m, images, batch, epochs, *v = line.split()
    rows.setdefault((m, images, batch, epochs), []).append([float(x) for x in v])
print()
print("| model | images/epoch | batch | threads | runs | alcf-trainer img/s | eager PyTorch img/s | ratio | alcf-trainer img/CPU-s | eager PyTorch img/CPU-s | ratio |")
print("|---|---|---|---|---|---|---|---|---|---|---|")
for (m, images, batch, epochs), v in rows.items():
    r, p, rc, pc = (statistics.median(x[i] for x in v) for i in range(4))
    print(f"| {m} | {images} | {batch} | {sys.argv[2]} | {len(v)} | {r:.1f} | {p:.1f} | {r / p:.2f}x | {rc:.1f} | {pc:.1f} | {rc / pc:.2f}x |")
PY
