"""Unit tests of the Python guest SDK (native CPython, standard library only).

Run from the repository root: ``python3 -m unittest discover -s plugins/sdk-python/tests -v``.

The export layer is tested against a fake `wit_world` package put in `sys.modules` (the same
shapes as the bindings componentize-py 0.25.1 generates for wit/hpo.wit). With the environment
variable ALCF_WIT_BINDINGS set to a directory of real generated bindings
(``componentize-py -d wit -w strategy-plugin bindings DIR``), the conversions are also checked
against those.
"""

import enum
import io
import json
import math
import os
import subprocess
import sys
import types as pytypes
import typing
import unittest
from contextlib import redirect_stderr
from dataclasses import dataclass

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))

import importlib  # noqa: E402

import alcf_strategy as hpo  # noqa: E402
from alcf_strategy import log as log_mod  # noqa: E402
from alcf_strategy._display import rust_float, rust_str_debug  # noqa: E402
from alcf_strategy.strategy import deliver  # noqa: E402

# The module (the package's attribute `export` is the function of the same name).
export_mod = importlib.import_module("alcf_strategy.export")

P = hpo.Param


def space():
    return hpo.Space(
        [
            P.float("x", -5.0, 10.0),
            P.float("lr", 1e-5, 1e-1, log=True),
            P.int("n", 1, 4),
            P.int("bs", 16, 256, log=True),
            P.choice("model", ["a", "b", "c"]),
        ]
    )


class SpaceTest(unittest.TestCase):
    """Ports of the Rust tests in plugins/sdk/src/space.rs, and more."""

    def test_decode_stays_in_bounds_and_roundtrips(self):
        s = space()
        rng = hpo.Rng(1)
        for i in range(2000):
            x = rng.unit_point(5)
            if i < 2:
                x = [float(i)] * 5  # the corners 0 and 1
            a = s.decode(x)
            self.assertIsInstance(a["x"], float)
            self.assertTrue(-5.0 <= a["x"] <= 10.0)
            self.assertIsInstance(a["lr"], float)
            self.assertTrue(1e-5 <= a["lr"] <= 1e-1)
            self.assertIs(type(a["n"]), int)
            self.assertTrue(1 <= a["n"] <= 4)
            self.assertIs(type(a["bs"]), int)
            self.assertTrue(16 <= a["bs"] <= 256)
            self.assertIn(a["model"], ["a", "b", "c"])
            e = s.encode(a)
            self.assertEqual(s.decode(e), a)
            sn = s.snap(x)
            self.assertEqual(s.decode(sn), a)
            self.assertTrue(s.same_point(x, e, 1e-9))

    def test_corners_decode_to_the_bounds(self):
        s = space()
        self.assertEqual(s.decode([0.0] * 5), {"x": -5.0, "lr": 1e-5, "n": 1, "bs": 16, "model": "a"})
        self.assertEqual(s.decode([1.0] * 5), {"x": 10.0, "lr": 0.1, "n": 4, "bs": 256, "model": "c"})
        # Out of the cube and non-finite coordinates are clamped / read as 0.5.
        self.assertEqual(s.decode([-3.0, 7.0, -1.0, 2.0, 9.0]), s.decode([0.0, 1.0, 0.0, 1.0, 1.0]))
        self.assertEqual(s.decode_value(0, math.nan), 2.5)
        self.assertEqual(s.decode_value(2, math.inf), 3)

    def test_ints_are_evenly_binned(self):
        s = hpo.Space([P.int("n", 1, 4)])
        ints = [s.decode_value(0, u) for u in [0.0, 0.24, 0.26, 0.49, 0.51, 0.74, 0.76, 1.0]]
        self.assertEqual(ints, [1, 1, 2, 2, 3, 3, 4, 4])
        self.assertEqual(s.encode_value(0, 1), 0.125)

    def test_log_ints_cover_their_range_and_roundtrip(self):
        s = hpo.Space([P.int("bs", 16, 256, log=True)])
        seen = set()
        for v in range(16, 257):
            u = s.encode_value(0, v)
            self.assertTrue(0.0 <= u <= 1.0)
            self.assertEqual(s.decode_value(0, u), v)
        for i in range(10001):
            seen.add(s.decode_value(0, i / 10000))
        self.assertEqual(min(seen), 16)
        self.assertEqual(max(seen), 256)
        # The formula, as in Rust: exp(ln 16 + u (ln 257 - ln 16)), floored.
        u = 0.3
        a, b = math.log(16.0), math.log(257.0)
        self.assertEqual(s.decode_value(0, u), math.floor(math.exp(a + u * (b - a))))
        self.assertEqual(s.encode_value(0, 100), (math.log(100.5) - a) / (b - a))

    def test_log_float_is_log_uniform(self):
        s = space()
        self.assertLess(abs(s.decode_value(1, 0.5) - 1e-3), 1e-12)
        u = 0.37
        lo, hi = math.log(1e-5), math.log(1e-1)
        self.assertEqual(s.decode_value(1, u), math.exp(lo + u * (hi - lo)))
        self.assertEqual(s.decode_value(0, u), -5.0 + u * (10.0 - -5.0))

    def test_encode_rounds_half_away_from_zero_and_clamps(self):
        s = hpo.Space([P.int("n", -3, 3)])
        self.assertEqual(s.decode(s.encode({"n": 2.5})), {"n": 3})
        self.assertEqual(s.decode(s.encode({"n": -2.5})), {"n": -3})
        self.assertEqual(s.decode(s.encode({"n": 0.49999999999999994})), {"n": 0})
        self.assertEqual(s.decode(s.encode({"n": 99})), {"n": 3})
        f = hpo.Space([P.float("x", 2.0, 2.0)])
        self.assertEqual(f.encode({"x": 2.0}), [0.5])
        self.assertEqual(f.decode([0.9]), {"x": 2.0})

    def test_one_hot_and_errors(self):
        s = space()
        x = s.encode(s.decode([0.5, 0.5, 0.5, 0.5, 0.9]))
        oh = s.one_hot(x)
        self.assertEqual(len(oh), 7)
        self.assertEqual(s.one_hot_dim(), 7)
        self.assertEqual(oh[4:], [0.0, 0.0, 1.0])
        self.assertEqual(s.encode({}), [hpo.space.INACTIVE] * 5, "a lacking parameter is inactive: the middle")
        with self.assertRaises(hpo.PluginError):
            s.encode_value(4, "zz")
        with self.assertRaises(hpo.PluginError):
            s.encode_value(0, "a string for a float")
        with self.assertRaises(hpo.PluginError):
            s.encode_value(1, -1.0)  # log scale: not > 0
        with self.assertRaises(hpo.PluginError):
            s.encode_value(2, True)
        self.assertIsNone(space().cardinality())
        self.assertEqual(hpo.Space([P.int("a", 0, 2), P.choice("c", ["x", "y"])]).cardinality(), 6)
        self.assertIsNone(hpo.Space([P.int("a", 0, 2**40)] * 1 + [P.int("b", 0, 2**40)]).cardinality())
        with self.assertRaises(ValueError):
            s.decode([0.5])

    def test_validation_messages_are_the_rust_ones(self):
        def err(params):
            with self.assertRaises(hpo.PluginError) as c:
                hpo.Space(params)
            return str(c.exception)

        self.assertEqual(err([P.float("a", 0, 1), P.int("a", 0, 1)]), "parameter `a` is declared twice")
        self.assertEqual(err([P.float("a", 1.0, 0.5)]), "parameter `a`: bad float range [1, 0.5]")
        self.assertEqual(err([P.float("a", 0.0, math.inf)]), "parameter `a`: bad float range [0, inf]")
        self.assertEqual(err([P.float("a", math.nan, 1e-7)]), "parameter `a`: bad float range [NaN, 0.0000001]")
        self.assertEqual(err([P.float("a", 0.0, 1.0, log=True)]), "parameter `a`: log scale needs low > 0")
        self.assertEqual(err([P.int("a", 3, 2)]), "parameter `a`: bad int range [3, 2]")
        self.assertEqual(err([P.int("a", 0, 2, log=True)]), "parameter `a`: log scale needs low >= 1")
        self.assertEqual(err([P.choice("c", [])]), "parameter `c`: no choices")

    def test_choice_index_coord_and_n_values(self):
        s = space()
        self.assertTrue(s.is_choice(4) and not s.is_choice(0))
        self.assertEqual((s.n_choices(4), s.n_choices(0)), (3, 0))
        self.assertEqual([s.n_values(j) for j in range(5)], [None, None, 4, 241, 3])
        self.assertEqual([s.choice_index(4, u) for u in (0.0, 0.33, 0.34, 0.99, 1.0, 7.0, -1.0, math.nan)],
                         [0, 0, 1, 2, 2, 2, 0, 0])
        self.assertEqual(s.choice_coord(4, 1), 0.5)
        # `dim` and `params` read as attributes and, like the Rust methods, as calls.
        self.assertEqual((s.dim, s.dim()), (5, 5))
        self.assertEqual([0.0] * s.dim, [0.0] * 5)
        self.assertEqual([p.name for p in s.params], ["x", "lr", "n", "bs", "model"])
        self.assertEqual(s.params(), s.params)
        self.assertIsInstance(s.params()[0], hpo.Param)

    def test_snap_and_same_point(self):
        s = space()
        a = [0.3, 0.3, 0.3, 0.3, 0.3]
        b = [0.3 + 1e-12, 0.3, 0.26, 0.3001, 0.01]
        self.assertTrue(s.same_point(a, b, 1e-9))
        self.assertFalse(s.same_point(a, b, 0.0))
        self.assertFalse(s.same_point(a, [0.3, 0.3, 0.3, 0.3, 0.5], 1.0))
        self.assertEqual(s.snap([math.nan, 2.0, 0.3, 0.3, 0.3])[:2], [0.5, 1.0])
        sn = s.snap(a)
        self.assertEqual(s.snap(sn), sn)

    def test_sample_is_a_snapped_unit_point(self):
        s = space()
        r1, r2 = hpo.Rng(9), hpo.Rng(9)
        self.assertEqual(s.sample(r1), s.snap(r2.unit_point(5)))

    def test_rust_display_helpers(self):
        self.assertEqual([rust_float(v) for v in (1.0, 2.5, 1e-5, 1e16, -0.0, 0.1, 123.456, 1e300)],
                         ["1", "2.5", "0.00001", "10000000000000000", "-0", "0.1", "123.456", "1" + "0" * 300])
        self.assertEqual(rust_str_debug('a"b\\c\nd é'), '"a\\"b\\\\c\\nd é"')


