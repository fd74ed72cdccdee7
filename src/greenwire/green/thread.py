"""Cooperative ``_thread``: every new "thread" is a greenlet of the current hub.

``threading`` is built on this module, so patching it (and the few names ``threading``
copied at import, see :mod:`greenwire.green.threading`) turns ``threading.Thread`` into
greenlets too.

Identity
--------
:func:`get_ident` returns the real thread id in the main greenlet of each OS thread, and
``id(greenlet)`` in every other greenlet. So ``threading.main_thread()`` stays right, real
threads started with the original ``start_new_thread`` keep their idents, and no greenlet
ident can equal a thread ident: both are addresses of live objects. One exception: a
greenlet running a Python signal handler (:mod:`greenwire.green.signal`) gets the main
thread's ident while the handler runs, since in CPython handlers run in the main thread.

Starting
--------
:func:`start_new_thread` schedules the new greenlet: its caller goes on first, as nothing
waits for the thread. ``threading.Thread.start()`` does wait (for the thread's
``_started`` Event), so when it is the caller the new greenlet is switched to at once,
and the starter resumes after it blocks or ends, behind the greenlets already ready.

How a joiner learns that a green thread ended
---------------------------------------------
CPython up to 3.12 gives each ``threading.Thread`` a *sentinel*: a lock that the new
thread acquires (``_set_sentinel``) and that the interpreter releases when the thread
state is deleted; ``join()`` waits by acquiring it, ``is_alive()`` by trying to, and
``threading._shutdown`` joins non-daemon threads through the same locks. Here the sentinel
is released by the green thread's greenlet as it finishes. Python 3.13 replaced sentinels
with ``_ThreadHandle`` objects made by ``start_joinable_thread``; :class:`_ThreadHandle` is
their green counterpart, and :func:`_shutdown` joins the non-daemon ones at exit before
the real threads.

Locks and real threads
----------------------
:func:`allocate_lock` returns a :class:`greenwire.lock.Lock` (and ``RLock`` a
:class:`greenwire.lock.RLock`): cooperative, fair, and safe across OS threads. A lock may
be shared by greenlets of the main thread and a real thread (a thread-pool call, an
original ``threading.Thread``, a C library's callback): a waiter is woken through its own
hub, and a thread without a hub blocks in the OS. Locks created before patching are real
``_thread.lock`` objects and are left alone: they keep working from real threads, and
between greenlets as long as none blocks while holding one.

Counting threads
----------------
:func:`_count` (which ``threading.active_count`` does not use, but CPython's test support
does, to find threads that outlive a test) counts the green threads alive plus the real
threads started through ``_thread``, less greenwire's thread-pool workers: idle workers
linger for seconds before they exit, and they are an implementation detail.
"""

from __future__ import annotations

import os
import sys
import threading as _stdlib_threading
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from greenlet import GreenletExit, getcurrent
from greenlet import greenlet as RawGreenlet

from greenwire._core import Hub, get_hub
from greenwire._core.threadpool import worker_threads_alive
from greenwire.green._registry import original
from greenwire.greenlet import Greenlet
from greenwire.local import local
from greenwire.lock import Lock as _GreenLock
from greenwire.lock import RLock as _GreenRLock

__target__ = "_thread"

_real_thread: Any = sys.modules["_thread"]
_real_get_ident: Callable[[], int] = original("_thread", "get_ident")
_real_count: Callable[[], int] = original("_thread", "_count")

error = _real_thread.error
TIMEOUT_MAX: float = _real_thread.TIMEOUT_MAX
stack_size = _real_thread.stack_size
get_native_id = _real_thread.get_native_id
interrupt_main = _real_thread.interrupt_main
exit = _real_thread.exit
exit_thread = _real_thread.exit_thread


class Lock(_GreenLock):
    """``_thread.lock``: a :class:`greenwire.lock.Lock` that can be weakly referenced.

    Before Python 3.13 the lock type cannot be called, as ``_thread.lock`` cannot: locks
    come from :func:`allocate_lock` (which ``threading.Lock`` is). 3.13 made the type
    itself ``threading.Lock``.
    """

    __slots__ = ("__weakref__",)

    if sys.version_info < (3, 13):

        def __new__(cls, *args: Any, **kwargs: Any) -> Lock:
            if cls is Lock:
                raise TypeError(f"cannot create '{cls.__module__}.{cls.__name__}' instances")
            return super().__new__(cls)

        @classmethod
        def allocate_lock(cls) -> Lock:
            """A new unlocked lock (``_thread.allocate_lock``)."""
            lock: Lock = _new_object(cls)
            _init_lock(lock)
            return lock


