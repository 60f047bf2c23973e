"""Native tests of the cmaes plugin (CPython 3.11+, unittest):

    python3 -m unittest discover -s plugins/cmaes -p 'test_*.py'

Budgets and thresholds (all with fixed seeds, so the results are reproducible):
- sphere, d = 2, cube units: f < 1e-8 within 600 evaluations (seeds 0-2);
- sphere, d = 5, cube units: f < 1e-6 within 1000 evaluations, sequential and with 4 parallel
  workers (seeds 0-2), and f < 1e-8 within 2000;
- rosenbrock, d = 2 on [-2, 2]^2: f < 1e-6 within 1500 evaluations (seeds 0-2);
- rastrigin, d = 2 on [-5.12, 5.12]^2: the global basin (f < 0.5; every other local minimum is
  >= 0.99) within 4000 evaluations, after at least one IPOP restart (seeds 0-4); with BIPOP
  within 8000 (its small-population runs spend budget locally, which does not pay on a
  2-D rastrigin);
- suggest at d = 20 after 1000 observations: < 0.25 s per call.
"""

import math
import os
import sys
import time
import unittest
from collections import deque

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "sdk-python"))
sys.path.insert(0, HERE)

import alcf_strategy as hpo  # noqa: E402
from alcf_strategy import native  # noqa: E402
from alcf_strategy.strategy import deliver  # noqa: E402

import app  # noqa: E402


def float_study(d, lo=0.0, hi=1.0, seed=0, options="{}", parallelism=1, direction="minimize"):
    st = hpo.Study.new([hpo.Param.float(f"x{i}", lo, hi) for i in range(d)], seed=seed, options=options,
                       direction=direction)
    st.parallelism = parallelism
    return st


def vec(params, d):
    return [params[f"x{i}"] for i in range(d)]


def sphere_at(d):
    c = [0.3 + 0.05 * i for i in range(d)]
    return lambda p: sum((v - ci) ** 2 for v, ci in zip(vec(p, d), c))


def rosenbrock(x):
    return sum(100.0 * (x[i + 1] - x[i] ** 2) ** 2 + (1.0 - x[i]) ** 2 for i in range(len(x) - 1))


def rastrigin(x):
    return 10.0 * len(x) + sum(v * v - 10.0 * math.cos(2.0 * math.pi * v) for v in x)


def run(study, n, objective, parallel=1):
    s = app.CmaEs(study)
    recs = native.run(s, study, n, parallel, objective)
    return s, recs


def best_within(recs, n):
    vals = [r.value for r in recs[:n] if r.value is not None]
    return min(vals) if vals else None


def drive_async(strategy, n, parallel, objective, order_rng):
    """Like native.run, but a random pending trial finishes first (out-of-order finishing).
    Returns the outcomes in finishing order and the trials still pending."""
    pending = []
    outcomes = []
    next_id = 0
    while len(outcomes) < n:
        want = min(parallel - len(pending), n - len(outcomes) - len(pending))
        if want > 0:
            for params in strategy.suggest(want, list(pending)):
                assert all(t.params != params for t in pending), "duplicate of a pending trial"
                pending.append(hpo.Trial(next_id, params))
                next_id += 1
        t = pending.pop(order_rng.below(len(pending)))
        v = objective(t.params)
        o = hpo.Outcome(t, "completed" if v is not None else "failed", v, {} if v is None else {"objective": v})
        deliver(strategy, [o])
        outcomes.append(o)
    return outcomes, pending, next_id


def state(s):
    return (s.run_index, s.lam, s.gen, s.mean, s.sigma, s.C, s.B, s.D, s.pc, s.ps, s.buffer, s.best_hist,
            s.run_best, s.no_improve, s.stale_limit, s.run_log)