class RngTest(unittest.TestCase):
    def test_splitmix64_published_values(self):
        st, out = 0, []
        for _ in range(5):
            st, z = hpo.splitmix64(st)
            out.append(z)
        self.assertEqual(out, [0xE220A8397B1DCDAF, 0x6E789E6AA1B965F4, 0x06C45D188009454F,
                               0xF88BB8A8724C81EC, 0x1B39896A51A8749B])
        # Rng(seed) is seeded with the first four splitmix64 outputs of `seed`.
        self.assertEqual(hpo.Rng(0).state(), out[:4])

    def test_xoshiro256plusplus_reference_vector(self):
        # The reference implementation's outputs from the state [1, 2, 3, 4].
        r = hpo.Rng.from_state([1, 2, 3, 4])
        self.assertEqual([r.next_u64() for _ in range(10)], [
            41943041, 58720359, 3588806011781223, 3591011842654386, 9228616714210784205,
            9973669472204895162, 14011001112246962877, 12406186145184390807,
            15849039046786891736, 10450023813501588000,
        ])

    def test_derive(self):
        st, z = hpo.splitmix64(1 ^ ((2 * 0xD1B54A32D192ED03) & (2**64 - 1)))
        self.assertEqual(hpo.Rng.derive(1, 2).state(), hpo.Rng(z).state())
        self.assertNotEqual(hpo.Rng.derive(1, 1).next_u64(), hpo.Rng.derive(1, 2).next_u64())
        # 64-bit wrap-around of seeds and streams.
        self.assertEqual(hpo.Rng(-1).state(), hpo.Rng(2**64 - 1).state())
        self.assertEqual(hpo.Rng.derive(3, 2**64 + 5).state(), hpo.Rng.derive(3, 5).state())

    def test_methods_are_the_rust_formulas(self):
        for seed in (0, 42, 2**64 - 1):
            a, b = hpo.Rng(seed), hpo.Rng(seed)
            for _ in range(50):
                v = b.next_u64()
                self.assertTrue(0 <= v < 2**64)
                self.assertEqual(a.random(), (v >> 11) * 2.0**-53)
            a, b = hpo.Rng(seed), hpo.Rng(seed)
            for _ in range(50):
                u1 = 1.0 - b.random()
                u2 = b.random()
                self.assertEqual(a.normal(), math.sqrt(-2.0 * math.log(u1)) * math.cos(2.0 * math.pi * u2))
            a, b = hpo.Rng(seed), hpo.Rng(seed)
            self.assertEqual(a.uniform(-2.0, 3.0), -2.0 + 5.0 * b.random())
            self.assertEqual(a.bool(0.5), b.random() < 0.5)

    def test_below_rejects_the_biased_zone(self):
        class Scripted(hpo.Rng):
            def __init__(self, values):
                self.values = list(values)

            def next_u64(self):
                return self.values.pop(0)

        zone = (2**64 - 1) - ((2**64 - 1) % 7)
        r = Scripted([zone, zone + 3, 2**64 - 1, zone - 1, 12])
        self.assertEqual(r.below(7), (zone - 1) % 7)
        self.assertEqual(r.below(7), 12 % 7)
        with self.assertRaises(ValueError):
            hpo.Rng(1).below(0)

    def test_deterministic_and_uniform(self):
        a, b = hpo.Rng(42), hpo.Rng(42)
        self.assertEqual([a.next_u64() for _ in range(100)], [b.next_u64() for _ in range(100)])
        r = hpo.Rng(7)
        n = 20000
        self.assertLess(abs(sum(r.random() for _ in range(n)) / n - 0.5), 0.01)
        self.assertLess(abs(sum(r.normal() ** 2 for _ in range(n)) / n - 1.0), 0.05)
        counts = [0, 0, 0]
        for _ in range(3000):
            counts[r.below(3)] += 1
        self.assertTrue(all(c > 900 for c in counts))

    def test_shuffle_is_fisher_yates_from_the_end(self):
        v = list(range(10))
        hpo.Rng(3).shuffle(v)
        w = list(range(10))
        r = hpo.Rng(3)
        for i in range(9, 0, -1):
            j = r.below(i + 1)
            w[i], w[j] = w[j], w[i]
        self.assertEqual(v, w)
        self.assertEqual(sorted(v), list(range(10)))

    def test_copy_continues_the_stream(self):
        r = hpo.Rng(5)
        r.next_u64()
        c = r.copy()
        self.assertEqual(r.next_u64(), c.next_u64())


