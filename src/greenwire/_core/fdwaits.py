"""Waiting for file descriptors: the hub's per-fd state and its I/O methods.

:class:`FdWaits` is mixed into :class:`~greenwire._core.hub.Hub`; it is kept apart only to
keep each file readable. The edge-triggered rules it follows are explained at the top of
``backends.py``: register once, remember edges that arrive while nobody waits, wake
readers on hang-up and error, unregister before close, and let callers retry on
spurious wake-ups.

Besides its one reader and one writer, an fd can have any number of *observers*
(:meth:`FdWaits.observe_fd`): callbacks run by the hub on every event for the fd. They are
what lets one greenlet wait on many fds at once (``select``, ``poll``, selectors) without
taking the reader or writer slot of the greenlets doing the actual I/O.
"""

from __future__ import annotations

import weakref
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from greenlet import GreenletExit, getcurrent
from greenlet import greenlet as RawGreenlet

from greenwire._core.backends import EV_ERR, EV_HUP, READ_EVENTS, WRITE_EVENTS, Backend
from greenwire._core.errors import ClosedResourceError, ConcurrentWaitError, HubBlockingError
from greenwire._core.timers import Timer


class FdState:
    """What the hub knows about one file descriptor.

    ``readable`` / ``writable`` remember an edge that arrived while nobody was waiting;
    ``reader`` / ``writer`` are the (at most one each) greenlets parked on it;
    ``observers`` is None or the non-empty list of :class:`FdObserver` watching it;
    ``temporary`` marks a state created only for observers, forgotten with the last one.
    """

    __slots__ = (
        "fd",
        "reader",
        "writer",
        "readable",
        "writable",
        "pollable",
        "closed",
        "owner",
        "observers",
        "temporary",
    )

    def __init__(self, fd: int, pollable: bool, owner: weakref.ref[Any] | None) -> None:
        self.fd = fd
        self.reader: RawGreenlet | None = None
        self.writer: RawGreenlet | None = None
        self.readable = False
        self.writable = False
        self.pollable = pollable
        self.closed = False
        self.owner = owner
        self.observers: list[FdObserver] | None = None
        self.temporary = False

    def __repr__(self) -> str:
        return (
            f"<FdState fd={self.fd} reader={self.reader!r} writer={self.writer!r}"
            f" readable={self.readable} writable={self.writable}>"
        )