class JacobiTest(unittest.TestCase):
    def test_reconstructs_symmetric_matrices(self):
        rng = hpo.Rng(5)
        for n in (1, 2, 3, 7, 20):
            m = [[rng.normal() for _ in range(n)] for _ in range(n)]
            a = [[sum(m[i][k] * m[j][k] for k in range(n)) + (1e-3 if i == j else 0.0) for j in range(n)]
                 for i in range(n)]
            vals, v = app.jacobi_eigh(a)
            for i in range(n):
                for j in range(n):
                    rec = sum(v[i][k] * vals[k] * v[j][k] for k in range(n))
                    self.assertAlmostEqual(rec, a[i][j], delta=1e-10 * (1 + abs(a[i][j])))
                    dot = sum(v[k][i] * v[k][j] for k in range(n))
                    self.assertAlmostEqual(dot, 1.0 if i == j else 0.0, delta=1e-12)
            self.assertTrue(all(x > 0 for x in vals))
        # Ill-conditioned diagonal-dominant case: small eigenvalues keep relative accuracy.
        a = [[1.0, 1e-9], [1e-9, 1e-12]]
        vals, _ = app.jacobi_eigh(a)
        large = (1.0 + 1e-12 + math.sqrt((1.0 - 1e-12) ** 2 + 4e-18)) / 2.0
        exact = (1e-12 - 1e-18) / large  # det / large eigenvalue, free of cancellation
        self.assertAlmostEqual(min(vals) / exact, 1.0, delta=1e-9)
        self.assertAlmostEqual(max(vals) / large, 1.0, delta=1e-15)


class OptionsTest(unittest.TestCase):
    def study(self, options):
        return float_study(3, options=options)

    def test_describe(self):
        self.assertEqual(app.CmaEs.name, "cmaes")
        self.assertEqual(app.CmaEs.version, "0.2.0")
        self.assertIn("IPOP", app.CmaEs.description)

    def test_defaults_and_valid_options(self):
        s = app.CmaEs(float_study(10))
        self.assertEqual(s.lam, 4 + int(3 * math.log(10)))
        self.assertEqual((s.sigma, s.bounds, s.active), (1 / 6, "resample", True))
        s = app.CmaEs(self.study('{"sigma0": 0.1, "popsize": 12, "restarts": 2, "inc_popsize": 3, "bipop": true}'))
        self.assertEqual((s.lam, s.sigma, s.max_restarts, s.inc_popsize, s.bipop), (12, 0.1, 2, 3.0, True))

    def test_errors(self):
        bad = [
            '{"sigma": 0.2}',
            '{"sigma0": 0}',
            '{"sigma0": 1.5}',
            '{"sigma0": "big"}',
            '{"popsize": 1}',
            '{"popsize": 3.5}',
            '{"popsize": -4}',
            '{"restarts": -1}',
            '{"inc_popsize": 0.5}',
            '{"bipop": 1}',
            '{"bounds": "wrap"}',
            '{"bounds": 1}',
            '{"active": "yes"}',
            '[1, 2]',
            '{"popsize": ',
        ]
        for text in bad:
            with self.assertRaises(hpo.OptionsError, msg=text) as cm:
                app.CmaEs(self.study(text))
            self.assertTrue(str(cm.exception).startswith("options:"), str(cm.exception))
        with self.assertRaises(hpo.OptionsError) as cm:
            app.CmaEs(self.study('{"popsze": 8}'))
        self.assertIn("unknown option `popsze`", str(cm.exception))
        self.assertIn("sigma0, popsize, restarts, inc_popsize, bipop, bounds, active", str(cm.exception))
        with self.assertRaises(hpo.PluginError):
            app.CmaEs(hpo.Study.new([]))


