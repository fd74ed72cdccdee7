"""Timers for the hub: a binary heap with lazy cancellation.

A timer is pushed as ``(when, sequence, timer)``; tuples compare in C, and the sequence
number keeps equal deadlines in scheduling order without ever comparing timer objects.
Cancelling only flips a flag: the entry stays in the heap and is skipped when it reaches
the top. When cancelled entries outnumber live ones (and there are enough of them to
matter) the heap is rebuilt without them, so a server that arms and cancels a timeout
per request does not grow the heap without bound.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from typing import Any

COMPACT_MIN = 256


class Timer:
    """A callback scheduled on the hub at an absolute time of the hub's clock."""

    __slots__ = ("when", "callback", "args", "active", "_heap")

    def __init__(
        self, heap: TimerHeap, when: float, callback: Callable[..., Any], args: tuple[Any, ...]
    ) -> None:
        self.when = when
        self.callback = callback
        self.args = args
        self.active = True
        self._heap = heap

    def cancel(self) -> None:
        """Stop the timer from firing; harmless if it already fired or was cancelled."""
        if self.active:
            self.active = False
            self._heap.note_cancelled()

    @property
    def pending(self) -> bool:
        """True until the timer fires or is cancelled."""
        return self.active

    def __repr__(self) -> str:
        state = "pending" if self.active else "done"
        return f"<Timer at={self.when:.6f} {state} {self.callback!r}>"


class TimerHeap:
    """The hub's timers, ordered by deadline."""

    __slots__ = ("entries", "cancelled", "_seq")

    def __init__(self) -> None:
        self.entries: list[tuple[float, int, Timer]] = []
        self.cancelled = 0
        self._seq = 0

    def schedule(self, when: float, callback: Callable[..., Any], args: tuple[Any, ...]) -> Timer:
        timer = Timer(self, when, callback, args)
        self._seq += 1
        heapq.heappush(self.entries, (when, self._seq, timer))
        return timer

    def note_cancelled(self) -> None:
        self.cancelled += 1
        if self.cancelled > COMPACT_MIN and self.cancelled * 2 > len(self.entries):
            self.entries = [e for e in self.entries if e[2].active]
            heapq.heapify(self.entries)
            self.cancelled = 0

    def __len__(self) -> int:
        """Number of live (not cancelled, not fired) timers."""
        return len(self.entries) - self.cancelled

    def next_deadline(self) -> float | None:
        """Deadline of the earliest live timer, dropping cancelled ones from the top."""
        entries = self.entries
        while entries:
            when, _, timer = entries[0]
            if timer.active:
                return when
            heapq.heappop(entries)
            self.cancelled -= 1
        return None

    def pop_due(self, now: float) -> Timer | None:
        """Remove and return the earliest live timer due at ``now``, or None."""
        entries = self.entries
        while entries and entries[0][0] <= now:
            timer = heapq.heappop(entries)[2]
            if timer.active:
                timer.active = False
                return timer
            self.cancelled -= 1
        return None
