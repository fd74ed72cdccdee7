"""Helpers shared by the thread pool tests: real-thread events and concurrency counters.

Threads in these tests block on real locks (the originals, never patched) that the test
releases; steps are ordered with those locks, never with sleeps.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

from greenwire._core import _originals, get_hub

REAL_WAIT = 10.0  # seconds a thread waits on a test lock before giving up (never reached)


class RealEvent:
    """A one-shot event on an original lock: threads block in the OS, not in greenwire."""

    def __init__(self) -> None:
        self._lock = _originals.allocate_lock()
        self._lock.acquire()

    def set(self) -> None:
        if self._lock.locked():
            self._lock.release()

    def wait(self) -> bool:
        if not self._lock.acquire(True, REAL_WAIT):
            return False
        self._lock.release()
        return True


class Concurrency:
    """Counts calls running at once, under a real lock; signals when ``target`` are in."""

    def __init__(self, target: int) -> None:
        self._lock = _originals.allocate_lock()
        self.running = 0
        self.peak = 0
        self.target = target
        self.all_in = RealEvent()

    def __enter__(self) -> None:
        with self._lock:
            self.running += 1
            self.peak = max(self.peak, self.running)
            if self.running >= self.target:
                self.all_in.set()

    def __exit__(self, *exc: object) -> None:
        with self._lock:
            self.running -= 1


def thread_count() -> int:
    """OS threads of this process, as the kernel sees them."""
    return len(os.listdir("/proc/self/task"))


@contextmanager
def no_threads_left() -> Iterator[None]:
    """Fail if the block leaves more OS threads than it found (default pool shut first)."""
    before = thread_count()
    yield
    default = getattr(get_hub(), "_threadpool", None)
    if default is not None:
        assert default.shutdown(cancel_pending=True, timeout=REAL_WAIT)
    # Joined threads have run their last Python statement; give the OS a moment to reap.
    deadline = _originals.monotonic() + REAL_WAIT
    while thread_count() > before and _originals.monotonic() < deadline:
        _originals.real_sleep(0.001)
    assert thread_count() <= before, "worker threads left running"
