#!/usr/bin/env python3
"""plugins/cmaes against the `cmaes` library's CMA (the optimizer inside Optuna's CmaEsSampler).

Both run natively (no sandbox) on the same BBOB instances through `alcf-host bench eval`, with the
settings CmaEsSampler gives CMA (mean at the centre of the unit cube, sigma0 = 1/6, bounds
[0, 1]^d, 10·d resamples), 100 trials at d < 10 and 200 at d >= 10. Each seed offset draws other
random streams for both, so the spread between offsets shows how much of a difference between
the two is noise:

    .venv/bin/python scripts/bench-cmaes-library.py --problem bbob_f010_d05 --offsets 0,1000,2000,3000

Prints, per offset, the mean log10 final regret (floored at 1e-8) of each over the instances.
Needs target/release/alcf-host and the cmaes package (`scripts/bench-suite.py --install`).
"""

import argparse
import importlib.util
import math
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FLOOR = 1e-8


def load_script(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# The evaluation pipe and regret of the strategy-quality suite, so both measure alike.
BenchProblem = load_script("bench_suite", ROOT / "scripts" / "bench-suite.py").BenchProblem


def final_regret(problem):
    problem.close()
    return max(problem.regret(), FLOOR)


def load_plugin():
    sys.path.insert(0, str(ROOT / "plugins" / "sdk-python"))
    return load_script("cmaes_plugin", ROOT / "plugins" / "cmaes" / "app.py")


def run_plugin(plugin, problem, seed, trials):
    hpo = sys.modules["alcf_strategy"]
    from alcf_strategy.strategy import deliver

    params = [hpo.Param.float(p["name"], p["low"], p["high"]) for p in problem.desc["params"]]
    strategy = plugin.CmaEs(hpo.Study.new(params, seed=seed))
    for t in range(trials):
        p = strategy.suggest(1, [])[0]
        v = problem.eval(p)
        deliver(strategy, [hpo.Outcome(hpo.Trial(t, p), "completed", v, {"objective": v})])
    return final_regret(problem)


def run_library(problem, seed, trials):
    import cmaes
    import numpy as np

    ps = problem.desc["params"]
    d = len(ps)
    opt = cmaes.CMA(mean=np.full(d, 0.5), sigma=1 / 6, bounds=np.array([[0.0, 1.0]] * d), seed=seed,
                    n_max_resampling=10 * d)
    generation = []
    for _ in range(trials):
        x = opt.ask()
        v = problem.eval({p["name"]: p["low"] + (p["high"] - p["low"]) * float(u) for p, u in zip(ps, x)})
        generation.append((x, v))
        if len(generation) == opt.population_size:
            opt.tell(generation)
            generation = []
    return final_regret(problem)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--problem", default="bbob_f010_d05")
    ap.add_argument("--first", type=int, default=1, help="first instance [1]")
    ap.add_argument("--instances", type=int, default=20)
    ap.add_argument("--offsets", default="0,1000,2000,3000", help="seed offsets, comma-separated")
    ap.add_argument("--alcf", default=str(ROOT / "target" / "release" / "alcf-host"))
    args = ap.parse_args()
    plugin = load_plugin()
    dim = int(args.problem.split("_d")[1][:2])
    trials = 200 if dim >= 10 else 100
    print(f"{args.problem}, instances {args.first}-{args.first + args.instances - 1}, {trials} trials")
    print("seed offset | plugins/cmaes | cmaes library CMA   (mean log10 final regret)")
    for offset in (int(o) for o in args.offsets.split(",")):
        logs = {"plugin": [], "library": []}
        for inst in range(args.first, args.first + args.instances):
            seed = inst + offset
            logs["plugin"].append(math.log10(run_plugin(plugin, BenchProblem(args.alcf, args.problem, inst), seed, trials)))
            logs["library"].append(math.log10(run_library(BenchProblem(args.alcf, args.problem, inst), seed, trials)))
        mean = {k: sum(v) / len(v) for k, v in logs.items()}
        print(f"{offset:>11} | {mean['plugin']:13.3f} | {mean['library']:.3f}", flush=True)


if __name__ == "__main__":
    main()
