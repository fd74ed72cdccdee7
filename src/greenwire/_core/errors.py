"""Exceptions raised by the core runtime."""

from __future__ import annotations

import errno


class LoopExit(RuntimeError):
    """Raised in the waiting greenlet when it would block forever.

    The hub raises it when every greenlet is parked and nothing can ever wake any of them:
    no ready callbacks, no timers, no file descriptor waits and no work running in other
    threads.
    """


WouldBlockForever = LoopExit


class HubBlockingError(RuntimeError):
    """Raised when code running inside the hub (a callback, a timer) tries to block."""


class ConcurrentWaitError(RuntimeError):
    """Raised when a second greenlet waits for the same direction on the same fd."""


class ClosedResourceError(OSError):
    """Raised in a greenlet whose file descriptor was closed while it waited on it."""

    def __init__(self, message: str = "file descriptor was closed while waiting on it"):
        super().__init__(errno.EBADF, message)