class RLock(_GreenRLock):
    """``_thread.RLock``: a :class:`greenwire.lock.RLock` that can be weakly referenced.

    Like the C type it ignores constructor arguments (``threading.RLock`` deprecates them).
    """

    __slots__ = ("__weakref__",)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__()


_new_object = object.__new__
_init_lock = _GreenLock.__init__

LockType = Lock
# A bound method, not a function: like the builtin it stands for, it does not bind as a
# method when a class keeps it as an attribute (test suites do: ``locktype = ...``).
allocate_lock = Lock.allocate_lock if sys.version_info < (3, 13) else Lock

allocate = allocate_lock
_local = local

# One token per green thread alive (started and not finished), in every OS thread:
# ``list.append`` and ``list.pop`` are atomic, so counting needs no lock.
_green_alive: list[None] = []


# Greenlets running a Python signal handler on the main thread's behalf (see
# greenwire.green.signal): in CPython a handler always runs in the main thread, so its
# get_ident() is the main thread's.
_signal_handler_greenlets: set[RawGreenlet] = set()


def get_ident() -> int:
    """A unique id of the current greenlet (the real thread id in a thread's main one)."""
    g = getcurrent()
    if g.parent is None or (_signal_handler_greenlets and g in _signal_handler_greenlets):
        return _real_get_ident()
    return id(g)


@contextmanager
def _as_main_thread() -> Iterator[None]:
    """Within: the current greenlet's :func:`get_ident` is the main thread's.

    Only for a greenlet of the main OS thread running a signal handler.
    """
    g = getcurrent()
    _signal_handler_greenlets.add(g)
    try:
        yield
    finally:
        _signal_handler_greenlets.discard(g)


def _count() -> int:
    """The threads started through ``_thread`` still alive, green or real (not pool workers)."""
    return _real_count() - worker_threads_alive() + len(_green_alive)


class _Sentinel(Lock):
    """The lock a joiner waits on; released when its green thread ends.

    ``locked()`` means "held", as for ``_thread.lock``: threading asserts that the lock is
    unlocked right after a joiner released it, while the lock may already be on its way to
    the next joiner.
    """

    __slots__ = ()

    def locked(self) -> bool:
        return not self._free and self._granted is None


class _UnraisableArgs:
    """What ``sys.unraisablehook`` gets for an exception that ends a green thread."""

    __slots__ = ("exc_type", "exc_value", "exc_traceback", "err_msg", "object")

    def __init__(self, exc: BaseException, err_msg: str, obj: object) -> None:
        self.exc_type = type(exc)
        self.exc_value = exc
        self.exc_traceback = exc.__traceback__
        self.err_msg = err_msg
        self.object = obj


def _report_unraisable(exc: BaseException, function: object) -> None:
    """Report what ended a thread as CPython does: through ``sys.unraisablehook``."""
    if sys.version_info >= (3, 13):
        args = _UnraisableArgs(exc, f"Exception ignored in thread started by {function!r}", None)
    else:
        args = _UnraisableArgs(exc, "Exception ignored in thread started by", function)
    hook = sys.unraisablehook
    if hook is not sys.__unraisablehook__:
        try:
            hook(args)  # type: ignore[arg-type]  # duck-typed: the real type is private
            return
        except BaseException as hook_exc:  # a broken hook must not kill the hub
            exc = hook_exc
    stderr = sys.stderr
    if stderr is None:
        return
    header = args.err_msg if args.object is None else f"{args.err_msg}: {args.object!r}"
    stderr.write(header + "\n" + "".join(traceback.format_exception(exc)))
    stderr.flush()


#: Ended green threads whose greenlets each hub keeps to run the next ones.
IDLE_GREENLETS_KEPT = 64


