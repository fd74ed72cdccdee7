"""Low-level readiness waits on file descriptors, for code below the socket layer.

These are thin conveniences over the current thread's hub. The pattern is always: try
the non-blocking operation first, and wait only when it raises ``BlockingIOError``::

    while True:
        try:
            return sock.recv(65536)
        except BlockingIOError:
            wait_readable(sock)

A caller that alone owns a plain TCP connection (no urgent data, no other greenlet
waiting on it, no ``MSG_PEEK``) may, after a short read, wait *first* and skip the
``recv`` that would fail with ``EAGAIN``: data arriving later raises a new edge, and an
edge that arrives while nobody waits is remembered by the hub. This is not safe in
general: a read stops short at a TCP urgent mark or at AF_UNIX ancillary data without a
new edge to follow, and datagram sockets return one message per read. When in doubt,
retry the operation first.

Call :func:`notify_closing` before closing an fd that greenlets may be waiting on: they
wake with :class:`~greenwire.ClosedResourceError` instead of waiting forever.
"""

from __future__ import annotations

from typing import Any

from greenwire._core import get_hub

__all__ = ["notify_closing", "wait_readable", "wait_writable"]


def wait_readable(fileobj: Any, timeout: float | None = None) -> None:
    """Block the current greenlet until ``fileobj`` (fd or ``fileno()`` object) may be read.

    Raises:
        TimeoutError: after ``timeout`` seconds.
        ClosedResourceError: the fd was closed while waiting.
        ConcurrentWaitError: another greenlet already waits to read it.
    """
    get_hub().wait_readable(fileobj, timeout)


def wait_writable(fileobj: Any, timeout: float | None = None) -> None:
    """Block the current greenlet until ``fileobj`` may be written; see :func:`wait_readable`."""
    get_hub().wait_writable(fileobj, timeout)


def notify_closing(fileobj: Any) -> None:
    """Tell the hub that ``fileobj`` is about to be closed; wakes its waiters with an error."""
    get_hub().notify_closing(fileobj)
