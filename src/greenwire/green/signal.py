"""A ``signal`` whose Python handlers run as the main thread, and which shares SIGCHLD.

Where a handler runs
--------------------
CPython runs a Python-level signal handler in the main thread, between two bytecodes;
what the handler raises (``KeyboardInterrupt`` from the default SIGINT handler...) is
raised there, and ``threading.get_ident()`` inside it is the main thread's. With threads
as greenlets, "between two bytecodes of the main thread" is between two bytecodes of
whichever greenlet runs at that moment: a green thread, the hub polling, or the main
greenlet. So every Python handler installed through this module (and, when ``signal``
is patched, every one installed before) is wrapped to restore the stdlib's meaning:

* in the main greenlet it is simply called: the stdlib's case, exactly;
* in another greenlet it runs in that greenlet, with :func:`threading.get_ident` (and so
  ``current_thread()``) reporting the main thread while it runs; an exception it raises
  (``Exception``, ``KeyboardInterrupt``, ``SystemExit``) is thrown into the main greenlet
  at once, and the interrupted greenlet resumes after the main one parks, as if the
  signal had never reached it; cancellations thrown into that greenlet while the handler
  blocks (``GreenletExit``, ``Timeout``) stay its own;
* in the hub it is not run inside the hub's loop (where it could not block, and where
  CPython would resume the interrupted ``epoll_wait`` after it, with the ready queue
  changed behind the poll's back): it is queued with the hub's signal-safe wake-up and
  runs from the ready queue, in a greenlet of its own, as above.

``signal()`` and ``getsignal()`` hand back the program's own handler, never the wrapper.
A handler installed through the original ``signal.signal`` (captured before patching) is
not wrapped: it runs in whatever greenlet is current, and what it raises inside the hub
still reaches the main greenlet (the hub throws it there).

SIGCHLD
-------
Greenwire may install a SIGCHLD handler of its own to wake greenlets waiting for child
processes (see :mod:`greenwire._core.children`). This module keeps that invisible:
``signal(SIGCHLD, handler)`` makes ``handler`` the program's handler, which greenwire's
calls after waking its waiters; ``SIG_IGN`` is installed for real (the kernel then reaps
children itself, exactly as the program asked) and ``SIG_DFL`` means "nothing but
greenwire's wake-ups"; ``getsignal(SIGCHLD)`` returns what the program set (or what was
there before greenwire installed its handler), never greenwire's handler.

The two functions present themselves as the ``signal`` module's (``__module__``), as the
stdlib's own Python wrappers of ``_signal`` do.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from types import FrameType
from typing import Any

from greenlet import GreenletExit, getcurrent
from greenlet import greenlet as RawGreenlet

from greenwire._core import Hub, Timeout, children, get_hub
from greenwire.green import thread as _green_thread
from greenwire.green._registry import original

__target__ = "signal"
__implements__ = ["signal", "getsignal"]

__all__ = ["getsignal", "signal"]

_Handler = Callable[[int, FrameType | None], Any] | int | None

_stdlib_signal = importlib.import_module("signal")
_real_signal: Callable[[int, Any], Any] = original("signal", "signal")
_real_getsignal: Callable[[int], Any] = original("signal", "getsignal")
_SIGCHLD: int | None = getattr(_stdlib_signal, "SIGCHLD", None)


class _MainThreadHandler:
    """What is really installed for a Python handler: it runs as the main thread."""

    __slots__ = ("handler",)

    def __init__(self, handler: Callable[[int, FrameType | None], Any]) -> None:
        self.handler = handler

    def __call__(self, signum: int, frame: FrameType | None) -> Any:
        g = getcurrent()
        if g.parent is None:  # the main greenlet: the stdlib's case
            return self.handler(signum, frame)
        if isinstance(g, Hub):
            g.run_callback_from_signal(_start_handler_greenlet, self.handler, signum, frame)
            return None
        _run_as_main_thread(self.handler, signum, frame)
        return None

    def __repr__(self) -> str:
        return f"<greenwire signal handler for {self.handler!r}>"


def _start_handler_greenlet(
    handler: Callable[[int, FrameType | None], Any], signum: int, frame: FrameType | None
) -> None:
    """In the hub: run ``handler`` in a new greenlet, which may block."""
    runner = RawGreenlet(_run_as_main_thread, parent=getcurrent())
    runner.switch(handler, signum, frame)


def _run_as_main_thread(
    handler: Callable[[int, FrameType | None], Any], signum: int, frame: FrameType | None
) -> None:
    """Run ``handler`` here as the main thread would (see the module doc)."""
    failure: BaseException | None = None
    with _green_thread._as_main_thread():
        try:
            handler(signum, frame)
        except (GreenletExit, Timeout):
            raise  # thrown into this greenlet: its own
        except BaseException as exc:
            failure = exc
    if failure is not None:
        _throw_into_main_greenlet(failure)


def _throw_into_main_greenlet(exc: BaseException) -> None:
    """Raise ``exc`` in the main greenlet now; resume the current one after it parks."""
    me = getcurrent()
    main = me
    while main.parent is not None:
        main = main.parent
    if main.dead:  # the interpreter is finishing: nowhere else to raise it
        raise exc
    get_hub().run_callback(me.switch)
    main.throw(exc)


def _wrap(handler: _Handler) -> Any:
    if callable(handler) and not isinstance(handler, _MainThreadHandler):
        return _MainThreadHandler(handler)
    return handler


def _unwrap(handler: Any) -> _Handler:
    if isinstance(handler, _MainThreadHandler):
        return handler.handler
    result: _Handler = handler
    return result


def signal(signalnum: int, handler: _Handler, /) -> _Handler:
    """``signal.signal``; a Python handler runs as the main thread (see the module doc).

    Returns:
        The previous handler, as the program set it.
    """
    if _SIGCHLD is not None and signalnum == _SIGCHLD:
        return _unwrap(children.set_user_sigchld_handler(_wrap(handler)))
    return _unwrap(_real_signal(signalnum, _wrap(handler)))


def getsignal(signalnum: int, /) -> _Handler:
    """``signal.getsignal``; for SIGCHLD, the program's handler, never greenwire's."""
    if _SIGCHLD is not None and signalnum == _SIGCHLD:
        return _unwrap(children.get_user_sigchld_handler())
    return _unwrap(_real_getsignal(signalnum))


signal.__module__ = getsignal.__module__ = __target__


def __patch__() -> None:
    """Wrap the Python handlers installed before patching (SIGINT's, most often).

    Called by :mod:`greenwire.monkey` after it replaced ``signal`` and ``getsignal``.
    Only the main thread may set handlers: patching from another thread leaves them.
    """
    for signum in sorted(_stdlib_signal.valid_signals()):
        try:
            current = getsignal(signum)
            if callable(current):
                signal(signum, current)
        except ValueError:  # not the main thread
            return
        except OSError:
            continue


def __getattr__(name: str) -> Any:
    """The rest of the stdlib ``signal`` module."""
    return getattr(_stdlib_signal, name)
