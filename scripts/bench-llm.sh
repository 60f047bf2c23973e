#!/usr/bin/env bash
# llm_guided against gp_ucb on bench functions, with a *scripted* LLM: the Sophia gateway double
# (tests/doubles/sophia_gateway.py --answer perturb-best) on 127.0.0.1, which answers every prompt
# by perturbing the best configurations the prompt lists. It measures the machinery (share, prompt,
# validation, fallback, cost accounting) and what a "stay near the best" proposer does to a GP; it
# says nothing about what a real model would do. docs/benchmarks.md quotes it.
#
#   bash scripts/bench-llm.sh                       # branin, hartmann3, hartmann6; 10 seeds x 40 trials
#   REPEATS=5 TRIALS=30 FUNCTIONS="branin" bash scripts/bench-llm.sh
#
# On Sophia itself (a real model), after `alcf-host auth login`:
#   alcf-host compare --config config/llm-branin.toml --strategy plugins/gp_ucb.wasm \
#       --strategy plugins/llm_guided.wasm --repeats 10 --trials 40
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
REPEATS=${REPEATS:-10}
TRIALS=${TRIALS:-40}
FUNCTIONS=${FUNCTIONS:-"branin hartmann3 hartmann6"}
target_dir=${CARGO_TARGET_DIR:-$repo/target}
bin="$target_dir/release/alcf-host"
cargo build -q --release -p alcf-host --bin alcf-host
[ -f plugins/llm_guided.wasm ] || bash scripts/build-plugins.sh

work=$(mktemp -d)
trap 'kill "$gw_pid" 2>/dev/null || true; rm -rf "$work"' EXIT
python3 tests/doubles/sophia_gateway.py --port 0 --token bench --answer perturb-best --seed 1 >"$work/gw.out" 2>"$work/gw.err" &
gw_pid=$!
for _ in $(seq 50); do [ -s "$work/gw.out" ] && break; sleep 0.1; done
port=$(awk '/^LISTENING/ {print $2}' "$work/gw.out")
[ -n "$port" ] || { echo "bench-llm.sh: the gateway double did not start: $(cat "$work/gw.err")" >&2; exit 1; }

echo "load average at start: $(cat /proc/loadavg)"
for fn in $FUNCTIONS; do
  cfg="$work/$fn.toml"
  cat >"$cfg" <<TOML
[study]
name = "llm-$fn"
trials = $TRIALS
parallel = 1
seed = 0

[strategy]
plugin = "$repo/plugins/llm_guided.wasm"
allow = ["log", "llm"]

[executor]
kind = "bench"
function = "$fn"

[llm]
base_url = "http://127.0.0.1:$port/resource_server/sophia/vllm/v1"
max_calls = 1000
TOML
  echo
  echo "== $fn: gp_ucb vs llm_guided (llm_share 0.3), $REPEATS seeds x $TRIALS trials, scripted loopback LLM"
  ALCF_HOST_SOPHIA_TOKEN=bench "$bin" compare --config "$cfg" --strategy plugins/gp_ucb.wasm \
    --strategy plugins/llm_guided.wasm --repeats "$REPEATS" --trials "$TRIALS" --quiet --out "$work/report-$fn"
  sed -n '/^|/p' "$work/report-$fn/summary.md"
  python3 - "$work/report-$fn/summary.json" "$fn" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
for st in s["strategies"]:
    print(f"  {st['name']}: finals {[round(v, 5) if v is not None else None for v in st['finals']]}")
PY
done
