"""Waiting for child processes without blocking the hub.

Two ways to learn that a child changed state
--------------------------------------------
*A pidfd* (Linux 5.3 and later). ``os.pidfd_open(pid)`` gives a file descriptor that
polls readable once the process has exited, whoever reaps it. Waiting for one known
child is then an ordinary hub wait on that fd: no signal handler, nothing process-wide,
and no race, because epoll reports an fd that is already readable at the moment it is
registered. A pidfd says nothing about stopped or continued children, and there is none
for "any child" (``waitpid(-1)``, ``waitpid(0)``, process groups).

*SIGCHLD.* For everything a pidfd cannot do, and where pidfds are missing, waiters
register in a process-wide list and park; a Python-level SIGCHLD handler marks each
waiter and wakes its hub. Python runs signal handlers in the main thread between two
bytecodes, usually while the main thread's hub sits in ``epoll_wait``: CPython would
retry the poll after the handler, so the handler writes the hub's wake-up fd
(:meth:`Hub.run_callback_from_signal`). The handler is installed lazily, by the first
waiter that runs in the main thread, and only when the disposition is not ``SIG_IGN``
(ignoring SIGCHLD makes the kernel reap children itself, which must stay so). The
handler it replaces keeps being called: it is kept as the *user handler*, which the
green :mod:`signal` module reads and sets, so a program's own SIGCHLD handler, and what
``signal.getsignal`` returns, are unchanged. The handler is installed with
``SA_RESTART`` (``siginterrupt(SIGCHLD, False)``) so that C code in the main thread
sees as few ``EINTR`` as possible.

A signal can be missed (the handler replaced behind our back through the original
``signal.signal``, a waiter in another thread before any main-thread waiter installed
it, a wake-up lost to a lock held at the wrong instant), so every SIGCHLD waiter also
re-checks on a timer: every second while the handler is in place, and with a short
back-off (1 ms doubling to 50 ms, as the stdlib's own ``Popen.wait(timeout)`` polls)
while it is not.

Each waiter registers *before* looking at the child (``waitpid`` with ``WNOHANG``) and
parks only if no SIGCHLD arrived since it registered, so a child exiting between the
look and the park is never missed.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from typing import Any, TypeVar

from greenlet import getcurrent
from greenlet import greenlet as RawGreenlet

from greenwire._core import _originals
from greenwire._core.hub import Hub, get_hub

T = TypeVar("T")

__all__ = [
    "SIGCHLD_AVAILABLE",
    "get_user_sigchld_handler",
    "set_user_sigchld_handler",
    "sigchld_handler_installed",
    "uninstall_sigchld_handler",
    "wait_exit",
    "wait_for_sigchld",
]

#: Handlers as ``signal.signal`` / ``signal.getsignal`` see them.
Handler = Callable[[int, Any], Any] | int | signal.Handlers | None

SIGCHLD_AVAILABLE = hasattr(signal, "SIGCHLD")
_SIGCHLD: int = getattr(signal, "SIGCHLD", 0)
#: Seconds between re-checks while our SIGCHLD handler is installed.
_SAFETY_INTERVAL = 1.0
#: Back-off bounds while it is not (no signal will wake the waiter).
_POLL_MIN, _POLL_MAX = 0.001, 0.05

_real_signal = signal.signal
_real_getsignal = signal.getsignal
_real_siginterrupt = getattr(signal, "siginterrupt", None)
_real_waitid = getattr(os, "waitid", None)
_pidfd_open: Callable[[int], int] | None = getattr(os, "pidfd_open", None)


class _SigchldWaiter:
    """One greenlet waiting for SIGCHLD; ``signalled`` is set by the handler."""

    __slots__ = ("greenlet", "hub", "armed", "signalled")

    def __init__(self, greenlet: RawGreenlet, hub: Hub) -> None:
        self.greenlet = greenlet
        self.hub = hub
        self.armed = False
        self.signalled = False

    def wake(self) -> None:
        # Runs in the hub; switches only into a waiter that is still parked.
        if self.armed:
            self.armed = False
            self.greenlet.switch()


_waiters: set[_SigchldWaiter] = set()
_installed = False
_user_handler: Handler = None


def _on_sigchld(signum: int, frame: Any) -> None:
    """The real SIGCHLD handler: wake the waiters, then call the user's handler."""
    for waiter in tuple(_waiters):
        waiter.signalled = True
        if waiter.armed:
            waiter.hub.run_callback_from_signal(waiter.wake)
    user = _user_handler
    if callable(user):
        user(signum, frame)


def sigchld_handler_installed() -> bool:
    """True if greenwire's SIGCHLD handler is the process's handler right now."""
    global _installed
    if _installed and _real_getsignal(_SIGCHLD) is not _on_sigchld:
        _installed = False  # replaced through the original signal.signal
    return _installed


def _install_handler() -> bool:
    """Install the SIGCHLD handler if possible (main thread, not ignored)."""
    global _installed, _user_handler
    if not SIGCHLD_AVAILABLE:
        return False
    if sigchld_handler_installed():
        return True
    current = _real_getsignal(_SIGCHLD)
    if current == signal.SIG_IGN:
        return False
    _user_handler = current  # first: the handler may run as soon as it is installed
    try:
        _real_signal(_SIGCHLD, _on_sigchld)
    except ValueError:  # not the main thread: only it may set handlers
        return False
    if _real_siginterrupt is not None:
        _real_siginterrupt(_SIGCHLD, False)
    _installed = True
    return True


