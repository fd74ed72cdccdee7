"""The hub: one event-loop greenlet per OS thread.

Every greenlet that would block switches to the hub; the hub runs ready callbacks, fires
timers and polls the backend, and switches back into whichever greenlet can proceed.

How a wake-up travels
---------------------
A parked greenlet is always resumed *by the hub*, either directly (an I/O event or a timer
fires while the hub dispatches) or through the ready queue (``run_callback(g.switch)``,
used when the waker is itself a greenlet). Wake-ups are hints: a greenlet may be resumed
after the condition it waited for was taken by someone else, or by a stale callback, so
every blocking primitive re-checks its condition in a loop and data never travels through
``switch()`` arguments. That rule is what makes timeouts and kills safe to deliver at any
moment: the exception is thrown into the parked greenlet, its ``finally`` clause removes
its registration, and nothing that was handed to it is lost.

The loop
--------
1. Run ready callbacks until the queue is empty or the time budget (the interpreter's
   switch interval) is spent, firing due timers every few dozen callbacks. Draining instead of
   polling after every pass is what makes greenlet handoffs cheap; the budget is what keeps
   timers punctual behind ten thousand spawns.
2. Poll the backend: not at all long if callbacks remain, until the next timer otherwise,
   forever if only I/O waits remain. If nothing at all can wake anybody, throw
   :class:`LoopExit` into the thread's main greenlet instead of sleeping forever.
3. Wake I/O waiters straight from the event list, then fire due timers.
"""

from __future__ import annotations

import os
import sys
import traceback
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from greenlet import GreenletExit, getcurrent
from greenlet import greenlet as RawGreenlet

from greenwire._core import _originals
from greenwire._core.backends import Backend, default_backend
from greenwire._core.clock import Clock, MonotonicClock
from greenwire._core.errors import HubBlockingError, LoopExit
from greenwire._core.fdwaits import FdState, FdWaits
from greenwire._core.timers import Timer, TimerHeap

ErrorHandler = Callable[[object, BaseException], None]

#: How many callbacks run between two looks at the clock inside one pass.
_BUDGET_CHECK_EVERY = 64


@dataclass(frozen=True)
class HubStatistics:
    """A snapshot of the hub's queues, for monitoring and tests."""

    ready_callbacks: int
    timers: int
    fds: int
    io_waiters: int
    keepalive: int
    backend: str


def _print_error(context: object, exc: BaseException) -> None:
    """Default error handler: print the traceback and where it happened to stderr."""
    lines = traceback.format_exception(type(exc), exc, exc.__traceback__)
    sys.stderr.write("".join(lines))
    sys.stderr.write(f"{context!r} failed with {type(exc).__name__}\n\n")
    sys.stderr.flush()


def _root_greenlet() -> RawGreenlet:
    g = getcurrent()
    while g.parent is not None:
        g = g.parent
    return g


