"""Real OS threads under the patch: what ``monkey.get_original("threading", "Thread")`` gives.

Patching does not replace ``threading.Thread``: it replaces the ``_thread`` functions and
locks that ``threading`` copied into its globals, so every ``threading.Thread`` starts a
greenlet. The class itself cannot start a real thread any more, and the originals of those
globals alone do not make one: ``Thread`` also waits on ``threading``'s own ``Event`` and
``Condition``, which are now built on green locks.

A private copy of ``threading``
-------------------------------
So greenwire keeps its own copy of the ``threading`` module, executed from the standard
library's source under a private name, whose ``import _thread`` is answered with a module
of the *original* ``_thread`` functions. Everything in the copy is the exact stdlib code of
the running Python version, on real locks: ``start``, ``join(timeout)``, ``is_alive``,
daemon flags, names, ``run()`` overriding, ``excepthook``. Re-implementing ``Thread`` on
the originals instead would mean following its private protocol (sentinel locks before
3.13, thread handles since), which changes with every version.

:class:`Thread`, the class recorded as the original, subclasses the copy's ``Thread`` and
ties its instances to the patched world:

* It is also a subclass of the patched module's ``Thread``, so ``isinstance`` checks hold,
  and while it runs it is in ``threading``'s registry under its real ident:
  ``threading.current_thread()`` in it is the thread itself, ``threading.enumerate()``
  lists it.
* An exception that ends it goes to the *current* ``threading.excepthook``, and the hooks
  of ``threading.settrace`` / ``setprofile`` are installed in it, as for stdlib threads.
* The thread is an ordinary OS thread: green primitives used in it work with a hub of its
  own (one hub per OS thread), made on first use and destroyed when the thread ends.
* ``join()`` from a greenlet waits cooperatively: the thread releases a (thread-safe)
  green lock as it ends, so the joiner's hub keeps serving its other greenlets. The hub of
  the greenlet that started the thread is held while it runs: the thread may wake its
  greenlets, so they are not "blocked forever".
* Non-daemon threads are joined at interpreter exit, cooperatively, from the patched
  ``threading``'s exit hook (``_register_atexit``), before it joins the green threads.

The copy's own bookkeeping stays private: its ``_MainThread`` stand-in, made when it is
loaded, must not take over the loading thread's real sentinel lock (before 3.13 a thread
has one, and ``threading`` releases the main thread's by hand at exit), so the copy gets
the real ``_set_sentinel`` only inside the threads it starts.
"""

from __future__ import annotations

import builtins
import importlib.util
import sys
import types
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from greenwire._core import Hub, existing_hub
from greenwire._core.threadpool import _inherit_thread_hooks
from greenwire.green._registry import original
from greenwire.lock import Lock

__all__ = ["Thread", "real_threading"]

_THREAD_NAMES = sorted(vars(sys.modules["_thread"]))


def _real_thread_module() -> types.ModuleType:
    """A stand-in for ``_thread`` made of the original (unpatched) functions and types."""
    module = types.ModuleType("_thread", "The unpatched _thread, for greenwire's threading.")
    for name in _THREAD_NAMES:
        if not name.startswith("__"):
            setattr(module, name, original("_thread", name))
    return module


def _load_real_threading() -> types.ModuleType:
    """Execute the stdlib ``threading`` source as a private module on the real ``_thread``."""
    spec = importlib.util.find_spec("threading")
    if spec is None or spec.loader is None:  # pragma: no cover - the stdlib is broken
        raise ImportError("cannot find the source of the threading module")
    real_thread = _real_thread_module()
    real_set_sentinel = getattr(real_thread, "_set_sentinel", None)
    if real_set_sentinel is not None:
        # Loading makes a _MainThread stand-in: it must not take the loading thread's
        # sentinel (see the module doc).
        setattr(real_thread, "_set_sentinel", real_thread.allocate_lock)  # noqa: B010

    def import_real_thread(
        name: str,
        globals: Mapping[str, object] | None = None,
        locals: Mapping[str, object] | None = None,
        fromlist: Sequence[str] = (),
        level: int = 0,
    ) -> types.ModuleType:
        if name == "_thread" and level == 0:
            return real_thread
        return builtins.__import__(name, globals, locals, fromlist, level)

    module = types.ModuleType(f"{__name__}.threading")
    module.__file__ = spec.origin
    module.__dict__["__builtins__"] = dict(vars(builtins), __import__=import_real_thread)
    code = spec.loader.get_code("threading")  # type: ignore[attr-defined]
    exec(code, module.__dict__)
    replaced: dict[str, Callable[..., Any]] = {"excepthook": _forward_excepthook}
    if real_set_sentinel is not None:
        replaced["_set_sentinel"] = _sentinel_for(real_set_sentinel, real_thread.allocate_lock)
    vars(module).update(replaced)
    return module


