"""Helpers shared by the tests of the green waiting functions (select, selectors, sleep)."""

from __future__ import annotations

from collections.abc import Callable

import greenwire
from greenwire._core import Hub


def later(seconds: float, fn: Callable[..., object], *args: object) -> greenwire.Greenlet[None]:
    """Run ``fn(*args)`` in a greenlet after ``seconds`` of (virtual) time."""

    def run() -> None:
        greenwire.sleep(seconds)
        fn(*args)

    return greenwire.spawn(run)


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