class Hub(FdWaits, RawGreenlet):
    """The event loop of one OS thread. Reach it with :func:`get_hub`."""

    def __init__(self, backend: Backend | None = None, clock: Clock | None = None) -> None:
        super().__init__(parent=_root_greenlet())
        self.thread_ident = _originals.get_ident()
        self.clock: Clock = clock if clock is not None else MonotonicClock()
        self.now: Callable[[], float] = self.clock.now
        self._backend: Backend = backend if backend is not None else default_backend()
        self._edge = self._backend.edge_triggered
        self._callbacks: deque[tuple[Callable[..., Any], tuple[Any, ...]]] = deque()
        self._timers = TimerHeap()
        self._fds: dict[int, FdState] = {}
        self._io_waiters = 0
        self._keepalive = 0
        self._idle_waiters: list[RawGreenlet] = []
        self.budget = sys.getswitchinterval()
        self.error_handler: ErrorHandler = _print_error
        self._destroyed = False
        self._destroy_hooks: list[Callable[[Hub], None]] = []
        self._wake_lock = _originals.allocate_lock()
        self._wake_r, self._wake_w = self._make_wakeup_fds()
        self._backend.register(self._wake_r)
        self._backend.watch(self._wake_r, True, False)

    # ----------------------------------------------------------------- callbacks

    def run_callback(self, callback: Callable[..., Any], *args: Any) -> None:
        """Run ``callback(*args)`` in the hub soon, after the callbacks already queued."""
        self._callbacks.append((callback, args))

    def run_callback_threadsafe(self, callback: Callable[..., Any], *args: Any) -> None:
        """Like :meth:`run_callback`, callable from any OS thread; wakes the hub."""
        self._callbacks.append((callback, args))
        if _originals.get_ident() != self.thread_ident:
            self._wakeup()

    def run_callback_from_signal(self, callback: Callable[..., Any], *args: Any) -> None:
        """Like :meth:`run_callback_threadsafe`, from a Python signal handler.

        The handler runs in the main thread, maybe while this hub polls in that same
        thread (CPython would retry the poll after the handler), so the wake-up fd is
        always written. The handler may also have interrupted a thread holding the wake
        lock: the lock is only tried, since its holder is waking the hub already (or
        destroying it).
        """
        self._callbacks.append((callback, args))
        self._wakeup(False)

    def call_later(self, delay: float, callback: Callable[..., Any], *args: Any) -> Timer:
        """Run ``callback(*args)`` in the hub after ``delay`` seconds of the hub's clock."""
        return self._timers.schedule(self.now() + delay, callback, args)

    def call_at(self, when: float, callback: Callable[..., Any], *args: Any) -> Timer:
        """Run ``callback(*args)`` in the hub when the hub's clock reaches ``when``."""
        return self._timers.schedule(when, callback, args)

    def hold(self) -> None:
        """Count work happening outside the hub (another thread) that will call back.

        While held, the hub never decides that its waiters would block forever.
        """
        self._keepalive += 1

    def release(self) -> None:
        """Undo one :meth:`hold`."""
        self._keepalive -= 1

    # ------------------------------------------------------------------ parking

    def park(self) -> None:
        """Switch to the hub until something switches back (a hint: re-check after)."""
        if getcurrent() is self:
            raise HubBlockingError("cannot block inside the hub (in a callback or timer)")
        self.switch()

    def park_until(self, deadline: float | None) -> bool:
        """Park the current greenlet until woken or until ``deadline``.

        Returns:
            False if the deadline passed, True if something else woke the greenlet.
        """
        g = getcurrent()
        if g is self:
            raise HubBlockingError("cannot block inside the hub (in a callback or timer)")
        if deadline is None:
            self.switch()
            return True
        timer = self._timers.schedule(deadline, g.switch, ())
        try:
            self.switch()
        finally:
            woken_early = timer.active
            timer.cancel()
        return woken_early

    def park_one_turn(self) -> None:
        """Let the ready greenlets run and the hub look at I/O once, then go on.

        Unlike ``sleep(0)``, which only queues the caller behind the ready callbacks, the
        caller resumes after a non-blocking poll whose I/O waiters have run first.
        """
        g = getcurrent()
        if g is self:
            raise HubBlockingError("cannot block inside the hub (in a callback or timer)")
        self._callbacks.append((self._poll_then_resume, (g,)))
        self.switch()

    # Why a turn includes a look at I/O. The loop polls only once the ready queue is
    # empty (or the budget is spent), so a greenlet that keeps yielding with sleep(0)
    # while it has work -- an accept loop whose select() finds the next connection
    # already waiting -- keeps I/O unread for as long as it has work, up to the budget.
    # In a server that means: a burst of connections is accepted and every handler runs
    # up to its first wait (say, a connect to a backend), and only then are the
    # backend connects seen to complete. All the requests then reach the backend
    # together, come back together and are finished one after the other: they move in
    # lockstep, the hub idles while they all wait on the backend, and each call pays
    # for the CPU work of all the others. Polling (without blocking) before the
    # yielder resumes lets I/O progress at the pace of the yielder's turns, as it does
    # under threads.
    def _poll_then_resume(self, g: RawGreenlet) -> None:
        events = self._poll(0.0)
        if events:
            self._dispatch(events)
        g.switch()

    def wait_idle(self) -> None:
        """Park until the hub has nothing else to run (no ready callbacks, no due I/O)."""
        g = getcurrent()
        if g is self:
            raise HubBlockingError("cannot block inside the hub (in a callback or timer)")
        self._idle_waiters.append(g)
        try:
            while g in self._idle_waiters:
                self.switch()
        finally:
            if g in self._idle_waiters:
                self._idle_waiters.remove(g)

    # ---------------------------------------------------------------- errors

    def handle_error(self, context: object, exc: BaseException) -> None:
        """Report an exception nobody else will see, through :attr:`error_handler`.

        KeyboardInterrupt and SystemExit are not reported but raised in the thread's
        main greenlet.
        """
        if isinstance(exc, (KeyboardInterrupt, SystemExit)):
            self.handle_system_error(exc)
            return
        try:
            self.error_handler(context, exc)
        except BaseException as handler_exc:  # the handler itself broke: say so
            _print_error(self.error_handler, handler_exc)
            _print_error(context, exc)

    def _raise_in_main(self, exc: BaseException) -> None:
        main = self.parent
        if main is None or main.dead:
            self.handle_error(self, exc)
        else:
            main.throw(exc)

    def handle_system_error(self, exc: BaseException) -> None:
        """Deliver KeyboardInterrupt / SystemExit to the thread's main greenlet."""
        if getcurrent() is self:
            main = self.parent
            if main is not None and not main.dead:
                main.throw(exc)
        else:
            self.raise_in_main_soon(exc)

    def raise_in_main_soon(self, exc: BaseException) -> None:
        """Throw ``exc`` into the thread's main greenlet from the ready queue (if it runs)."""
        main = self.parent
        if main is not None and not main.dead:
            self._callbacks.append((main.throw, (exc,)))

    # ------------------------------------------------------------------ the loop

    def run(self) -> None:
        callbacks = self._callbacks
        popleft = callbacks.popleft
        timers = self._timers
        while True:
            try:
                # 1. Ready callbacks until none are left or the budget is spent. The
                #    clock is read every _BUDGET_CHECK_EVERY callbacks, not per callback
                #    or per pass: handoffs between two greenlets are one callback each.
                if callbacks:
                    now = self.now
                    deadline = now() + self.budget
                    count = 0
                    while callbacks:
                        fn, args = popleft()
                        try:
                            fn(*args)
                        except GreenletExit:
                            raise  # thrown into the hub itself: destroy()
                        except BaseException as e:
                            self.handle_error(fn, e)
                        count += 1
                        if count == _BUDGET_CHECK_EVERY:
                            count = 0
                            t = now()
                            if timers.entries and timers.entries[0][0] <= t:
                                self._fire_timers(t)
                            if t >= deadline:
                                break
                # 2. How long may we poll?
                if callbacks:
                    timeout = 0.0
                else:
                    if self._idle_waiters and self._run_idle_waiters():
                        continue
                    next_at = timers.next_deadline()
                    if next_at is not None:
                        timeout = max(0.0, next_at - self.now())
                    elif self._io_waiters or self._keepalive:
                        timeout = -1.0
                    else:
                        self._throw_loop_exit()
                        continue
                events = self._poll(timeout)
                if events:
                    self._dispatch(events)
                if timers.entries:
                    self._fire_timers(self.now())
            except GreenletExit:
                return
            except BaseException as e:
                # A signal handler raised while the hub was polling: like CPython, raise
                # it in the main thread, i.e. the thread's main greenlet.
                self._raise_in_main(e)

    def _fire_timers(self, now: float) -> None:
        pop_due = self._timers.pop_due
        timer = pop_due(now)
        while timer is not None:
            try:
                timer.callback(*timer.args)
            except GreenletExit:
                raise
            except BaseException as e:
                self.handle_error(timer, e)
            timer = pop_due(now)

    def _poll(self, timeout: float) -> list[tuple[int, int]]:
        clock = self.clock
        if not clock.virtual or timeout <= 0.0:
            return self._backend.poll(timeout)
        # Virtual time: give real I/O a chance, then jump to the next timer.
        if self._keepalive:
            real_wait = timeout if timeout >= 0 else -1.0
        else:
            real_wait = getattr(clock, "autojump_threshold", 0.0)
        events = self._backend.poll(real_wait)
        if not events and timeout > 0:
            next_at = self._timers.next_deadline()
            jump_to = getattr(clock, "jump_to", None)
            if next_at is not None and jump_to is not None:
                jump_to(next_at)
        return events

    def _run_idle_waiters(self) -> bool:
        """Nothing is ready: serve pending I/O first, else wake the idle waiters.

        Returns True if it did anything (the loop should start over).
        """
        events = self._backend.poll(0.0)
        if events:
            self._dispatch(events)
            return True
        next_at = self._timers.next_deadline()
        if next_at is not None and next_at <= self.now():
            self._fire_timers(self.now())
            return True
        waiters, self._idle_waiters = self._idle_waiters, []
        for g in waiters:
            self._callbacks.append((g.switch, ()))
        return True

    def _throw_loop_exit(self) -> None:
        main = self.parent
        exc = LoopExit(
            "this operation would block forever: every greenlet is waiting and nothing "
            "(no timer, no I/O, no other thread) can wake any of them"
        )
        if main is None or main.dead:
            raise exc
        main.throw(exc)

    # ------------------------------------------------------------ cross-thread

    @staticmethod
    def _make_wakeup_fds() -> tuple[int, int]:
        if _originals.eventfd is not None:
            fd = _originals.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
            return fd, fd
        r, w = _originals.os_pipe()
        os.set_blocking(r, False)
        os.set_blocking(w, False)
        return r, w

    def _wakeup(self, wait_for_lock: bool = True) -> None:
        # The lock keeps destroy() from closing the fd (and the number from being reused
        # by an unrelated file) between the check and the write. A signal handler only
        # tries it (``wait_for_lock=False``): it may have interrupted the holder.
        if not self._wake_lock.acquire(wait_for_lock):
            return
        try:
            if not self._destroyed:
                _originals.os_write(self._wake_w, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        except OSError:
            pass  # already signalled: the counter or pipe is full
        finally:
            self._wake_lock.release()

    def _drain_wakeup(self) -> None:
        try:
            while _originals.os_read(self._wake_r, 4096):
                if self._wake_r == self._wake_w:
                    break
        except (BlockingIOError, OSError):
            pass

    # ----------------------------------------------------------------- lifecycle

    def set_clock(self, clock: Clock) -> None:
        """Install another clock; only while no timer is scheduled."""
        if len(self._timers):
            raise RuntimeError("cannot change the clock while timers are scheduled")
        self.clock = clock
        self.now = clock.now

    @property
    def backend_name(self) -> str:
        return self._backend.name

    def statistics(self) -> HubStatistics:
        """A snapshot of what the hub is tracking."""
        return HubStatistics(
            ready_callbacks=len(self._callbacks),
            timers=len(self._timers),
            fds=len(self._fds),
            io_waiters=self._io_waiters,
            keepalive=self._keepalive,
            backend=self._backend.name,
        )

    def add_destroy_hook(self, hook: Callable[[Hub], None]) -> None:
        """Call ``hook(hub)`` when the hub is destroyed (e.g. to shut down a thread pool)."""
        self._destroy_hooks.append(hook)

    def destroy(self) -> None:
        """Stop the hub and close its file descriptors; ``get_hub()`` then makes a new one.

        Must be called from outside the hub, in the hub's own thread.
        """
        if getcurrent() is self:
            raise HubBlockingError("the hub cannot destroy itself from inside its loop")
        if self._destroyed:
            return
        self._destroyed = True
        if _get_hub_or_none() is self:
            _tls.hub = None
        if self and not self.dead:
            self.throw(GreenletExit)
        hooks, self._destroy_hooks = self._destroy_hooks, []
        for hook in hooks:
            try:
                hook(self)
            except Exception as e:
                _print_error(hook, e)
        self._fds.clear()
        self._backend.close()
        with self._wake_lock:
            _originals.os_close(self._wake_r)
            if self._wake_w != self._wake_r:
                _originals.os_close(self._wake_w)

    @property
    def destroyed(self) -> bool:
        return self._destroyed

    def __repr__(self) -> str:
        return (
            f"<Hub thread={self.thread_ident} backend={self._backend.name}"
            f" callbacks={len(self._callbacks)} timers={len(self._timers)}"
            f" fds={len(self._fds)}>"
        )


_tls = _originals.thread_local()


def _get_hub_or_none() -> Hub | None:
    """The calling thread's hub if it has one; unlike ``get_hub()``, never makes one."""
    return getattr(_tls, "hub", None)


# Exported under this name for the layers above, without a wrapper frame on their wait
# paths.
existing_hub = _get_hub_or_none


def get_hub() -> Hub:
    """The current OS thread's hub, created on first use."""
    try:
        hub: Hub | None = _tls.hub
    except AttributeError:
        hub = None
    if hub is None:
        hub = _tls.hub = Hub()
    return hub


def set_hub(hub: Hub) -> None:
    """Install ``hub`` as the current thread's hub (the previous one is not destroyed)."""
    _tls.hub = hub


def _forget_hub_after_fork() -> None:
    # The child shares the parent's epoll instance and wake fd; it must not touch their
    # registrations. Close only its copies and start afresh on first use.
    hub = _get_hub_or_none()
    _tls.hub = None
    if hub is not None:
        _adopt_forking_greenlet(hub)
        hub._destroyed = True
        for fd in {hub._wake_r, hub._wake_w}:
            try:
                _originals.os_close(fd)
            except OSError:
                pass
        try:
            hub._backend.close()
        except OSError:
            pass


def _adopt_forking_greenlet(old: Hub) -> None:
    # Only the greenlet that forked goes on in the child. If it runs under the old hub
    # (a spawned greenlet, not the thread's main one), it would switch back into the old
    # hub's loop when it finishes, and that loop would resume the parent's other
    # greenlets. Give it a fresh hub as parent instead, and as the hub that its
    # completion (e.g. SystemExit) is reported to.
    g: RawGreenlet | None = getcurrent()
    if g is old:
        return
    while g is not None and g.parent is not None:
        if g.parent is old:
            new = get_hub()
            g.parent = new
            if getattr(g, "_hub", None) is old:
                g._hub = new  # type: ignore[attr-defined]  # greenwire.Greenlet's hub
            return
        g = g.parent


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_hub_after_fork)
