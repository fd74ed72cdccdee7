"""``threading.Event`` under the patch: the same behaviour, without a Condition inside.

The stdlib's ``Event`` is a flag guarded by ``Condition(Lock())``: making one builds a
lock, a condition and its waiter deque, and ``set()``, ``wait()`` and ``clear()`` each
take the condition's lock. Every ``threading.Thread`` makes one (``_started``) and sets
and waits on it once, so under the patch, where a thread is a greenlet, that machinery is
a sizeable part of what starting a thread costs. This Event keeps only what is needed:

* the flag, read and written without a lock (a read or a store of one attribute is atomic);
* a deque of waiter locks, one per blocked ``wait()``, made only when a waiter has to
  block. The waiter is a :class:`greenwire.lock.Lock`, locked while it sits in the deque:
  ``set()`` releases it, which wakes a greenlet of any OS thread (or an OS thread that
  has no hub) exactly as a lock release does.

Why no wake-up is lost, across OS threads too: ``set()`` stores the flag *before* it
empties the deque, and ``wait()`` looks at the flag again *after* it queued. Whatever the
interleaving, either ``set()`` finds the waiter in the deque or the waiter sees the flag.
A waiter that ``set()`` released returns True even if ``clear()`` ran before it woke, as
``threading.Event`` promises (gh-57711). A waiter leaving early (timeout, an exception)
takes itself out of the deque; if it is no longer there, ``set()`` got to it first and it
returns True.

``_cond`` exists only for code that reaches into the stdlib's private attribute (CPython's
own tests do): it is a ``Condition`` made on first use, not what the Event waits on.
"""

from __future__ import annotations

import threading as _stdlib_threading
import warnings
from collections import deque
from typing import Any

from greenwire.lock import Lock

__all__ = ["Event"]


class Event:
    """A flag that threads (green or not) wait to see set, as :class:`threading.Event`."""

    def __init__(self) -> None:
        self._flag = False
        self._waiters: deque[Lock] = deque()

    def __repr__(self) -> str:
        cls = type(self)
        module = "threading" if cls is Event else cls.__module__
        status = "set" if self._flag else "unset"
        return f"<{module}.{cls.__qualname__} at {id(self):#x}: {status}>"

    def is_set(self) -> bool:
        """True if the flag is set."""
        return self._flag

    def isSet(self) -> bool:  # noqa: N802 - the stdlib's deprecated name
        """Deprecated alias of :meth:`is_set`."""
        warnings.warn("isSet() is deprecated, use is_set() instead", DeprecationWarning, 2)
        return self._flag

    def set(self) -> None:
        """Set the flag and wake every waiter."""
        self._flag = True
        waiters = self._waiters
        while waiters:
            try:
                waiter = waiters.popleft()
            except IndexError:  # another OS thread emptied it since the test
                return
            waiter.release()

    def clear(self) -> None:
        """Reset the flag: later :meth:`wait` calls block until :meth:`set`."""
        self._flag = False

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the flag is set, or ``timeout`` seconds pass.

        Returns:
            True if the flag was set (even if cleared again before the waiter woke),
            False on timeout.
        """
        if self._flag:
            return True
        if timeout is not None and timeout <= 0:
            return False
        waiter = Lock()
        waiter.acquire()
        waiters = self._waiters
        waiters.append(waiter)
        if self._flag:  # set as we queued
            self._withdraw(waiter)
            return True
        try:
            if timeout is None:
                waiter.acquire()
                return True
            if waiter.acquire(True, timeout):
                return True
        except BaseException:
            self._withdraw(waiter)
            raise
        # Timed out; unless set() took the waiter out of the deque meanwhile.
        return not self._withdraw(waiter)

    def _withdraw(self, waiter: Lock) -> bool:
        """Take ``waiter`` out of the deque; False if ``set()`` already had."""
        try:
            self._waiters.remove(waiter)
        except ValueError:
            return False
        return True

    @property
    def _cond(self) -> Any:
        """A ``threading.Condition`` for code that reaches for the stdlib's private one."""
        cond = self.__dict__.get("_private_cond")
        if cond is None:
            cond = self.__dict__.setdefault(
                "_private_cond", _stdlib_threading.Condition(_stdlib_threading.Lock())
            )
        return cond

    def _at_fork_reinit(self) -> None:
        """In a forked child: forget the waiters (the threads are gone), keep the flag."""
        self._waiters = deque()
        cond = self.__dict__.get("_private_cond")
        if cond is not None:
            cond._at_fork_reinit()
