"""Chat completions through the host's `llm` import (ask for the "llm" capability; the user
grants it with ``allow = ["llm"]``).

`chat(messages, ...)` and `chat_structured(messages, name, schema, ...)` return a
`ChatResponse`; every failure raises `LlmError(kind, message)` (never a trap), so a strategy can
fall back to its own model. `messages` is a list of ``{"role": ..., "content": ...}`` dicts,
``(role, content)`` pairs or `Message` objects.

Natively there is no host: a backend set with `set_native_backend(fn)` answers (it gets a
`ChatRequest` and, for `chat_structured`, ``(name, schema_text)``, else None, and returns a
`ChatResponse` or raises `LlmError`); without one every call raises `LlmError("not-configured", ...)`.
"""

from __future__ import annotations

import json as _json
from dataclasses import dataclass, field
from typing import List, Optional

from .errors import LlmError


@dataclass
class Message:
    """One chat message; `role` is "system", "user" or "assistant"."""

    role: str
    content: str


@dataclass
class ChatRequest:
    """A chat completion request (WIT `chat-request`); `model` None: the study's configured model."""

    messages: List[Message] = field(default_factory=list)
    model: Optional[str] = None
    temperature: Optional[float] = None
    max_tokens: Optional[int] = None
    json: bool = False


@dataclass
class ChatResponse:
    """The service's answer (WIT `chat-response`)."""

    content: str
    model: str = ""
    prompt_tokens: int = 0
    completion_tokens: int = 0


_KINDS = {
    "LlmError_NotGranted": "not-granted",
    "LlmError_NotConfigured": "not-configured",
    "LlmError_Auth": "auth",
    "LlmError_Unavailable": "unavailable",
    "LlmError_InvalidRequest": "invalid-request",
}

_backend = None


def set_native_backend(backend) -> None:
    """Sets the native stand-in for the host's LLM service (tests; unused inside a component)."""
    global _backend
    _backend = backend


def clear_native_backend() -> None:
    """Removes the native backend: calls raise `LlmError("not-configured", ...)` again."""
    global _backend
    _backend = None


def _message(m) -> Message:
    if isinstance(m, Message):
        return m
    if isinstance(m, dict):
        return Message(str(m["role"]), str(m["content"]))
    role, content = m
    return Message(str(role), str(content))


def _call(messages, model, temperature, max_tokens, json, structured) -> ChatResponse:
    req = ChatRequest([_message(m) for m in messages], model, temperature, max_tokens, bool(json))
    try:
        from componentize_py_types import Err
        from wit_world.imports import llm as w
    except ImportError:
        w = None
    if w is not None:
        wreq = w.ChatRequest(
            model=req.model,
            messages=[w.Message(role=m.role, content=m.content) for m in req.messages],
            temperature=None if req.temperature is None else float(req.temperature),
            max_tokens=None if req.max_tokens is None else int(req.max_tokens),
            json=req.json,
        )
        try:
            r = w.chat(wreq) if structured is None else w.chat_structured(wreq, structured[0], structured[1])
        except NotImplementedError:
            pass  # bindings imported natively: use the native backend
        except Err as e:
            kind = _KINDS.get(type(e.value).__name__, "invalid-request")
            raise LlmError(kind, str(getattr(e.value, "value", e.value))) from None
        else:
            return ChatResponse(r.content, r.model, r.prompt_tokens, r.completion_tokens)
    backend = _backend
    if backend is None:
        raise LlmError("not-configured", "no native LLM backend is set (llm.set_native_backend)")
    return backend(req, structured)


def chat(messages, model=None, temperature=None, max_tokens=None, json=False) -> ChatResponse:
    """One chat completion; `json` asks the service for a JSON object answer. Raises `LlmError`."""
    return _call(messages, model, temperature, max_tokens, json, None)


def chat_structured(messages, name, schema, model=None, temperature=None, max_tokens=None, json=False) -> ChatResponse:
    """A chat completion whose answer is constrained to the JSON Schema `schema` (a dict, or JSON
    text), sent under `name` (1-64 letters, digits, `_` or `-`). The answer is JSON, but check its
    values: a model may bend numeric bounds. Raises `LlmError`."""
    if not isinstance(schema, str):
        schema = _json.dumps(schema, separators=(",", ":"), allow_nan=False)
    return _call(messages, model, temperature, max_tokens, json, (str(name), schema))