class _GreenThread(Greenlet[None]):
    """The greenlet behind green threads: runs one, then may wait to run the next.

    Why greenlets are reused
    ------------------------
    A new greenlet costs more than its object: its first Python frame maps a fresh 16 KiB
    chunk for the interpreter's frame stack (``mmap``, then a page fault) and its end
    unmaps it again. A ``ThreadingMixIn`` server starts a thread per request, so that is
    two system calls and a fault per request. Instead, a thread that returned normally
    leaves its greenlet parked in its hub's idle list (up to :data:`IDLE_GREENLETS_KEPT`),
    and the next thread started in that hub runs on it. What would give the old thread
    away is reset first: the context variables (a new thread starts with an empty
    context); and a greenlet somebody linked to (``rawlink``/``link``, as greenlet-local
    storage does) is never reused, it finishes as any Greenlet does so that those
    callbacks run. A thread that raised or was killed is not reused either.

    While parked the greenlet looks finished (``ready()``; ``join`` returns, ``kill`` does
    nothing), a stray wake-up sends it back to sleep, a stray exception is reported, and
    it exits when its hub is destroyed. Thread idents (``id()`` of the greenlet) repeat,
    as the ids of OS threads do: never between two threads alive at the same time.
    """

    _sentinel: _Sentinel | None = None
    _has_ended = False
    _function: Callable[..., object] | None = None
    _handle: _ThreadHandle | None = None
    _args: tuple[Any, ...] = ()
    _kwargs: dict[str, Any] = {}  # shared default: never mutated, only replaced

    def _assign(
        self,
        function: Callable[..., object],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        handle: _ThreadHandle | None,
    ) -> None:
        self._function = function
        if args:
            self._args = args
        if kwargs:
            self._kwargs = kwargs
        if handle is not None:
            self._handle = handle
        self._done = False

    def run(self) -> None:
        if self._done:  # killed before it started
            return
        while self._run_thread() and not self._links and self._handle is None:
            if not self._park():
                break
        self._done = True
        if self._links:
            self._hub._callbacks.append((self._notify_links, ()))

    def _run_thread(self) -> bool:
        """Run the thread's function; True if it returned (or raised SystemExit)."""
        function = self._function
        assert function is not None
        args, kwargs = self._args, self._kwargs
        returned = False
        try:
            function(*args, **kwargs)
            returned = True
        except SystemExit:
            returned = True  # a thread's quiet way out
        except GreenletExit:
            pass  # killed: quiet too, but not reused
        except BaseException as exc:  # reported as CPython does
            _report_unraisable(exc, function)
        finally:
            self._forget_thread()
            del function, args, kwargs
            self._ended()
        return returned

    def _forget_thread(self) -> None:
        """Drop the function and arguments of the thread that ran, or was to run, here."""
        self._function = None
        self.__dict__.pop("_args", None)
        self.__dict__.pop("_kwargs", None)

    def _park(self) -> bool:
        """Wait in the hub's idle list for the next thread; False if not kept, or killed."""
        hub = self._hub
        idle = _idle_greenlets(hub)
        if idle is None or len(idle) >= IDLE_GREENLETS_KEPT:
            return False
        self._has_ended = False
        self.gr_context = None  # the next thread starts with an empty context
        self._done = True  # looks finished while parked
        idle.append(self)
        while self._function is None:
            try:
                hub.switch()
            except GreenletExit:
                if self._function is not None:  # killed before the new thread ran
                    self._forget_thread()
                    self._ended()
                return False
            except BaseException as exc:  # thrown by something of the thread that ended
                hub.handle_error(self, exc)
        return True

    def _resume(self) -> None:
        """Run the thread just assigned to this parked greenlet, unless it was killed."""
        if not self.dead:
            self.switch()

    def _finish(self, value: Any, exception: BaseException | None) -> None:
        # Reached without _run when the greenlet is killed before it ever ran.
        self._ended()
        super()._finish(value, exception)

    def _ended(self) -> None:
        """Let the joiners go (once): release the sentinel, complete the handle."""
        if self._has_ended:
            return
        self._has_ended = True
        _green_alive.pop()
        sentinel = self._sentinel
        if sentinel is not None:
            self._sentinel = None
            if sentinel.locked():
                sentinel.release()
        handle = self._handle
        if handle is not None:
            handle._set_done()


def _idle_greenlets(hub: Hub) -> list[_GreenThread] | None:
    """The hub's parked thread greenlets (made on first use); None once it is destroyed."""
    idle: list[_GreenThread] | None = hub.__dict__.get("_idle_green_threads")
    if idle is None and not hub.destroyed:
        idle = hub.__dict__["_idle_green_threads"] = []
        hub.add_destroy_hook(_drop_idle_greenlets)
    return idle