class OptionsTest(unittest.TestCase):
    """Ports of the Rust tests in plugins/sdk/src/json.rs."""

    def test_parses_and_reads_options(self):
        o = hpo.Options(' {"acquisition": "logei", "n_init": 12, "beta": 2.5e0, "x": [1, {"y": null}], '
                        '"q": "a\\"\\u00e9", "b": true} ')
        self.assertEqual(o.str("acquisition", "ucb"), "logei")
        self.assertEqual(o.int("n_init", 3), 12)
        self.assertIs(type(o.int("n_init", 3)), int)
        self.assertEqual(o.float("beta", 1.0), 2.5)
        self.assertEqual(o.float("n_init", 1.0), 12.0)
        self.assertEqual(o.float("missing", 1.0), 1.0)
        self.assertEqual(o.str("q", ""), 'a"é')
        self.assertTrue(o.bool("b", False))
        self.assertEqual(o.get("x"), [1.0, {"y": None}])
        with self.assertRaises(hpo.OptionsError):
            o.int("beta", 0)
        with self.assertRaises(hpo.OptionsError):
            o.int("acquisition", 0)
        with self.assertRaises(hpo.OptionsError):
            o.check_known(["acquisition"])
        for bad in ("[1]", '{"a": }', "{} x", "{", "NaN", '{"a": Infinity}', '{"a": -Infinity}', "3"):
            with self.assertRaises(hpo.OptionsError, msg=bad) as c:
                hpo.Options(bad)
            self.assertTrue(str(c.exception).startswith(hpo.OPTIONS_ERROR_PREFIX), str(c.exception))
        self.assertEqual(hpo.Options("").keys(), [])
        self.assertEqual(hpo.Options("  \n").keys(), [])
        self.assertEqual(hpo.Options("null").keys(), [])
        self.assertEqual(hpo.Options(None).keys(), [])
        self.assertEqual(o.int("x_missing", 7), 7)
        self.assertEqual(hpo.Options('{"n": null}').int("n", 7), 7)

    def test_every_error_is_an_options_error_naming_the_option(self):
        o = hpo.Options('{"n_init": "twelve", "beta": true, "nope": 1}')

        def msg(f, *a):
            with self.assertRaises(hpo.OptionsError) as c:
                f(*a)
            self.assertIsInstance(c.exception, hpo.PluginError)
            return str(c.exception)

        self.assertEqual(msg(o.int, "n_init", 3),
                         'options: `n_init` must be a non-negative integer, got the string "twelve"')
        self.assertEqual(msg(o.float, "beta", 1.0), "options: `beta` must be a number, got true")
        self.assertEqual(msg(o.check_known, ["n_init", "beta"]), "options: unknown option `nope` (known: n_init, beta)")
        self.assertEqual(msg(hpo.Options('{"x": 1}').check_known, []),
                         "options: unknown option `x` (this plugin takes no options)")
        self.assertEqual(msg(hpo.Options('{"bta": 1, "beta": 2}').check_known, ["beta", "n_init"]),
                         "options: unknown option `bta` (known: beta, n_init)")
        self.assertEqual(msg(hpo.Options, "[1]"), "options: the plugin options must be a JSON object")
        self.assertEqual(str(hpo.Options.invalid("gamma", "must be in (0, 1]")), "options: `gamma` must be in (0, 1]")
        self.assertIsInstance(hpo.Options.invalid("gamma", "x"), hpo.OptionsError)

    def test_descriptions(self):
        o = hpo.Options(json.dumps({
            "s": "x", "long": "y" * 41, "utf": "é" * 21, "f": 2.5, "i": 3, "neg": -1, "frac": 1.5,
            "big": 1e20, "arr": [1, 2], "obj": {"a": 1}, "z": False,
        }))

        def msg(f, key):
            with self.assertRaises(hpo.OptionsError) as c:
                f(key, None)
            return str(c.exception)

        self.assertEqual(msg(o.float, "s"), 'options: `s` must be a number, got the string "x"')
        self.assertEqual(msg(o.float, "long"), "options: `long` must be a number, got a string of 41 bytes")
        self.assertEqual(msg(o.float, "utf"), "options: `utf` must be a number, got a string of 42 bytes")
        self.assertEqual(msg(o.str, "f"), "options: `f` must be a string, got the number 2.5")
        self.assertEqual(msg(o.str, "i"), "options: `i` must be a string, got the number 3")
        self.assertEqual(msg(o.int, "neg"), "options: `neg` must be a non-negative integer, got the number -1")
        self.assertEqual(msg(o.int, "frac"), "options: `frac` must be a non-negative integer, got the number 1.5")
        self.assertEqual(msg(o.int, "big"),
                         "options: `big` must be a non-negative integer, got the number 100000000000000000000")
        self.assertEqual(msg(o.bool, "arr"), "options: `arr` must be true or false, got an array of 2 items")
        self.assertEqual(msg(o.bool, "obj"), "options: `obj` must be true or false, got an object with 1 keys")
        self.assertEqual(msg(o.float, "z"), "options: `z` must be a number, got false")


