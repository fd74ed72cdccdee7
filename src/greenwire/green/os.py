"""A cooperative ``os``: pipe I/O and waiting for children park the greenlet, not the thread.

Patched: ``read``, ``write``, ``close``, ``fork``, ``forkpty``, ``waitpid``, ``wait``,
``wait3``, ``wait4``.

* ``read`` and ``write`` on a *blocking* fd that can be polled (a pipe, FIFO, socket,
  terminal) wait for it through the hub when the call would block, then make the real
  call; everything else (regular files, non-blocking fds, bad arguments) goes straight to
  the real call. See "Blocking reads and writes" below.
* ``close`` tells the calling thread's hub first, so that a greenlet waiting on the fd
  wakes with :class:`~greenwire.ClosedResourceError` (an ``OSError`` with ``EBADF``).
* The ``wait`` family asks the kernel first with ``WNOHANG`` and, only if no child is
  ready, parks the greenlet until one may be: on the child's pidfd for one known pid, on
  SIGCHLD otherwise (see :mod:`greenwire._core.children`). ``WNOHANG`` calls pass
  straight through; results and errors are the kernel's own.
* In a forked child the parent's hub and thread pool are dropped (their fds are closed
  without touching the parent's registrations) and a fresh hub starts on first use. Only
  the greenlet that forked goes on running; when it was a spawned greenlet it gets the new
  hub as its parent. The child should end with ``os._exit()``, ``sys.exit()`` or an
  ``exec``, as after forking from a thread. This is done by ``os.register_at_fork``
  hooks, so it holds for ``os.fork`` patched or not and for every library forking
  through it; a program's own ``register_at_fork`` hooks run as usual.

Also offered, unpatched: :func:`nb_read` / :func:`nb_write` for an fd made non-blocking
(:func:`make_nonblocking`), and :func:`tp_read` / :func:`tp_write`, which run the call in
the thread pool.
"""

from __future__ import annotations

import _socket
import fcntl as _fcntl
import importlib
import operator
import os as _os
import select as _select
import stat as _stat
import sys
from collections.abc import Callable
from typing import Any

from greenlet import getcurrent

from greenwire._core import ClosedResourceError, Hub, children, existing_hub, get_hub
from greenwire.green._registry import original
from greenwire.green._waiting import _Waker
from greenwire.threadpool import run_in_thread

__target__ = "os"
__implements__ = [
    name
    for name in ("read", "write", "close", "fork", "forkpty", "waitpid", "wait", "wait3", "wait4")
    if hasattr(_os, name)
]

__all__ = [
    *__implements__,
    "make_nonblocking",
    "nb_read",
    "nb_write",
    "tp_read",
    "tp_write",
]

_real_waitpid: Callable[[int, int], tuple[int, int]] = original("os", "waitpid")
_real_wait3: Callable[[int], tuple[int, int, Any]] | None = original("os", "wait3", None)
_real_wait4: Callable[[int, int], tuple[int, int, Any]] | None = original("os", "wait4", None)
_real_fork: Callable[[], int] = original("os", "fork")
_real_forkpty: Callable[[], tuple[int, int]] | None = original("os", "forkpty", None)
_real_read: Callable[[int, int], bytes] = original("os", "read")
_real_write: Callable[[int, Any], int] = original("os", "write")
_real_close: Callable[[int], None] = original("os", "close")
_real_poll: Callable[[], Any] = original("select", "poll")
_get_blocking: Callable[[int], bool] = _os.get_blocking
_fstat = _os.fstat

_POLLIN: int = _select.POLLIN
_POLLOUT: int = _select.POLLOUT
#: Bytes a blocking pipe write can make once poll() says "writable" without blocking.
_PIPE_BUF: int = getattr(_select, "PIPE_BUF", 512)
_MSG_DONTWAIT: int = getattr(_socket, "MSG_DONTWAIT", 0)

#: Options a pidfd can serve: it only tells about termination.
_STATE_CHANGE_OPTIONS = getattr(_os, "WUNTRACED", 0) | getattr(_os, "WCONTINUED", 0)


def fork() -> int:
    """``os.fork()``; the child starts with a fresh hub and thread pool (see module doc)."""
    return _real_fork()


def forkpty() -> tuple[int, int]:
    """``os.forkpty()``; the child starts with a fresh hub and thread pool."""
    if _real_forkpty is None:  # pragma: no cover - only listed where it exists
        raise NotImplementedError("os.forkpty is not available on this platform")
    return _real_forkpty()


