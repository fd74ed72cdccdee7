"""Locks for greenlets, safe across OS threads.

:class:`Lock` and :class:`RLock` follow :mod:`threading` exactly (signatures, return
values, errors) so that monkey patching can swap them in. Semaphores live in
:mod:`greenwire.semaphore`, condition variables in :mod:`greenwire.condition`.

Fairness
--------
Both serve waiters first come, first served, and a newcomer never overtakes the queue:
while anybody waits, ``acquire(blocking=False)`` fails and a blocking ``acquire()`` queues
behind them, even if the lock was just released. That is what keeps a greenlet
that releases and re-acquires in a loop from starving the others.

Locks and OS threads
--------------------
Under monkey patching every ``threading`` lock is a :class:`Lock` or :class:`RLock`, and
one of them may be shared by a greenlet of the main thread and a real OS thread (a
thread-pool call, an original ``threading.Thread``, a C library's callback). So these two
are safe across OS threads, without slowing down the single-thread case:

* The lock *is* a one-element list: ``list.pop()`` takes the token and ``append`` puts it
  back, each one atomic. An uncontended acquire and release cost what the plain counter
  they replace cost, and no OS lock is made per lock.
* A release that finds waiters does not unlock: it hands the still-locked lock to the
  head of the queue (marks it granted, then wakes it). Nobody can overtake a handover,
  and the head owns the lock before it even runs.
* A waiter queues, then tries the token once more before it parks; a releaser that found
  nobody puts the token back, then looks at the queue once more. Whatever the
  interleaving of two OS threads, one of the two sees the other: no wake-up is lost.
* A waiter that leaves early (timeout, kill) removes itself from the queue. If it is no
  longer there, a releaser has just handed it the lock: it owns it, and passes it on if
  it is leaving because of an exception.
* The wake-up goes to the waiter's own hub: a plain callback in the releaser's thread,
  ``run_callback_threadsafe`` from any other. While it waits, the waiter holds its hub
  (no ``LoopExit``) if another OS thread may release the lock; in a single-threaded
  program a lock that can never be released still ends in ``LoopExit``.
* The main greenlet of an OS thread that has no hub (a pool worker, a real thread that
  never used a greenlet) does not make one: it blocks in the OS, on a private OS lock
  that the releaser releases.

:class:`~greenwire.semaphore.Semaphore` and :class:`~greenwire.condition.Condition` are
for the greenlets of one OS thread (their waiters are woken through one hub); across
threads, use ``threading``'s under patching, which are built on :class:`Lock`.
"""

from __future__ import annotations

import threading as _stdlib_threading
from _thread import TIMEOUT_MAX
from _thread import _count as _real_thread_count
from _thread import allocate_lock as _allocate_os_lock
from _thread import get_ident as _thread_ident
from collections import deque
from types import TracebackType
from typing import Any

from greenlet import getcurrent
from greenlet import greenlet as RawGreenlet

from greenwire._core import Hub, HubBlockingError, existing_hub, get_hub
from greenwire._core.threadpool import worker_threads_alive

# This module is imported before anything can be patched: these are the real ones.
_MAIN_THREAD_IDENT = _stdlib_threading.main_thread().ident

__all__ = ["Lock", "RLock"]


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


# A lock waiter is a list, the cheapest mutable record to make for every wait:
# [greenlet, its hub (None if it blocks in the OS), its OS lock (or None), state].
_GREENLET, _HUB, _OS_LOCK, _STATE = range(4)
# Its states: queued, handed the lock, gone (it returned or raised).
_QUEUED, _GRANTED, _GONE = range(3)
_LockWaiter = list[Any]


def _wake_parked(waiter: _LockWaiter) -> None:
    # Runs in the waiter's hub, sent from another OS thread. A waiter that left already
    # (its timeout fired as the lock was handed to it) is busy elsewhere: leave it be.
    if waiter[_STATE] == _GRANTED:
        waiter[_GREENLET].switch()


def _other_threads_may_release() -> bool:
    """True if an OS thread other than this one may release a lock this one waits for.

    In the main thread, only threads started through ``_thread`` (less greenwire's own pool
    workers, whose calls hold the submitting hub anyway) can. Anywhere else the main thread
    can. While this is false a lock wait may end in ``LoopExit``; while true it may not.
    """
    count = _real_thread_count()
    if not count:  # no thread was started: this is the main thread, alone
        return False
    return _thread_ident() != _MAIN_THREAD_IDENT or count > worker_threads_alive()