class HistoryTest(unittest.TestCase):
    def test_direction_and_failures(self):
        s = hpo.Space([P.float("x", 0.0, 2.0)])
        h = hpo.History("maximize")

        def o(i, v, st):
            return hpo.Outcome(hpo.Trial(i, {"x": i * 0.5}), st, v, {})

        h.observe(s, [o(1, 3.0, "completed"), o(2, None, "failed"), o(3, 5.0, "completed"),
                      o(4, math.nan, "completed"), o(0, 9.0, "pruned")])
        self.assertEqual(h.y, [-3.0, -5.0])
        self.assertEqual(h.ids, [1, 3])
        self.assertEqual(h.best(), (1, -5.0))
        self.assertEqual(h.to_study_value(-5.0), 5.0)
        self.assertEqual(len(h.failed), 3)
        self.assertEqual(h.failed_ids, [2, 4, 0])
        self.assertEqual(h.x[0], [0.25])
        self.assertEqual(len(h.all_points()), 5)
        self.assertEqual(len(h), 2)
        self.assertEqual(h.n_finished(), 5)

    def test_minimize_best_first_of_equals_and_bad_params(self):
        s = hpo.Space([P.int("n", 0, 9)])
        h = hpo.History("minimize")
        self.assertIsNone(h.best())
        self.assertTrue(h.is_empty())
        h.observe(s, [hpo.Outcome(hpo.Trial(i, {"n": i}), "completed", v) for i, v in enumerate([3.0, 1.0, 1.0, 2.0])])
        self.assertEqual(h.best(), (1, 1.0))
        self.assertEqual(h.to_study_value(1.0), 1.0)
        with self.assertRaises(hpo.PluginError) as c:
            h.observe(s, [hpo.Outcome(hpo.Trial(7, {"n": "x"}), "completed", 1.0),
                          hpo.Outcome(hpo.Trial(8, {"n": 1}), "completed", 1.0)])
        self.assertTrue(str(c.exception).startswith("trial 7: parameter `n`"), str(c.exception))
        self.assertEqual(len(h), 4)
        with self.assertRaises(hpo.PluginError):
            hpo.History("sideways")

    def test_encode_trials_skips_misfits(self):
        s = hpo.Space([P.int("n", 0, 3)])
        pts = hpo.encode_trials(s, [hpo.Trial(1, {"n": 1}), hpo.Trial(2, {"m": 1}), hpo.Trial(3, {"n": "x"})])
        # Trial 2 lacks `n` (inactive in a conditional space): the middle, snapped to a value.
        self.assertEqual(pts, [[0.375], [0.625]])


class Uniform(hpo.Strategy):
    """A test strategy: the random plugin without the duplicate avoidance."""

    name = "uniform"

    def suggest(self, count, pending):
        rng = self.trial_rng(self.next_trial_id(pending))
        return [self.space.decode(self.space.sample(rng)) for _ in range(count + 1)]  # one too many


class Constant(hpo.Strategy):
    name = "constant"

    def suggest(self, count, pending):
        return [{"a": 1, "c": "x"}] * count


