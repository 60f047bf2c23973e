#!/usr/bin/env python3
"""The strategy-quality suite, alcf-host's strategies and Optuna's samplers side by side in one run.

Every problem is a family of BBOB instances (host/testfns/src/suite.rs): the same instance
numbers, seeds and budgets for both tools. alcf-host runs through `alcf-host compare` (the
.wasm plugins in the sandbox; repeat r = instance = seed S + r); Optuna's samplers optimize the
very same functions through `alcf-host bench eval` (one process per run, a JSON line per point),
so neither side has its own copy of a function, its noise or its optimum.

    bash scripts/build-plugins.sh && cargo build --release -p alcf-host
    python3 scripts/bench-suite.py --install            # Optuna 5.0.0, cmaes, scipy, torch's deps into .venv
    .venv/bin/python scripts/bench-suite.py --suite heldout --out reports/suite-heldout

Sets of instances (the held-out protocol, docs/benchmarks.md):
  --suite tuning   instances 1-5: where strategy defaults may be chosen;
  --suite heldout  instances 101-110: reported; no default is tuned on them.

A run is resumable: each finished run is a file under OUT (alcf/<problem>/, optuna/<problem>/),
kept and skipped when the command is given again. At the end OUT holds results.json (every run,
with its best-so-far regret curve), table.md (the tables) and rank.svg (mean rank over trials).

Regret is the noiseless value of the incumbent (the trial with the best observed value) minus
the instance's optimum, floored at 1e-8 (COCO's final target) for ranks and medians.
"""

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FLOOR = 1e-8

# The reported suite: BBOB functions from every group but the trivial ones, with mixed and noisy
# variants: separable multimodal (f3 Rastrigin), moderate conditioning (f8 Rosenbrock), high
# conditioning (f10 rotated ellipsoid), multimodal with global structure (f15 rotated Rastrigin),
# weak structure (f21 Gallagher's 101 peaks). Optuna's GPSampler takes 0.3-1 s per ask here
# (about 1 min per 100-trial run, 3 at d = 10 with 200), so this is what fits about 90 minutes on
# 2 cores; any other family runs with --problems (d = 20 included).
SUITES = {
    "tuning": {"first": 1, "instances": 5},
    "heldout": {"first": 101, "instances": 10},
}
DEFAULT_PROBLEMS = (
    [f"bbob_f{f:03d}_d02" for f in (3, 8, 15, 21)]
    + [f"bbob_f{f:03d}_d05" for f in (3, 8, 10, 21)]
    + ["bbob_f008_d05_mixed", "bbob_f008_d05_add1", "bbob_f021_d05_mul0.3"]
    + ["bbob_f021_d10"]
)
ALCF_STRATEGIES = ["random", "genetic", "tpe", "gp_ucb", "region_ucb", "cmaes"]
OPTUNA_SAMPLERS = ["random", "tpe-univariate", "tpe-multivariate", "gp", "cmaes"]
# Which Optuna samplers each alcf-host strategy is held against (the ratio column).
COUNTERPART = {
    "tpe": ["tpe-univariate", "tpe-multivariate"],
    "gp_ucb": ["gp"],
    "region_ucb": ["gp"],
    "cmaes": ["cmaes"],
    "random": ["random"],
}


def dim_of(problem):
    return int(problem.split("_d")[1].split("_")[0])


def budget(problem, args):
    if args.trials:
        return args.trials
    return 200 if dim_of(problem) >= 10 else 100


# ---------------------------------------------------------------------------------------------
# Optuna's side


def install():
    venv = ROOT / ".venv"
    py = venv / "bin" / "python"
    if not py.exists():
        sys.exit("no .venv: run `bash scripts/setup-torch.sh --bench` first (GPSampler needs an importable torch)")
    pkgs = ["optuna==5.0.0", "cmaes==0.13.1", "scipy", "typing_extensions", "sympy", "networkx", "jinja2", "filelock", "fsspec"]
    subprocess.run([str(py), "-m", "pip", "install", "-q", *pkgs], check=True)
    subprocess.run([str(py), "-c", "import optuna, torch, cmaes; print('optuna', optuna.__version__, 'torch', torch.__version__)"], check=True)


def make_sampler(name, seed):
    import optuna

    s = optuna.samplers
    if name == "tpe-univariate":
        return s.TPESampler(seed=seed, multivariate=False)
    if name == "tpe-multivariate":
        return s.TPESampler(seed=seed, multivariate=True)
    if name == "gp":
        return s.GPSampler(seed=seed)
    if name == "cmaes":
        return s.CmaEsSampler(seed=seed)
    if name == "random":
        return s.RandomSampler(seed=seed)
    raise SystemExit(f"unknown Optuna sampler {name!r} (known: {', '.join(OPTUNA_SAMPLERS)})")