class _HandoffLock:
    """The thread-safe core of :class:`Lock` and :class:`RLock` (see the module doc)."""

    __slots__ = ("_free", "_waiters", "_granted")

    def __init__(self) -> None:
        # Holds one token while unlocked: ``list.pop`` and ``list.append`` are atomic.
        self._free: list[bool] = [True]
        self._waiters: deque[_LockWaiter] = deque()
        # The waiter the lock was last handed to, until it runs.
        self._granted: _LockWaiter | None = None

    def locked(self) -> bool:
        """True if ``acquire(blocking=False)`` would fail right now."""
        return not self._free

    def _take_token(self) -> bool:
        free = self._free
        if free:
            try:
                free.pop()
            except IndexError:  # another OS thread took it since the test
                return False
            return True
        return False

    def _release_token(self) -> None:
        """Hand the lock to the first waiter that can take it, or unlock it."""
        waiters = self._waiters
        free = self._free
        while True:
            while waiters:
                try:
                    waiter = waiters.popleft()
                except IndexError:  # a waiter withdrew since the test
                    break
                hub: Hub | None = waiter[_HUB]
                if hub is not None and hub.thread_ident == _thread_ident():
                    # The common case, inlined: a greenlet of this very thread.
                    self._granted = waiter
                    waiter[_STATE] = _GRANTED
                    hub._callbacks.append((waiter[_GREENLET].switch, ()))
                    return
                if self._grant(waiter):
                    return
            free.append(True)
            if not waiters:
                return
            # A waiter queued (from another OS thread) as the lock was freed; it retries
            # after queueing, so either it has the lock already or we take it back to
            # hand it over.
            if not self._take_token():
                return

    def _hand_over(self) -> None:
        """Just unlocked with waiters queued: lock again, unless taken, and hand it over."""
        if self._take_token():
            self._release_token()

    def _grant(self, waiter: _LockWaiter) -> bool:
        """Give the (still locked) lock to ``waiter`` and wake it; False if it cannot run."""
        hub: Hub | None = waiter[_HUB]
        if hub is None:
            self._granted = waiter
            waiter[_STATE] = _GRANTED
            waiter[_OS_LOCK].release()
        elif hub.thread_ident == _thread_ident():
            self._granted = waiter
            waiter[_STATE] = _GRANTED
            hub._callbacks.append((waiter[_GREENLET].switch, ()))
        elif hub.destroyed:  # its thread's loop is gone: it will never run again
            return False
        else:
            self._granted = waiter
            waiter[_STATE] = _GRANTED
            hub.run_callback_threadsafe(_wake_parked, waiter)
        return True

    def _withdraw(self, waiter: _LockWaiter) -> bool:
        """Leave the queue; False if the lock was handed to ``waiter`` meanwhile."""
        try:
            self._waiters.remove(waiter)
        except ValueError:
            return False
        return True

    def _leave(self, waiter: _LockWaiter, owned: bool) -> None:
        """Forget ``waiter``; if ``owned`` but leaving by an exception, pass the lock on."""
        waiter[_STATE] = _GONE
        if self._granted is waiter:
            self._granted = None
        if owned:
            self._release_token()

    def _block(self, timeout: float | None) -> bool:
        """Queue and wait until the lock is handed over; False on timeout.

        A greenlet parks in its hub; the main greenlet of an OS thread without a hub
        (other than the main thread) blocks in the OS instead of making one.
        """
        if timeout is not None and timeout <= 0:
            return False
        me = getcurrent()
        hub = me.parent
        if not isinstance(hub, Hub):
            hub = existing_hub()
            if hub is None:
                if _thread_ident() != _MAIN_THREAD_IDENT:
                    return self._block_in_os(me, timeout)
                hub = get_hub()
            elif me is hub:
                raise HubBlockingError("cannot block inside the hub (in a callback or timer)")
        waiter = [me, hub, None, _QUEUED]
        self._waiters.append(waiter)
        if self._free and self._take_token():  # freed as we queued (by another OS thread)
            self._withdraw(waiter)
            return True
        held = _other_threads_may_release()
        if held:
            hub.hold()
        timer = None if timeout is None else hub.call_later(timeout, me.switch)
        try:
            while waiter[_STATE] != _GRANTED:
                if timer is not None and not timer.active:
                    if self._withdraw(waiter):
                        waiter[_STATE] = _GONE
                        return False
                    break  # handed over as the timer fired: the lock is ours
                hub.switch()
        except BaseException:
            self._leave(waiter, not self._withdraw(waiter))
            raise
        finally:
            if timer is not None:
                timer.cancel()
            if held:
                hub.release()
        self._leave(waiter, False)
        return True

    def _block_in_os(self, me: RawGreenlet, timeout: float | None) -> bool:
        os_lock = _allocate_os_lock()
        os_lock.acquire()
        waiter = [me, None, os_lock, _QUEUED]
        self._waiters.append(waiter)
        if self._take_token():
            self._withdraw(waiter)
            return True
        try:
            got = os_lock.acquire(True, -1 if timeout is None else timeout)
        except BaseException:  # KeyboardInterrupt
            self._leave(waiter, not self._withdraw(waiter))
            raise
        if not got and self._withdraw(waiter):
            return False
        self._leave(waiter, False)
        return True

    def _reset(self) -> None:
        self._free = [True]
        self._waiters = deque()
        self._granted = None


