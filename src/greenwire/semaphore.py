"""Semaphores for greenlets, first come first served.

:class:`Semaphore` and :class:`BoundedSemaphore` follow gevent's (``timeout=None`` means
forever) and accept threading's ``release(n)``.

Fairness: waiters are served first come, first served, and a newcomer never overtakes the
queue: while anybody waits, ``acquire(blocking=False)`` fails and a blocking ``acquire()``
queues behind them, even if a permit was just released. That is what keeps a greenlet
that releases and re-acquires in a loop from starving the others.

A release counts the permit and, if nobody has been woken yet, schedules the head of the
queue's own ``switch`` as ONE hub callback: the hub resumes it directly, with no Python
frame in between, and the head takes its permit itself, then wakes the next in line if
permits remain. So data never travels through ``switch()``. A head that leaves by timeout
or kill (its ``finally`` removes it from the queue) leaves the permit in the counter and
hands the wake-up to the new head; the wake-up scheduled for it may then reach it once,
spuriously, wherever it parks next, which every primitive tolerates.

Semaphores are for the greenlets of one OS thread (their waiters are woken through one
hub); across threads, use ``threading``'s under patching, which are built on
:class:`~greenwire.lock.Lock`.
"""

from __future__ import annotations

from collections import deque
from types import TracebackType

from greenlet import getcurrent
from greenlet import greenlet as RawGreenlet

from greenwire._core import Hub
from greenwire.lock import _hub_to_park_in

__all__ = ["BoundedSemaphore", "Semaphore"]


class _FairPermits:
    """A permit counter with a FIFO queue of parked greenlets, for one OS thread."""

    __slots__ = ("_value", "_waiters", "_hub", "_woken")

    def __init__(self, value: int) -> None:
        self._value = value
        self._waiters: deque[RawGreenlet] = deque()
        self._hub: Hub | None = None
        # The queue head whose wake-up is scheduled, until it takes its turn or leaves.
        self._woken: RawGreenlet | None = None

    def _wake_head(self) -> None:
        """Schedule the head of the queue to take its turn, unless that is done."""
        if self._woken is None:
            g = self._woken = self._waiters[0]
            self._hub._callbacks.append((g.switch, ()))  # type: ignore[union-attr]

    def _block(self, timeout: float | None, take: bool) -> bool:
        """Queue and park until first in line with a permit available.

        Args:
            timeout: seconds, None for forever; <= 0 gives up at once.
            take: take the permit (acquire) or only wait for one to be available.

        Returns:
            True when served, False on timeout.
        """
        if timeout is not None and timeout <= 0:
            return False
        me = getcurrent()
        hub = self._hub
        if hub is None or me.parent is not hub:
            # A greenlet spawned by greenwire has the hub as its parent: that check
            # is cheaper than get_hub().
            mine = _hub_to_park_in(me)
            if hub is not None and self._waiters and hub.thread_ident != mine.thread_ident:
                raise RuntimeError(
                    f"a {type(self).__name__} is for the greenlets of one OS thread, and "
                    "greenlets of another thread wait on this one; share a threading "
                    "(patched) or greenwire Lock across threads instead"
                )
            hub = self._hub = mine
        waiters = self._waiters
        waiters.append(me)
        timer = None if timeout is None else hub.call_later(timeout, me.switch)
        try:
            while not (self._value > 0 and waiters[0] is me):
                if timer is not None and not timer.active:
                    self._withdraw(me)
                    return False
                hub.switch()
        except BaseException:
            self._withdraw(me)
            raise
        finally:
            if timer is not None:
                timer.cancel()
        waiters.popleft()
        self._woken = None
        if take:
            self._value -= 1
        if self._value > 0 and waiters:
            self._wake_head()
        return True

    def _withdraw(self, me: RawGreenlet) -> None:
        """Leave the queue early (timeout, kill); the next in line gets the turn."""
        try:
            self._waiters.remove(me)
        except ValueError:
            pass
        if self._woken is me:
            self._woken = None
        if self._value > 0 and self._waiters:
            self._wake_head()

    def _reset(self, value: int) -> None:
        self._value = value
        self._waiters = deque()
        self._hub = None
        self._woken = None

    def locked(self) -> bool:
        """True if ``acquire(blocking=False)`` would fail right now.

        That includes a permit already promised to a queued greenlet.
        """
        return self._value <= 0 or bool(self._waiters)


class Semaphore(_FairPermits):
    """A counter of permits; ``acquire()`` blocks while it is zero (gevent's API).

    Args:
        value: the initial number of permits.
    """

    __slots__ = ()

    def __init__(self, value: int = 1) -> None:
        if value < 0:
            raise ValueError("semaphore initial value must be >= 0")
        super().__init__(value)

    @property
    def value(self) -> int:
        """Permits available (some may be promised to queued greenlets)."""
        return self._value

    counter = value

    def acquire(self, blocking: bool = True, timeout: float | None = None) -> bool:
        """Take a permit, waiting at most ``timeout`` seconds (None: forever).

        Returns:
            True if a permit was taken, False on timeout or if not ``blocking``.

        Raises:
            ValueError: a timeout was given with ``blocking=False`` (as threading).
        """
        if not blocking and timeout is not None:
            raise ValueError("can't specify timeout for non-blocking acquire")
        if self._value > 0 and not self._waiters:
            self._value -= 1
            return True
        if not blocking:
            return False
        return self._block(timeout, True)

    def release(self, n: int = 1) -> None:
        """Return ``n`` permits, waking as many waiters."""
        if n != 1 and n < 1:
            raise ValueError("n must be one or more")
        self._value += n
        if self._waiters:
            self._wake_head()

    def wait(self, timeout: float | None = None) -> int:
        """Wait until a permit is available without taking it (gevent's API).

        Returns:
            The number of permits available then; 0 if ``timeout`` passed first.
        """
        if self._value > 0 and not self._waiters:
            return self._value
        self._block(timeout, False)
        return self._value

    __enter__ = acquire

    def __exit__(
        self,
        typ: type[BaseException] | None,
        value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # release(), inlined: it is half of what a ``with`` block costs.
        self._value += 1
        if self._waiters:
            self._wake_head()

    def _at_fork_reinit(self) -> None:
        self._reset(self._value)

    def __repr__(self) -> str:
        cls = type(self)
        return (
            f"<{cls.__module__}.{cls.__qualname__} at {id(self):#x}: value={self._value}"
            f" waiters={len(self._waiters)}>"
        )


class BoundedSemaphore(Semaphore):
    """A semaphore that refuses to be released above its initial value."""

    __slots__ = ("_initial_value",)

    def __init__(self, value: int = 1) -> None:
        super().__init__(value)
        self._initial_value = value

    def release(self, n: int = 1) -> None:
        """Return ``n`` permits.

        Raises:
            ValueError: that would exceed the initial value.
        """
        if n != 1 and n < 1:
            raise ValueError("n must be one or more")
        if self._value + n > self._initial_value:
            raise ValueError("Semaphore released too many times")
        self._value += n
        if self._waiters:
            self._wake_head()

    def __exit__(
        self,
        typ: type[BaseException] | None,
        value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()
