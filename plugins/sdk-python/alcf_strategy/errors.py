"""The exceptions a strategy raises on purpose.

A `PluginError` is a deliberate refusal: the export layer returns its text to the host as the
error of the WIT call (`result<_, string>`). Every other exception is a bug: it propagates,
componentize-py prints the traceback to stderr and the host's fault report quotes it.
"""

#: What starts an `init` error caused by the plugin options (the user's configuration) rather than
#: by the plugin; the host then reports a configuration error and does not restart the plugin
#: (see `init` in wit/hpo.wit). Every `OptionsError` starts with it.
OPTIONS_ERROR_PREFIX = "options:"


class PluginError(Exception):
    """A deliberate refusal, returned to the host as the call's error string (`str(e)`)."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class OptionsError(PluginError):
    """A mistake in the plugin options; its text starts with ``options:`` (`OPTIONS_ERROR_PREFIX`)."""


class LlmError(PluginError):
    """Why an `llm` call gave no answer (WIT `llm-error`).

    `kind` is the WIT case name: "not-granted", "not-configured", "auth", "unavailable" or
    "invalid-request"; `message` is the host's text. `str(e)` is ``"kind: message"``, like the
    Rust SDK's `LlmError` Display. A `PluginError`, so one that escapes a call is returned to the
    host as a plain error rather than a traceback.
    """

    KINDS = ("not-granted", "not-configured", "auth", "unavailable", "invalid-request")

    def __init__(self, kind: str, message: str):
        super().__init__(f"{kind}: {message}")
        self.kind = kind
        self.message = message

    def __str__(self) -> str:
        return f"{self.kind}: {self.message}"
