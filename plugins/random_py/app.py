"""random_py: uniform random search, the Python twin of plugins/random (src/lib.rs).

Same algorithm and the same use of the random streams as the Rust plugin: one stream per next
trial id (``Rng.derive(seed, next id)``), and `Space.sample_distinct`: a `Space.sample` per
suggestion, with up to 100 resamples to avoid a point equal to a pending one (or one suggested
earlier in the same batch).
So for the same study both plugins suggest the same points (up to the last bit of a float:
CPython's and Rust's exp/log inside a component may differ there).

Build: ``componentize-py -d wit -w strategy-plugin componentize -p plugins/random_py
-p plugins/sdk-python app -o random_py.wasm`` (from the repository root).
"""

import alcf_strategy as hpo


class RandomSearch(hpo.Strategy):
    """Uniform random search over the unit cube (log scales, ints and choices handled by `Space`)."""

    name = "random_py"
    version = "0.1.0"
    description = "Uniform random search (Python)"
    capabilities = []
    multi_objective = True  # it ignores the objectives, so any number of them is fine

    def __init__(self, study: hpo.Study):
        hpo.Options(study.options).check_known([])  # no options; reject typos (before the space, as in Rust)
        super().__init__(study)

    def suggest(self, count: int, pending: list) -> list:
        # One stream per next trial id: a resumed study (fresh instance, replayed history)
        # continues the sequence instead of repeating its first points.
        rng = self.trial_rng(self.next_trial_id(pending))
        taken = hpo.encode_trials(self.space, pending)
        return [self.space.decode(x) for x in self.space.sample_distinct(rng, taken, count)]


# componentize-py looks up `Strategy`; natively (no generated bindings) this is RandomSearch itself.
Strategy = hpo.export(RandomSearch)
