"""Greenlet-local storage: :class:`threading.local` where every greenlet is a thread.

::

    state = local()
    state.user = "ann"       # seen only by the current greenlet

It behaves like :class:`threading.local` (and replaces it, and ``_threading_local.local``,
under monkey patching):

* each greenlet (the hub and each OS thread's main greenlet included) sees its own
  attributes, and its own ``__dict__`` (read-only as an attribute);
* a subclass's ``__init__`` runs again, with the constructor's arguments, the first time
  each other greenlet touches the object; if it raises, the greenlet gets no storage and
  the next touch tries again; arguments without an ``__init__`` to take them are a
  TypeError;
* names the class defines as data descriptors (properties, ``__slots__``) are resolved on
  the class first, exactly as in ``threading.local``, so slots are shared by all
  greenlets; methods and class attributes are found after the greenlet's own attributes.

How the storage lives and dies
------------------------------
Each local object owns a table from ``id(greenlet)`` to that greenlet's attribute dict,
as ``threading.local`` owns its per-thread dicts: the greenlets hold nothing, so a value
that refers back to the local object forms an ordinary, collectable cycle. A weak
reference to the greenlet, with a callback, drops its entry when the greenlet object is
freed (so the id cannot be reused while the entry exists), and a
:class:`~greenwire.Greenlet` additionally drops it as soon as it finishes, even if somebody
keeps the Greenlet object for its result. When the local object is collected its table
goes with it; the callbacks reach the table only through a weak reference.

Why attribute access is emulated rather than swapped
----------------------------------------------------
``_threading_local`` swaps the instance ``__dict__`` in under a lock on every access. A
lock-free swap would be wrong here: the same local may be used from several OS threads
(the blocking-call thread pool, unpatched threads), and a thread switch between the swap
and the read would show one thread another's data. Instead ``__getattribute__`` looks the
name up in the current greenlet's dict and falls back to ``object.__getattribute__`` (which
then only finds class attributes and methods, since the real instance dict stays empty).
The names to resolve on the class first (data descriptors, ``__dict__``) are computed once
per local object, so a class changed after its instances were created is not seen by them.
"""

from __future__ import annotations

import weakref
from typing import Any

from greenlet import getcurrent
from greenlet import greenlet as RawGreenlet

from greenwire.greenlet import Greenlet

__all__ = ["local"]

_oga = object.__getattribute__
_osa = object.__setattr__
_oda = object.__delattr__
_MISSING: Any = object()


class _Storage(dict[int, dict[str, Any]]):
    """One local object's attribute dicts, by ``id(greenlet)``, and its setup.

    A dict subclass so that the hot path finds a greenlet's dict with one method call.
    """

    __slots__ = ("args", "kwargs", "shadowed", "greenlet_refs", "self_ref", "__weakref__")

    def __init__(
        self, args: tuple[Any, ...], kwargs: dict[str, Any], shadowed: frozenset[str]
    ) -> None:
        super().__init__()
        self.args = args
        self.kwargs = kwargs
        self.shadowed = shadowed
        # id(greenlet) -> weak reference whose callback forgets that greenlet's dict.
        self.greenlet_refs: dict[int, weakref.ref[RawGreenlet]] = {}
        self.self_ref = weakref.ref(self)

    def create_dict(self) -> dict[str, Any]:
        """Create and register the current greenlet's (empty) dict."""
        g = getcurrent()
        key = id(g)
        storage_ref = self.self_ref

        def forget(_: object) -> None:
            storage = storage_ref()
            if storage is not None:
                storage.pop(key, None)
                storage.greenlet_refs.pop(key, None)

        d: dict[str, Any] = {}
        self.greenlet_refs[key] = weakref.ref(g, forget)
        self[key] = d
        if isinstance(g, Greenlet):
            g.rawlink(forget)  # free the dict when it finishes, not when it is collected
        return d

    def forget_current(self) -> None:
        key = id(getcurrent())
        self.pop(key, None)
        self.greenlet_refs.pop(key, None)


def _first_touch(obj: local, storage: _Storage) -> dict[str, Any]:
    """Give the current greenlet its dict and run the class's ``__init__`` in it."""
    d = storage.create_dict()
    init = type(obj).__init__
    if init is not object.__init__:
        try:
            init(obj, *storage.args, **storage.kwargs)
        except BaseException:
            # No storage for this greenlet: the next touch runs __init__ again.
            storage.forget_current()
            raise
    return d


def _shadowed_names(cls: type) -> frozenset[str]:
    """Names that ``cls`` resolves before the instance dict: its data descriptors."""
    names = {"__dict__"}
    seen: set[str] = set()
    for klass in cls.__mro__:
        for name, attr in vars(klass).items():
            if name in seen:
                continue
            seen.add(name)
            kind = type(attr)
            if hasattr(kind, "__set__") or hasattr(kind, "__delete__"):
                names.add(name)
    return frozenset(names)


class local:  # noqa: N801 - the name threading.local has
    """An object whose attributes are private to each greenlet."""

    __slots__ = ("_local__storage", "__weakref__")

    def __new__(cls, *args: Any, **kwargs: Any) -> local:
        if (args or kwargs) and cls.__init__ is object.__init__:
            raise TypeError("Initialization arguments are not supported")
        self = object.__new__(cls)
        shadowed = _LOCAL_SHADOWED if cls is local else _shadowed_names(cls)
        storage = _Storage(args, kwargs, shadowed)
        _osa(self, "_local__storage", storage)
        # The creating greenlet gets its dict now; type.__call__ runs __init__ in it.
        storage.create_dict()
        return self

    def __getattribute__(self, name: str) -> Any:
        storage: _Storage = _storage_of(self)
        d = storage.get(id(getcurrent()))
        if d is None:
            d = _first_touch(self, storage)
        if name in storage.shadowed:
            if name == "__dict__":
                return d
            return _oga(self, name)
        value = d.get(name, _MISSING)
        if value is _MISSING:
            return _oga(self, name)  # methods, class attributes, or AttributeError
        return value

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "__dict__":
            raise AttributeError(
                f"{type(self).__name__!r} object attribute '__dict__' is read-only"
            )
        storage: _Storage = _storage_of(self)
        d = storage.get(id(getcurrent()))
        if d is None:
            d = _first_touch(self, storage)
        if name in storage.shadowed:
            _osa(self, name, value)
        else:
            d[name] = value

    def __delattr__(self, name: str) -> None:
        if name == "__dict__":
            raise AttributeError(
                f"{type(self).__name__!r} object attribute '__dict__' is read-only"
            )
        storage: _Storage = _storage_of(self)
        d = storage.get(id(getcurrent()))
        if d is None:
            d = _first_touch(self, storage)
        if name in storage.shadowed:
            _oda(self, name)
            return
        try:
            del d[name]
        except KeyError:
            raise AttributeError(
                f"{type(self).__name__!r} object has no attribute {name!r}"
            ) from None

    def __reduce_ex__(self, protocol: Any) -> Any:
        raise TypeError(f"cannot pickle {type(self).__name__!r} object")


# Reads the slot without going through local.__getattribute__ (faster than _oga too).
_storage_of = local.__dict__["_local__storage"].__get__
_LOCAL_SHADOWED = _shadowed_names(local)