class Lock(_HandoffLock):
    """A mutex with the exact behaviour of :func:`threading.Lock`, safe across OS threads.

    Any greenlet, in any OS thread, may release it, like a thread lock.
    """

    __slots__ = ()

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        """Lock it, waiting at most ``timeout`` seconds (-1: forever).

        Returns:
            True if locked, False on timeout or if not ``blocking``.

        Raises:
            ValueError: a timeout with ``blocking=False``, or a negative timeout.
        """
        if timeout != -1:
            _check_lock_timeout(blocking, timeout)
        free = self._free
        if free:
            try:
                free.pop()
                return True
            except IndexError:  # another OS thread took it since the test
                pass
        if not blocking:
            return False
        return self._block(None if timeout == -1 else timeout)

    def release(self) -> None:
        """Unlock it, or hand it to the first waiter.

        Raises:
            RuntimeError: it is not locked.
        """
        free = self._free
        if free:
            raise RuntimeError("release unlocked lock")
        free.append(True)
        if self._waiters:
            self._hand_over()

    __enter__ = acquire

    def __exit__(
        self,
        typ: type[BaseException] | None,
        value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # release(), inlined: it is half of what a ``with`` block costs.
        free = self._free
        if free:
            raise RuntimeError("release unlocked lock")
        free.append(True)
        if self._waiters:
            self._hand_over()

    acquire_lock = acquire
    release_lock = release

    def locked_lock(self) -> bool:
        """Old alias of :meth:`locked`."""
        return not self._free

    # ``threading.Condition`` looks these three up on its lock and, when they are missing,
    # falls back to its own versions, which do exactly this. Having them spares every
    # ``Condition(Lock())`` (one per ``Event``, so one per ``Thread``) three
    # ``AttributeError`` raised and caught.

    def _is_owned(self) -> bool:
        """Locked, by anybody: what ``Condition`` assumes of a plain lock."""
        return not self._free

    def _release_save(self) -> None:
        """``Condition.wait``'s release."""
        self.release()

    def _acquire_restore(self, state: None) -> None:
        """``Condition.wait``'s re-acquire."""
        self.acquire()

    def _at_fork_reinit(self) -> None:
        self._reset()

    def __repr__(self) -> str:
        cls = type(self)
        state = "locked" if self.locked() else "unlocked"
        return f"<{state} {cls.__module__}.{cls.__qualname__} object at {id(self):#x}>"


class RLock(_HandoffLock):
    """A re-entrant lock owned by a greenlet, with the behaviour of ``threading.RLock``.

    Safe across OS threads: the greenlets of several threads may contend for it.
    """

    __slots__ = ("_owner", "_count")

    def __init__(self) -> None:
        super().__init__()
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
        free = self._free
        if free:
            try:
                free.pop()
            except IndexError:  # another OS thread took it since the test
                pass
            else:
                self._owner = me
                self._count = 1
                return True
        if not blocking or not self._block(None if timeout == -1 else timeout):
            return False
        self._owner = me
        self._count = 1
        return True

    __enter__ = acquire

    def release(self) -> None:
        """Drop one level; unlock (or hand over) at the last.

        Raises:
            RuntimeError: the current greenlet does not own it.
        """
        if self._owner is not getcurrent():
            raise RuntimeError("cannot release un-acquired lock")
        self._count -= 1
        if not self._count:
            self._owner = None
            self._free.append(True)
            if self._waiters:
                self._hand_over()

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
            self._free.append(True)
            if self._waiters:
                self._hand_over()

    def _is_owned(self) -> bool:
        return self._owner is getcurrent()

    def _release_save(self) -> tuple[int, RawGreenlet | None]:
        """Unlock completely, whatever the depth; return what restores it."""
        if not self._count:
            raise RuntimeError("cannot release un-acquired lock")
        state = (self._count, self._owner)
        self._count = 0
        self._owner = None
        self._release_token()
        return state

    def _acquire_restore(self, state: tuple[int, RawGreenlet | None]) -> None:
        """Lock again (blocking) and put back the depth and owner saved."""
        if not self._take_token():
            self._block(None)
        self._count, self._owner = state

    def _recursion_count(self) -> int:
        return self._count if self._owner is getcurrent() else 0

    def _at_fork_reinit(self) -> None:
        self._reset()
        self._owner = None
        self._count = 0

    def __repr__(self) -> str:
        cls = type(self)
        state = "locked" if self._count else "unlocked"
        return (
            f"<{state} {cls.__module__}.{cls.__qualname__} object owner={self._owner!r}"
            f" count={self._count} at {id(self):#x}>"
        )