class StrategyAndNativeTest(unittest.TestCase):
    def study(self, **kw):
        return hpo.Study.new([P.int("a", 0, 3), P.choice("c", ["x", "y"]), P.float("f", 0.0, 1.0)], **kw)

    def test_base_class_fields_and_helpers(self):
        st = self.study(seed=5, direction="maximize")
        s = Uniform(st)
        self.assertIs(s.study, st)
        self.assertEqual((s.seed, s.seen, s.history.direction), (5, 0, "maximize"))
        self.assertEqual(s.space, hpo.Space(st.space))
        self.assertEqual(s.next_trial_id([]), 1)
        self.assertEqual(s.next_trial_id([hpo.Trial(4, {}), hpo.Trial(2, {})]), 5)
        self.assertEqual(s.trial_rng(3).state(), hpo.Rng.derive(5, 3).state())
        deliver(s, [hpo.Outcome(hpo.Trial(7, {"a": 1, "c": "y", "f": 0.5}), "completed", 2.0, {"objective": 2.0})])
        self.assertEqual((s.seen, s.history.y), (7, [-2.0]))
        deliver(s, [hpo.Outcome(hpo.Trial(3, {"a": 1, "c": "y", "f": 0.5}), "failed")])
        self.assertEqual((s.seen, s.next_trial_id([])), (7, 8))

    def test_native_run_is_deterministic_and_cuts_to_count(self):
        st = self.study(seed=5)
        a = hpo.native.run(Uniform, st, 40, 4, lambda p: p["a"] + p["f"])
        b = hpo.native.run(Uniform(st), st, 40, 4, lambda p: p["a"] + p["f"])
        self.assertEqual([r.params for r in a], [r.params for r in b])
        self.assertEqual(len(a), 40)
        self.assertEqual(hpo.native.best(a, "minimize"), min(r.value for r in a))
        self.assertEqual(hpo.native.best(a, "maximize"), max(r.value for r in a))
        for r in a:
            self.assertIs(type(r.params["a"]), int)
            self.assertIs(type(r.params["f"]), float)

    def test_native_run_failed_trials(self):
        st = self.study(seed=2)
        s = Uniform(st)
        recs = hpo.native.run(s, st, 10, 1, lambda p: None)
        self.assertTrue(all(r.value is None for r in recs))
        self.assertEqual((len(s.history), len(s.history.failed), s.seen), (0, 10, 9))
        self.assertIsNone(hpo.native.best(recs))

    def test_native_run_refuses_pending_duplicates_and_nothing(self):
        st = hpo.Study.new([P.int("a", 0, 3), P.choice("c", ["x", "y"])])
        with self.assertRaises(hpo.PluginError) as c:
            hpo.native.run(Constant, st, 4, 2, lambda p: 1.0)
        self.assertIn("duplicates a pending trial", str(c.exception))
        hpo.native.run(Constant, st, 4, 1, lambda p: 1.0)  # nothing pending: fine

        class Nothing(hpo.Strategy):
            def suggest(self, count, pending):
                return []

        with self.assertRaises(hpo.PluginError) as c:
            hpo.native.run(Nothing, st, 1, 1, lambda p: 1.0)
        self.assertEqual(str(c.exception), "strategy suggested nothing")

    def test_native_run_checks_value_types(self):
        st = hpo.Study.new([P.int("a", 0, 3)])

        class FloatForInt(hpo.Strategy):
            def suggest(self, count, pending):
                return [{"a": 1.5}]

        class Missing(hpo.Strategy):
            def suggest(self, count, pending):
                return [{}]

        with self.assertRaises(TypeError):
            hpo.native.run(FloatForInt, st, 1, 1, lambda p: 1.0)
        with self.assertRaises(AssertionError):
            hpo.native.run(Missing, st, 1, 1, lambda p: 1.0)


# --- the export layer, against a fake `wit_world` -------------------------------------------------

FAKE_MODULES = ("componentize_py_types", "wit_world", "wit_world.exports", "wit_world.imports",
                "wit_world.imports.types", "wit_world.imports.log", "wit_world.imports.storage",
                "wit_world.imports.llm")


def make_fake_bindings():
    """Modules shaped like componentize-py 0.25.1's bindings of wit/hpo.wit (world strategy-plugin)."""
    mods = {name: pytypes.ModuleType(name) for name in FAKE_MODULES}
    cpt = mods["componentize_py_types"]

    @dataclass(frozen=True)
    class Err(Exception):
        value: object

    cpt.Err = Err

    t = mods["wit_world.imports.types"]

    def record(name, *fields):
        cls = dataclass(type(name, (), {"__annotations__": {f: object for f in fields}}))
        setattr(t, name, cls)
        return cls

    for name in ("Value_Float", "Value_Int", "Value_Choice", "Domain_Float", "Domain_Int", "Domain_Choice"):
        record(name, "value")
    record("Assignment", "name", "value")
    record("FloatRange", "low", "high", "log")
    record("IntRange", "low", "high", "log")
    record("Param", "name", "domain")
    record("Objective", "name", "direction")
    record("Condition", "param", "parent", "values")
    record("Study", "name", "space", "conditions", "direction", "objective", "objectives", "seed", "budget", "parallelism", "options")
    record("Trial", "id", "params")
    record("Outcome", "trial", "status", "value", "metrics", "curve")
    record("Report", "trial", "step", "metrics")
    record("Info", "name", "version", "description", "capabilities", "prunes", "multi_objective")
    t.Verdict = enum.Enum("Verdict", {"CONTINUE": 0, "PRUNE": 1})
    t.Direction = enum.Enum("Direction", {"MINIMIZE": 0, "MAXIMIZE": 1})
    t.Status = enum.Enum("Status", {"COMPLETED": 0, "FAILED": 1, "PRUNED": 2})
    t.Level = enum.Enum("Level", {"TRACE": 0, "DEBUG": 1, "INFO": 2, "WARN": 3, "ERROR": 4})

    class Strategy(typing.Protocol):
        pass

    mods["wit_world.exports"].Strategy = Strategy
    mods["wit_world"].exports = mods["wit_world.exports"]
    mods["wit_world"].imports = mods["wit_world.imports"]
    mods["wit_world.imports"].types = t

    lg = mods["wit_world.imports.log"]
    lg.lines = []
    lg.log = lambda level, message: lg.lines.append((level, message))
    mods["wit_world.imports"].log = lg

    sto = mods["wit_world.imports.storage"]
    sto.data = {}

    def s_set(key, value):
        if key == "forbidden":
            raise Err("storage is not granted")
        sto.data[key] = value

    sto.get = lambda key: sto.data.get(key)
    sto.set = s_set
    sto.delete = lambda key: sto.data.pop(key, None)
    mods["wit_world.imports"].storage = sto

    llm = mods["wit_world.imports.llm"]
    for name, fields in (("Message", ("role", "content")),
                         ("ChatRequest", ("model", "messages", "temperature", "max_tokens", "json")),
                         ("ChatResponse", ("content", "model", "prompt_tokens", "completion_tokens")),
                         ("LlmError_NotGranted", ("value",)), ("LlmError_Auth", ("value",))):
        setattr(llm, name, dataclass(type(name, (), {"__annotations__": {f: object for f in fields}})))
    llm.requests = []

    def chat(req):
        llm.requests.append((req, None))
        if req.messages[0].content == "fail":
            raise Err(llm.LlmError_Auth("log in again"))
        return llm.ChatResponse("answer", "m1", 3, 4)

    def chat_structured(req, name, schema):
        llm.requests.append((req, (name, schema)))
        return llm.ChatResponse("{}", "m1", 1, 2)

    llm.chat = chat
    llm.chat_structured = chat_structured
    mods["wit_world.imports"].llm = llm
    return mods


