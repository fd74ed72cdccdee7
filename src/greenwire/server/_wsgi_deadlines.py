"""Timing out idle and slow clients without a timer per read.

Every wait of a connection on its client (for the next request, for the rest of a
request head, for body bytes, for the client to take the response) has a deadline. The
obvious way to enforce it, a socket timeout, arms and cancels a hub timer on every
blocking ``recv`` and takes the socket's slower exception-raising path; that is a
noticeable share of a small keep-alive request. Instead each connection just stores its
current deadline (one clock read per wait), and one :class:`DeadlineWatch` per handler
looks at all of them from a single repeating hub timer, a few times per shortest
timeout. A connection past its deadline is shut down (``shutdown(SHUT_RDWR)``, not
closed: the handler greenlet still owns the socket), so its parked read returns end of
file, or its write fails, and the handler unwinds through its normal path, knowing from
``timed_out`` why. The timer exists only while connections do, so an idle server keeps
no timer armed and tests see no stray work.

The price is precision: a deadline is noticed up to one check interval late.
"""

from __future__ import annotations

import socket
from typing import Protocol

from greenwire._core import Hub, Timer, get_hub

_MIN_INTERVAL = 0.05
_MAX_INTERVAL = 1.0


class Watched(Protocol):
    """What the watch needs from a connection."""

    deadline: float

    def expire(self) -> None:
        """The deadline passed: stop waiting on the client."""


class DeadlineWatch:
    """Checks the deadlines of a set of connections from one repeating hub timer."""

    __slots__ = ("interval", "_connections", "_timer", "_hub")

    def __init__(self, shortest_timeout: float) -> None:
        self.interval = min(max(shortest_timeout / 4, _MIN_INTERVAL), _MAX_INTERVAL)
        self._connections: set[Watched] = set()
        self._timer: Timer | None = None
        self._hub: Hub | None = None

    def add(self, connection: Watched) -> None:
        """Start watching ``connection`` (from the thread of the hub that runs it)."""
        self._connections.add(connection)
        if self._timer is None:
            hub = self._hub = get_hub()
            self._timer = hub.call_later(self.interval, self._check)

    def discard(self, connection: Watched) -> None:
        """Stop watching ``connection``; the timer stops with the last one."""
        self._connections.discard(connection)
        if not self._connections and self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def __len__(self) -> int:
        return len(self._connections)

    def _check(self) -> None:
        """Expire the overdue connections and look again later (runs in the hub)."""
        hub = self._hub
        if hub is None or hub.destroyed:
            self._timer = None
            return
        now = hub.now()
        overdue = [c for c in self._connections if c.deadline <= now]
        for connection in overdue:
            connection.deadline = float("inf")
            try:
                connection.expire()
            except Exception as exc:  # never let one connection stop the checks
                hub.handle_error(connection, exc)
        if self._connections:
            self._timer = hub.call_later(self.interval, self._check)
        else:
            self._timer = None


def shut_down(sock: socket.socket, last_words: bytes = b"") -> None:
    """Send ``last_words`` if the socket takes them at once, then shut it down both ways.

    Runs inside the hub, so it must never wait: the send is ``MSG_DONTWAIT``.
    """
    if last_words:
        try:
            sock.send(last_words, socket.MSG_DONTWAIT)
        except (OSError, ValueError):  # ValueError: a TLS socket takes no flags
            pass
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