def _wait_cooperatively(pid: int, options: int, look: Callable[[], Any]) -> Any:
    """Return ``look()`` (a WNOHANG wait) once a child of ``pid`` is ready."""
    result = look()
    if result[0] != 0:
        return result
    if pid > 0 and not options & _STATE_CHANGE_OPTIONS:
        # One known child, termination only: its pidfd (or SIGCHLD) tells when.
        while True:
            children.wait_exit(pid)
            result = look()
            if result[0] != 0:
                return result

    def check() -> Any:
        ready = look()
        return ready if ready[0] != 0 else None

    return children.wait_for_sigchld(check)


def waitpid(pid: int, options: int, /) -> tuple[int, int]:
    """``os.waitpid``: park the greenlet, not the thread, until a child is ready.

    ``WNOHANG`` passes straight through. Arguments, results and errors
    (``ChildProcessError``...) are those of :func:`os.waitpid`.
    """
    if options & _os.WNOHANG:
        return _real_waitpid(pid, options)
    result: tuple[int, int] = _wait_cooperatively(
        pid, options, lambda: _real_waitpid(pid, options | _os.WNOHANG)
    )
    return result


def wait() -> tuple[int, int]:
    """``os.wait()``: wait for any child, cooperatively."""
    return waitpid(-1, 0)


def wait3(options: int) -> tuple[int, int, Any]:
    """``os.wait3``: wait for any child, cooperatively; returns ``(pid, status, rusage)``."""
    if _real_wait3 is None:  # pragma: no cover - only listed where it exists
        raise NotImplementedError("os.wait3 is not available on this platform")
    real = _real_wait3
    if options & _os.WNOHANG:
        return real(options)
    result: tuple[int, int, Any] = _wait_cooperatively(
        -1, options, lambda: real(options | _os.WNOHANG)
    )
    return result


def wait4(pid: int, options: int) -> tuple[int, int, Any]:
    """``os.wait4``: like :func:`waitpid`, with resource usage."""
    if _real_wait4 is None:  # pragma: no cover - only listed where it exists
        raise NotImplementedError("os.wait4 is not available on this platform")
    real = _real_wait4
    if options & _os.WNOHANG:
        return real(pid, options)
    result: tuple[int, int, Any] = _wait_cooperatively(
        pid, options, lambda: real(pid, options | _os.WNOHANG)
    )
    return result


# ------------------------------------------------------------ read, write, close
#
# Blocking reads and writes
# -------------------------
# A blocking ``os.read`` on an empty pipe stops the whole OS thread, hub included, so the
# greenlet that would write to the pipe never runs (a ``multiprocessing`` queue read by
# a green thread is the everyday case). The patched calls never change the fd's mode --
# the open file may be shared with other processes, and code that set ``O_NONBLOCK``
# itself expects ``BlockingIOError`` -- so they ask first, and block only where noted:
#
# 1. A zero-timeout ``poll()`` on the fd (one syscall). Ready -- or hung up, failed, or
#    not an open fd at all -- means the real call cannot block (or fails at once with
#    the kernel's own error), so it is made right away. Regular files and directories
#    always poll ready: they are read and written directly, as the kernel does it, with
#    no thread pool round trip for what is a page-cache copy.
# 2. Not ready and the fd is non-blocking: the real call raises ``BlockingIOError``
#    (or succeeds, if data arrived meanwhile), as the caller expects.
# 3. Not ready and blocking: park on a hub *observer* for the fd -- a one-shot, level-style
#    wait that takes no reader or writer slot, coexists with the hub's edge-triggered
#    registration of sockets, and registers an fd the hub does not know only until the
#    wait ends. No edge is lost between the poll and the observer: nothing switches in
#    between. An observer counts as an I/O wait, so a greenlet alone in its thread waiting
#    for another process waits; it never gets ``LoopExit``. Then back to 1.
#
# Without a hub in the calling thread there is no greenlet that could run meanwhile, and
# inside the hub (a callback, timer or signal handler) nothing can park: both make the
# real blocking call, as unpatched code would.
#
# Writes. ``poll()`` reporting a pipe writable promises room for ``PIPE_BUF`` bytes
# (POSIX; Linux keeps at least one free page), not for the whole buffer, and a blocking
# pipe write waits until *everything* is written. So a write of more than ``PIPE_BUF``
# bytes to a blocking pipe or FIFO is made in ``PIPE_BUF`` steps, parking whenever the
# pipe is full, and returns the full count like the blocking call (or the count written
# before an error, as the kernel does); it is not atomic, which POSIX never promised
# above ``PIPE_BUF``. A large write to a blocking socket is sent with ``MSG_DONTWAIT``,
# which makes that one call non-blocking without touching the fd's mode. Any other fd
# (a terminal, a character device) waits until writable and then writes: that may still
# block briefly while the device drains. Writes up to ``PIPE_BUF`` are one real call.
#
# Closing. ``close`` first tells the calling thread's hub (``notify_closing``), which
# wakes every greenlet waiting on that fd with ``ClosedResourceError`` and drops the
# registration while the number still names the same open file. An fd closed some other
# way (a file object's ``close()``, another thread) does not wake its waiters: epoll
# silently forgets an open file whose last fd was closed, so they stay parked unless
# another process holding the pipe makes it ready.
#
# Another process or thread reading the same pipe can take the data between the poll
# and the read; the read then blocks as it would have unpatched. ``EINTR`` is retried by
# the real calls themselves (PEP 475); an exception raised by a signal handler while the
# hub waits reaches the main greenlet, as in an unpatched program.