class FakeBindings:
    """Installs the fake bindings in sys.modules for the duration of a test."""

    def __init__(self, mods=None):
        self.mods = mods or make_fake_bindings()

    def __enter__(self):
        self.saved = {n: sys.modules.get(n) for n in self.mods}
        log_mod._host = None
        export_mod.reset()
        sys.modules.update(self.mods)
        return self.mods

    def __exit__(self, *exc):
        for n, m in self.saved.items():
            if m is None:
                sys.modules.pop(n, None)
            else:
                sys.modules[n] = m
        log_mod._host = None
        export_mod.reset()


class Mixed(hpo.Strategy):
    """Mixed test strategy."""

    name = "mixed_test"
    version = "1.2.3"
    description = "for the export tests"
    capabilities = ["log", "storage"]
    observed = []

    def __init__(self, study):
        o = hpo.Options(study.options)
        o.check_known(["fail", "float_int"])
        self.fail = o.str("fail", "")
        self.float_int = o.bool("float_int", False)
        super().__init__(study)
        if self.fail == "init_bug":
            raise RuntimeError("bug in init")

    def suggest(self, count, pending):
        if self.fail == "refuse":
            raise hpo.PluginError("refused")
        if self.fail == "bug":
            raise ZeroDivisionError("bug in suggest")
        hpo.log.info(f"suggest {count} {len(pending)}")
        # Integral floats everywhere: a float parameter's 1.0 stays a float, an int's 2.0 an int.
        n = 2.0 if self.float_int else 2
        return [{"f": 1.0, "n": n, "c": "b"}, {"f": 0, "n": 3, "c": "a"}, {"f": 0.5, "n": 1, "c": "a"}]

    def observe(self, outcomes):
        Mixed.observed.append((list(outcomes), self.seen, len(self.history), len(self.history.failed)))