class VariantsTest(unittest.TestCase):
    """The bound handling and active CMA's negative weights."""

    def on_faces(self, options):
        # Mean at the centre, sigma 0.5: a plain draw leaves [0,1] in a coordinate with p = 0.32.
        s = app.CmaEs(float_study(2, options=options))
        points = [vec(p, 2) for p in s.suggest(300, [])]
        return sum(1 for x in points for v in x if v in (0.0, 1.0))

    def test_resample_keeps_samples_off_the_faces(self):
        self.assertGreater(self.on_faces('{"sigma0": 0.5, "bounds": "clip"}'), 100)
        self.assertEqual(self.on_faces('{"sigma0": 0.5, "bounds": "resample"}'), 0)

    def test_negative_weights(self):
        for d in (2, 5, 20):
            s = app.CmaEs(float_study(d, options='{"active": true}'))
            self.assertEqual(len(s.neg_weights), s.lam - s.mu)
            self.assertTrue(all(w <= 0.0 for w in s.neg_weights))
            self.assertTrue(all(a >= b for a, b in zip(s.neg_weights, s.neg_weights[1:])), "worst weighs most")
            alpha = min(1 + s.c1 / s.cmu, (1 - s.c1 - s.cmu) / (d * s.cmu),
                        1 + 2 * (sum(s.neg_weights) ** 2 / sum(w * w for w in s.neg_weights)) / (s.mueff + 2))
            self.assertAlmostEqual(-sum(s.neg_weights), alpha, delta=1e-12)
            self.assertEqual(app.CmaEs(float_study(d, options='{"active": false}')).neg_weights, [])

    def test_active_converges_and_keeps_c_positive(self):
        for seed in range(3):
            s, recs = run(float_study(5, seed=seed, options='{"active": true, "bounds": "resample"}'), 1000,
                          sphere_at(5))
            self.assertLess(best_within(recs, 1000), 1e-6, f"seed {seed}")
            self.assertTrue(all(v > 0.0 for v in app.jacobi_eigh(s.C)[0]))
        s, recs = run(float_study(2, -2.0, 2.0, seed=0, options='{"active": true}'), 1500,
                      lambda p: rosenbrock(vec(p, 2)))
        self.assertLess(best_within(recs, 1500), 1e-6)


class ConvergenceTest(unittest.TestCase):
    def test_sphere_2d(self):
        for seed in range(3):
            _, recs = run(float_study(2, seed=seed), 600, sphere_at(2))
            self.assertLess(best_within(recs, 600), 1e-8, f"seed {seed}")

    def test_sphere_5d(self):
        for seed in range(3):
            for par in (1, 4):
                _, recs = run(float_study(5, seed=seed, parallelism=par), 2000, sphere_at(5), parallel=par)
                self.assertLess(best_within(recs, 1000), 1e-6, f"seed {seed} parallel {par}")
                self.assertLess(best_within(recs, 2000), 1e-8, f"seed {seed} parallel {par}")

    def test_rosenbrock_2d(self):
        for seed in range(3):
            _, recs = run(float_study(2, -2.0, 2.0, seed=seed), 1500, lambda p: rosenbrock(vec(p, 2)))
            self.assertLess(best_within(recs, 1500), 1e-6, f"seed {seed}")

    def test_maximize(self):
        f = sphere_at(3)
        st = float_study(3, seed=1, direction="maximize")
        _, recs = run(st, 800, lambda p: -f(p))
        self.assertGreater(native.best(recs, "maximize"), -1e-8)

    def check_rastrigin(self, options, budget):
        for seed in range(5):
            s, recs = run(float_study(2, -5.12, 5.12, seed=seed, options=options), budget,
                          lambda p: rastrigin(vec(p, 2)))
            self.assertLess(best_within(recs, budget), 0.5, f"seed {seed}")
            self.assertGreaterEqual(len(s.run_log), 1, f"seed {seed}: no restart")
        return s

    def test_rastrigin_ipop(self):
        s = self.check_rastrigin("{}", 4000)
        # IPOP: the population doubles on every restart.
        lams = [r[1] for r in s.run_log] + [s.lam]
        self.assertEqual(lams, [6 * 2 ** k for k in range(len(lams))])

    def test_rastrigin_bipop(self):
        s = self.check_rastrigin('{"bipop": true}', 8000)
        self.assertTrue(any(r[2] < 0.3 for r in s.run_log), "no small-regime run")

    def test_restart_cap_and_inc_popsize(self):
        # Constant objective: every run stalls; the population grows twice (x3), then stays.
        st = float_study(2, seed=4, options='{"restarts": 2, "inc_popsize": 3}')
        s, _ = run(st, 3000, lambda p: 1.0)
        lams = [r[1] for r in s.run_log] + [s.lam]
        self.assertGreaterEqual(len(lams), 4)
        self.assertEqual(lams[:3], [6, 18, 54])
        self.assertTrue(all(lam == 54 for lam in lams[3:]))