def _drop_idle_greenlets(hub: Hub) -> None:
    """End the parked greenlets of a hub being destroyed."""
    idle: list[_GreenThread] = hub.__dict__.pop("_idle_green_threads", [])
    me = getcurrent()
    for g in idle:
        if not g.dead:
            g.parent = me  # the hub is gone: come back here
            g.throw(GreenletExit)


# What ``threading.Thread.start()`` passes to start_new_thread: its ``_bootstrap`` method.
_THREAD_BOOTSTRAP = getattr(_stdlib_threading.Thread, "_bootstrap", None)


def _started_by_threading(function: Callable[..., object]) -> bool:
    """True if ``function`` is the bootstrap of a ``threading.Thread`` (its ``start()``).

    A subclass that overrides ``_bootstrap`` is not recognised, and its thread is merely
    scheduled instead of switched to: slower, never wrong.
    """
    return getattr(function, "__func__", None) is _THREAD_BOOTSTRAP


def _spawn(
    function: Callable[..., object],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    handle: _ThreadHandle | None,
) -> _GreenThread:
    """Start the green thread (at once if ``Thread.start`` is the caller).

    It runs on a parked greenlet of the hub's if there is one, else on a new greenlet.
    """
    hub = get_hub()
    idle: list[_GreenThread] | None = hub.__dict__.get("_idle_green_threads")
    reused = bool(idle)
    g = idle.pop() if idle else _GreenThread()
    g._assign(function, args, kwargs, handle)
    _green_alive.append(None)
    if handle is not None:
        handle._ident = id(g)
        handle._state = _RUNNING
    me = getcurrent()
    # A greenlet is true while it runs. A hub not started yet would start with the
    # thread's result as its argument when the thread ends: schedule the thread instead.
    if hub and me is not hub and _started_by_threading(function):
        # ``Thread.start()`` waits for the new thread to set ``_started`` before it
        # returns, so its caller cannot go on before the new thread ran anyway. Switch to
        # it now instead of scheduling it and parking on that Event: the starter is queued
        # behind the ready greenlets, as the Event's wake-up would have queued it, and the
        # Event is already set when ``start()`` looks. That saves the Condition wait (a
        # waiter lock, two trips through the hub) on every start, which a
        # ``ThreadingMixIn`` server pays per request.
        g._started = True
        hub._callbacks.append((me.switch, ()))
        g.switch()
    elif reused:
        hub._callbacks.append((g._resume, ()))
    else:
        g.start()
    return g


def start_new_thread(
    function: Callable[..., object], args: tuple[Any, ...], kwargs: dict[str, Any] | None = None
) -> int:
    """Run ``function(*args, **kwargs)`` in a new greenlet; return its ident.

    An exception that escapes ``function`` is reported through ``sys.unraisablehook``
    (``SystemExit`` silently ends the thread), as for a real thread.

    Raises:
        TypeError: ``function`` is not callable, ``args`` not a tuple, ``kwargs`` not a dict.
    """
    if not callable(function):
        raise TypeError("first arg must be callable")
    if not isinstance(args, tuple):
        raise TypeError("2nd arg must be a tuple")
    if kwargs is None:
        kwargs = {}
    elif not isinstance(kwargs, dict):
        raise TypeError("optional 3rd arg must be a dictionary")
    return id(_spawn(function, args, kwargs, None))


start_new = start_new_thread


def _set_sentinel() -> Lock:
    """A lock released when the current green thread ends (threading before 3.13)."""
    lock = _Sentinel()
    g = getcurrent()
    if isinstance(g, _GreenThread):
        g._sentinel = lock
    return lock


# ------------------------------------------------------------------ Python 3.13

_NOT_STARTED, _RUNNING, _DONE = 0, 1, 2
# Handles of green threads started and not finished, and the non-daemon ones among them.
_live_handles: set[_ThreadHandle] = set()
_non_daemon_handles: set[_ThreadHandle] = set()