class ExportTest(unittest.TestCase):
    def wit_study(self, t, options="{}", direction=None):
        return t.Study(
            name="s", objective="loss", seed=11, budget=20, parallelism=2, options=options,
            direction=direction or t.Direction.MAXIMIZE,
            objectives=[t.Objective("loss", direction or t.Direction.MAXIMIZE), t.Objective("secs", t.Direction.MINIMIZE)],
            conditions=[t.Condition("n", "c", ["a"])],
            space=[t.Param("f", t.Domain_Float(t.FloatRange(0.0, 1.0, False))),
                   t.Param("n", t.Domain_Int(t.IntRange(1, 64, True))),
                   t.Param("c", t.Domain_Choice(["a", "b"]))],
        )

    def test_describe(self):
        with FakeBindings() as m:
            t = m["wit_world.imports.types"]
            E = hpo.export(Mixed)
            self.assertIn(m["wit_world.exports"].Strategy, E.__mro__)
            self.assertEqual(E.__name__, "Strategy")
            info = E().describe()
            self.assertEqual(info, t.Info("mixed_test", "1.2.3", "for the export tests", ["log", "storage"], False, False))

    def test_init_suggest_observe_conversions(self):
        Mixed.observed.clear()
        with FakeBindings() as m:
            t = m["wit_world.imports.types"]
            E = hpo.export(Mixed)
            self.assertIsNone(E().init(self.wit_study(t)))
            inst, _ = export_mod._instances[Mixed]
            self.assertEqual(inst.study.direction, "maximize")
            self.assertEqual(inst.study.space, [P.float("f", 0.0, 1.0), P.int("n", 1, 64, log=True),
                                                P.choice("c", ["a", "b"])])
            self.assertEqual((inst.study.seed, inst.study.budget, inst.study.parallelism, inst.study.objective),
                             (11, 20, 2, "loss"))
            self.assertEqual(inst.study.conditions, [("n", "c", ["a"])])
            self.assertEqual(inst.study.objectives, [("loss", "maximize"), ("secs", "minimize")])
            pending = [t.Trial(4, [t.Assignment("f", t.Value_Float(0.25)), t.Assignment("n", t.Value_Int(8)),
                                   t.Assignment("c", t.Value_Choice("a"))])]
            out = E().suggest(2, pending)  # a new export object per call, as componentize-py does
            self.assertEqual(len(out), 2)  # cut to count
            self.assertEqual(out[0], [t.Assignment("f", t.Value_Float(1.0)), t.Assignment("n", t.Value_Int(2)),
                                      t.Assignment("c", t.Value_Choice("b"))])
            self.assertIs(type(out[0][0].value.value), float)
            self.assertIs(type(out[0][1].value.value), int)
            self.assertEqual(out[1][0], t.Assignment("f", t.Value_Float(0.0)))
            self.assertIs(type(out[1][0].value.value), float)
            self.assertEqual(m["wit_world.imports.log"].lines, [(t.Level.INFO, "suggest 2 1")])

            outcomes = [
                t.Outcome(pending[0], t.Status.COMPLETED, 3.5, [("loss", 3.5), ("acc", 0.9)], [[("loss", 4.0)]]),
                t.Outcome(t.Trial(2, [t.Assignment("f", t.Value_Float(0.5)), t.Assignment("n", t.Value_Int(1)),
                                      t.Assignment("c", t.Value_Choice("b"))]), t.Status.PRUNED, None, [], []),
            ]
            self.assertIsNone(E().observe(outcomes))
            (got, seen, n_hist, n_failed), = Mixed.observed
            self.assertEqual((seen, n_hist, n_failed), (4, 1, 1))  # updated before observe
            self.assertEqual(got[0], hpo.Outcome(hpo.Trial(4, {"f": 0.25, "n": 8, "c": "a"}), "completed", 3.5,
                                                 {"loss": 3.5, "acc": 0.9}, [{"loss": 4.0}]))
            self.assertIs(type(got[0].trial.params["n"]), int)
            self.assertEqual(got[1].status, "pruned")
            self.assertEqual(inst.history.y, [-3.5])  # maximize: negated

    def test_judge_converts_reports_and_checks_verdicts(self):
        class Pruner(hpo.Strategy):
            name = "pruner"
            prunes = True

            def suggest(self, count, pending):
                return []

            def judge(self, reports):
                self.seen_reports = reports
                if reports and reports[0].metrics.get("loss", 0) > 100:
                    return ["continue"]  # one short: a bug the layer reports
                return ["prune" if r.metrics["loss"] > 1.0 else "continue" for r in reports]

        with FakeBindings() as m:
            t = m["wit_world.imports.types"]
            cpt = m["componentize_py_types"]
            E = hpo.export(Pruner)
            self.assertTrue(E().describe().prunes)
            E().init(self.wit_study(t))
            inst, _ = export_mod._instances[Pruner]
            trial = t.Trial(3, [t.Assignment("f", t.Value_Float(0.5))])
            out = E().judge([t.Report(trial, 0, [("loss", 2.0)]), t.Report(trial, 1, [("loss", 0.5)])])
            self.assertEqual(out, [t.Verdict.PRUNE, t.Verdict.CONTINUE])
            self.assertEqual(inst.seen_reports[1], hpo.Report(hpo.Trial(3, {"f": 0.5}), 1, {"loss": 0.5}))
            with self.assertRaises(cpt.Err) as e:
                E().judge([t.Report(trial, 0, [("loss", 200.0)]), t.Report(trial, 1, [("loss", 0.5)])])
            self.assertIn("judge returned 1 verdicts for 2 reports", str(e.exception.value))
            # The default judges nothing away.
            self.assertEqual(hpo.Strategy.judge(inst, [1, 2, 3]), ["continue"] * 3)

    def test_int_params_go_out_as_int_even_from_integral_floats(self):
        with FakeBindings() as m:
            t = m["wit_world.imports.types"]
            E = hpo.export(Mixed)
            E().init(self.wit_study(t, '{"float_int": true}'))
            out = E().suggest(1, [])
            self.assertEqual(out[0][1], t.Assignment("n", t.Value_Int(2)))
            self.assertIs(type(out[0][1].value.value), int)
            self.assertEqual(out[0][0], t.Assignment("f", t.Value_Float(1.0)))

    def test_wrong_value_types_are_bugs(self):
        class Bad(hpo.Strategy):
            values = {}

            def suggest(self, count, pending):
                return [dict(Bad.values)]

        with FakeBindings() as m:
            t = m["wit_world.imports.types"]
            E = hpo.export(Bad)
            E().init(self.wit_study(t))
            for values in ({"f": True, "n": 1, "c": "a"}, {"f": 0.5, "n": 1.5, "c": "a"},
                           {"f": 0.5, "n": True, "c": "a"}, {"f": 0.5, "n": 1, "c": 1}, {"f": "x", "n": 1, "c": "a"}):
                Bad.values = values
                with self.assertRaises(TypeError, msg=values):
                    E().suggest(1, [])

    def test_errors(self):
        with FakeBindings() as m:
            t = m["wit_world.imports.types"]
            Err = m["componentize_py_types"].Err
            E = hpo.export(Mixed)
            for call, args in (("suggest", (1, [])), ("observe", ([],))):
                with self.assertRaises(Err) as c:
                    getattr(E(), call)(*args)
                self.assertEqual(c.exception.value, f"{call} called before a successful init")
            with self.assertRaises(Err) as c:
                E().init(self.wit_study(t, '{"bta": 1}'))
            self.assertEqual(c.exception.value, "options: unknown option `bta` (known: fail, float_int)")
            with self.assertRaises(Err) as c:
                E().init(self.wit_study(t, '{"fail": 3}'))
            self.assertEqual(c.exception.value, "options: `fail` must be a string, got the number 3")
            with self.assertRaises(RuntimeError):  # a bug propagates untouched
                E().init(self.wit_study(t, '{"fail": "init_bug"}'))
            with self.assertRaises(Err) as c:  # a failed init leaves no instance
                E().suggest(1, [])
            self.assertEqual(c.exception.value, "suggest called before a successful init")
            bad_space = self.wit_study(t)
            bad_space.space.append(t.Param("f", t.Domain_Choice(["z"])))
            with self.assertRaises(Err) as c:
                E().init(bad_space)
            self.assertEqual(c.exception.value, "parameter `f` is declared twice")

            E().init(self.wit_study(t, '{"fail": "refuse"}'))
            with self.assertRaises(Err) as c:
                E().suggest(1, [])
            self.assertEqual(c.exception.value, "refused")
            E().init(self.wit_study(t, '{"fail": "bug"}'))
            with self.assertRaises(ZeroDivisionError):
                E().suggest(1, [])
            # An outcome that does not fit the space: the History's PluginError becomes an Err.
            with self.assertRaises(Err) as c:
                E().observe([t.Outcome(t.Trial(1, [t.Assignment("f", t.Value_Choice("zz"))]), t.Status.FAILED, None, [], [])])
            self.assertTrue(c.exception.value.startswith("trial 1: parameter `f`"), c.exception.value)

    def test_native_without_bindings_returns_the_class(self):
        self.assertNotIn("wit_world", sys.modules)
        self.assertIs(hpo.export(Mixed), Mixed)

    def test_log_storage_llm_over_the_host(self):
        with FakeBindings() as m:
            t = m["wit_world.imports.types"]
            hpo.log.warn("w")
            hpo.log.log("error", "e")
            with self.assertRaises(ValueError):
                hpo.log.log("loud", "x")
            self.assertEqual(m["wit_world.imports.log"].lines, [(t.Level.WARN, "w"), (t.Level.ERROR, "e")])

            hpo.storage.set("k", b"v")
            hpo.storage.set("s", "é")
            self.assertEqual(m["wit_world.imports.storage"].data, {"k": b"v", "s": "é".encode()})
            self.assertEqual(hpo.storage.get("k"), b"v")
            hpo.storage.delete("k")
            self.assertIsNone(hpo.storage.get("k"))
            with self.assertRaises(hpo.PluginError) as c:
                hpo.storage.set("forbidden", b"")
            self.assertEqual(str(c.exception), "storage is not granted")

            llm = m["wit_world.imports.llm"]
            r = hpo.llm.chat([{"role": "system", "content": "be brief"}, ("user", "hi")], temperature=0.2,
                             max_tokens=9, json=True)
            self.assertEqual((r.content, r.model, r.prompt_tokens, r.completion_tokens), ("answer", "m1", 3, 4))
            req, structured = llm.requests[-1]
            self.assertIsNone(structured)
            self.assertEqual((req.model, req.temperature, req.max_tokens, req.json), (None, 0.2, 9, True))
            self.assertEqual([(x.role, x.content) for x in req.messages], [("system", "be brief"), ("user", "hi")])
            r = hpo.llm.chat_structured([("user", "x")], "answer", {"type": "object"}, model="m2")
            req, structured = llm.requests[-1]
            self.assertEqual((req.model, structured), ("m2", ("answer", '{"type":"object"}')))
            with self.assertRaises(hpo.LlmError) as c:
                hpo.llm.chat([("user", "fail")])
            self.assertEqual((c.exception.kind, c.exception.message), ("auth", "log in again"))
            self.assertEqual(str(c.exception), "auth: log in again")
            self.assertIsInstance(c.exception, hpo.PluginError)


