"""Cooperative ``threading``: ``Thread`` runs a greenlet, locks and waits cooperate.

``threading`` is pure Python over ``_thread``, and it copies a few ``_thread`` names into
its own globals when it is imported (``_start_new_thread``, ``_allocate_lock``,
``get_ident``, ``Lock``, ``_CRLock``, ``local``, the sentinel or thread-handle machinery).
This module declares exactly those copies, bound to :mod:`greenwire.green.thread`; patching
``_thread`` and ``threading`` together therefore works whether ``threading`` was imported
before patching (its copies are replaced) or after (it copies the green names).

Everything else in ``threading`` is kept, unchanged and exact: ``Thread`` (``start``,
``join(timeout)``, ``is_alive``, daemon flags, names, ``excepthook``), ``Condition``,
``Semaphore``, ``BoundedSemaphore``, ``Barrier`` and ``Timer`` are built on the green locks
and so wait cooperatively; ``current_thread()``, ``enumerate()``,
``active_count()`` and ``main_thread()`` read the registry that green threads enter under
their :func:`get_ident`; ``threading._shutdown`` joins the non-daemon green threads at
interpreter exit through their sentinels (3.13: their handles).

``Event`` is replaced by an equivalent that needs no ``Condition`` (see
:mod:`greenwire.green._thread_event`): every ``Thread`` makes one, and the stdlib's costs a
lock, a condition and three trips through the lock for each start.

One more class is replaced: ``_DummyThread``, the stand-in ``current_thread()`` makes for a
thread of control that ``threading`` did not start. Greenlets come and go by the thousand
(every greenlet that logs gets one), so the green stand-in leaves ``threading``'s registry
when its greenlet finishes or is collected, where the stdlib's (before 3.13) stays forever.

Without patching, use the greenwire primitives directly: a ``threading.Thread`` is a real
thread unless ``threading`` is patched. Under the patch, a real OS thread is
``monkey.get_original("threading", "Thread")``: see :mod:`greenwire.green._realthreads`.
"""

from __future__ import annotations

import sys
import threading as _stdlib_threading
import weakref
from typing import Any

from greenlet import getcurrent

from greenwire.green import _realthreads
from greenwire.green import thread as _green_thread
from greenwire.green._registry import original, record_original
from greenwire.green._thread_event import Event
from greenwire.greenlet import Greenlet
from greenwire.local import local

__target__ = "threading"

get_ident = _green_thread.get_ident
_allocate_lock = _green_thread.allocate_lock
# threading.Lock is the factory before 3.13 (its type cannot be called), the type after.
Lock = _green_thread.allocate_lock if sys.version_info < (3, 13) else _green_thread.LockType
_LockType = _green_thread.LockType
_CRLock = _green_thread.RLock
RLock = _green_thread.RLock
_start_new_thread = _green_thread.start_new_thread
_set_sentinel = _green_thread._set_sentinel
_start_joinable_thread = _green_thread.start_joinable_thread
_ThreadHandle = _green_thread._ThreadHandle
_make_thread_handle = _green_thread._make_thread_handle
_thread_shutdown = _green_thread._shutdown
#: 3.13 keeps the tracker of each dummy thread in this local: it must be greenlet-local so
#: that a greenlet's tracker, and so its dummy thread, go when the greenlet does.
_thread_local_info = local()

_RealDummyThread: Any = original("threading", "_DummyThread")

# ``threading.Thread`` itself is not replaced, yet under the patch it starts greenlets: its
# original, for whoever needs a real OS thread, is a class that starts one.
record_original("threading", "Thread", _realthreads.Thread)


def _forget_dummy(ident: int, dummy_ref: weakref.ref[Any]) -> None:
    """Drop a finished greenlet's dummy thread from ``threading``'s registry."""
    dummy = dummy_ref()
    threading_module = sys.modules.get("threading")
    if dummy is None or threading_module is None:
        return
    active = threading_module._active
    # No lock: greenlet idents are unique, so nobody else writes this key; and this runs
    # in the hub or in a GC callback, where blocking on a green lock is not allowed.
    if active.get(ident) is dummy:
        active.pop(ident, None)


class _DummyThread(_RealDummyThread):  # type: ignore[misc]
    """``current_thread()`` of a greenlet not started by ``threading``; leaves with it."""

    def __init__(self) -> None:
        super().__init__()
        g = getcurrent()
        if g.parent is None:
            return  # the main greenlet of a real thread: the stdlib's behaviour
        ident = self._ident
        dummy_ref = weakref.ref(self)
        if isinstance(g, Greenlet):
            g.rawlink(lambda _: _forget_dummy(ident, dummy_ref))
        # Raw greenlets (the hub...) and Greenlets that never finish: when collected.
        self._greenwire_greenlet_ref = weakref.ref(g, lambda _: _forget_dummy(ident, dummy_ref))


def _implemented() -> list[str]:
    real: Any = _stdlib_threading
    names = ["get_ident", "_allocate_lock", "Lock", "_CRLock", "local", "_DummyThread", "Event"]
    if hasattr(real, "_start_joinable_thread"):  # 3.13 and later
        names += [
            "_start_joinable_thread",
            "_LockType",
            "_ThreadHandle",
            "_make_thread_handle",
            "_thread_shutdown",
            "_thread_local_info",
        ]
    else:
        names += ["_start_new_thread", "_set_sentinel"]
    return [name for name in names if hasattr(real, name)]


__implements__ = _implemented()

__all__ = ["Event", "Lock", "RLock", "get_ident", "local"]
