"""Semaphores, locks and condition variables for greenlets.

:class:`Lock`, :class:`RLock` and :class:`Condition` follow :mod:`threading` exactly
(signatures, return values, errors) so that monkey patching can swap them in;
:class:`Semaphore` and :class:`BoundedSemaphore` follow gevent's (``timeout=None`` means
forever) and accept threading's ``release(n)``.

Fairness
--------
All of them are built on one FIFO queue of parked greenlets and a permit counter. A
greenlet may take a permit only when it is first in the queue, and a newcomer never
overtakes the queue: while anybody waits, ``acquire(blocking=False)`` fails and a
blocking ``acquire()`` queues behind them, even if a permit was just released. That is
what keeps a greenlet that releases and re-acquires in a loop from starving the others.

A release counts the permit and, if nobody has been woken yet, schedules the head of the
queue's own ``switch`` as ONE hub callback: the hub resumes it directly, with no Python
frame in between, and the head takes its permit itself, then wakes the next in line if
permits remain. So data never travels through ``switch()``. A head that leaves by
timeout or kill (its ``finally`` removes it from the queue) leaves the permit in the
counter and hands the wake-up to the new head; the wake-up scheduled for it may then
reach it once, spuriously, wherever it parks next, which every primitive tolerates.
"""

from __future__ import annotations

import warnings
from _thread import TIMEOUT_MAX
from collections import deque
from collections.abc import Callable
from types import TracebackType
from typing import Any

from greenlet import getcurrent
from greenlet import greenlet as RawGreenlet

from greenwire._core import Hub, HubBlockingError, get_hub

__all__ = ["BoundedSemaphore", "Condition", "Lock", "RLock", "Semaphore"]


def _check_lock_timeout(blocking: bool, timeout: float) -> None:
    """Reject the arguments ``threading.Lock.acquire`` rejects (timeout is not -1)."""
    if not blocking:
        raise ValueError("can't specify a timeout for a non-blocking call")
    if timeout < 0:
        raise ValueError("timeout value must be a non-negative number")
    if timeout > TIMEOUT_MAX:
        raise OverflowError("timeout value is too large")


def _hub_to_park_in(g: RawGreenlet) -> Hub:
    """The current thread's hub, refusing to park the hub itself."""
    hub = get_hub()
    if g is hub:
        raise HubBlockingError("cannot block inside the hub (in a callback or timer)")
    return hub


class _FairPermits:
    """A permit counter with a FIFO queue of parked greenlets (see the module doc)."""

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
            hub = self._hub = _hub_to_park_in(me)
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