class NativeImportsTest(unittest.TestCase):
    def setUp(self):
        log_mod._host = None

    def test_log_natively(self):
        saved = os.environ.pop("ALCF_PLUGIN_LOG", None)
        try:
            buf = io.StringIO()
            with redirect_stderr(buf):
                hpo.log.info("silent")
                os.environ["ALCF_PLUGIN_LOG"] = "1"
                hpo.log.warn("heard")
                hpo.log.trace("too")
            self.assertEqual(buf.getvalue(), "[Warn] heard\n[Trace] too\n")
        finally:
            os.environ.pop("ALCF_PLUGIN_LOG", None)
            if saved is not None:
                os.environ["ALCF_PLUGIN_LOG"] = saved

    def test_storage_natively(self):
        hpo.storage.set("a", b"1")
        self.assertEqual(hpo.storage.get("a"), b"1")
        hpo.storage.delete("a")
        hpo.storage.delete("a")
        self.assertIsNone(hpo.storage.get("a"))

    def test_llm_natively(self):
        with self.assertRaises(hpo.LlmError) as c:
            hpo.llm.chat([("user", "hi")])
        self.assertEqual(c.exception.kind, "not-configured")
        seen = []
        hpo.llm.set_native_backend(lambda req, s: seen.append((req, s)) or hpo.llm.ChatResponse("ok"))
        try:
            self.assertEqual(hpo.llm.chat_structured([("user", "hi")], "n", '{"type":"object"}').content, "ok")
            self.assertEqual(seen[0][1], ("n", '{"type":"object"}'))
            self.assertEqual(seen[0][0].messages, [hpo.llm.Message("user", "hi")])
        finally:
            hpo.llm.clear_native_backend()


@unittest.skipUnless(os.environ.get("ALCF_WIT_BINDINGS"), "set ALCF_WIT_BINDINGS to generated bindings")
class RealBindingsTest(unittest.TestCase):
    """The conversions against the bindings componentize-py really generates (their imports
    raise NotImplementedError natively: log falls back to stderr, storage to a dict)."""

    def test_round_trip(self):
        path = os.environ["ALCF_WIT_BINDINGS"]
        sys.path.insert(0, path)
        try:
            from wit_world import exports
            from wit_world.imports import types as t
            import componentize_py_types as cpt

            log_mod._host = None
            E = hpo.export(Mixed)
            self.assertIn(exports.Strategy, E.__mro__)
            self.assertEqual(E().describe().name, "mixed_test")
            study = ExportTest.wit_study(self, t)
            E().init(study)
            out = E().suggest(5, [])
            self.assertEqual(out[0][1], t.Assignment("n", t.Value_Int(2)))
            self.assertEqual(out[0][0], t.Assignment("f", t.Value_Float(1.0)))
            E().observe([t.Outcome(t.Trial(1, out[0]), t.Status.COMPLETED, 1.0, [("loss", 1.0)], [])])
            with self.assertRaises(cpt.Err):
                E().init(ExportTest.wit_study(self, t, "[1]"))
            hpo.log.info("native fallback")
            hpo.storage.set("k", b"v")
            self.assertEqual(hpo.storage.get("k"), b"v")
        finally:
            sys.path.remove(path)
            for n in list(sys.modules):
                if n.split(".")[0] in ("wit_world", "componentize_py_types"):
                    del sys.modules[n]
            log_mod._host = None
            export_mod.reset()


class SpaceCasesScriptTest(unittest.TestCase):
    def test_space_cases(self):
        doc = {
            "space": [{"name": "x", "kind": "float", "low": -5, "high": 10},
                      {"name": "lr", "kind": "float", "low": 1e-5, "high": 0.1, "log": True},
                      {"name": "n", "kind": "int", "low": 1, "high": 4},
                      {"name": "bs", "kind": "int", "low": 16, "high": 256, "log": True},
                      {"name": "c", "kind": "choice", "choices": ["a", "b", "c"]}],
            "points": [[0.0] * 5, [1.0] * 5, [0.3, 0.5, 0.51, 0.7, 0.9]],
            "seed": 42,
            "draws": 4,
        }
        p = subprocess.run([sys.executable, os.path.join(HERE, "space_cases.py")], input=json.dumps(doc),
                           capture_output=True, text=True, check=True)
        out = json.loads(p.stdout)
        self.assertEqual(list(out), ["decoded", "encoded", "snapped", "rng"])
        self.assertEqual(out["decoded"][0], {"x": -5.0, "lr": 1e-5, "n": 1, "bs": 16, "c": "a"})
        self.assertIn('"n": 1,', p.stdout)
        self.assertIn('"x": -5.0,', p.stdout)
        self.assertEqual(out["snapped"][1], out["encoded"][1])
        r = hpo.Rng(42)
        self.assertEqual(out["rng"]["u64"], [str(r.next_u64()) for _ in range(4)])
        r = hpo.Rng(42)
        self.assertEqual(out["rng"]["f64"], [r.random() for _ in range(4)])
        r = hpo.Rng(42)
        self.assertEqual(out["rng"]["normal"], [r.normal() for _ in range(4)])
        r = hpo.Rng(42)
        self.assertEqual(out["rng"]["below7"], [r.below(7) for _ in range(4)])
        r = hpo.Rng.derive(42, 5)
        self.assertEqual(out["rng"]["derive_1_5"], [str(r.next_u64()) for _ in range(5)])
        bad = subprocess.run([sys.executable, os.path.join(HERE, "space_cases.py")],
                             input=json.dumps({"space": [{"name": "c", "kind": "choice", "choices": []}]}),
                             capture_output=True, text=True)
        self.assertEqual(bad.returncode, 2)
        self.assertIn("parameter `c`: no choices", bad.stderr)


if __name__ == "__main__":
    unittest.main()
