"""Logging through the host's `log` import.

Inside a component the message goes to the host, which tags it with the plugin's name (ask for
the "log" capability: ``capabilities = ["log"]``). Natively (unit tests, native runs) there is no
host: messages go to stderr as ``[Info] message`` when the environment variable
`ALCF_PLUGIN_LOG` is set, else nowhere.
"""

import os
import sys

#: The levels, lowest first.
LEVELS = ("trace", "debug", "info", "warn", "error")

_host = None  # (log function, Level enum) once the component's import was found; False natively


def _host_log():
    global _host
    if _host is None:
        try:
            from wit_world.imports import log as wit_log
            from wit_world.imports.types import Level
        except ImportError:
            _host = False
        else:
            _host = (wit_log.log, Level)
    return _host


def log(level: str, message: str) -> None:
    """Sends one log line at `level` ("trace", "debug", "info", "warn" or "error")."""
    if level not in LEVELS:
        raise ValueError(f"unknown log level `{level}` (one of {', '.join(LEVELS)})")
    message = str(message)
    host = _host_log()
    if host:
        fn, Level = host
        try:
            fn(Level[level.upper()], message)
            return
        except NotImplementedError:
            pass  # the generated bindings imported natively: no host behind them
    if os.environ.get("ALCF_PLUGIN_LOG") is not None:
        print(f"[{level.capitalize()}] {message}", file=sys.stderr)


def trace(message: str) -> None:
    """Logs `message` at trace level."""
    log("trace", message)


def debug(message: str) -> None:
    """Logs `message` at debug level."""
    log("debug", message)


def info(message: str) -> None:
    """Logs `message` at info level."""
    log("info", message)


def warn(message: str) -> None:
    """Logs `message` at warn level."""
    log("warn", message)


def error(message: str) -> None:
    """Logs `message` at error level."""
    log("error", message)
