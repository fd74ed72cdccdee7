"""Waiting for file descriptors: the hub's per-fd state and its I/O methods.

:class:`FdWaits` is mixed into :class:`~greenwire._core.hub.Hub`; it is kept apart only to
keep each file readable. The edge-triggered rules it follows are explained at the top of
``backends.py``: register once, remember edges that arrive while nobody waits, wake
readers on hang-up and error, unregister before close, and let callers retry on
spurious wake-ups.
"""

from __future__ import annotations

import weakref
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from greenlet import GreenletExit, getcurrent
from greenlet import greenlet as RawGreenlet

from greenwire._core.backends import READ_EVENTS, WRITE_EVENTS, Backend
from greenwire._core.errors import ClosedResourceError, ConcurrentWaitError, HubBlockingError
from greenwire._core.timers import Timer


class FdState:
    """What the hub knows about one file descriptor.

    ``readable`` / ``writable`` remember an edge that arrived while nobody was waiting;
    ``reader`` / ``writer`` are the (at most one each) greenlets parked on it.
    """

    __slots__ = ("fd", "reader", "writer", "readable", "writable", "pollable", "closed", "owner")

    def __init__(self, fd: int, pollable: bool, owner: weakref.ref[Any] | None) -> None:
        self.fd = fd
        self.reader: RawGreenlet | None = None
        self.writer: RawGreenlet | None = None
        self.readable = False
        self.writable = False
        self.pollable = pollable
        self.closed = False
        self.owner = owner

    def __repr__(self) -> str:
        return (
            f"<FdState fd={self.fd} reader={self.reader!r} writer={self.writer!r}"
            f" readable={self.readable} writable={self.writable}>"
        )


