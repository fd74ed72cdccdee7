"""A ``signal`` that shares SIGCHLD with greenwire's child waits.

Greenwire may install a SIGCHLD handler of its own to wake greenlets waiting for child
processes (see :mod:`greenwire._core.children`). This module keeps that invisible:

* ``signal(SIGCHLD, handler)`` makes ``handler`` the program's handler, which
  greenwire's calls after waking its waiters; ``SIG_IGN`` is installed for real (the
  kernel then reaps children itself, exactly as the program asked) and ``SIG_DFL``
  means "nothing but greenwire's wake-ups".
* ``getsignal(SIGCHLD)`` returns what the program set (or what was there before
  greenwire installed its handler), never greenwire's handler.

Every other signal passes straight to the stdlib. Handlers run as with the stdlib, in
the main thread between two bytecodes; an exception raised by one while the hub is
waiting (``KeyboardInterrupt`` from SIGINT...) is raised in the main greenlet.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from types import FrameType
from typing import Any

from greenwire._core import children
from greenwire.green._registry import original

__target__ = "signal"
__implements__ = ["signal", "getsignal"] if children.SIGCHLD_AVAILABLE else []

__all__ = ["getsignal", "signal"]

_Handler = Callable[[int, FrameType | None], Any] | int | None

_real_signal: Callable[[int, Any], Any] = original("signal", "signal")
_real_getsignal: Callable[[int], Any] = original("signal", "getsignal")
_SIGCHLD: int | None = getattr(importlib.import_module("signal"), "SIGCHLD", None)


def signal(signalnum: int, handler: _Handler, /) -> _Handler:
    """``signal.signal``, with SIGCHLD shared with greenwire (see the module doc).

    Returns:
        The previous handler, as the program set it.
    """
    if _SIGCHLD is not None and signalnum == _SIGCHLD:
        previous: _Handler = children.set_user_sigchld_handler(handler)
        return previous
    result: _Handler = _real_signal(signalnum, handler)
    return result


def getsignal(signalnum: int, /) -> _Handler:
    """``signal.getsignal``; for SIGCHLD, the program's handler, never greenwire's."""
    if _SIGCHLD is not None and signalnum == _SIGCHLD:
        handler: _Handler = children.get_user_sigchld_handler()
        return handler
    result: _Handler = _real_getsignal(signalnum)
    return result


def __getattr__(name: str) -> Any:
    """The rest of the stdlib ``signal`` module."""
    return getattr(importlib.import_module("signal"), name)
