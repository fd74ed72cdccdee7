"""A pool of real OS threads for blocking calls that cannot be made cooperative.

Some work blocks in C and cannot yield to the hub: ``getaddrinfo`` in libc, reads and writes
on regular files (epoll refuses them), CPU-heavy extension calls. The pool runs such calls in
real threads while the hub keeps serving every other greenlet.

Theory of operation
-------------------
The pool is built only on the thread primitives captured in :mod:`._originals`, so it keeps
working however ``threading`` and ``queue`` are patched later. One state lock guards a deque
of pending calls, a list of idle workers and the counters. Each worker owns a *wake lock*
that it holds while working; to idle, it puts that lock on the idle list and blocks trying to
acquire it again. :meth:`ThreadPool.submit` appends the call, then either pops one idle worker
and releases its wake lock (waking exactly one thread), or starts a new thread if fewer than
``maxsize`` exist. Idle workers are reused last-in first-out, so surplus threads stay idle
long enough to time out and exit. A worker whose idle wait times out retires only if it is
still on the idle list; if a submitter popped it in that instant, the release is already made
and the worker consumes it and looks for work.

The outcome of a call travels back as a hub callback: the worker calls
``hub.run_callback_threadsafe`` on the *submitting* thread's hub, which appends to the hub's
ready queue and pokes its eventfd, and the hub, in its own thread, publishes the outcome and
switches to the greenlets waiting for it (see :mod:`.threadresult`). The hub is never
blocked by the pool. ``hub.hold()`` at submit and ``hub.release()`` at delivery tell the hub
that work is in flight, so it does not declare that its waiters would block forever. A
worker counts and sends a finished call under the state lock, before it can retire, so that
whoever sees a result, or sees the threads gone, also sees the call counted and delivered.

Shutting down closes the pool, wakes the idle workers so they exit once the queue is empty,
and waits: cooperatively when called from a greenlet (each retiring thread wakes the
waiters through their hub), then briefly in the OS for each thread's exit lock, released as
the thread's last act.
"""

from __future__ import annotations

import os
import sys
import weakref
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

from greenlet import getcurrent
from greenlet import greenlet as RawGreenlet

from greenwire._core import _originals
from greenwire._core.errors import HubBlockingError
from greenwire._core.hub import Hub, _get_hub_or_none, get_hub
from greenwire._core.threadresult import ThreadResult

if TYPE_CHECKING:
    from _thread import LockType

P = ParamSpec("P")
T = TypeVar("T")
A = TypeVar("A")

__all__ = [
    "ThreadPool",
    "ThreadPoolClosed",
    "ThreadPoolStatistics",
    "ThreadResult",
    "get_threadpool",
    "run_in_thread",
]

#: Size of a pool created without arguments, and of the per-hub pool unless
#: ``GREENWIRE_THREADPOOL_SIZE`` says otherwise.
DEFAULT_SIZE = 10
#: Seconds an idle worker waits for work before its thread exits.
DEFAULT_IDLE_TIMEOUT = 5.0
#: How long destroying a hub waits for the threads of its default pool.
DESTROY_JOIN_TIMEOUT = 5.0

_all_pools: weakref.WeakSet[ThreadPool] = weakref.WeakSet()
# One token per worker thread alive in all pools, put and taken from inside each thread
# (so never more than ``_thread._count()`` includes): ``list.append`` and ``list.pop``
# are atomic, so counting needs no lock.
_workers_alive: list[None] = []
# Set in each worker thread: which pool it serves, and the lock it releases when it exits.
_worker_tls = _originals.thread_local()


class ThreadPoolClosed(RuntimeError):
    """The pool was shut down: it refuses new calls, and cancelled calls fail with this."""


@dataclass(frozen=True)
class ThreadPoolStatistics:
    """A snapshot of a :class:`ThreadPool`.

    Attributes:
        threads: worker threads alive (busy or idle).
        idle: of those, how many wait for work.
        queued: calls submitted and not yet picked up by a thread.
        completed: calls that ran to an end (returned or raised) since the pool was made.
    """

    threads: int
    idle: int
    queued: int
    completed: int


class _ExitWaiter:
    """A greenlet of some hub waiting cooperatively for worker threads to exit."""

    __slots__ = ("hub", "greenlet", "active")

    def __init__(self, hub: Hub, greenlet: RawGreenlet) -> None:
        self.hub = hub
        self.greenlet = greenlet
        self.active = True

    def wake(self) -> None:
        if self.active:  # runs in the waiter's hub: switching directly is allowed
            self.greenlet.switch()