def _ready_now(fd: int, events: int) -> bool:
    """True if ``fd`` polls ready for ``events`` (or hung up, failed, or is invalid)."""
    poller = _real_poll()
    poller.register(fd, events)
    return bool(poller.poll(0))


def _park_on(hub: Hub, fd: int, write: bool) -> None:
    """Park until the hub reports an event on ``fd`` (a hint: look again after).

    Raises:
        ClosedResourceError: the fd was closed (``os.close``) while we waited.
    """
    waker = _Waker(getcurrent())
    observer = hub.observe_fd(fd, not write, write, waker)
    try:
        waker.armed = True
        hub.park()
    finally:
        waker.armed = False
        closed = waker.closed or not observer.active
        observer.cancel()
    if closed:
        raise ClosedResourceError()


def _may_wait(fd: int, write: bool) -> bool:
    """True if the real call on ``fd`` would block: a blocking fd open for that direction.

    A non-blocking fd must raise ``BlockingIOError``, and a read-only fd written to (or a
    write-only one read) must fail with ``EBADF`` at once: it never polls ready for that
    direction, so waiting would be forever. An invalid fd: the real call says so.
    """
    try:
        flags = _fcntl.fcntl(fd, _fcntl.F_GETFL)
    except OSError:
        return False
    if flags & _os.O_NONBLOCK:
        return False
    mode = flags & _os.O_ACCMODE
    return mode == _os.O_RDWR or mode == (_os.O_WRONLY if write else _os.O_RDONLY)


def _hub_to_park_in() -> Hub | None:
    """The calling thread's hub if the caller can park in it, else None."""
    hub = existing_hub()
    if hub is None or getcurrent() is hub:
        return None
    return hub


def _as_index(value: Any) -> int | None:
    """``value`` as an int if it is one (or has ``__index__``), else None."""
    if value.__class__ is int:
        return value
    try:
        return operator.index(value)
    except TypeError:
        return None


def read(fd: int, n: int, /) -> bytes:
    """``os.read``: on a blocking pipe, socket or terminal, park the greenlet until readable.

    Regular files, non-blocking fds and bad arguments behave exactly as the real call.

    Raises:
        ClosedResourceError: the fd was closed with ``os.close`` while the call waited.
    """
    number = _as_index(fd)
    count = _as_index(n)
    if number is None or number < 0 or count is None or not 0 < count <= sys.maxsize:
        return _real_read(fd, n)  # it returns or fails at once
    hub = _hub_to_park_in()
    if hub is None:
        return _real_read(number, count)
    while not _ready_now(number, _POLLIN) and _may_wait(number, write=False):
        _park_on(hub, number, write=False)
    return _real_read(number, count)


