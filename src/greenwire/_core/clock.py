"""The hub's notion of time, read through one small interface.

Production code runs on :class:`MonotonicClock`. Tests install a :class:`VirtualClock`
with ``get_hub().set_clock(...)``: whenever every greenlet is blocked and the only thing
left to wait for is a timer, the hub jumps the virtual time straight to that timer instead
of sleeping, so timing logic is tested exactly and instantly.
"""

from __future__ import annotations

from typing import Protocol

from greenwire._core import _originals


class Clock(Protocol):
    """What the hub needs from a clock."""

    virtual: bool

    def now(self) -> float:
        """Current time in seconds on this clock's own scale."""
        ...


class MonotonicClock:
    """The real clock: ``time.monotonic``."""

    virtual = False

    def __init__(self) -> None:
        self.now = _originals.monotonic

    def __repr__(self) -> str:
        return "<MonotonicClock>"


class VirtualClock:
    """A clock that only moves when told to, or when the hub has nothing else to do.

    Args:
        start: the initial reading.
        autojump_threshold: how long (real seconds) the hub waits for real I/O before
            jumping virtual time to the next timer. 0 jumps as soon as everything blocks.
    """

    virtual = True

    def __init__(self, start: float = 0.0, autojump_threshold: float = 0.0) -> None:
        self._now = float(start)
        self.autojump_threshold = autojump_threshold

    def now(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        """Move the clock forward by ``seconds`` (never backwards)."""
        if seconds < 0:
            raise ValueError("a clock cannot go backwards")
        self._now += seconds

    def jump_to(self, when: float) -> None:
        """Move the clock to ``when`` if that is in the future."""
        if when > self._now:
            self._now = when

    def __repr__(self) -> str:
        return f"<VirtualClock now={self._now:.6f}>"