class _ThreadHandle:
    """The green counterpart of 3.13's ``_thread._ThreadHandle``: join a green thread.

    Joiners wait on a lock held until the thread ends, so that real threads may join too.
    """

    __slots__ = ("_ident", "_state", "_done", "__weakref__")

    def __init__(self) -> None:
        self._ident = 0
        self._state = _NOT_STARTED
        self._done = allocate_lock()
        self._done.acquire()

    @property
    def ident(self) -> int:
        return self._ident

    def is_done(self) -> bool:
        return self._state == _DONE

    def _set_done(self) -> None:
        if self._state == _NOT_STARTED:
            raise RuntimeError("thread not started")
        if self._state == _DONE:
            return
        self._state = _DONE
        _live_handles.discard(self)
        _non_daemon_handles.discard(self)
        self._done.release()

    def join(self, timeout: float | None = None) -> None:
        """Wait until the thread ends, at most ``timeout`` seconds (None or < 0: forever).

        Raises:
            RuntimeError: the thread was not started, or it is the current thread.
        """
        state = self._state
        if state == _NOT_STARTED:
            raise RuntimeError("thread not started")
        if state == _DONE:
            return
        if self._ident == get_ident():
            raise RuntimeError("Cannot join current thread")
        wait = -1 if timeout is None or timeout < 0 else min(timeout, TIMEOUT_MAX)
        if self._done.acquire(True, wait):
            self._done.release()  # for the next joiner

    def __repr__(self) -> str:
        return f"<{type(self).__module__}._ThreadHandle object: ident={self._ident}>"


def start_joinable_thread(
    function: Callable[[], object], handle: Any = None, daemon: bool = True
) -> Any:
    """Run ``function()`` in a new greenlet; return the handle that joins it (3.13).

    A real ``_thread._ThreadHandle`` (a ``threading.Thread`` created before patching and
    started after) gets a real thread, since only a real thread can complete it.

    Raises:
        RuntimeError: the handle was already used.
    """
    if not callable(function):
        raise TypeError("thread function must be callable")
    if handle is None:
        handle = _ThreadHandle()
    elif not isinstance(handle, _ThreadHandle):
        # A real handle: threading.Thread made its handle before patching. A green
        # thread cannot complete a real handle, so the Thread gets a green one instead;
        # anything else gets the real thread its real handle asks for.
        owner = getattr(function, "__self__", None)
        if getattr(owner, "_handle", None) is not handle:
            real_start = original("_thread", "start_joinable_thread")
            return real_start(function, handle=handle, daemon=daemon)
        handle = owner._handle = _ThreadHandle()  # type: ignore[union-attr]
    if handle._state != _NOT_STARTED:
        raise RuntimeError("thread already started")
    _live_handles.add(handle)
    if not daemon:
        _non_daemon_handles.add(handle)
    _spawn(function, (), {}, handle)  # fills the handle before the thread can run
    return handle


def _make_thread_handle(ident: int) -> _ThreadHandle:
    """A handle for a thread of control not started here (main or dummy thread)."""
    handle = _ThreadHandle()
    handle._ident = ident
    handle._state = _RUNNING
    return handle


def _shutdown() -> None:
    """Wait for every non-daemon green thread, then every non-daemon real one (3.13)."""
    me = get_ident()
    while True:
        pending = [h for h in _non_daemon_handles if h._ident != me]
        if not pending:
            break
        for handle in pending:
            handle.join()
    real_shutdown = original("_thread", "_shutdown", None)
    if real_shutdown is not None:
        real_shutdown()


def _after_fork_in_child() -> None:
    # Only the forking greenlet goes on in the child: the hub it ran under is gone, and
    # so is every other green thread, as every other thread is after a real fork.
    me = get_ident()
    for handle in list(_live_handles):
        if handle._ident != me:
            handle._state = _DONE
            _live_handles.discard(handle)
            _non_daemon_handles.discard(handle)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _implemented() -> list[str]:
    names = ["LockType", "allocate_lock", "allocate", "RLock", "get_ident", "_local", "_count"]
    names += ["start_new_thread", "start_new"]
    if hasattr(_real_thread, "_set_sentinel"):
        names.append("_set_sentinel")
    if hasattr(_real_thread, "start_joinable_thread"):
        names += ["start_joinable_thread", "_ThreadHandle", "_make_thread_handle", "_shutdown"]
    return [name for name in names if hasattr(_real_thread, name)]


__implements__ = _implemented()

__all__ = [
    "LockType",
    "RLock",
    "TIMEOUT_MAX",
    "allocate",
    "allocate_lock",
    "error",
    "exit",
    "exit_thread",
    "get_ident",
    "get_native_id",
    "interrupt_main",
    "stack_size",
    "start_joinable_thread",
    "start_new",
    "start_new_thread",
]