class FdObserver:
    """A callback the hub runs on every event of one fd; made by :meth:`FdWaits.observe_fd`.

    ``callback(fd, events)`` runs inside the hub, so it may switch into a parked greenlet
    directly. ``events`` is the backend's event mask, or 0 when the fd was closed
    (:meth:`FdWaits.notify_closing`); the observer is then already cancelled.
    """

    __slots__ = ("hub", "state", "mask", "read", "write", "callback")

    def __init__(
        self,
        hub: FdWaits,
        state: FdState,
        read: bool,
        write: bool,
        callback: Callable[[int, int], Any],
    ) -> None:
        self.hub = hub
        self.state: FdState | None = state
        self.read = read
        self.write = write
        # Hang-ups and errors are worth a look whatever the observer asked for.
        self.mask = (READ_EVENTS if read else 0) | (WRITE_EVENTS if write else 0) | EV_HUP | EV_ERR
        self.callback = callback

    @property
    def active(self) -> bool:
        """True until cancelled (or until the fd was closed)."""
        return self.state is not None

    def cancel(self) -> None:
        """Stop observing; harmless if already cancelled or if the fd was closed."""
        st = self.state
        if st is not None:
            self.state = None
            self.hub._remove_observer(st, self)

    def __repr__(self) -> str:
        fd = None if self.state is None else self.state.fd
        return f"<FdObserver fd={fd} read={self.read} write={self.write} {self.callback!r}>"


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
                if st.temporary:
                    self._adopt(st, fileobj)
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

    def _adopt(self, st: FdState, owner: Any) -> None:
        """Keep a state made for observers only: somebody registers the fd for real now.

        The number may have been closed and reused behind the hub's back while only
        observers watched it (epoll then forgot it), so register it again from scratch:
        two syscalls, and only here.
        """
        st.temporary = False
        self._backend.unregister(st.fd)
        st.pollable = self._backend.register(st.fd)
        if not self._edge:
            self._rewatch(st)
        if not isinstance(owner, int):
            try:
                st.owner = weakref.ref(owner)
            except TypeError:
                pass

    def wait_readable(self, fileobj: Any, timeout: float | None = None) -> None:
        """Park until ``fileobj`` may be readable (or has hung up or failed).

        Wake-ups can be spurious: retry the operation and wait again on
        ``BlockingIOError``.

        Raises:
            TimeoutError: ``timeout`` seconds passed first.
            ClosedResourceError: the fd was closed (``notify_closing``) meanwhile.
            ConcurrentWaitError: another greenlet is already waiting to read it.
        """
        # Fast path: a known fd, owned by this same object, not merely observed.
        if fileobj.__class__ is int:
            st = self._fds.get(fileobj)
        else:
            st = self._fds.get(fileobj.fileno())
            if st is not None and st.owner is not None and st.owner() is not fileobj:
                st = None
        if st is None or st.temporary:
            st = self.register_fd(fileobj)
        self.wait_state_readable(st, timeout)

    def wait_writable(self, fileobj: Any, timeout: float | None = None) -> None:
        """Park until ``fileobj`` may be writable; see :meth:`wait_readable`."""
        # Fast path: a known fd, owned by this same object, not merely observed.
        if fileobj.__class__ is int:
            st = self._fds.get(fileobj)
        else:
            st = self._fds.get(fileobj.fileno())
            if st is not None and st.owner is not None and st.owner() is not fileobj:
                st = None
        if st is None or st.temporary:
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
            self._rewatch(st)
        timer = None if timeout is None else self.call_later(timeout, self._io_timeout, st, g)
        try:
            self.switch()
        finally:
            if st.reader is g:
                st.reader = None
                self._io_waiters -= 1
                if not self._edge and not st.closed:
                    self._rewatch(st)
            if timer is not None:
                timer.cancel()
        if st.closed:
            raise ClosedResourceError()

    def wait_state_writable(self, st: FdState, timeout: float | None = None) -> None:
        """:meth:`wait_writable` for a state already obtained from :meth:`register_fd`."""
        # A mirror of wait_state_readable rather than one function with a direction
        # argument: this is every socket's hot path, and fixed slot names are faster
        # than getattr/setattr by name.
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
            self._rewatch(st)
        timer = None if timeout is None else self.call_later(timeout, self._io_timeout, st, g)
        try:
            self.switch()
        finally:
            if st.writer is g:
                st.writer = None
                self._io_waiters -= 1
                if not self._edge and not st.closed:
                    self._rewatch(st)
            if timer is not None:
                timer.cancel()
        if st.closed:
            raise ClosedResourceError()

    # ------------------------------------------------------------- observers
    #
    # An observer is cheap: no greenlet slot, no backend call on the edge-triggered
    # backend (every fd is registered for both directions once). Whoever uses one to wait
    # must follow the same rule as every edge-triggered waiter: look at the fd first
    # (e.g. a zero-timeout ``select``), and register the observer only if nothing was
    # ready, *without switching in between*. Any edge after that look is then delivered
    # to the observer, because the hub only polls after the caller has switched to it.

    def observe_fd(
        self, fileobj: Any, read: bool, write: bool, callback: Callable[[int, int], Any]
    ) -> FdObserver:
        """Run ``callback(fd, events)`` in the hub on each event of ``fileobj`` until cancelled.

        Unlike :meth:`wait_readable`, any number of observers can watch an fd, alongside
        its reader and writer. Hang-ups and errors are reported whatever ``read`` and
        ``write`` say. Events are hints, exactly as for waiters: the level-triggered
        backend reports a ready fd on every poll while the observer stays registered,
        and an edge can be a false alarm. An fd that cannot be polled (a regular file)
        is always ready: the callback is scheduled at once. While registered, an observer
        counts as an I/O waiter (the hub does not decide that nothing can happen).

        An fd unknown to the hub is registered for the observers' sake only and forgotten
        again (removed from the backend) when its last observer is cancelled, so that a
        number closed behind the hub's back never leaves a stale registration.

        Returns:
            The observer; call its ``cancel()`` when done (``finally``).
        """
        fd = fileobj if isinstance(fileobj, int) else fileobj.fileno()
        st = self._fds.get(fd)
        if st is None:
            st = self.register_fd(fd)
            st.temporary = True
        obs = FdObserver(self, st, read, write, callback)
        observers = st.observers
        if observers is None:
            st.observers = [obs]
        else:
            observers.append(obs)
        self._io_waiters += 1
        if not st.pollable:
            self._callbacks.append((self._fire_unpollable, (obs,)))
        elif not self._edge:
            self._rewatch(st)
        return obs

    def _remove_observer(self, st: FdState, obs: FdObserver) -> None:
        observers = st.observers
        if observers is None:  # pragma: no cover - state and list are cleared together
            return
        observers.remove(obs)
        self._io_waiters -= 1
        if observers:
            if not self._edge:
                self._rewatch(st)
            return
        st.observers = None
        if st.temporary and st.reader is None and st.writer is None and self._fds.get(st.fd) is st:
            del self._fds[st.fd]
            if st.pollable:
                self._backend.unregister(st.fd)
        elif not self._edge and not st.closed:
            self._rewatch(st)

    def _fire_unpollable(self, obs: FdObserver) -> None:
        st = obs.state
        if st is not None:
            obs.callback(st.fd, READ_EVENTS | WRITE_EVENTS)

    def _notify_observers(self, st: FdState, ev: int) -> None:
        # A copy: a callback may cancel observers (its own or others) or close the fd.
        for obs in tuple(st.observers or ()):
            if obs.state is st and ev & obs.mask:
                try:
                    obs.callback(st.fd, ev)
                except GreenletExit:
                    raise
                except BaseException as e:
                    self.handle_error(obs.callback, e)

    def _rewatch(self, st: FdState) -> None:
        """Level-triggered backends: watch exactly what the waiters and observers want."""
        read = st.reader is not None
        write = st.writer is not None
        observers = st.observers
        if observers is not None:
            for obs in observers:
                read = read or obs.read
                write = write or obs.write
        self._backend.watch(st.fd, read, write)

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
        observers = st.observers
        if observers is not None:
            st.observers = None
            for obs in observers:
                obs.state = None
                self._io_waiters -= 1
                self._callbacks.append((obs.callback, (fd, 0)))

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
                        self._rewatch(st)
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
                        self._rewatch(st)
                    try:
                        g.switch()
                    except GreenletExit:
                        raise
                    except BaseException as e:
                        self.handle_error(g, e)
            if st.observers is not None:
                self._notify_observers(st, ev)