def _sentinel_for(
    real_set_sentinel: Callable[[], Any], allocate_lock: Callable[[], Any]
) -> Callable[[], Any]:
    def _set_sentinel() -> Any:
        """The real sentinel in a thread that the copy started, a plain lock elsewhere."""
        if getattr(_bootstrapping, "active", False):
            return real_set_sentinel()
        return allocate_lock()

    return _set_sentinel


def _forward_excepthook(args: Any) -> None:
    """The copy's ``excepthook``: whatever ``threading.excepthook`` is at the time."""
    public = sys.modules.get("threading")
    hook = getattr(public, "excepthook", None)
    if hook is None or hook is _forward_excepthook:
        hook = original("_thread", "_excepthook")
    hook(args)


_bootstrapping = original("_thread", "_local")()
real_threading = _load_real_threading()
_RealThreadBase: Any = real_threading.Thread
_PatchedThreadBase: Any = sys.modules["threading"].Thread
_real_get_ident: Callable[[], int] = real_threading.get_ident
# Non-daemon threads started and not yet ended, joined at interpreter exit.
_non_daemon: set[Thread] = set()
_exit_hook_registered = False


def _public_threading() -> Any:
    return sys.modules.get("threading")


class Thread(_RealThreadBase, _PatchedThreadBase):  # type: ignore[misc]
    """``threading.Thread`` that really starts an OS thread, whatever is patched.

    Same constructor, attributes and methods as ``threading.Thread``; see the module doc
    for how it fits with green threads.
    """

    _greenwire_exited: Lock
    _greenwire_starter_hub: Hub | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._greenwire_exited = Lock()
        self._greenwire_exited.acquire()  # released by the thread as it ends

    def start(self) -> None:
        """Start the OS thread (once); wait until it runs, as ``threading`` does."""
        if self._started.is_set():
            super().start()  # raises the stdlib's error
            return
        hub = existing_hub()
        if hub is not None:
            hub.hold()  # the thread may wake this hub's greenlets: they are not stuck
            self._greenwire_starter_hub = hub
        if not self.daemon:
            _register_exit_hook()
            _non_daemon.add(self)
        try:
            super().start()
        except BaseException:
            self._greenwire_release_starter()
            _non_daemon.discard(self)
            raise

    def _bootstrap(self) -> None:
        _bootstrapping.active = True
        public = _public_threading()
        _inherit_thread_hooks()  # the patched threading's trace and profile hooks
        ident = _real_get_ident()
        active = getattr(public, "_active", None)
        if active is not None:
            active[ident] = self
        try:
            super()._bootstrap()
        finally:
            if active is not None and active.get(ident) is self:
                del active[ident]
            hub = existing_hub()
            if hub is not None:
                hub.destroy()
            _non_daemon.discard(self)
            self._greenwire_release_starter()
            self._greenwire_exited.release()

    def _greenwire_release_starter(self) -> None:
        hub, self._greenwire_starter_hub = self._greenwire_starter_hub, None
        if hub is not None and not hub.destroyed:
            hub.run_callback_threadsafe(hub.release)

    def join(self, timeout: float | None = None) -> None:
        """Wait until the thread ends, at most ``timeout`` seconds; cooperative in a hub.

        Raises:
            RuntimeError: the thread was not started, or it is the current thread.
        """
        if not self._started.is_set() or self.ident == _real_get_ident():
            super().join(timeout)  # raises the stdlib's errors
            return
        exited = self._greenwire_exited
        if timeout is None:
            exited.acquire()
        elif not exited.acquire(True, max(0.0, min(timeout, real_threading.TIMEOUT_MAX))):
            return
        exited.release()  # for the next joiner
        # The thread's last statements are done; the OS thread is a moment from its end.
        super().join()


def _register_exit_hook() -> None:
    global _exit_hook_registered
    if _exit_hook_registered:
        return
    register = getattr(_public_threading(), "_register_atexit", None)
    if register is None:  # pragma: no cover - every supported version has it
        return
    try:
        register(_join_non_daemon_threads)
    except RuntimeError:  # the interpreter is already shutting down
        return
    _exit_hook_registered = True


def _join_non_daemon_threads() -> None:
    """At exit: wait for the non-daemon real threads, cooperatively if there is a hub."""
    me = _real_get_ident()
    while True:
        pending = [t for t in list(_non_daemon) if t.ident != me]
        if not pending:
            return
        for thread in pending:
            thread.join()