class DeterminismTest(unittest.TestCase):
    def test_same_seed_same_run(self):
        f = lambda p: rosenbrock(vec(p, 3))  # noqa: E731
        a = [r.params for r in run(float_study(3, -2, 2, seed=7), 300, f, parallel=3)[1]]
        b = [r.params for r in run(float_study(3, -2, 2, seed=7), 300, f, parallel=3)[1]]
        c = [r.params for r in run(float_study(3, -2, 2, seed=8), 300, f, parallel=3)[1]]
        self.assertEqual(a, b)
        self.assertNotEqual(a, c)

    def check_replay(self, study, n, objective, parallel, chunks):
        a = app.CmaEs(study)
        outcomes, pending, next_id = drive_async(a, n, parallel, objective, hpo.Rng(99))
        want = parallel - len(pending)
        sa = a.suggest(want + 2, pending)
        # A fresh instance (the host after a restart) replays the finished trials in finishing
        # order, here in chunks of various sizes.
        b = app.CmaEs(study)
        i = 0
        k = 0
        while i < len(outcomes):
            size = chunks[k % len(chunks)]
            deliver(b, outcomes[i:i + size])
            i += size
            k += 1
        self.assertEqual(state(a), state(b))
        self.assertEqual(sa, b.suggest(want + 2, pending))
        # Both continue identically.
        for s in (a, b):
            more, _, _ = drive_async(s, 20, parallel, objective, hpo.Rng(5))
            s.more = [o.trial.params for o in more]
        self.assertEqual(a.more, b.more)
        return a

    def test_replay_30_trials(self):
        st = float_study(4, -2, 2, seed=3, parallelism=4)
        self.check_replay(st, 30, lambda p: rosenbrock(vec(p, 4)), 4, [1])
        self.check_replay(st, 30, lambda p: rosenbrock(vec(p, 4)), 4, [30])
        self.check_replay(st, 30, lambda p: rosenbrock(vec(p, 4)), 4, [7, 3])

    def test_replay_across_restarts_with_failures(self):
        st = float_study(2, -5.12, 5.12, seed=11, parallelism=3)

        def f(p):
            x = vec(p, 2)
            return None if x[0] > 4.0 else rastrigin(x)

        a = self.check_replay(st, 1500, f, 3, [5, 1, 17])
        self.assertGreaterEqual(len(a.run_log), 1)
        self.assertGreater(a.stale_skipped, 0)

    def test_suggest_does_not_change_state(self):
        st = float_study(3, seed=2)
        s, _ = run(st, 50, sphere_at(3))
        before = repr(state(s))
        first = s.suggest(5, [])
        self.assertEqual(before, repr(state(s)))
        self.assertEqual(first, s.suggest(5, []))


