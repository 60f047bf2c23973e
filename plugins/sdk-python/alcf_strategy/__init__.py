"""alcf_strategy: the Python guest SDK for alcf-host strategy plugins.

A strategy plugin is a WebAssembly component built with componentize-py (0.25.1) against the
world `strategy-plugin` of wit/hpo.wit (`alcf:hpo@0.2.0`). This package gives Python plugins
the Rust SDK's vocabulary (plugins/sdk), bit for bit where numbers are concerned. It is pure
Python with the standard library only, and everything but `export` runs natively.

A plugin's `app.py`::

    import alcf_strategy as hpo

    class RandomSearch(hpo.Strategy):
        name = "random_py"
        version = "0.1.0"
        description = "Uniform random search (Python)"

        def __init__(self, study):
            hpo.Options(study.options).check_known([])
            super().__init__(study)

        def suggest(self, count, pending):
            rng = self.trial_rng(self.next_trial_id(pending))
            return [self.space.decode(self.space.sample(rng)) for _ in range(count)]

    Strategy = hpo.export(RandomSearch)

The API:

- Types (`alcf_strategy.types`): `Param` (`Param.float`, `Param.int`, `Param.choice`), `Study`
  (`Study.new` for tests), `Trial`, `Outcome`, `Params` (a dict name -> value).
- `Space`: search space <-> unit cube [0,1]^d (`decode`, `encode`, `snap`, `same_point`,
  `sample`, `one_hot`, `cardinality`, ...).
- `Rng`, `splitmix64`: xoshiro256++ seeded through splitmix64, the Rust `Rng`'s streams.
- `History`, `encode_trials`: finished trials as unit-cube points, lower is better.
- `Options`: the JSON plugin options with typed getters and the Rust SDK's error texts.
- `Strategy`: the base class; `export(cls)`: the class componentize-py exports.
- `PluginError`, `OptionsError`, `LlmError`, `OPTIONS_ERROR_PREFIX`: deliberate errors.
- Modules `log` (`log.info(msg)`, ...), `storage` (`get`, `set`, `delete`), `llm` (`chat`,
  `chat_structured`) over the host's imports, and `native` (`native.run`: drive a strategy the
  way the host does, for tests).
"""

from . import llm, log, native, storage
from .errors import OPTIONS_ERROR_PREFIX, LlmError, OptionsError, PluginError
from .export import export
from .history import History, encode_trials
from .options import Options
from .rng import Rng, splitmix64
from .space import Space
from .strategy import Strategy
from .types import Outcome, Param, Params, Report, Study, Trial, Value

#: The ABI version this SDK builds plugins for.
ABI_VERSION = "alcf:hpo@0.2.0"

__version__ = "0.1.0"

__all__ = [
    "ABI_VERSION",
    "History",
    "LlmError",
    "OPTIONS_ERROR_PREFIX",
    "Options",
    "OptionsError",
    "Outcome",
    "Param",
    "Params",
    "PluginError",
    "Report",
    "Rng",
    "Space",
    "Strategy",
    "Study",
    "Trial",
    "Value",
    "encode_trials",
    "export",
    "llm",
    "log",
    "native",
    "splitmix64",
    "storage",
]
