"""The originals of everything that patching replaces.

:func:`record_original` is called by :mod:`greenwire.monkey` before it replaces an
attribute of a stdlib module; :func:`original` returns the saved object, or the module's
current attribute if it was never patched. Green modules use it to reach the real
blocking implementation underneath their cooperative one.
"""

from __future__ import annotations

import importlib
from typing import Any

_saved: dict[tuple[str, str], Any] = {}
_MISSING: Any = object()


def record_original(module: str, name: str, value: Any) -> None:
    """Remember ``module.name``'s unpatched value (the first record wins)."""
    _saved.setdefault((module, name), value)


def original(module: str, name: str, default: Any = _MISSING) -> Any:
    """The unpatched ``module.name``.

    Raises:
        AttributeError: the module has no such attribute and no default was given.
    """
    try:
        return _saved[(module, name)]
    except KeyError:
        pass
    value = getattr(importlib.import_module(module), name, default)
    if value is _MISSING:
        raise AttributeError(f"module {module!r} has no attribute {name!r}")
    return value


def is_recorded(module: str, name: str) -> bool:
    """True if patching replaced ``module.name``."""
    return (module, name) in _saved
