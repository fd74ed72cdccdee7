"""Readiness backends: edge-triggered epoll on Linux, ``selectors`` elsewhere.

Theory of operation (epoll)
---------------------------
Every fd is registered exactly once, with ``EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET``, the
first time any greenlet waits on it, and removed again just *before* it is closed. With
edge triggering the kernel reports a direction only when it changes from "not ready" to
"ready", so the hub never has to re-arm or modify a registration: one ``epoll_ctl`` per
socket lifetime instead of one or two per wait. The price is that the hub must never lose
an edge:

* An edge can arrive while nobody is waiting (data came in between two ``recv`` calls).
  The hub then records it in a per-fd readiness flag; the next waiter consumes the flag and
  returns at once instead of parking forever.
* Edges can be spurious from the caller's point of view: every read edge on a socket also
  reports "writable", and a freshly registered socket reports writable at once. Callers
  therefore always *try the operation first*, wait only on ``BlockingIOError``, and loop.
* Readers are also woken by ``EPOLLRDHUP`` (peer shut down its side), ``EPOLLHUP`` and
  ``EPOLLERR``: the following ``recv`` returns ``b""`` or raises the pending error, which is
  what the reader must see. Writers wake on ``EPOLLHUP`` and ``EPOLLERR``.
* epoll tracks the open file description, not the number: if an fd is closed without
  being removed first, a later socket that reuses the number is unknown to epoll. The hub
  therefore removes fds in ``notify_closing`` before they are closed.
* Regular files cannot be polled at all (``EPERM``); they are reported as always ready,
  which is what ``select`` says of them too. Real non-blocking file I/O goes to the
  thread pool.

The ``selectors`` backend is level-triggered: it watches an fd only for the directions
that currently have a waiter, so the hub updates it on every park and wake. It is slower
and exists for platforms without epoll and as a cross-check in the tests.
"""

from __future__ import annotations

import errno
import os
import select
import selectors
import stat
from typing import Protocol

from greenwire._core import _originals

EV_IN: int = getattr(select, "EPOLLIN", 0x001)
EV_OUT: int = getattr(select, "EPOLLOUT", 0x004)
EV_ERR: int = getattr(select, "EPOLLERR", 0x008)
EV_HUP: int = getattr(select, "EPOLLHUP", 0x010)
EV_RDHUP: int = getattr(select, "EPOLLRDHUP", 0x2000)
EV_ET: int = getattr(select, "EPOLLET", 1 << 31)

#: Events that wake a reader / a writer.
READ_EVENTS = EV_IN | EV_RDHUP | EV_HUP | EV_ERR
WRITE_EVENTS = EV_OUT | EV_HUP | EV_ERR


class Backend(Protocol):
    """What the hub needs from a readiness backend."""

    name: str
    edge_triggered: bool

    def register(self, fd: int) -> bool:
        """Start tracking ``fd``; return False if it cannot be polled (a regular file)."""
        ...

    def unregister(self, fd: int) -> None:
        """Stop tracking ``fd``; must be called before the fd is closed."""
        ...

    def watch(self, fd: int, read: bool, write: bool) -> None:
        """Level-triggered backends: poll ``fd`` for exactly these directions."""
        ...

    def poll(self, timeout: float) -> list[tuple[int, int]]:
        """Wait up to ``timeout`` seconds (-1: forever); return ``(fd, event mask)`` pairs."""
        ...

    def close(self) -> None: ...


class EpollBackend:
    """Edge-triggered epoll, each fd registered once (see the module docstring)."""

    name = "epoll"
    edge_triggered = True

    def __init__(self) -> None:
        if _originals.epoll is None:
            raise OSError(errno.ENOSYS, "epoll is not available on this platform")
        self._epoll = _originals.epoll()
        self.poll = self._epoll.poll

    def fileno(self) -> int:
        fd: int = self._epoll.fileno()
        return fd

    def register(self, fd: int) -> bool:
        try:
            self._epoll.register(fd, EV_IN | EV_OUT | EV_RDHUP | EV_ET)
        except PermissionError:
            return False  # a regular file or a directory: always ready
        except FileExistsError:
            # Registered under a previous owner of this number that was never
            # unregistered (a dup'd description kept it alive): re-arm for the new one.
            self._epoll.modify(fd, EV_IN | EV_OUT | EV_RDHUP | EV_ET)
        return True

    def unregister(self, fd: int) -> None:
        try:
            self._epoll.unregister(fd)
        except (OSError, ValueError):
            pass  # already closed or never registered: nothing left to remove

    def watch(self, fd: int, read: bool, write: bool) -> None:
        pass  # edge-triggered registrations never change

    def close(self) -> None:
        self._epoll.close()


class SelectorsBackend:
    """Level-triggered fallback on :mod:`selectors`, watching only wanted directions."""

    name = "selectors"
    edge_triggered = False

    def __init__(self, selector: selectors.BaseSelector | None = None) -> None:
        self._selector = selector if selector is not None else selectors.DefaultSelector()
        self._interest: dict[int, int] = {}

    def register(self, fd: int) -> bool:
        # select() reports regular files as always ready while epoll refuses them;
        # answer like the epoll backend so both behave the same.
        try:
            mode = os.fstat(fd).st_mode
        except OSError:
            return True
        return not (stat.S_ISREG(mode) or stat.S_ISDIR(mode))

    def unregister(self, fd: int) -> None:
        if self._interest.pop(fd, 0):
            try:
                self._selector.unregister(fd)
            except (KeyError, ValueError, OSError):
                pass

    def watch(self, fd: int, read: bool, write: bool) -> None:
        mask = (selectors.EVENT_READ if read else 0) | (selectors.EVENT_WRITE if write else 0)
        old = self._interest.get(fd, 0)
        if mask == old:
            return
        if not mask:
            del self._interest[fd]
            try:
                self._selector.unregister(fd)
            except (KeyError, ValueError, OSError):
                pass
            return
        self._interest[fd] = mask
        if old:
            self._selector.modify(fd, mask)
        else:
            self._selector.register(fd, mask)

    def poll(self, timeout: float) -> list[tuple[int, int]]:
        ready = self._selector.select(None if timeout < 0 else timeout)
        out = []
        for key, mask in ready:
            ev = (EV_IN if mask & selectors.EVENT_READ else 0) | (
                EV_OUT if mask & selectors.EVENT_WRITE else 0
            )
            out.append((key.fd, ev))
        return out

    def close(self) -> None:
        self._selector.close()


def default_backend() -> Backend:
    """Edge-triggered epoll where the platform has it, ``selectors`` elsewhere."""
    if _originals.epoll is not None:
        return EpollBackend()
    return SelectorsBackend()
