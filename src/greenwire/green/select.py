"""A cooperative ``select``: ``select()`` and ``poll()`` park the greenlet, not the thread.

Both ask the kernel first with a zero timeout through the real functions, so results,
argument handling and errors are the stdlib's own, and wait on the hub only when nothing
is ready. A call with a non-zero timeout that finds something ready at once lets the
other greenlets run before it returns (see :mod:`greenwire.green._waiting`).

``epoll``, ``devpoll`` and ``kqueue`` are left as they are: the hub uses epoll itself, and
the green :mod:`selectors` makes ``EpollSelector`` cooperative by waiting on the epoll
fd. Code that calls ``epoll.poll()`` with a timeout directly still blocks the thread.

Known limit: while parked, exceptional conditions (``xlist``, ``POLLPRI``) are noticed
together with the fd's next read or hang-up event, because the hub does not ask the
kernel for urgent-data events.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Iterable
from select import (
    POLLIN,
    POLLOUT,
    POLLPRI,
    POLLRDBAND,
    POLLRDNORM,
    POLLWRBAND,
    POLLWRNORM,
)
from typing import Any, TypeVar

from greenwire._core import get_hub
from greenwire.green._registry import original
from greenwire.green._waiting import as_number, seconds_in_range, take_turn, wait_any

__target__ = "select"
__implements__ = ["select", "poll"]

__all__ = ["poll", "select"]

T = TypeVar("T")

_READ_MASK = POLLIN | POLLPRI | POLLRDNORM | POLLRDBAND
_WRITE_MASK = POLLOUT | POLLWRNORM | POLLWRBAND
_DEFAULT_MASK = POLLIN | POLLPRI | POLLOUT
_INT_MAX = 2**31 - 1
_NOT_GIVEN: Any = object()
_MAX_SECONDS = 9_223_372_036  # whole seconds that certainly fit a _PyTime_t

# ``original`` gives the unpatched functions whether this module is imported before or
# after patching, so they can be looked up once.
_real_select = original("select", "select")
_real_poll = original("select", "poll")


def _fileno(obj: object) -> int:
    """The fd of an int or of an object with ``fileno()`` (already validated by the stdlib)."""
    if isinstance(obj, int):
        return int(obj)
    fd: int = obj.fileno()  # type: ignore[attr-defined]
    return fd


def _as_list(seq: Iterable[T]) -> list[T] | Iterable[T]:
    """A list or tuple as it is, any other iterable read once into a list.

    A generator would be exhausted by the first look at it; anything that is not iterable
    is kept so that the real ``select`` raises its own error.
    """
    if isinstance(seq, (list, tuple)):
        return seq
    try:
        return list(seq)
    except TypeError:
        return seq


def select(
    rlist: Iterable[Any],
    wlist: Iterable[Any],
    xlist: Iterable[Any],
    timeout: float | None = None,
    /,
) -> tuple[list[Any], list[Any], list[Any]]:
    """Wait until some of the objects are ready; :func:`select.select` for greenlets.

    Args:
        rlist, wlist, xlist: fds or objects with ``fileno()``, waited on for reading,
            writing and exceptional conditions.
        timeout: seconds; None waits forever, 0 only looks.

    Returns:
        The ready subsets of the three lists (the objects given, in their order).

    Raises:
        TypeError, ValueError, OSError: exactly as :func:`select.select`.
    """
    real_select = _real_select
    seconds: float | None = None
    kind = type(timeout)
    if (kind is float or kind is int) and 0 <= timeout < _MAX_SECONDS:  # type: ignore[operator]
        seconds = timeout
    elif timeout is not None:
        number = as_number(timeout)
        if number is None or number < 0 or not seconds_in_range(number):
            real_select([], [], [], timeout)  # raises the stdlib's own error
            number = 0  # pragma: no cover - only if the original accepted it
        seconds = float(number)
    rlist, wlist, xlist = _as_list(rlist), _as_list(wlist), _as_list(xlist)
    ready: tuple[list[Any], list[Any], list[Any]] = real_select(rlist, wlist, xlist, 0)
    if seconds == 0:
        return ready
    hub = get_hub()
    if ready[0] or ready[1] or ready[2]:
        take_turn(hub)  # a caller prepared to wait lets the others run (see _waiting)
        return ready
    deadline = None if seconds is None else hub.now() + seconds
    interests: dict[int, list[bool]] = {}
    for objs, index in ((rlist, 0), (xlist, 0), (wlist, 1)):
        for obj in objs:
            interests.setdefault(_fileno(obj), [False, False])[index] = True
    specs = [(fd, want[0], want[1]) for fd, want in interests.items()]
    while True:
        in_time = wait_any(hub, specs, deadline)
        ready = real_select(rlist, wlist, xlist, 0)
        if ready[0] or ready[1] or ready[2] or not in_time:
            return ready


def _poll_seconds(timeout: object) -> float | None | bool:
    """A ``poll()`` timeout (milliseconds) in seconds: None for "forever".

    Returns False if the value is certainly invalid (the caller lets the real poll raise).
    """
    if timeout is None:
        return None
    number = as_number(timeout)
    if number is None or not seconds_in_range(number, 1_000_000):
        return False
    # Milliseconds rounded away from zero, as CPython does; negative waits forever.
    ms = math.ceil(number) if number >= 0 else math.floor(number)
    if not -_INT_MAX - 1 <= ms <= _INT_MAX:
        return False
    return None if ms < 0 else ms / 1000


class _PollObject:
    """What :func:`poll` returns: the stdlib poll object's interface, cooperative."""

    __slots__ = ("_real", "_masks", "_polling", "__weakref__")
    _real: Any
    _masks: dict[int, int]
    _polling: bool

    def __new__(cls, *args: object, **kwargs: object) -> _PollObject:
        raise TypeError(f"cannot create '{cls.__module__}.{cls.__name__}' instances")

    @classmethod
    def _create(cls) -> _PollObject:
        self = object.__new__(cls)
        self._real = _real_poll()
        self._masks = {}
        self._polling = False
        return self

    def register(self, fd: Any, eventmask: int = _NOT_GIVEN, /) -> None:
        """Watch ``fd`` for ``eventmask`` (default ``POLLIN | POLLPRI | POLLOUT``)."""
        if eventmask is _NOT_GIVEN:
            self._real.register(fd)
            eventmask = _DEFAULT_MASK
        else:
            self._real.register(fd, eventmask)
        self._masks[_fileno(fd)] = int(eventmask)

    def modify(self, fd: Any, eventmask: int, /) -> None:
        """Change the events watched on a registered ``fd``."""
        self._real.modify(fd, eventmask)
        self._masks[_fileno(fd)] = int(eventmask)

    def unregister(self, fd: Any, /) -> None:
        """Stop watching ``fd``; ``KeyError`` if it was not registered."""
        self._real.unregister(fd)
        del self._masks[_fileno(fd)]

    def poll(self, timeout: float | None = None, /) -> list[tuple[int, int]]:
        """Wait up to ``timeout`` milliseconds (None or negative: forever) for events.

        Returns:
            ``(fd, events)`` pairs, as :meth:`select.poll.poll`.

        Raises:
            RuntimeError: another greenlet is already polling this object.
        """
        seconds = _poll_seconds(timeout)
        if seconds is False:
            self._real.poll(timeout)  # raises the stdlib's own error
            seconds = 0.0  # pragma: no cover - only if the original accepted it
        if self._polling:
            raise RuntimeError("concurrent poll() invocation")
        self._polling = True
        try:
            ready: list[tuple[int, int]] = self._real.poll(0)
            if seconds == 0:
                return ready
            hub = get_hub()
            if ready:
                take_turn(hub)  # a caller prepared to wait lets the others run
                return ready
            deadline = None if seconds is None else hub.now() + seconds
            specs = [
                (fd, bool(mask & _READ_MASK), bool(mask & _WRITE_MASK))
                for fd, mask in self._masks.items()
            ]
            while True:
                in_time = wait_any(hub, specs, deadline)
                ready = self._real.poll(0)
                if ready or not in_time:
                    return ready
        finally:
            self._polling = False


_PollObject.__name__ = _PollObject.__qualname__ = "poll"


def poll() -> _PollObject:
    """A cooperative polling object, like :func:`select.poll`."""
    return _PollObject._create()


def __getattr__(name: str) -> Any:
    """The rest of the stdlib ``select`` module (``error``, ``epoll``, constants...)."""
    return getattr(importlib.import_module("select"), name)
