"""A per-study key-value store, persisted by the host in the study database (WIT `storage`;
ask for the "storage" capability).

Natively (no host) an in-process dictionary stands in for it, so strategies that use storage
still run in unit tests. Without the grant, `get` returns None and `set`/`delete` raise
`PluginError` naming the missing grant.
"""

from .errors import PluginError

_native = {}


def _host():
    # (the generated `storage` module, componentize-py's Err) inside a component, else None.
    try:
        from componentize_py_types import Err
        from wit_world.imports import storage as wit_storage
    except ImportError:
        return None
    return wit_storage, Err


def get(key: str):
    """The bytes stored under `key`, or None."""
    host = _host()
    if host is not None:
        try:
            v = host[0].get(key)
            return None if v is None else bytes(v)
        except NotImplementedError:
            pass  # bindings imported natively: no host behind them
    return _native.get(key)


def set(key: str, value) -> None:
    """Stores `value` (bytes; a str is stored as UTF-8) under `key`; raises `PluginError`."""
    if isinstance(value, str):
        value = value.encode("utf-8")
    value = bytes(value)
    host = _host()
    if host is not None:
        wit_storage, Err = host
        try:
            wit_storage.set(key, value)
            return
        except NotImplementedError:
            pass
        except Err as e:
            raise PluginError(str(e.value)) from None
    _native[key] = value


def delete(key: str) -> None:
    """Removes `key` (no error when absent); raises `PluginError` when the host refuses."""
    host = _host()
    if host is not None:
        wit_storage, Err = host
        try:
            wit_storage.delete(key)
            return
        except NotImplementedError:
            pass
        except Err as e:
            raise PluginError(str(e.value)) from None
    _native.pop(key, None)
