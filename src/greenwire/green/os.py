"""A cooperative ``os``: waiting for children parks the greenlet; ``fork`` keeps the hub sane.

Patched: ``fork``, ``forkpty``, ``waitpid``, ``wait``, ``wait3``, ``wait4``.

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

Not patched: ``read`` and ``write``. Making them wait cooperatively would change what a
program that set ``O_NONBLOCK`` itself relies on (``BlockingIOError``), a regular file
cannot be polled at all, and they are among the most called functions there are. Use
instead :func:`nb_read` / :func:`nb_write` on a non-blocking fd (:func:`make_nonblocking`)
or :func:`tp_read` / :func:`tp_write`, which run the call in the thread pool (for
regular files and anything else that cannot be polled). Pipes of the green
``subprocess`` are cooperative file objects already.
"""

from __future__ import annotations

import importlib
import os as _os
from collections.abc import Callable
from typing import Any

from greenwire._core import children, get_hub
from greenwire.green._registry import original
from greenwire.threadpool import run_in_thread

__target__ = "os"
__implements__ = [
    name for name in ("fork", "forkpty", "waitpid", "wait", "wait3", "wait4") if hasattr(_os, name)
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
_real_read = original("os", "read")
_real_write = original("os", "write")

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
