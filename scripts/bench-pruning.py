#!/usr/bin/env python3
"""Pruning against no pruning at equal wall time, as docs/benchmarks.md reports it.

  python3 scripts/bench-pruning.py bench    [--seeds 10] [--time 30] [--function hartmann6]
  python3 scripts/bench-pruning.py trainer  [--seeds 2] [--time 180]

`bench`: a bench function with simulated learning curves (`[executor] epochs`, one epoch per
`--epoch-s`), random search with and without the `pruner` plugin (ASHA), each run given the same
`max_time`. `trainer`: the quickstart's trainer and space on the synthetic CIFAR-100 data
(`scripts/quickstart.sh` makes it), with more epochs, gp_ucb proposing, with and without ASHA
judging each epoch's `val_acc`; the objective is `curve_auc`.

Runs alternate (none, asha / asha, none from seed to seed). Printed per run and as medians:
trials finished, epochs trained (the sum of every trial's recorded curve), and the best objective.
Needs target/release/alcf-host (cargo build --release -p alcf-host) and the built plugins.
"""

import argparse
import json
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def host_bin():
    for kind in ("release", "debug"):
        p = os.path.join(REPO, "target", kind, "alcf-host")
        if os.path.exists(p):
            return p
    sys.exit("bench-pruning: build the host first: cargo build --release -p alcf-host")


def plugin(name):
    p = os.path.join(REPO, "plugins", name + ".wasm")
    if not os.path.exists(p):
        sys.exit(f"bench-pruning: {p} is missing: bash scripts/build-plugins.sh")
    return p


def config(args, seed, prune, work):
    name = f"{'asha' if prune else 'none'}-{seed}"
    pruner = ""
    if args.what == "bench":
        if prune:
            pruner = f'[pruner]\nplugin = "{plugin("pruner")}"\noptions = {{ rule = "asha", reduction_factor = 3 }}\n'
        text = (
            f'[study]\nname = "{name}"\nparallel = {args.parallel}\nseed = {seed}\nroot = "{work}"\n'
            f'max_time = "{args.time:g}s"\n'
            f'[strategy]\nplugin = "{plugin("random")}"\n{pruner}'
            f'[executor]\nkind = "bench"\nfunction = "{args.function}"\nepochs = {args.epochs}\n'
            f"delay_s = {args.epoch_s}\n"
        )
    else:
        data = os.path.join(REPO, "data", "synthetic")
        if not os.path.isdir(data):
            sys.exit("bench-pruning: no synthetic data: run bash scripts/quickstart.sh first")
        trainer = os.path.join(REPO, "target", "release", "alcf-trainer")
        if prune:
            pruner = (f'[pruner]\nplugin = "{plugin("pruner")}"\n'
                      'options = { rule = "asha", metric = "val_acc", reduction_factor = 3 }\n')
        text = (
            f'[study]\nname = "{name}"\nobjective = "curve_auc"\ndirection = "maximize"\n'
            f'parallel = {args.parallel}\nseed = {seed}\nroot = "{work}"\nmax_time = "{args.time:g}s"\n'
            f'[strategy]\nplugin = "{plugin("gp_ucb")}"\n{pruner}'
            f'[executor]\nkind = "local"\ncommand = ["{trainer}", "train", "--params", "{{params}}", '
            f'"--data", "{data}", "--model", "cnn", "--depth", "3", "--epochs", "{args.epochs}", '
            '"--limit-train", "3000", "--limit-val", "1000", "--threads", "1", "--quiet"]\n'
            'timeout_s = 1200\n'
            '[space]\nlr = { type = "float", low = 1e-3, high = 0.3, log = true }\n'
            'batch_size = { type = "choice", values = [32, 64, 128] }\n'
            'width = { type = "int", low = 8, high = 48 }\n'
            'dropout = { type = "float", low = 0.0, high = 0.5 }\n'
            'weight_decay = { type = "float", low = 1e-6, high = 1e-2, log = true }\n'
            'optimizer = { type = "choice", values = ["sgd", "adamw"] }\n'
        )
    path = os.path.join(work, name + ".toml")
    with open(path, "w") as f:
        f.write(text)
    return name, path


def measure(work, name, direction):
    db = sqlite3.connect(os.path.join(work, name, "study.db"))
    rows = db.execute("SELECT state, value, curve FROM trial").fetchall()
    epochs = sum(len(json.loads(c)) for _, _, c in rows if c)
    values = [v for s, v, _ in rows if s == "completed" and v is not None]
    best = (max(values) if direction == "maximize" else min(values)) if values else None
    states = [s for s, _, _ in rows]
    return {"completed": states.count("completed"), "pruned": states.count("pruned"),
            "epochs": epochs, "best": best}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=["bench", "trainer"])
    ap.add_argument("--seeds", type=int)
    ap.add_argument("--time", type=float, help="max_time of each run, seconds")
    ap.add_argument("--parallel", type=int, default=None)
    ap.add_argument("--epochs", type=int, default=None)
    ap.add_argument("--epoch-s", type=float, default=0.1, help="bench: seconds per simulated epoch")
    ap.add_argument("--function", default="hartmann6", help="bench: the test function")
    ap.add_argument("--out", help="write the runs as JSON here")
    args = ap.parse_args()
    bench = args.what == "bench"
    args.seeds = args.seeds or (10 if bench else 2)
    args.time = args.time or (30 if bench else 180)
    args.parallel = args.parallel or (4 if bench else 2)
    args.epochs = args.epochs or (27 if bench else 9)
    direction = "minimize" if bench else "maximize"
    work = tempfile.mkdtemp(prefix="bench-pruning-")
    env = dict(os.environ, ALCF_HOST_CACHE=os.path.join(work, "cache"))
    runs = []
    for seed in range(1, args.seeds + 1):
        order = (False, True) if seed % 2 else (True, False)
        for prune in order:
            name, path = config(args, seed, prune, work)
            t0 = time.monotonic()
            out = subprocess.run([host_bin(), "run", "--config", path, "--quiet"], env=env,
                                 capture_output=True, text=True)
            wall = time.monotonic() - t0
            if out.returncode != 0:
                sys.exit(f"bench-pruning: {name} failed:\n{out.stdout}{out.stderr}")
            r = dict(measure(work, name, direction), seed=seed, asha=prune, wall_s=round(wall, 1))
            runs.append(r)
            print(json.dumps(r), flush=True)
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"args": vars(args), "runs": runs}, f, indent=1)

    def med(prune, key):
        xs = [r[key] for r in runs if r["asha"] == prune and r[key] is not None]
        return statistics.median(xs) if xs else float("nan")

    wins = sum(1 for s in range(1, args.seeds + 1)
               for a in [r for r in runs if r["seed"] == s and r["asha"]]
               for n in [r for r in runs if r["seed"] == s and not r["asha"]]
               if a["best"] is not None and (n["best"] is None or
                                             (a["best"] < n["best"] if bench else a["best"] > n["best"])))
    print(f"\n| {args.what} ({args.seeds} seeds, {args.time:g} s each) | none | ASHA |")
    print("|---|---:|---:|")
    for key, label in (("completed", "trials completed"), ("pruned", "trials pruned"),
                       ("epochs", "epochs trained"), ("best", "best objective"), ("wall_s", "wall time (s)")):
        print(f"| {label} (median) | {med(False, key):.4g} | {med(True, key):.4g} |")
    print(f"| seeds where ASHA's best is better | | {wins} of {args.seeds} |")


if __name__ == "__main__":
    main()