class Lock(_FairPermits):
    """A mutex with the exact behaviour of :func:`threading.Lock`.

    Any greenlet may release it, like a thread lock.
    """

    __slots__ = ()

    def __init__(self) -> None:
        super().__init__(1)

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        """Lock it, waiting at most ``timeout`` seconds (-1: forever).

        Returns:
            True if locked, False on timeout or if not ``blocking``.

        Raises:
            ValueError: a timeout with ``blocking=False``, or a negative timeout.
        """
        if timeout != -1:
            _check_lock_timeout(blocking, timeout)
        if self._value and not self._waiters:
            self._value = 0
            return True
        if not blocking:
            return False
        return self._block(None if timeout == -1 else timeout, True)

    def release(self) -> None:
        """Unlock it.

        Raises:
            RuntimeError: it is not locked.
        """
        if self._value:
            raise RuntimeError("release unlocked lock")
        self._value = 1
        if self._waiters:
            self._wake_head()

    __enter__ = acquire

    def __exit__(
        self,
        typ: type[BaseException] | None,
        value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # release(), inlined: it is half of what a ``with`` block costs.
        if self._value:
            raise RuntimeError("release unlocked lock")
        self._value = 1
        if self._waiters:
            self._wake_head()

    acquire_lock = acquire
    release_lock = release

    def locked_lock(self) -> bool:
        """Old alias of :meth:`locked`."""
        return self.locked()

    def _at_fork_reinit(self) -> None:
        self._reset(1)

    def __repr__(self) -> str:
        cls = type(self)
        state = "locked" if self.locked() else "unlocked"
        return f"<{state} {cls.__module__}.{cls.__qualname__} object at {id(self):#x}>"


class RLock(_FairPermits):
    """A re-entrant lock owned by a greenlet, with the behaviour of ``threading.RLock``."""

    __slots__ = ("_owner", "_count")

    def __init__(self) -> None:
        super().__init__(1)
        self._owner: RawGreenlet | None = None
        self._count = 0

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        """Lock it or, if the current greenlet owns it, count one more level.

        Returns:
            True if acquired, False on timeout or if not ``blocking``.

        Raises:
            ValueError: a timeout with ``blocking=False``, or a negative timeout.
        """
        if timeout != -1:
            _check_lock_timeout(blocking, timeout)
        me = getcurrent()
        if self._owner is me:
            self._count += 1
            return True
        if self._value and not self._waiters:
            self._value = 0
        elif not blocking or not self._block(None if timeout == -1 else timeout, True):
            return False
        self._owner = me
        self._count = 1
        return True

    __enter__ = acquire

    def release(self) -> None:
        """Drop one level; unlock at the last.

        Raises:
            RuntimeError: the current greenlet does not own it.
        """
        if self._owner is not getcurrent():
            raise RuntimeError("cannot release un-acquired lock")
        self._count -= 1
        if not self._count:
            self._owner = None
            self._value = 1
            if self._waiters:
                self._wake_head()

    def __exit__(
        self,
        typ: type[BaseException] | None,
        value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # release(), inlined: it is half of what a ``with`` block costs.
        if self._owner is not getcurrent():
            raise RuntimeError("cannot release un-acquired lock")
        self._count -= 1
        if not self._count:
            self._owner = None
            self._value = 1
            if self._waiters:
                self._wake_head()

    def _is_owned(self) -> bool:
        return self._owner is getcurrent()

    def _release_save(self) -> tuple[int, RawGreenlet | None]:
        """Unlock completely, whatever the depth; return what restores it."""
        if not self._count:
            raise RuntimeError("cannot release un-acquired lock")
        state = (self._count, self._owner)
        self._count = 0
        self._owner = None
        self._value = 1
        if self._waiters:
            self._wake_head()
        return state

    def _acquire_restore(self, state: tuple[int, RawGreenlet | None]) -> None:
        """Lock again (blocking) and put back the depth and owner saved."""
        if self._value and not self._waiters:
            self._value = 0
        else:
            self._block(None, True)
        self._count, self._owner = state

    def _recursion_count(self) -> int:
        return self._count if self._owner is getcurrent() else 0

    def _at_fork_reinit(self) -> None:
        self._reset(1)
        self._owner = None
        self._count = 0

    def __repr__(self) -> str:
        cls = type(self)
        state = "locked" if self._count else "unlocked"
        return (
            f"<{state} {cls.__module__}.{cls.__qualname__} object owner={self._owner!r}"
            f" count={self._count} at {id(self):#x}>"
        )


class _CondWaiter:
    """One greenlet's wait on a Condition."""

    __slots__ = ("greenlet", "notified", "parked")

    def __init__(self, greenlet: RawGreenlet) -> None:
        self.greenlet = greenlet
        self.notified = False
        self.parked = True


def _wake_cond_waiter(waiter: _CondWaiter) -> None:
    # Runs in the hub. A waiter that already left (its timer fired just after the
    # notify) is busy elsewhere and must not be resumed.
    if waiter.parked:
        waiter.greenlet.switch()


class Condition:
    """A condition variable with the exact behaviour of ``threading.Condition``.

    Args:
        lock: the lock it works with (an :class:`RLock` if None); any object with
            ``acquire`` and ``release`` works, RLock's ``_release_save``,
            ``_acquire_restore`` and ``_is_owned`` are used when present.
    """

    acquire: Callable[..., bool]
    release: Callable[[], None]
    _release_save: Callable[[], Any]
    _acquire_restore: Callable[[Any], None]
    _is_owned: Callable[[], bool]

    def __init__(self, lock: Any = None) -> None:
        if lock is None:
            lock = RLock()
        self._lock = lock
        self.acquire = lock.acquire
        self.release = lock.release
        self._release_save = getattr(lock, "_release_save", self._plain_release_save)
        self._acquire_restore = getattr(lock, "_acquire_restore", self._plain_acquire_restore)
        self._is_owned = getattr(lock, "_is_owned", self._plain_is_owned)
        self._waiters: deque[_CondWaiter] = deque()
        self._hub: Hub | None = None

    def _plain_release_save(self) -> None:
        self._lock.release()

    def _plain_acquire_restore(self, state: Any) -> None:
        self._lock.acquire()

    def _plain_is_owned(self) -> bool:
        # A lock without an owner: if we can take it, nobody (so not us) held it.
        if self._lock.acquire(False):
            self._lock.release()
            return False
        return True

    def __enter__(self) -> Any:
        return self._lock.__enter__()

    def __exit__(self, *args: Any) -> Any:
        return self._lock.__exit__(*args)

    def wait(self, timeout: float | None = None) -> bool:
        """Release the lock, wait for a notify (at most ``timeout``), re-acquire.

        Returns:
            True if notified, False on timeout.

        Raises:
            RuntimeError: the lock is not held by the current greenlet.
        """
        if not self._is_owned():
            raise RuntimeError("cannot wait on un-acquired lock")
        me = getcurrent()
        hub = self._hub = _hub_to_park_in(me)
        waiter = _CondWaiter(me)
        self._waiters.append(waiter)
        saved_state = self._release_save()
        gotit = False
        try:
            gotit = self._park(hub, waiter, timeout)
            return gotit
        finally:
            # Settle our place in the queue before re-acquiring: that may block, and
            # be interrupted in its turn.
            waiter.parked = False
            if not gotit:
                if waiter.notified:
                    # Killed after a notify chose us: hand the wake-up to the next
                    # waiter rather than lose it.
                    self._notify_waiters(1)
                else:
                    try:
                        self._waiters.remove(waiter)
                    except ValueError:
                        pass
            self._acquire_restore(saved_state)

    @staticmethod
    def _park(hub: Hub, waiter: _CondWaiter, timeout: float | None) -> bool:
        if timeout is None:
            while not waiter.notified:
                hub.switch()
            return True
        if timeout <= 0:
            return waiter.notified
        timer = hub.call_later(timeout, waiter.greenlet.switch)
        try:
            while not waiter.notified:
                if not timer.active:
                    return False
                hub.switch()
            return True
        finally:
            timer.cancel()

    def wait_for(self, predicate: Callable[[], Any], timeout: float | None = None) -> Any:
        """Wait until ``predicate()`` is true, at most ``timeout`` seconds.

        Returns:
            The last value of ``predicate()`` (falsy on timeout).
        """
        endtime = None
        waittime = timeout
        result = predicate()
        while not result:
            if waittime is not None:
                if endtime is None:
                    endtime = get_hub().now() + waittime
                else:
                    waittime = endtime - get_hub().now()
                    if waittime <= 0:
                        break
            self.wait(waittime)
            result = predicate()
        return result

    def notify(self, n: int = 1) -> None:
        """Wake at most ``n`` waiting greenlets, first come first served.

        Raises:
            RuntimeError: the lock is not held by the current greenlet.
        """
        if not self._is_owned():
            raise RuntimeError("cannot notify on un-acquired lock")
        self._notify_waiters(n)

    def _notify_waiters(self, n: int) -> None:
        waiters = self._waiters
        if not waiters:
            return
        hub = self._hub
        assert hub is not None  # set by the waiters
        callbacks = hub._callbacks
        while waiters and n > 0:
            waiter = waiters.popleft()
            waiter.notified = True
            callbacks.append((_wake_cond_waiter, (waiter,)))
            n -= 1

    def notify_all(self) -> None:
        """Wake every waiting greenlet."""
        self.notify(len(self._waiters))

    def notifyAll(self) -> None:  # noqa: N802 - threading's old name
        """Deprecated alias of :meth:`notify_all`, as in :mod:`threading`."""
        warnings.warn(
            "notifyAll() is deprecated, use notify_all() instead",
            DeprecationWarning,
            stacklevel=2,
        )
        self.notify_all()

    def _at_fork_reinit(self) -> None:
        self._lock._at_fork_reinit()
        self._waiters.clear()
        self._hub = None

    def __repr__(self) -> str:
        return f"<Condition({self._lock}, {len(self._waiters)})>"
