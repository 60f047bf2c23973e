"""A tiny Python strategy for alcf-host, used once to record the stderr a real componentize-py
guest writes when it raises (see README.md). `suggest` fails three frames deep."""
from wit_world import exports
from wit_world.imports import types

STUDY = None


def value_for(param, config):
    return config.value_for(param)


def assignments(study, config):
    return [types.Assignment(name=p.name, value=value_for(p, config)) for p in study.space]


class Strategy(exports.Strategy):
    def describe(self) -> types.Info:
        return types.Info(name="pyfail", version="0.1.0", description="raises in suggest", capabilities=[])

    def init(self, study: types.Study) -> None:
        global STUDY
        STUDY = study

    def suggest(self, count, pending):
        config = None  # the bug: a configuration that was never loaded
        return [assignments(STUDY, config) for _ in range(count)]

    def observe(self, outcomes) -> None:
        pass
