"""Shared by the green ``select``, ``selectors`` and ``time``: waits and timeout checks.

Waiting on many fds at once
---------------------------
``select``, ``poll`` and selectors all follow the same plan: ask the kernel first with a
zero timeout (the real ``select`` / ``poll`` / ``epoll``, which also gives the exact
results and errors of the stdlib), and only when nothing is ready park the greenlet with
one hub observer per fd (:meth:`Hub.observe_fd`). An observer's event is a hint: the
greenlet wakes, asks the kernel again with a zero timeout, and parks again if the event
was a false alarm (another greenlet read the data first, a read edge also reported
"writable"...). No edge can slip between the zero-timeout look and the observers: no
greenlet switch happens in between, and the hub only polls after the caller has parked.

Taking turns
------------
A call that *may* wait (a timeout that is not zero) and finds something ready at once
lets the other greenlets run once (:func:`take_turn`) before it returns. Without that, a
loop such as ``while True: select(..., timeout)`` over an fd that is always ready (a
writable socket in an asyncore loop waiting for its peer's TLS handshake) never gives
the hub a chance to run anything else, and the peer it waits for -- a thread under real
threading, preempted in and out -- is a greenlet that never gets to send. The results are
those of the one look the call made (the stdlib makes one too, so ``fileno()`` methods
with side effects see the same calls); as with threads, another greenlet may act on an
fd before the caller does, which non-blocking code handles already. A call that finds
nothing ready parks at once, as before, and a zero timeout only looks.

The turn includes a non-blocking look at I/O by the hub (:meth:`Hub.park_one_turn`), not
only the ready greenlets (``sleep(0)``). ``socketserver``'s ``serve_forever`` is such a
loop: after each request it polls the listening socket, and under load the next
connection is already there. Had the turn skipped I/O, a burst of connections would be
accepted, and each handler run up to its first wait, before the hub saw any of their
sockets become ready; their calls to a backend would go out together and come back
together, and the server would idle while all of them wait, then serve them one after
the other (measured with ten clients and handlers that call a 5 ms backend: the server
half idle, each call about 5 ms slower than under threads).

Timeout values
--------------
The stdlib converts timeouts with CPython's ``_PyTime`` rules: a ``float`` (not NaN, in
range) or anything with ``__index__``; anything else is a ``TypeError`` whose wording
differs per function. Rather than imitate every message, :func:`as_number` only *accepts*
what is certainly valid; for anything else the caller hands the value to the original
function, which raises the exact error without blocking.
"""

from __future__ import annotations

import operator
from collections.abc import Iterable

from greenlet import getcurrent
from greenlet import greenlet as RawGreenlet

from greenwire._core import FdObserver, Hub

#: ``_PyTime_t`` counts nanoseconds in a signed 64-bit integer.
NS_LIMIT = 2**63


def as_number(value: object) -> float | int | None:
    """``value`` as a number if CPython's time conversion accepts its type, else None.

    NaN is refused (None) too; range checks are left to the caller.
    """
    if isinstance(value, float):
        return None if value != value else float(value)
    try:
        return operator.index(value)  # type: ignore[arg-type]
    except TypeError:
        return None


def seconds_in_range(number: float | int, unit_ns: int = 1_000_000_000) -> bool:
    """True if ``number`` (in units of ``unit_ns`` nanoseconds) fits a ``_PyTime_t``."""
    if isinstance(number, int):
        return -NS_LIMIT <= number * unit_ns < NS_LIMIT
    return -float(NS_LIMIT) < number * unit_ns < float(NS_LIMIT)


class _Waker:
    """Wakes one parked greenlet on the first observer event after it was armed.

    ``closed`` notes that ``notify_closing()`` dropped an observed fd (event mask 0).
    """

    __slots__ = ("greenlet", "armed", "closed")

    def __init__(self, greenlet: RawGreenlet) -> None:
        self.greenlet = greenlet
        self.armed = False
        self.closed = False

    def __call__(self, fd: int, events: int) -> None:
        # Runs in the hub: switching into the parked greenlet directly is allowed, and
        # disarming first makes later events of the same poll harmless.
        if events == 0:
            self.closed = True
        if self.armed:
            self.armed = False
            self.greenlet.switch()


def wait_any(hub: Hub, interests: Iterable[tuple[int, bool, bool]], deadline: float | None) -> bool:
    """Park until one of the fds may be ready, or until ``deadline`` (hub clock).

    ``interests`` are ``(fd, read, write)``. Call it only right after a zero-timeout look
    at the same fds found nothing (see the module docstring). A wake-up is a hint.

    Returns:
        False if the deadline passed, True otherwise.
    """
    waker = _Waker(getcurrent())
    observers: list[FdObserver] = []
    try:
        for fd, read, write in interests:
            observers.append(hub.observe_fd(fd, read, write, waker))
        waker.armed = True
        return hub.park_until(deadline)
    finally:
        waker.armed = False
        for obs in observers:
            obs.cancel()


def take_turn(hub: Hub) -> None:
    """Let the other ready greenlets, and the greenlets whose I/O is ready, run first.

    Does nothing inside the hub itself (a callback cannot yield).
    """
    if getcurrent() is not hub:
        hub.park_one_turn()