def distributions(desc):
    import optuna.distributions as d

    out = {}
    for p in desc["params"]:
        if p["type"] == "float":
            out[p["name"]] = d.FloatDistribution(p["low"], p["high"], log=p["log"])
        elif p["type"] == "int":
            out[p["name"]] = d.IntDistribution(p["low"], p["high"], log=p["log"])
        else:
            out[p["name"]] = d.CategoricalDistribution(p["choices"])
    return out


class BenchProblem:
    """One instance of a bench problem, evaluated by `alcf-host bench eval` (a JSON line per point),
    with the incumbent (the point with the best observed value) and its noiseless regret."""

    def __init__(self, alcf, problem, instance):
        target = f"bench:{problem}"
        self.desc = json.loads(subprocess.run([alcf, "bench", "describe", target, "--instance", str(instance)],
                                              check=True, capture_output=True, text=True).stdout)
        self.proc = subprocess.Popen([alcf, "bench", "eval", target, "--instance", str(instance)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
        self.best, self.incumbent = math.inf, None

    def eval(self, params):
        """The observed value at `params` (None: the trial failed)."""
        self.proc.stdin.write(json.dumps(params) + "\n")
        self.proc.stdin.flush()
        answer = json.loads(self.proc.stdout.readline())
        value = answer["value"]
        if value is not None and value < self.best:
            self.best, self.incumbent = value, answer["true_value"]
        return value

    def regret(self):
        """The incumbent's noiseless value minus the optimum (None before a trial succeeded)."""
        return None if self.incumbent is None else self.incumbent - self.desc["optimum"]

    def close(self):
        self.proc.stdin.close()
        self.proc.wait()


def run_optuna(alcf, problem, instance, sampler, trials, path):
    import warnings

    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    warnings.filterwarnings("ignore")
    bench = BenchProblem(alcf, problem, instance)
    study = optuna.create_study(sampler=make_sampler(sampler, instance), direction="minimize")
    dists = distributions(bench.desc)
    curve, ask_s = [], 0.0
    start = time.perf_counter()
    for _ in range(trials):
        t0 = time.perf_counter()
        trial = study.ask(dists)
        ask_s += time.perf_counter() - t0
        value = bench.eval(trial.params)
        if value is None:
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
        else:
            study.tell(trial, value)
        curve.append(bench.regret())
    bench.close()
    run = {"tool": "optuna", "strategy": f"optuna-{sampler}", "problem": problem, "instance": instance,
           "trials": trials, "curve": curve, "suggest_s": ask_s, "suggestions": trials,
           "elapsed_s": time.perf_counter() - start, "optuna": optuna.__version__}
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(run))
    tmp.replace(path)
    return path


# ---------------------------------------------------------------------------------------------
# alcf-host's side


def run_alcf(args, problem, first, n, trials):
    out = Path(args.out) / "alcf" / problem
    summary = out / "summary.json"
    if summary.exists():
        s = json.loads(summary.read_text())
        if s.get("seed") == first and s.get("repeats") == n and s.get("trials") == trials and not s.get("interrupted"):
            return out
    cmd = [args.alcf, "compare", "--objective", f"bench:{problem}", "--seed", str(first), "--repeats", str(n),
           "--trials", str(trials), "--out", str(out), "--quiet", "--jobs", str(args.jobs)]
    for s in args.strategies:
        # A plugin name (plugins/NAME.wasm) or a path, either with @{options}.
        name, _, options = s.partition("@")
        path = str(ROOT / "plugins" / f"{name}.wasm") if "/" not in name else name
        cmd += ["--strategy", path + ("@" + options if options else "")]
    subprocess.run(cmd, check=True)
    return out


def alcf_runs(out, problem):
    summary = json.loads((out / "summary.json").read_text())
    trials = json.loads((out / "trials.json").read_text())
    curves = {}
    for t in trials:
        curves.setdefault((t["strategy"], t["seed"]), []).append((t["trial"], t["regret"]))
    runs = []
    for r in summary["runs"]:
        if r.get("error"):
            print(f"warning: {r['strategy']} on {problem} instance {r['seed']} failed: {r['error']}", file=sys.stderr)
            continue
        curve = [v for _, v in sorted(curves.get((r["strategy"], r["seed"]), []))]
        runs.append({"tool": "alcf-host", "strategy": r["strategy"], "problem": problem, "instance": r["seed"],
                     "trials": summary["trials"], "curve": curve, "suggest_s": r["suggest_s"],
                     "suggestions": r["suggestions"], "elapsed_s": r["elapsed_s"]})
    return runs


# ---------------------------------------------------------------------------------------------
# Tables and the figure


def floor(v):
    return math.inf if v is None else max(v, FLOOR)


def ranks(values):
    """1 = lowest; ties share their mean rank."""
    order = sorted(range(len(values)), key=lambda k: values[k])
    out = [0.0] * len(values)
    k = 0
    while k < len(order):
        j = k
        while j + 1 < len(order) and values[order[j + 1]] == values[order[k]]:
            j += 1
        for m in range(k, j + 1):
            out[order[m]] = (k + j) / 2 + 1
        k = j + 1
    return out


def fmt(v):
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "—"
    if v <= FLOOR:
        return "≤1e-8"
    return f"{v:.3g}" if 1e-3 <= abs(v) < 1e4 else f"{v:.1e}"


def tables(runs, names, problems):
    by = {}
    for r in runs:
        by.setdefault(r["problem"], {}).setdefault(r["strategy"], {})[r["instance"]] = r
    lines = []
    # Mean rank within (problem, instance) over every strategy of both tools.
    rank_sum = {n: [] for n in names}
    wins = {}
    per_problem = {}
    for p in problems:
        at = by.get(p, {})
        instances = sorted(set.intersection(*(set(at.get(n, {})) for n in names))) if at else []
        per_problem[p] = {"instances": instances, "median": {}, "rank": {}, "ms": {}}
        pr = {n: [] for n in names}
        for i in instances:
            finals = [floor(at[n][i]["curve"][-1]) for n in names]
            for n, k in zip(names, ranks(finals)):
                pr[n].append(k)
                rank_sum[n].append(k)
            for ours, theirs in COUNTERPART.items():
                if ours in names:
                    for t in theirs:
                        if f"optuna-{t}" in names:
                            a, b = floor(at[ours][i]["curve"][-1]), floor(at[f"optuna-{t}"][i]["curve"][-1])
                            w = wins.setdefault((ours, t), [0, 0])
                            w[0] += a <= b
                            w[1] += 1
        for n in names:
            if instances:
                per_problem[p]["median"][n] = statistics.median(floor(at[n][i]["curve"][-1]) for i in instances)
                per_problem[p]["rank"][n] = statistics.mean(pr[n])
                per_problem[p]["ms"][n] = 1e3 * sum(at[n][i]["suggest_s"] for i in instances) / max(
                    1, sum(at[n][i]["suggestions"] for i in instances))
    return per_problem, rank_sum, wins


def rank_curves(runs, names, points=50):
    """Mean rank (over problems and instances) at each fraction of the budget."""
    by = {}
    for r in runs:
        by.setdefault((r["problem"], r["instance"]), {})[r["strategy"]] = r["curve"]
    sums = {n: [0.0] * points for n in names}
    count = 0
    for key, curves in by.items():
        if not all(n in curves for n in names):
            continue
        count += 1
        for k in range(points):
            vals = []
            for n in names:
                c = curves[n]
                vals.append(floor(c[min(len(c) - 1, round((k + 1) / points * len(c)) - 1)]))
            for n, rk in zip(names, ranks(vals)):
                sums[n][k] += rk
    return {n: [v / max(1, count) for v in s] for n, s in sums.items()}, count


def svg(curves, names, count, path):
    w, h, l, r, t, b = 820, 420, 60, 240, 30, 50
    ymax = len(names)
    colors = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
              "#bcbd22", "#17becf", "#393b79", "#637939"]
    x = lambda f: l + f * (w - l - r)
    y = lambda v: t + (v - 1) / (ymax - 1) * (h - t - b)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12">',
           f'<rect width="{w}" height="{h}" fill="white"/>',
           f'<text x="{l}" y="18" font-size="14">Mean rank over trials ({count} problem instances; 1 = best)</text>']
    for k in range(1, ymax + 1):
        out.append(f'<line x1="{l}" x2="{w - r}" y1="{y(k):.1f}" y2="{y(k):.1f}" stroke="#eee"/>'
                   f'<text x="{l - 8}" y="{y(k) + 4:.1f}" text-anchor="end">{k}</text>')
    for f in (0, 0.25, 0.5, 0.75, 1):
        out.append(f'<text x="{x(f):.1f}" y="{h - b + 18}" text-anchor="middle">{int(f * 100)}%</text>')
    out.append(f'<text x="{(l + w - r) / 2}" y="{h - 12}" text-anchor="middle">fraction of the trial budget</text>')
    final = sorted(names, key=lambda n: curves[n][-1])
    for i, n in enumerate(names):
        pts = " ".join(f"{x((k + 1) / len(curves[n])):.1f},{y(v):.1f}" for k, v in enumerate(curves[n]))
        dash = ' stroke-dasharray="5,3"' if n.startswith("optuna-") else ""
        out.append(f'<polyline fill="none" stroke="{colors[i % len(colors)]}" stroke-width="2"{dash} points="{pts}"/>')
    for j, n in enumerate(final):
        i = names.index(n)
        yy = t + 14 + j * 18
        dash = ' stroke-dasharray="5,3"' if n.startswith("optuna-") else ""
        out.append(f'<line x1="{w - r + 12}" x2="{w - r + 36}" y1="{yy - 4}" y2="{yy - 4}" stroke="{colors[i % len(colors)]}" stroke-width="2"{dash}/>'
                   f'<text x="{w - r + 42}" y="{yy}">{n} ({curves[n][-1]:.2f})</text>')
    out.append("</svg>")
    path.write_text("\n".join(out))


