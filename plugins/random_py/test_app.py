"""Native tests of the random_py plugin (no WebAssembly): ``python3 plugins/random_py/test_app.py``
or ``python3 -m unittest discover -s plugins/random_py -p 'test_*.py'`` from the repository root."""

import os
import sys
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "sdk-python"))
sys.path.insert(0, HERE)

import alcf_strategy as hpo  # noqa: E402
import app  # noqa: E402
from alcf_strategy.strategy import deliver  # noqa: E402

P = hpo.Param


class RandomPyTest(unittest.TestCase):
    def test_describe(self):
        self.assertTrue(app.RandomSearch.name and app.RandomSearch.version)
        self.assertTrue(app.RandomSearch.description)
        self.assertIs(app.Strategy, app.RandomSearch)  # natively, export() gives the class back

    def test_deterministic_in_bounds_no_pending_duplicates(self):
        # The Rust plugin's test (plugins/random/src/lib.rs); native.run fails on a pending duplicate.
        study = hpo.Study.new([P.int("a", 0, 3), P.choice("c", ["x", "y"])], seed=5)
        a = hpo.native.run(app.RandomSearch, study, 40, 4, lambda p: 1.0)
        b = hpo.native.run(app.RandomSearch, study, 40, 4, lambda p: 1.0)
        self.assertEqual([r.params for r in a], [r.params for r in b])
        for r in a:
            self.assertIn(r.params["a"], range(4))
            self.assertIs(type(r.params["a"]), int)
            self.assertIn(r.params["c"], ["x", "y"])

    def test_a_batch_avoids_pending_and_itself(self):
        study = hpo.Study.new([P.int("a", 0, 3), P.choice("c", ["x", "y"])], seed=1)
        s = app.RandomSearch(study)
        pending = [hpo.Trial(1, {"a": 0, "c": "x"}), hpo.Trial(2, {"a": 1, "c": "y"})]
        out = s.suggest(6, pending)
        keys = [(p["a"], p["c"]) for p in out] + [(0, "x"), (1, "y")]
        self.assertEqual(len(set(keys)), 8)  # the whole space, no repeat

    def test_same_stream_as_the_rust_plugin(self):
        # Rng.derive(seed, next id), then Space.sample: what plugins/random/src/lib.rs does.
        study = hpo.Study.new([P.float("x", -5.0, 10.0), P.float("lr", 1e-5, 1e-1, log=True), P.int("n", -5, 5),
                               P.choice("c", ["a", "b", "c", "d"])], seed=7)
        s = app.RandomSearch(study)
        space = hpo.Space(study.space)
        got = s.suggest(3, [hpo.Trial(4, {"x": 0.0, "lr": 1e-3, "n": 0, "c": "a"})])
        rng = hpo.Rng.derive(7, 5)
        self.assertEqual(got, [space.decode(space.sample(rng)) for _ in range(3)])

    def test_resume_continues_instead_of_repeating(self):
        study = hpo.Study.new([P.float("x", 0.0, 1.0)], seed=3)
        first = app.RandomSearch(study)
        run = []
        for i in range(1, 6):
            p = first.suggest(1, [])[0]
            run.append(p)
            deliver(first, [hpo.Outcome(hpo.Trial(i, p), "completed", p["x"], {"objective": p["x"]})])
        resumed = app.RandomSearch(study)  # a fresh instance with the history replayed
        deliver(resumed, [hpo.Outcome(hpo.Trial(i + 1, p), "completed", p["x"]) for i, p in enumerate(run)])
        self.assertEqual(resumed.suggest(1, []), first.suggest(1, []))
        self.assertNotIn(resumed.suggest(1, [])[0], run)

    def test_options(self):
        with self.assertRaises(hpo.OptionsError) as c:
            app.RandomSearch(hpo.Study.new([P.float("x", 0.0, 1.0)], options='{"seed": 1}'))
        self.assertEqual(str(c.exception), "options: unknown option `seed` (this plugin takes no options)")
        app.RandomSearch(hpo.Study.new([P.float("x", 0.0, 1.0)], options=""))


if __name__ == "__main__":
    unittest.main()