def write(fd: int, data: Any, /) -> int:
    """``os.write``: on a blocking pipe, socket or terminal, park the greenlet until writable.

    A write of more than ``PIPE_BUF`` bytes to a blocking pipe or socket writes it all,
    parking as often as needed (see the essay above). Regular files, non-blocking fds and
    bad arguments behave exactly as the real call.

    Raises:
        ClosedResourceError: the fd was closed with ``os.close`` while the call waited.
    """
    number = _as_index(fd)
    if number is None or number < 0:
        return _real_write(fd, data)
    try:
        size = len(data) if data.__class__ is bytes else memoryview(data).nbytes
    except TypeError:
        return _real_write(fd, data)  # not a buffer: the real call says so
    hub = _hub_to_park_in() if size else None
    if hub is None:
        return _real_write(number, data)
    while not _ready_now(number, _POLLOUT):
        if not _may_wait(number, write=True):
            return _real_write(number, data)
        _park_on(hub, number, write=True)
    if size <= _PIPE_BUF:
        return _real_write(number, data)
    return _write_large(hub, number, data, size)


def _write_large(hub: Hub, fd: int, data: Any, size: int) -> int:
    """Write more than ``PIPE_BUF`` bytes to ``fd``, which just polled writable."""
    mode = _fstat(fd).st_mode
    pipe = _stat.S_ISFIFO(mode)
    # (With a default timeout set, making a socket object would change the fd's mode.)
    sock = _stat.S_ISSOCK(mode) and bool(_MSG_DONTWAIT) and _socket.getdefaulttimeout() is None
    if not (pipe or sock) or not _get_blocking(fd):
        return _real_write(fd, data)
    try:
        view = memoryview(data).cast("B")
    except TypeError:
        return _real_write(fd, data)  # not contiguous: the real call says how
    with view:
        if pipe:
            return _write_in_steps(hub, fd, view, size)
        return _send_without_blocking(hub, fd, view, size)


def _write_in_steps(hub: Hub, fd: int, view: memoryview, size: int) -> int:
    """Write all of ``view`` to a blocking pipe, ``PIPE_BUF`` bytes per call."""
    done = 0
    while done < size:
        if done and not _ready_now(fd, _POLLOUT):
            _park_on(hub, fd, write=True)
            continue
        try:
            done += _real_write(fd, view[done : done + _PIPE_BUF])
        except OSError:
            if done:
                return done  # the kernel reports partial progress the same way
            raise
    return done


def _send_without_blocking(hub: Hub, fd: int, view: memoryview, size: int) -> int:
    """Write all of ``view`` to a blocking socket: ``MSG_DONTWAIT`` sends, parking between."""
    try:
        sock = _socket.socket(fileno=fd)
    except OSError:
        return _real_write(fd, view)
    try:
        done = 0
        while done < size:
            try:
                done += sock.send(view[done:], _MSG_DONTWAIT)
            except BlockingIOError:
                _park_on(hub, fd, write=True)
            except OSError:
                if done:
                    return done
                raise
        return done
    finally:
        sock.detach()


def close(fd: int, /) -> None:
    """``os.close``, after waking this thread's greenlets waiting on ``fd`` with an error."""
    hub = existing_hub()
    if hub is not None and fd.__class__ is int:
        hub.notify_closing(fd)
    _real_close(fd)


# ------------------------------------------------------------ fd helpers


def make_nonblocking(fd: int) -> bool:
    """Put ``fd`` in non-blocking mode; True if it was blocking before."""
    if _os.get_blocking(fd):
        _os.set_blocking(fd, False)
        return True
    return False


def nb_read(fd: int, n: int) -> bytes:
    """Read up to ``n`` bytes from the non-blocking ``fd``, parking until it is readable.

    Raises:
        ClosedResourceError: the fd was closed (with ``notify_closing``) meanwhile.
    """
    while True:
        try:
            data: bytes = _real_read(fd, n)
            return data
        except BlockingIOError:
            get_hub().wait_readable(fd)


def nb_write(fd: int, data: bytes) -> int:
    """Write to the non-blocking ``fd``, parking until it is writable; returns bytes written.

    Like :func:`os.write`, it may write less than all of ``data``.
    """
    while True:
        try:
            written: int = _real_write(fd, data)
            return written
        except BlockingIOError:
            get_hub().wait_writable(fd)


def tp_read(fd: int, n: int) -> bytes:
    """``os.read`` run in the hub's thread pool: for fds that cannot be polled."""
    data: bytes = run_in_thread(_real_read, fd, n)
    return data


def tp_write(fd: int, data: bytes) -> int:
    """``os.write`` run in the hub's thread pool: for fds that cannot be polled."""
    written: int = run_in_thread(_real_write, fd, data)
    return written


def __getattr__(name: str) -> Any:
    """The rest of the stdlib ``os`` module."""
    return getattr(importlib.import_module("os"), name)