def _inherit_thread_hooks() -> None:
    """Install the hooks of ``threading.settrace`` / ``setprofile`` in a worker thread.

    Threads started by ``threading`` get them, and debuggers, profilers and coverage rely
    on it; pool threads are started below ``threading`` and must do it themselves. The
    module is only looked up, never imported.
    """
    threading_module = sys.modules.get("threading")
    if threading_module is None:
        return
    trace = getattr(threading_module, "_trace_hook", None)
    if trace is not None:
        sys.settrace(trace)
    profile = getattr(threading_module, "_profile_hook", None)
    if profile is not None:
        sys.setprofile(profile)


def _check_size(maxsize: int) -> None:
    if not isinstance(maxsize, int) or maxsize < 1:
        raise ValueError(f"a thread pool needs at least one thread, not {maxsize!r}")


class ThreadPool:
    """Run blocking calls in up to ``maxsize`` real OS threads; greenlets wait cooperatively.

    Args:
        maxsize: the most threads alive at once (at least 1). Threads start on demand.
        idle_timeout: seconds an idle thread waits for work before it exits; None keeps
            idle threads until :meth:`shutdown`.

    A pool may be shared by several OS threads: each result is delivered to the hub of the
    thread that submitted it. Used as a context manager, the pool is shut down (waiting for
    its threads) when the block ends.
    """

    def __init__(
        self, maxsize: int = DEFAULT_SIZE, idle_timeout: float | None = DEFAULT_IDLE_TIMEOUT
    ) -> None:
        _check_size(maxsize)
        self._maxsize = maxsize
        self._idle_timeout = -1.0 if idle_timeout is None else max(0.0, idle_timeout)
        self._lock = _originals.allocate_lock()
        self._pending: deque[ThreadResult[Any]] = deque()
        self._idle: list[LockType] = []
        self._threads = 0
        self._completed = 0
        self._closed = False
        # One lock per started thread, released by the thread as its last act; joined
        # (or pruned once released) later.
        self._exit_locks: list[LockType] = []
        self._exit_waiters: list[_ExitWaiter] = []
        _all_pools.add(self)

    # ---------------------------------------------------------------- calls

    def submit(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> ThreadResult[T]:
        """Start ``fn(*args, **kwargs)`` in a thread; return its :class:`ThreadResult`.

        Raises:
            ThreadPoolClosed: the pool is shut down.
        """
        return self._submit(get_hub(), fn, args, kwargs)

    #: gevent's name for :meth:`submit`.
    spawn = submit

    def _submit(
        self, hub: Hub, fn: Callable[..., T], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> ThreadResult[T]:
        result = ThreadResult(hub, fn, args, kwargs)
        new_thread = None
        with self._lock:
            if self._closed:
                raise ThreadPoolClosed("the thread pool is shut down")
            self._pending.append(result)
            if self._idle:
                self._idle.pop().release()
            elif self._threads < self._maxsize:
                new_thread = self._reserve_thread_locked()
        if new_thread is not None:
            self._launch(new_thread, result)
        # The outcome is delivered by a hub callback, so never before this greenlet yields.
        hub.hold()
        return result

    def apply(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Run ``fn(*args, **kwargs)`` in a thread, blocking only the current greenlet.

        Called from a pool thread (of any pool), the call runs inline: that thread may
        block, and queueing the call behind its caller could deadlock a full pool.

        Returns:
            What ``fn`` returned; what it raised is re-raised here.
        """
        if getattr(_worker_tls, "pool", None) is not None:
            return fn(*args, **kwargs)
        hub = get_hub()
        if getcurrent() is hub:
            raise HubBlockingError("cannot wait for a thread inside the hub (callback or timer)")
        return self._submit(hub, fn, args, kwargs).get()

    def map(self, fn: Callable[[A], T], iterable: Iterable[A]) -> list[T]:
        """Call ``fn`` on every item, in parallel threads; return the results in order.

        Raises:
            The first exception (in item order) that a call raised.
        """
        hub = get_hub()
        results = [self._submit(hub, fn, (item,), {}) for item in iterable]
        for r in results:  # map() will look at every outcome: failures are not reported
            r._consumers += 1
        try:
            return [r.get() for r in results]
        finally:
            for r in results:
                r._consumers -= 1

    # -------------------------------------------------------------- threads

    def _reserve_thread_locked(self) -> tuple[LockType, LockType]:
        self._threads += 1
        wake = _originals.allocate_lock()
        wake.acquire()
        exited = _originals.allocate_lock()
        exited.acquire()
        exit_locks = self._exit_locks
        if len(exit_locks) > self._maxsize:  # forget threads that exited while idle
            exit_locks[:] = [lock for lock in exit_locks if lock.locked()]
        exit_locks.append(exited)
        return wake, exited

    def _launch(self, locks: tuple[LockType, LockType], result: ThreadResult[Any] | None) -> None:
        try:
            _originals.start_new_thread(self._worker, locks)
        except BaseException:
            with self._lock:
                self._threads -= 1
                self._exit_locks.remove(locks[1])
                stranded = False
                if result is not None and not self._threads and result in self._pending:
                    self._pending.remove(result)
                    stranded = True
            if stranded:  # no thread will ever run it: fail the submit
                raise
            # Otherwise the running threads will get to the call: keep going.

    def _worker(self, wake: LockType, exited: LockType) -> None:
        _workers_alive.append(None)
        try:
            # The hooks apply to frames entered after they are set: install them first.
            _inherit_thread_hooks()
            try:
                self._work(wake, exited)
            finally:
                exited.release()
        finally:
            _workers_alive.pop()

    def _work(self, wake: LockType, exited: LockType) -> None:
        _worker_tls.pool = self
        _worker_tls.exited = exited
        retired = False
        try:
            while True:
                item = self._next_item(wake)
                if item is None:
                    retired = True
                    return
                item._run()
                with self._lock:
                    # Counted and sent in one step, before this thread can retire, so that
                    # whoever sees the result (or the threads gone) sees it counted.
                    self._completed += 1
                    item._send(False)
                item = None  # do not keep the call's objects alive while idle
        finally:
            if not retired:  # only a bug in the pool itself can get here
                with self._lock:
                    self._retire_locked()
            # A call may have made a hub in this thread (to wait for something): close it.
            hub = _get_hub_or_none()
            if hub is not None:
                hub.destroy()

    def _next_item(self, wake: LockType) -> ThreadResult[Any] | None:
        """Take the next call to run, idling for one; None means the thread must exit."""
        lock = self._lock
        pending = self._pending
        while True:
            with lock:
                if self._threads > self._maxsize or (self._closed and not pending):
                    self._retire_locked()
                    return None
                if pending:
                    return pending.popleft()
                self._idle.append(wake)
            if wake.acquire(True, self._idle_timeout):
                continue
            with lock:
                if wake in self._idle:
                    self._idle.remove(wake)
                    self._retire_locked()
                    return None
            # A submitter picked this thread as the wait timed out; its release is made.
            wake.acquire()

    def _retire_locked(self) -> None:
        self._threads -= 1
        for waiter in self._exit_waiters:
            if not waiter.hub.destroyed:
                waiter.hub.run_callback_threadsafe(waiter.wake)

    # ------------------------------------------------------------- shutdown

    def shutdown(
        self, wait: bool = True, cancel_pending: bool = False, timeout: float | None = None
    ) -> bool:
        """Refuse new calls and let the threads exit once the queue is empty.

        Args:
            wait: wait for the threads to exit; from a greenlet the wait is cooperative
                (the hub keeps serving the others).
            cancel_pending: calls not started yet fail with :class:`ThreadPoolClosed`
                instead of running.
            timeout: stop waiting after this many seconds (None: as long as the calls
                take). Threads still running then exit when their call returns.

        Returns:
            True if every thread has exited.
        """
        with self._lock:
            self._closed = True
            cancelled = list(self._pending) if cancel_pending else []
            if cancel_pending:
                self._pending.clear()
            idle = self._idle
            while idle:
                idle.pop().release()
        for result in cancelled:
            result._exception = ThreadPoolClosed(
                "the thread pool was shut down before this call started"
            )
            result._send(True)
        if not wait:
            return not self._threads
        return self._join(timeout)

    def _join(self, timeout: float | None) -> bool:
        deadline = None if timeout is None else _originals.monotonic() + timeout
        # A call running in one of our threads cannot wait for its own thread to exit.
        own_exit = getattr(_worker_tls, "exited", None)
        if getattr(_worker_tls, "pool", None) is not self:
            own_exit = None
        keep = 0 if own_exit is None else 1
        hub = _get_hub_or_none()
        if (
            hub is not None
            and not hub.destroyed
            and getcurrent() is not hub
            and not self._wait_cooperatively(hub, keep, timeout)
        ):
            return False
        # Every thread has retired (or we cannot park); wait for their last statements.
        with self._lock:
            exit_locks = [lock for lock in self._exit_locks if lock is not own_exit]
        for lock in exit_locks:
            if deadline is None:
                lock.acquire()
            elif not lock.acquire(True, max(0.0, deadline - _originals.monotonic())):
                return False
            with self._lock:
                if lock in self._exit_locks:
                    self._exit_locks.remove(lock)
            lock.release()  # another joiner may be waiting for the same thread
        return True

    def _wait_cooperatively(self, hub: Hub, keep: int, timeout: float | None) -> bool:
        waiter = _ExitWaiter(hub, getcurrent())
        with self._lock:
            if self._threads <= keep:
                return True
            self._exit_waiters.append(waiter)
        deadline = None if timeout is None else hub.now() + timeout
        hub.hold()  # the exiting threads will call back: not a LoopExit
        try:
            while self._threads > keep:
                if not hub.park_until(deadline):
                    return self._threads <= keep
        finally:
            waiter.active = False
            with self._lock:
                self._exit_waiters.remove(waiter)
            hub.release()
        return True

    def __enter__(self) -> ThreadPool:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.shutdown(wait=True)

    def _reset_after_fork(self) -> None:  # pragma: no cover - runs in forked children
        # Only the forking thread survives in the child: no worker exists any more, and the
        # state lock may have been held by one at the moment of the fork.
        self._lock = _originals.allocate_lock()
        self._pending.clear()
        self._idle = []
        self._threads = 0
        self._exit_locks = []
        self._exit_waiters = []

    # ---------------------------------------------------------- inspection

    @property
    def size(self) -> int:
        """How many worker threads are alive now."""
        return self._threads

    @property
    def maxsize(self) -> int:
        """The most threads alive at once; lowering it retires surplus threads when idle."""
        return self._maxsize

    @maxsize.setter
    def maxsize(self, value: int) -> None:
        _check_size(value)
        launches = []
        with self._lock:
            self._maxsize = value
            surplus = self._threads - value
            while surplus > 0 and self._idle:
                self._idle.pop().release()  # it will see the surplus and exit
                surplus -= 1
            if not self._closed:
                for _ in range(min(len(self._pending), value - self._threads)):
                    launches.append(self._reserve_thread_locked())
        for locks in launches:
            self._launch(locks, None)

    @property
    def closed(self) -> bool:
        """True once :meth:`shutdown` was called."""
        return self._closed

    def statistics(self) -> ThreadPoolStatistics:
        """A consistent snapshot of the pool's threads and queue."""
        with self._lock:
            return ThreadPoolStatistics(
                threads=self._threads,
                idle=len(self._idle),
                queued=len(self._pending),
                completed=self._completed,
            )

    def __repr__(self) -> str:
        state = " closed" if self._closed else ""
        return (
            f"<ThreadPool threads={self._threads}/{self._maxsize} idle={len(self._idle)}"
            f" queued={len(self._pending)}{state}>"
        )


def _reset_pools_after_fork() -> None:  # pragma: no cover - runs in forked children
    # Only the forking thread goes on in the child: it may be a worker itself.
    _workers_alive[:] = [None] if getattr(_worker_tls, "pool", None) is not None else []
    for pool in list(_all_pools):
        pool._reset_after_fork()


def worker_threads_alive() -> int:
    """How many worker threads of all pools are alive (busy or idle).

    They are an implementation detail: the green ``_thread._count()`` leaves them out.
    """
    return len(_workers_alive)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_pools_after_fork)


# ------------------------------------------------------------ per-hub default pool


def _size_from_env() -> int:
    raw = os.environ.get("GREENWIRE_THREADPOOL_SIZE", "").strip()
    if not raw:
        return DEFAULT_SIZE
    try:
        size = int(raw)
    except ValueError:
        size = 0
    if size < 1:
        raise ValueError(f"GREENWIRE_THREADPOOL_SIZE must be a positive integer, not {raw!r}")
    return size


def get_threadpool() -> ThreadPool:
    """The current thread's default pool, made on first use (again if it was shut down).

    Its size is ``GREENWIRE_THREADPOOL_SIZE`` (default 10); it is shut down, waiting a few
    seconds at most for its threads, when the hub is destroyed.
    """
    hub = get_hub()
    pool: ThreadPool | None = getattr(hub, "_threadpool", None)
    if pool is None or pool.closed:
        pool = ThreadPool(_size_from_env())
        if not hasattr(hub, "_threadpool"):
            hub.add_destroy_hook(_shutdown_default_pool)
        # The Hub class does not declare the attribute: it is this module's business.
        setattr(hub, "_threadpool", pool)  # noqa: B010
    return pool


def run_in_thread(fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
    """Run ``fn(*args, **kwargs)`` in the current hub's default pool; return its value.

    Only the calling greenlet blocks, and what ``fn`` raises is re-raised. In a pool thread
    the call runs inline.
    """
    if getattr(_worker_tls, "pool", None) is not None:
        return fn(*args, **kwargs)
    return get_threadpool().apply(fn, *args, **kwargs)


def _shutdown_default_pool(hub: Hub) -> None:
    pool: ThreadPool | None = getattr(hub, "_threadpool", None)
    if pool is not None:
        setattr(hub, "_threadpool", None)  # noqa: B010
        pool.shutdown(wait=True, cancel_pending=True, timeout=DESTROY_JOIN_TIMEOUT)