class FdWaits:
    """The hub's I/O half: registering fds, parking on them, and waking the parked."""

    _fds: dict[int, FdState]
    _backend: Backend
    _edge: bool
    _io_waiters: int
    _callbacks: deque[tuple[Callable[..., Any], tuple[Any, ...]]]
    _wake_r: int

    if TYPE_CHECKING:  # provided by Hub / greenlet; declared for the type checker only

        def switch(self, *args: Any) -> Any: ...
        def call_later(self, delay: float, callback: Callable[..., Any], *args: Any) -> Timer: ...
        def handle_error(self, context: object, exc: BaseException) -> None: ...
        def _drain_wakeup(self) -> None: ...

    def register_fd(self, fileobj: Any) -> FdState:
        """Return the hub's state for ``fileobj`` (an fd or an object with ``fileno()``).

        The fd is registered with the backend the first time it is seen. If an object is
        given and a *different* object registered the same number before, the old
        registration is treated as closed (its waiters get :class:`ClosedResourceError`).
        """
        if isinstance(fileobj, int):
            fd, owner = fileobj, None
        else:
            fd = fileobj.fileno()
            owner = fileobj
        st = self._fds.get(fd)
        if st is not None:
            if owner is None or st.owner is None or st.owner() is owner:
                return st
            self.notify_closing(fd)
        if fd < 0:
            raise ValueError(f"invalid file descriptor {fd}")
        ref = None
        if owner is not None:
            try:
                ref = weakref.ref(owner)
            except TypeError:
                ref = None
        st = FdState(fd, self._backend.register(fd), ref)
        self._fds[fd] = st
        return st

    def wait_readable(self, fileobj: Any, timeout: float | None = None) -> None:
        """Park until ``fileobj`` may be readable (or has hung up or failed).

        Wake-ups can be spurious: retry the operation and wait again on
        ``BlockingIOError``.

        Raises:
            TimeoutError: ``timeout`` seconds passed first.
            ClosedResourceError: the fd was closed (``notify_closing``) meanwhile.
            ConcurrentWaitError: another greenlet is already waiting to read it.
        """
        st = self._fds.get(fileobj) if isinstance(fileobj, int) else None
        if st is None:
            st = self.register_fd(fileobj)
        self.wait_state_readable(st, timeout)

    def wait_writable(self, fileobj: Any, timeout: float | None = None) -> None:
        """Park until ``fileobj`` may be writable; see :meth:`wait_readable`."""
        st = self._fds.get(fileobj) if isinstance(fileobj, int) else None
        if st is None:
            st = self.register_fd(fileobj)
        self.wait_state_writable(st, timeout)

    def wait_state_readable(self, st: FdState, timeout: float | None = None) -> None:
        """:meth:`wait_readable` for a state already obtained from :meth:`register_fd`."""
        if st.readable:
            st.readable = False
            return
        if st.closed:
            raise ClosedResourceError()
        if not st.pollable:
            return
        if st.reader is not None:
            raise ConcurrentWaitError(
                f"another greenlet ({st.reader!r}) is already waiting to read fd {st.fd}"
            )
        g = getcurrent()
        if g is self:  # type: ignore[comparison-overlap]  # the hub itself must not park
            raise HubBlockingError("cannot block inside the hub (in a callback or timer)")
        st.reader = g
        self._io_waiters += 1
        if not self._edge:
            self._backend.watch(st.fd, True, st.writer is not None)
        timer = None if timeout is None else self.call_later(timeout, self._io_timeout, st, g)
        try:
            self.switch()
        finally:
            if st.reader is g:
                st.reader = None
                self._io_waiters -= 1
                if not self._edge and not st.closed:
                    self._backend.watch(st.fd, False, st.writer is not None)
            if timer is not None:
                timer.cancel()
        if st.closed:
            raise ClosedResourceError()

    def wait_state_writable(self, st: FdState, timeout: float | None = None) -> None:
        """:meth:`wait_writable` for a state already obtained from :meth:`register_fd`."""
        if st.writable:
            st.writable = False
            return
        if st.closed:
            raise ClosedResourceError()
        if not st.pollable:
            return
        if st.writer is not None:
            raise ConcurrentWaitError(
                f"another greenlet ({st.writer!r}) is already waiting to write fd {st.fd}"
            )
        g = getcurrent()
        if g is self:  # type: ignore[comparison-overlap]  # the hub itself must not park
            raise HubBlockingError("cannot block inside the hub (in a callback or timer)")
        st.writer = g
        self._io_waiters += 1
        if not self._edge:
            self._backend.watch(st.fd, st.reader is not None, True)
        timer = None if timeout is None else self.call_later(timeout, self._io_timeout, st, g)
        try:
            self.switch()
        finally:
            if st.writer is g:
                st.writer = None
                self._io_waiters -= 1
                if not self._edge and not st.closed:
                    self._backend.watch(st.fd, st.reader is not None, False)
            if timer is not None:
                timer.cancel()
        if st.closed:
            raise ClosedResourceError()

    def _io_timeout(self, st: FdState, g: RawGreenlet) -> None:
        if st.reader is g or st.writer is g:
            g.throw(TimeoutError("timed out"))

    def notify_closing(self, fileobj: Any) -> None:
        """Forget an fd that is about to be closed; its waiters get ClosedResourceError.

        Call it *before* closing the fd: epoll must drop the registration while the
        number still names the same open file.
        """
        fd = fileobj if isinstance(fileobj, int) else fileobj.fileno()
        st = self._fds.pop(fd, None)
        if st is None:
            return
        st.closed = True
        if st.pollable:
            self._backend.unregister(fd)
        for g in (st.reader, st.writer):
            if g is not None:
                self._io_waiters -= 1
                self._callbacks.append((g.switch, ()))
        st.reader = st.writer = None

    def _dispatch(self, events: list[tuple[int, int]]) -> None:
        """Wake the greenlets parked on the fds in ``events``, or remember the edge."""
        fds = self._fds
        edge = self._edge
        for fd, ev in events:
            st = fds.get(fd)
            if st is None:
                if fd == self._wake_r:
                    self._drain_wakeup()
                continue
            if ev & READ_EVENTS:
                g = st.reader
                if g is None:
                    if edge:
                        st.readable = True
                else:
                    st.reader = None
                    self._io_waiters -= 1
                    if not edge:
                        self._backend.watch(fd, False, st.writer is not None)
                    try:
                        g.switch()
                    except GreenletExit:
                        raise
                    except BaseException as e:
                        self.handle_error(g, e)
            if ev & WRITE_EVENTS:
                g = st.writer
                if g is None:
                    if edge:
                        st.writable = True
                else:
                    st.writer = None
                    self._io_waiters -= 1
                    if not edge:
                        self._backend.watch(fd, st.reader is not None, False)
                    try:
                        g.switch()
                    except GreenletExit:
                        raise
                    except BaseException as e:
                        self.handle_error(g, e)
