"""Condition variables for greenlets, with the exact behaviour of ``threading.Condition``.

Waiters are notified first come, first served. A Condition is for the greenlets of one OS
thread (its waiters are woken through one hub); across threads, use ``threading``'s under
patching, which is built on :class:`~greenwire.lock.Lock`.
"""

from __future__ import annotations

import warnings
from collections import deque
from collections.abc import Callable
from typing import Any

from greenlet import getcurrent
from greenlet import greenlet as RawGreenlet

from greenwire._core import Hub, get_hub
from greenwire.lock import RLock, _hub_to_park_in

__all__ = ["Condition"]


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