class SpacesTest(unittest.TestCase):
    def mixed(self, seed=0):
        return hpo.Study.new(
            [
                hpo.Param.float("x", -5.0, 5.0),
                hpo.Param.float("lr", 1e-5, 1e-1, log=True),
                hpo.Param.int("n", -3, 3),
                hpo.Param.int("bs", 16, 256, log=True),
                hpo.Param.choice("c", ["a", "b", "c"]),
                hpo.Param.int("one", 2, 2),
            ],
            seed=seed,
        )

    def test_mixed_space_stays_valid_and_improves(self):
        st = self.mixed(seed=1)
        st.parallelism = 3
        target = {"a": 1.0, "b": 0.0, "c": 2.0}

        def f(p):
            return ((p["x"] - 1.0) ** 2 + (math.log10(p["lr"]) + 3.0) ** 2 + (p["n"] - 2) ** 2
                    + (math.log2(p["bs"]) - 6.0) ** 2 + target[p["c"]])

        s, recs = run(st, 600, f, parallel=3)
        for r in recs:
            p = r.params
            self.assertTrue(-5.0 <= p["x"] <= 5.0 and isinstance(p["x"], float))
            self.assertTrue(1e-5 <= p["lr"] <= 1e-1)
            self.assertTrue(isinstance(p["n"], int) and -3 <= p["n"] <= 3)
            self.assertTrue(isinstance(p["bs"], int) and 16 <= p["bs"] <= 256)
            self.assertIn(p["c"], ("a", "b", "c"))
            self.assertEqual(p["one"], 2)
        self.assertLess(native.best(recs), 0.2)
        best = min(recs, key=lambda r: r.value).params
        self.assertEqual((best["n"], best["bs"], best["c"]), (2, 64, "b"))
        # The variance floor on discrete coordinates holds.
        for j in s.discrete:
            s_min = 0.5 * s._bin_width(j) / s.margin_z
            self.assertGreaterEqual(s.sigma * math.sqrt(s.C[j][j]), s_min * (1 - 1e-9))
        self.assertNotIn(5, s.discrete)  # the constant int needs no floor

    def test_discrete_search_does_not_collapse(self):
        st = hpo.Study.new([hpo.Param.int(f"k{i}", 0, 9) for i in range(3)], seed=2)
        s, recs = run(st, 300, lambda p: sum((p[f"k{i}"] - 7) ** 2 for i in range(3)))
        self.assertEqual(native.best(recs), 0)
        # Late suggestions still explore other bins (and mostly avoid finished points).
        late = [tuple(sorted(r.params.items())) for r in recs[-60:]]
        self.assertGreater(len(set(late)), 20)

    def test_degenerate_runs(self):
        st = float_study(3, seed=5)
        s, recs = run(st, 60, lambda p: None, parallel=2)  # every trial fails
        self.assertEqual(s.gen, 60 // s.lam)
        self.assertEqual(s.mean, [0.5] * 3)
        run(st, 200, lambda p: 1.0, parallel=2)  # constant
        # Half the space fails: the search still converges in the other half.
        f = sphere_at(3)
        _, recs = run(st, 800, lambda p: None if p["x0"] < 0.25 else f(p), parallel=2)
        self.assertLess(native.best(recs), 1e-6)
        # Tiny discrete space, many parallel workers: never a pending duplicate.
        tiny = hpo.Study.new([hpo.Param.int("a", 0, 4), hpo.Param.choice("c", ["x", "y"])])
        run(tiny, 60, lambda p: 0.0, parallel=8)
        single = hpo.Study.new([hpo.Param.choice("c", ["only"])])
        run(single, 5, lambda p: 1.0)
        # An optimum in a corner: every clipped sample lands on it; resampled ones close in on it.
        corner = float_study(2, seed=6, parallelism=4, options='{"bounds": "clip"}')
        _, recs = run(corner, 400, lambda p: p["x0"] + p["x1"], parallel=4)
        self.assertEqual(native.best(recs), 0.0)
        corner = float_study(2, seed=6, parallelism=4)
        _, recs = run(corner, 400, lambda p: p["x0"] + p["x1"], parallel=4)
        self.assertLess(native.best(recs), 1e-3)


class CostTest(unittest.TestCase):
    def test_suggest_is_cheap_at_d20(self):
        d = 20
        st = float_study(d, -2, 2, seed=3, parallelism=8)
        s = app.CmaEs(st)
        f = lambda p: rosenbrock(vec(p, d))  # noqa: E731
        pending = deque()
        next_id = 0
        worst_suggest = 0.0
        worst_observe = 0.0
        done = 0
        while done < 1000:
            if len(pending) < 8:
                t0 = time.perf_counter()
                sugg = s.suggest(8 - len(pending), list(pending))
                worst_suggest = max(worst_suggest, time.perf_counter() - t0)
                for p in sugg:
                    pending.append(hpo.Trial(next_id, p))
                    next_id += 1
            t = pending.popleft()
            t0 = time.perf_counter()
            deliver(s, [hpo.Outcome(t, "completed", f(t.params), {})])
            worst_observe = max(worst_observe, time.perf_counter() - t0)
            done += 1
        t0 = time.perf_counter()
        s.suggest(8, list(pending))
        last = time.perf_counter() - t0
        self.assertLess(max(worst_suggest, last), 0.25)
        self.assertLess(worst_observe, 0.5)


if __name__ == "__main__":
    unittest.main()