def report(args, runs, problems, wall_s):
    # Names as the runs carry them (compare labels a strategy with options by them), alcf-host's first.
    names = []
    for tool in ("alcf-host", "optuna"):
        for r in runs:
            if r["tool"] == tool and r["strategy"] not in names:
                names.append(r["strategy"])
    per_problem, rank_sum, wins = tables(runs, names, problems)
    md = []
    first, n = args.first, args.instances
    md.append(f"Instances {first}–{first + n - 1} of every problem (seed = instance for both tools); "
              f"100 trials at d < 10, 200 at d ≥ 10{' (all: ' + str(args.trials) + ')' if args.trials else ''}; "
              f"final regret floored at 1e-8. Wall time of the whole run: {wall_s / 60:.1f} min.\n")
    md.append("Mean rank (within each problem instance, over all strategies of both tools; 1 = best):\n")
    md.append("| strategy | mean rank | ms per suggestion (median over problems) |")
    md.append("|---|---:|---:|")
    for nme in sorted(names, key=lambda k: statistics.mean(rank_sum[k]) if rank_sum[k] else 99):
        ms = [per_problem[p]["ms"][nme] for p in problems if nme in per_problem[p]["ms"]]
        mr = statistics.mean(rank_sum[nme]) if rank_sum[nme] else float("nan")
        md.append(f"| {nme} | {mr:.2f} | {statistics.median(ms) if ms else float('nan'):.2f} |")
    md.append("\nHead to head (instances where alcf-host's final regret ≤ Optuna's, ties at 1e-8 included):\n")
    md.append("| alcf-host | Optuna | instances at least as good |")
    md.append("|---|---|---:|")
    for (ours, theirs), (k, tot) in sorted(wins.items()):
        md.append(f"| {ours} | {theirs} | {k}/{tot} ({100 * k / max(1, tot):.0f}%) |")
    md.append("\nMedian final regret per problem (in parentheses the ratio to the median of the Optuna "
              "counterpart, the better one where there are two; < 1 is better; the best median in bold):\n")
    md.append("| problem | " + " | ".join(names) + " |")
    md.append("|---|" + "---:|" * len(names))
    for p in problems:
        med = per_problem[p]["median"]
        if not med:
            continue
        cells = []
        for nme in names:
            v = med.get(nme)
            cell = fmt(v)
            others = [med.get(f"optuna-{t}") for t in COUNTERPART.get(nme, []) if f"optuna-{t}" in med]
            if v is not None and others and not nme.startswith("optuna-"):
                o = min(others)
                cell += f" ({max(v, FLOOR) / max(o, FLOOR):.2g})"
            best = min(med.values())
            cells.append(f"**{cell}**" if v == best else cell)
        md.append(f"| {p} | " + " | ".join(cells) + " |")
    md.append("\nms per suggestion per problem (`suggest` inside the sandbox; Optuna: `ask`):\n")
    md.append("| problem | " + " | ".join(names) + " |")
    md.append("|---|" + "---:|" * len(names))
    for p in problems:
        ms = per_problem[p]["ms"]
        if ms:
            md.append(f"| {p} | " + " | ".join(f"{ms.get(n, float('nan')):.2f}" for n in names) + " |")
    curves, count = rank_curves(runs, names)
    svg(curves, names, count, Path(args.out) / "rank.svg")
    md.append("\n![mean rank over trials](rank.svg)\n")
    (Path(args.out) / "table.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--install", action="store_true", help="install Optuna and its GP's needs into .venv, then exit")
    ap.add_argument("--suite", choices=sorted(SUITES), default="heldout")
    ap.add_argument("--first", type=int, help="first instance (overrides the suite's)")
    ap.add_argument("--instances", type=int, help="number of instances (overrides the suite's)")
    ap.add_argument("--problems", help="comma-separated families, e.g. bbob_f021_d05,bbob_f008_d05_mixed")
    ap.add_argument("--trials", type=int, help="trials per run [default: 100 at d < 10, 200 at d >= 10]")
    ap.add_argument("--strategies", default=",".join(ALCF_STRATEGIES),
                    help="names (plugins/NAME.wasm) or paths, each optionally with @{JSON options}; separated by ';' "
                         "when an option list has commas, else by ','")
    ap.add_argument("--samplers", default=",".join(OPTUNA_SAMPLERS))
    ap.add_argument("--alcf", default=str(ROOT / "target" / "release" / "alcf-host"))
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--out", default=str(ROOT / "reports" / "suite"))
    ap.add_argument("--report-only", action="store_true", help="tables from what OUT holds, running nothing")
    args = ap.parse_args()
    if args.install:
        install()
        return
    args.first = args.first if args.first is not None else SUITES[args.suite]["first"]
    args.instances = args.instances or SUITES[args.suite]["instances"]
    sep = ";" if ";" in args.strategies else ","
    args.strategies = [s for s in args.strategies.split(sep) if s]
    args.samplers = [s for s in args.samplers.split(",") if s]
    problems = args.problems.split(",") if args.problems else DEFAULT_PROBLEMS
    for s in args.samplers:
        if s not in OPTUNA_SAMPLERS:
            sys.exit(f"unknown sampler {s} (known: {', '.join(OPTUNA_SAMPLERS)})")
    if not Path(args.alcf).exists():
        sys.exit(f"{args.alcf} not found: cargo build --release -p alcf-host (and bash scripts/build-plugins.sh)")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    instances = list(range(args.first, args.first + args.instances))
    runs = []
    if not args.report_only:
        jobs = []
        for p in problems:
            d = out / "optuna" / p
            d.mkdir(parents=True, exist_ok=True)
            for s in args.samplers:
                for i in instances:
                    path = d / f"{s}-i{i}.json"
                    if not path.exists():
                        jobs.append((args.alcf, p, i, s, budget(p, args), path))
        print(f"{len(problems)} problems × {len(instances)} instances: alcf-host compare, then {len(jobs)} Optuna runs "
              f"on {args.jobs} worker(s)", file=sys.stderr)
        for k, p in enumerate(problems):
            t0 = time.perf_counter()
            run_alcf(args, p, args.first, args.instances, budget(p, args))
            print(f"[{k + 1}/{len(problems)}] alcf-host {p}: {time.perf_counter() - t0:.0f} s", file=sys.stderr)
        # Problem by problem (an interrupted run leaves whole problems to report), the expensive
        # sampler first within each.
        cost = {"gp": 0, "cmaes": 2, "tpe-multivariate": 1, "tpe-univariate": 1, "random": 3}
        order = {p: k for k, p in enumerate(problems)}
        jobs.sort(key=lambda j: (order[j[1]], cost.get(j[3], 9), j[2]))
        with ProcessPoolExecutor(max_workers=args.jobs) as pool:
            futures = [pool.submit(run_optuna, *j) for j in jobs]
            for k, f in enumerate(as_completed(futures)):
                f.result()
                if (k + 1) % 25 == 0 or k + 1 == len(futures):
                    print(f"optuna runs: {k + 1}/{len(futures)} ({(time.perf_counter() - start) / 60:.1f} min)", file=sys.stderr)
    for p in problems:
        a = out / "alcf" / p
        if (a / "summary.json").exists():
            runs += [r for r in alcf_runs(a, p) if r["instance"] in instances]
        for s in args.samplers:
            for i in instances:
                path = out / "optuna" / p / f"{s}-i{i}.json"
                if path.exists():
                    runs.append(json.loads(path.read_text()))
    wall = time.perf_counter() - start
    meta = {"problems": problems, "instances": instances, "strategies": args.strategies, "samplers": args.samplers,
            "wall_s_this_invocation": wall, "runs": runs}
    (out / "results.json").write_text(json.dumps(meta))
    report(args, runs, problems, wall)


if __name__ == "__main__":
    main()
