"""Helpers shared by the tests of the green waiting functions (select, selectors, sleep)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import greenwire
from greenwire._core import Hub
from greenwire.green import socket as green_socket

T = TypeVar("T")


def later(seconds: float, fn: Callable[..., object], *args: object) -> greenwire.Greenlet[None]:
    """Run ``fn(*args)`` in a greenlet after ``seconds`` of (virtual) time."""

    def run() -> None:
        greenwire.sleep(seconds)
        fn(*args)

    return greenwire.spawn(run)


def call_as_io_arrives(call: Callable[[], T]) -> tuple[T, greenwire.Greenlet[bytes]]:
    """Park a reader, send it a byte, then ``call``; return the result and the reader.

    For calls that find something ready at once (``serve_forever``'s loop under load):
    the turn they take must include the greenlets whose I/O became ready meanwhile, so
    the reader is expected to be done by the time ``call`` returns.
    """
    c, d = green_socket.socketpair()
    reader = greenwire.spawn(d.recv, 10)
    try:
        greenwire.sleep(0)  # the reader runs and parks on d
        c.send(b"x")
        return call(), reader
    finally:
        if not reader.ready():
            reader.kill()
        c.close()
        d.close()


def no_fds_left(hub: Hub) -> bool:
    """Whether the hub has no file descriptor registered and nobody waiting on one."""
    stats = hub.statistics()
    return stats.fds == 0 and stats.io_waiters == 0


class Index:
    """An object that is an integer only through ``__index__`` (like numpy ints)."""

    def __init__(self, value: int) -> None:
        self.value = value

    def __index__(self) -> int:
        return self.value


class FloatSub(float):
    """A subclass of ``float``: accepted wherever a float is."""