def uninstall_sigchld_handler() -> None:
    """Put the user handler back as the real SIGCHLD handler (main thread only).

    Waiters then fall back to re-checking on a timer until a waiter installs it again.
    """
    global _installed
    if sigchld_handler_installed():
        _real_signal(_SIGCHLD, _user_handler)
        _installed = False


def get_user_sigchld_handler() -> Handler:
    """What ``signal.getsignal(SIGCHLD)`` should say: the program's own handler."""
    if sigchld_handler_installed():
        return _user_handler
    return _real_getsignal(_SIGCHLD)


def set_user_sigchld_handler(handler: Handler) -> Handler:
    """``signal.signal(SIGCHLD, handler)`` keeping greenwire's handler in front of it.

    ``SIG_IGN`` is installed for real (the kernel then reaps children itself, as the
    program asked); anything else becomes the user handler called by ours, if ours is
    installed, or is installed as is otherwise.

    Returns:
        The previous user handler.

    Raises:
        TypeError: ``handler`` is not a callable, ``SIG_IGN`` or ``SIG_DFL``.
        ValueError: not called from the main thread.
    """
    global _installed, _user_handler
    if not sigchld_handler_installed():
        return _real_signal(_SIGCHLD, handler)
    if handler == signal.SIG_IGN:
        _real_signal(_SIGCHLD, handler)
        _installed = False
        previous, _user_handler = _user_handler, None
        return previous
    if not callable(handler) and handler != signal.SIG_DFL:
        raise TypeError(
            "signal handler must be signal.SIG_IGN, signal.SIG_DFL, or a callable object"
        )
    _real_signal(_SIGCHLD, _on_sigchld)  # raises ValueError outside the main thread
    previous, _user_handler = _user_handler, handler
    return previous


def wait_for_sigchld(check: Callable[[], T | None], deadline: float | None = None) -> T | None:
    """Call ``check()`` each time a child may have changed state until it returns non-None.

    ``check`` must not block (``waitpid`` with ``WNOHANG``); what it raises propagates.

    Returns:
        What ``check`` returned, or None if the hub's clock reached ``deadline`` first.
    """
    hub = get_hub()
    waiter = _SigchldWaiter(getcurrent(), hub)
    _waiters.add(waiter)
    backoff = _POLL_MIN
    try:
        while True:
            waiter.signalled = False
            result = check()
            if result is not None:
                return result
            now = hub.now()
            if deadline is not None and now >= deadline:
                return None
            if waiter.signalled:
                continue
            if _install_handler():
                wake_at = now + _SAFETY_INTERVAL
            else:
                wake_at = now + backoff
                backoff = min(backoff * 2, _POLL_MAX)
            if deadline is not None:
                wake_at = min(wake_at, deadline)
            waiter.armed = True
            try:
                hub.park_until(wake_at)
            finally:
                waiter.armed = False
    finally:
        _waiters.discard(waiter)


def _exited_without_reaping(pid: int) -> bool | None:
    """True if child ``pid`` has exited (or is not ours to wait for), else None."""
    if _real_waitid is None:
        return True  # cannot look without reaping: let the caller's WNOHANG wait decide
    try:
        info = _real_waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        return True
    return None if info is None else True


def wait_exit(pid: int, deadline: float | None = None) -> bool:
    """Park until child ``pid`` has exited, without reaping it.

    Returns at once if ``pid`` is not (or no longer) a child to wait for: the caller's
    ``waitpid`` then says why. Wake-ups are hints: the caller reaps with ``WNOHANG`` and
    calls again if the child is in fact still running.

    Returns:
        False if the hub's clock reached ``deadline`` first, True otherwise.
    """
    global _pidfd_open
    if _pidfd_open is not None:
        try:
            fd = _pidfd_open(pid)
        except ProcessLookupError:
            return True
        except OSError:
            # ENOSYS (kernel older than 5.3), EPERM (seccomp)...: use SIGCHLD from now on.
            _pidfd_open = None
        else:
            return _wait_pidfd(fd, deadline)
    if _real_waitid is None:
        # One SIGCHLD (or re-check tick) is all we can wait for without reaping.
        return wait_for_sigchld(_first_call_false(), deadline) is not None
    return wait_for_sigchld(lambda: _exited_without_reaping(pid), deadline) is not None


def _first_call_false() -> Callable[[], bool | None]:
    calls = 0

    def check() -> bool | None:
        nonlocal calls
        calls += 1
        return None if calls == 1 else True

    return check


def _wait_pidfd(fd: int, deadline: float | None) -> bool:
    hub = get_hub()
    try:
        timeout = None if deadline is None else max(0.0, deadline - hub.now())
        try:
            hub.wait_readable(fd, timeout)
        except TimeoutError:
            return False
        return True
    finally:
        hub.notify_closing(fd)
        _originals.os_close(fd)
