"""Patching driven by the green modules' declarations.

Each green module says what it stands in for (``__target__``, a stdlib module name) and
which attributes it replaces (``__implements__``). Patching a green module imports it,
records the target's current attributes with :func:`~greenwire.green.record_original`
and sets the green ones in their place. Nothing is hard-coded here but the table below,
which maps each ``patch_all`` keyword to green modules.

The order of :data:`MODULES` is the patch order, and it matters:

* ``thread`` first: the other green modules and everything imported while patching
  create locks; they must be green ones, and the check for already running real threads
  must look at ``threading`` before it is replaced.
* ``socket`` before ``dns`` (both target ``socket``: the resolver functions win) and
  before ``ssl`` (green SSL sockets are green sockets underneath).
* ``queue`` after ``thread`` (queues wait on ``threading`` conditions), ``subprocess``
  after ``os``, ``select`` and ``signal``'s dependencies, ``signal`` last.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any, overload

from greenwire.green._registry import original, record_original
from greenwire.monkey import _traps
from greenwire.monkey._events import (
    DidPatchAll,
    DidPatchModule,
    DoNotPatch,
    WillPatchAll,
    WillPatchModule,
    notify,
)

#: ``patch_all`` keyword -> green modules, both in patch order.
MODULES: dict[str, tuple[str, ...]] = {
    "thread": (
        "greenwire.green.thread",
        "greenwire.green.threading",
        "greenwire.green.threading_local",
    ),
    "os": ("greenwire.green.os",),
    "time": ("greenwire.green.time",),
    "select": ("greenwire.green.select", "greenwire.green.selectors"),
    "socket": ("greenwire.green.socket",),
    "dns": ("greenwire.green.dns",),
    "ssl": ("greenwire.green.ssl",),
    "queue": ("greenwire.green.queue",),
    "subprocess": ("greenwire.green.subprocess",),
    "signal": ("greenwire.green.signal",),
}

_lock = original("_thread", "RLock")()

#: target module name -> names replaced in it.
_patched: dict[str, set[str]] = {}


@dataclass(frozen=True)
class _Plan:
    """What patching one green module would change right now."""

    green_name: str
    green: ModuleType
    target: ModuleType
    names: tuple[str, ...]


class _Missing(Exception):
    """A green module (or something it needs outside greenwire) cannot be imported."""


def _load(green_name: str) -> ModuleType:
    try:
        return importlib.import_module(green_name)
    except ModuleNotFoundError as e:
        # The green module itself does not exist, or it needs a module the platform
        # lacks (``_ssl``...). A greenwire module missing is a bug and must surface.
        if e.name == green_name:
            raise _Missing(f"{green_name} does not exist") from e
        if not (e.name or "greenwire").startswith("greenwire"):
            raise _Missing(f"{green_name} needs the missing module {e.name}") from e
        raise


def _plan(green_name: str) -> _Plan:
    """Import the green module and list the attributes it would replace now."""
    green = _load(green_name)
    target = importlib.import_module(green.__target__)
    names = tuple(
        name
        for name in green.__implements__
        if hasattr(target, name) and getattr(target, name) is not getattr(green, name)
    )
    return _Plan(green_name, green, target, names)


def _apply(plan: _Plan) -> bool:
    """Fire the module events around replacing the attributes; False if vetoed."""
    target_name = plan.target.__name__
    try:
        notify(WillPatchModule(plan.green_name, target_name, plan.green, plan.target, plan.names))
    except DoNotPatch:
        return False
    done = _patched.setdefault(target_name, set())
    for name in plan.names:
        record_original(target_name, name, getattr(plan.target, name))
        setattr(plan.target, name, getattr(plan.green, name))
        done.add(name)
    # Optional: what replacing names cannot do (green.ssl sets a stdlib class attribute).
    hook = getattr(plan.green, "__patch__", None)
    if hook is not None:
        hook()
    notify(DidPatchModule(plan.green_name, target_name, plan.green, plan.target, plan.names))
    return True


def _warn(message: str | None, stacklevel: int) -> None:
    if message is not None:
        warnings.warn(message, RuntimeWarning, stacklevel=stacklevel + 1)


def _exists(green_name: str) -> bool:
    """True if the green module is imported or importable (without importing it)."""
    if green_name in sys.modules:
        return sys.modules[green_name] is not None
    try:
        return importlib.util.find_spec(green_name) is not None
    except (ImportError, ValueError):
        return False


def _pending(green_name: str) -> bool:
    """True unless the green module is imported and has nothing left to replace."""
    if green_name not in sys.modules:
        return True
    return bool(_plan(green_name).names)


def _patch_keywords(
    keywords: Iterable[str], arguments: dict[str, bool] | None, stacklevel: int
) -> bool:
    """Patch the green modules of ``keywords``; fire the patch_all events if ``arguments``.

    Each green module is imported just before it is patched, never earlier: whatever it
    imports then (a stdlib module capturing ``selectors.PollSelector`` at import, locks
    made at import) already sees the groups patched before it.

    Returns:
        True if any attribute was replaced.
    """
    wanted = set(keywords)
    keywords = [k for k in MODULES if k in wanted]
    order = [(keyword, name) for keyword in keywords for name in MODULES[keyword]]
    missing = {name: f"{kw}: {name} does not exist" for kw, name in order if not _exists(name)}
    if missing:
        _warn(_missing_message(missing.values()), stacklevel + 1)
    order = [(kw, name) for kw, name in order if name not in missing]
    if not any(_pending(name) for _, name in order):
        return False
    _warn(_traps.not_main_thread(), stacklevel + 1)
    if "thread" in keywords and not _patched.get("_thread"):
        _warn(_traps.running_threads(), stacklevel + 1)
    if arguments is not None:
        try:
            notify(WillPatchAll(tuple(keywords), dict(arguments)))
        except DoNotPatch:
            return False
    patched: list[str] = []
    skipped = list(missing)
    for keyword, green_name in order:
        try:
            plan = _plan(green_name)
        except _Missing as e:  # it exists, but needs something the platform lacks
            _warn(_missing_message([f"{keyword}: {e}"]), stacklevel + 1)
            skipped.append(green_name)
            continue
        if not plan.names:
            continue
        if plan.target.__name__ == "ssl":
            _warn(_traps.ssl_imported_early(plan.names), stacklevel + 1)
        if _apply(plan):
            patched.append(green_name)
        else:
            skipped.append(green_name)
    if arguments is not None:
        notify(DidPatchAll(tuple(keywords), dict(arguments), tuple(patched), tuple(skipped)))
    return bool(patched)


def _missing_message(reasons: Iterable[str]) -> str:
    return (
        "greenwire.monkey: not patched, because their green modules cannot be imported "
        f"(code using them will block every greenlet): {'; '.join(reasons)}"
    )


def patch_all(
    socket: bool = True,
    dns: bool = True,
    ssl: bool = True,
    select: bool = True,
    time: bool = True,
    thread: bool = True,
    queue: bool = True,
    subprocess: bool = True,
    signal: bool = True,
    os: bool = True,
) -> None:
    """Make the standard library cooperative: call it first thing, in the main thread.

    Each keyword enables one group of green modules (see :data:`MODULES`). Patching is
    idempotent: what is already patched is left alone, and calling again changes nothing
    and fires no events. A group whose green module does not exist (yet, or on this
    platform) is skipped with one ``RuntimeWarning`` naming it; known traps (real
    threads already running, patching outside the main thread, ``ssl`` objects already
    imported elsewhere) get a ``RuntimeWarning`` too.

    Raises:
        Whatever a subscriber or plug-in raises, except :class:`DoNotPatch`.
    """
    arguments = {
        "socket": socket,
        "dns": dns,
        "ssl": ssl,
        "select": select,
        "time": time,
        "thread": thread,
        "queue": queue,
        "subprocess": subprocess,
        "signal": signal,
        "os": os,
    }
    with _lock:
        _patch_keywords([k for k, on in arguments.items() if on], arguments, stacklevel=2)


def patch_module(name: str) -> bool:
    """Patch one ``patch_all`` group (``"select"``) or one green module (``"selectors"``).

    ``name`` is a ``patch_all`` keyword, or the name of a module in
    :mod:`greenwire.green` (short, ``"threading"``, or full,
    ``"greenwire.green.threading"``). No ``patch_all`` events are fired, only the
    per-module ones.

    Returns:
        True if something was replaced now, False if it was already patched (or skipped).

    Raises:
        ValueError: ``name`` is neither a keyword nor a green module.
    """
    with _lock:
        if name in MODULES:
            return _patch_keywords([name], None, stacklevel=2)
        green_name = name if name.startswith("greenwire.green.") else f"greenwire.green.{name}"
        try:
            plan = _plan(green_name)
        except _Missing:
            raise ValueError(f"no green module named {name!r}") from None
        if not plan.names:
            return False
        _warn(_traps.not_main_thread(), 2)
        return _apply(plan)


def is_module_patched(name: str) -> bool:
    """True if patching replaced something in the stdlib module ``name`` (``"select"``)."""
    return bool(_patched.get(name))


def is_object_patched(module: str, name: str) -> bool:
    """True if patching replaced ``module.name`` (``is_object_patched("time", "sleep")``)."""
    return name in _patched.get(module, ())


@overload
def get_original(module: str, name: str) -> Any: ...


@overload
def get_original(module: str, name: Sequence[str]) -> list[Any]: ...


def get_original(module: str, name: str | Sequence[str]) -> Any:
    """The unpatched ``module.name`` (or a list, for a sequence of names).

    Use it to reach real OS behaviour under the patch, e.g. a real thread:
    ``get_original("threading", "Thread")``.

    Raises:
        AttributeError: the module has no such attribute.
    """
    if isinstance(name, str):
        return original(module, name)
    return [original(module, each) for each in name]
