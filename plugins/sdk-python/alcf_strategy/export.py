"""The export layer: turns a `Strategy` subclass into the class componentize-py exports.

``Strategy = hpo.export(MyStrategy)`` in the plugin's `app.py`. The generated bindings
(`wit_world`, `componentize_py_types`) are imported inside `export()`, so everything else in the
SDK imports and runs natively without them.

componentize-py creates a new export object for every call, so the one strategy instance lives in
the module-level `_instances` (keyed by the strategy class). `suggest`/`observe` before a
successful `init` return the error "suggest called before a successful init"; suggestions beyond
`count` are cut. A `PluginError` (an `OptionsError`, an `LlmError`) becomes the call's error
string (`componentize_py_types.Err`); any other exception propagates, componentize-py prints its
traceback and the host reports it.
"""

from __future__ import annotations

import importlib

from .errors import PluginError
from .strategy import check_suggestion, check_verdicts, deliver, describe_info
from .types import Outcome, Param, Report, Study, Trial

#: strategy class -> (instance, parameter kinds by name); the state between calls.
_instances = {}


def reset(cls=None) -> None:
    """Drops the stored instance of `cls` (every instance when None); for tests."""
    if cls is None:
        _instances.clear()
    else:
        _instances.pop(cls, None)


def export(cls):
    """Returns a class deriving from the generated `wit_world.exports.Strategy` that serves the
    WIT `strategy` interface with `cls` (a `Strategy` subclass). Assign it to the name `Strategy`
    in `app.py`: componentize-py looks that name up.

    Natively, where the generated bindings do not exist (no module `wit_world`), it returns `cls`
    itself, so that `app.py` imports in native unit tests."""
    try:
        import componentize_py_types as cpt
        from wit_world import exports
        from wit_world.imports import types as wt
    except ModuleNotFoundError as e:
        if e.name in ("wit_world", "componentize_py_types"):
            return cls
        raise
    # componentize-py snapshots the interpreter after importing app.py: a module first imported
    # later, during a call, is not found. So the host imports that `log`, `storage` and `llm` use
    # lazily are imported now, while `export` runs at import time.
    for name in ("log", "storage", "llm"):
        try:
            importlib.import_module(f"wit_world.imports.{name}")
        except ModuleNotFoundError:  # a world without that import
            pass

    def value_in(v):
        if isinstance(v, wt.Value_Float):
            return float(v.value)
        if isinstance(v, wt.Value_Int):
            return int(v.value)
        return str(v.value)

    def trial_in(t) -> Trial:
        return Trial(int(t.id), {a.name: value_in(a.value) for a in t.params})

    def param_in(p) -> Param:
        d = p.domain
        if isinstance(d, wt.Domain_Float):
            return Param.float(p.name, float(d.value.low), float(d.value.high), bool(d.value.log))
        if isinstance(d, wt.Domain_Int):
            return Param.int(p.name, int(d.value.low), int(d.value.high), bool(d.value.log))
        return Param.choice(p.name, list(d.value))

    def study_in(s) -> Study:
        return Study(
            name=s.name,
            space=[param_in(p) for p in s.space],
            conditions=[(c.param, c.parent, list(c.values)) for c in s.conditions],
            direction="maximize" if s.direction == wt.Direction.MAXIMIZE else "minimize",
            objective=s.objective,
            objectives=[
                (o.name, "maximize" if o.direction == wt.Direction.MAXIMIZE else "minimize") for o in s.objectives
            ],
            seed=int(s.seed),
            budget=None if s.budget is None else int(s.budget),
            parallelism=int(s.parallelism),
            options=s.options,
        )

    statuses = {wt.Status.COMPLETED: "completed", wt.Status.FAILED: "failed", wt.Status.PRUNED: "pruned"}

    def outcome_in(o) -> Outcome:
        return Outcome(
            trial=trial_in(o.trial),
            status=statuses[o.status],
            value=None if o.value is None else float(o.value),
            metrics={k: float(v) for k, v in o.metrics},
            curve=[{k: float(v) for k, v in m} for m in o.curve],
        )

    def report_in(r) -> Report:
        return Report(trial=trial_in(r.trial), step=int(r.step), metrics={k: float(v) for k, v in r.metrics})

    verdicts_out = {"continue": wt.Verdict.CONTINUE, "prune": wt.Verdict.PRUNE}

    def value_out(kind, v):
        if kind == "int":
            return wt.Value_Int(v)
        if kind == "float":
            return wt.Value_Float(v)
        return wt.Value_Choice(v)

    def params_out(kinds, params, index):
        checked = check_suggestion(kinds, params, index)
        out = []
        for name, v in checked.items():
            kind = kinds.get(name) or ("choice" if isinstance(v, str) else "int" if isinstance(v, int) else "float")
            out.append(wt.Assignment(name=name, value=value_out(kind, v)))
        return out

    def instance(call):
        state = _instances.get(cls)
        if state is None:
            raise cpt.Err(f"{call} called before a successful init")
        return state

    class _Export(exports.Strategy):
        def describe(self):
            """WIT `describe`: the class attributes name, version, description, capabilities, prunes."""
            i = describe_info(cls)
            return wt.Info(
                name=i["name"],
                version=i["version"],
                description=i["description"],
                capabilities=i["capabilities"],
                prunes=i["prunes"],
                multi_objective=i["multi_objective"],
            )

        def init(self, study) -> None:
            """WIT `init`: builds the one instance (a `PluginError` becomes the call's error)."""
            _instances.pop(cls, None)
            s = study_in(study)
            try:
                inst = cls(s)
            except PluginError as e:
                raise cpt.Err(str(e)) from None
            _instances[cls] = (inst, {p.name: p.kind for p in s.space})

        def suggest(self, count, pending):
            """WIT `suggest`: at most `count` assignments, typed by the parameters' kinds."""
            inst, kinds = instance("suggest")
            pend = [trial_in(t) for t in pending]
            try:
                out = inst.suggest(int(count), pend)
            except PluginError as e:
                raise cpt.Err(str(e)) from None
            out = list(out)[: int(count)]
            return [params_out(kinds, p, i) for i, p in enumerate(out)]

        def observe(self, outcomes) -> None:
            """WIT `observe`: updates history and seen, then calls the strategy's `observe`."""
            inst, _ = instance("observe")
            outs = [outcome_in(o) for o in outcomes]
            try:
                deliver(inst, outs)
            except PluginError as e:
                raise cpt.Err(str(e)) from None

        def judge(self, reports):
            """WIT `judge`: one verdict per report, checked."""
            inst, _ = instance("judge")
            reps = [report_in(r) for r in reports]
            try:
                out = check_verdicts(inst.judge(reps), len(reps))
            except (PluginError, ValueError) as e:
                raise cpt.Err(str(e)) from None
            return [verdicts_out[v] for v in out]

    _Export.__name__ = _Export.__qualname__ = "Strategy"
    _Export.__doc__ = f"The WIT `strategy` export serving {cls.__name__}."
    _Export.strategy_class = cls
    return _Export
