"""Events and one-shot results that greenlets wait for.

:class:`Event` is a flag that greenlets wait to see set; :class:`AsyncResult` carries a
value or an exception from one greenlet to any number of waiters. Both can be passed to
:func:`greenwire.wait` / :func:`greenwire.iwait`.

How a wake-up travels
---------------------
A waiter appends its greenlet to the object's waiter list and parks. ``set()`` hands the
whole list (and the list of links) to ONE hub callback and starts a new, empty list; the
callback then switches into each waiter in turn (it runs in the hub, so it may switch
directly). Handing the list over, instead of keeping it, is what gives the generation
semantics of ``threading.Event``: a greenlet that was waiting when ``set()`` ran returns
True even if ``clear()`` runs before it is resumed. Each ``set()`` that wakes anybody
bumps a generation counter, and a waiter returns once the counter differs from the value
it saw when it started to wait; the flag alone could not tell it.

With exactly one waiter and no link (the ping-pong case) ``set()`` pops that waiter and
the one callback is its own ``switch``, so the hub runs no Python frame for it. Otherwise
a waiter that leaves early (timeout, kill, ``fail_after``...) removes itself from the
list it joined, wherever that list went, so the callback does not switch into a greenlet
busy elsewhere. In the one-waiter case a greenlet that leaves in the instant between
``set()`` and its wake-up may get one spurious wake-up later, which every blocking
primitive tolerates. Waiting on an object that is already set never touches the hub.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from types import TracebackType
from typing import Any, Generic, TypeVar

from greenlet import GreenletExit, getcurrent
from greenlet import greenlet as RawGreenlet

from greenwire._core import Hub, HubBlockingError, get_hub
from greenwire.timeout import Timeout

T = TypeVar("T")

__all__ = ["AsyncResult", "Event"]

Link = Callable[[Any], Any]
ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None]


def _withdraw(waiters: list[RawGreenlet], g: RawGreenlet) -> None:
    try:
        waiters.remove(g)
    except ValueError:
        pass


def _hub_to_park_in(g: RawGreenlet) -> Hub:
    """The current thread's hub, refusing to park the hub itself."""
    hub = get_hub()
    if g is hub:
        raise HubBlockingError("cannot block inside the hub (in a callback or timer)")
    return hub


class _Signal:
    """What Event and AsyncResult share: a flag, its waiters and its links."""

    __slots__ = ("_flag", "_gen", "_waiters", "_links", "_hub", "_links_in_flight")

    def __init__(self) -> None:
        self._flag = False
        self._gen = 0
        self._waiters: list[RawGreenlet] = []
        self._links: list[Link] = []
        self._hub: Hub | None = None
        # The last links list handed to a notification that has not run yet, so that
        # unlink() can still take a callback back from it.
        self._links_in_flight: list[Link] | None = None

    def ready(self) -> bool:
        """True once set."""
        return self._flag

    def _fire(self) -> None:
        """Set the flag; schedule one hub callback for whoever waits or is linked."""
        self._flag = True
        waiters = self._waiters
        if self._links or len(waiters) > 1:
            self._notify_later()
        elif waiters:
            # One waiter and no link: the one callback is the waiter's own switch.
            self._gen += 1
            self._hub._callbacks.append((waiters.pop().switch, ()))  # type: ignore[union-attr]

    def _notify_later(self) -> None:
        """Hand the waiters and links of this ``set()`` to one hub callback."""
        self._gen += 1
        waiters = self._waiters
        if waiters:
            self._waiters = []
        links = self._links
        if links:
            self._links = []
            self._links_in_flight = links
        hub = self._hub
        assert hub is not None  # whoever waits or links recorded it
        hub._callbacks.append((self._notify, (waiters, links)))

    def _notify(self, waiters: list[RawGreenlet], links: list[Link]) -> None:
        """Runs in the hub: wake the waiters of one ``set()``, then call its links."""
        # Iterating while woken greenlets run is safe: a greenlet only ever removes
        # itself, and only when it leaves by an exception or a timer, which cannot
        # happen while this loop is the one resuming it.
        for g in waiters:
            try:
                g.switch()
            except GreenletExit:
                raise  # thrown into the hub itself: it is being destroyed
            except BaseException as e:  # a raw greenlet that died with an error
                self._report(g, e)
        if links:
            self._run_links(links)

    def _run_links(self, links: list[Link]) -> None:
        # pop(0) rather than a for loop: a link may unlink others (iwait does).
        while links:
            link = links.pop(0)
            try:
                link(self)
            except GreenletExit:
                raise
            except BaseException as e:
                self._report(link, e)
        if self._links_in_flight is links:
            self._links_in_flight = None

    def _flush_links(self) -> None:
        """Runs in the hub: call links added while the flag was already set."""
        links = self._links
        if self._flag and links:
            self._links = []
            self._links_in_flight = links
            self._run_links(links)

    def _report(self, context: object, exc: BaseException) -> None:
        hub = self._hub if self._hub is not None else get_hub()
        hub.handle_error(context, exc)

    def _block(self, timeout: float | None) -> bool:
        """Park until the next ``set()``; False if ``timeout`` passed first."""
        if timeout is not None and timeout <= 0:
            return False
        g = getcurrent()
        hub = self._hub
        if hub is None or g.parent is not hub:
            hub = self._hub = _hub_to_park_in(g)
        waiters = self._waiters
        waiters.append(g)
        gen = self._gen
        if timeout is None:
            try:
                while self._gen == gen:
                    hub.switch()
            except BaseException:
                _withdraw(waiters, g)
                raise
            return True
        timer = hub.call_later(timeout, g.switch)
        try:
            while self._gen == gen and timer.active:
                hub.switch()
        except BaseException:
            timer.cancel()
            _withdraw(waiters, g)
            raise
        if timer.active:  # woken by a set(), not by the timer
            timer.cancel()
            return True
        # The timer fired. A set() may have come first: then it counts, but the
        # notification still holds this greenlet and must not resume it later.
        _withdraw(waiters, g)
        return self._gen != gen

    def rawlink(self, callback: Link) -> None:
        """Call ``callback(self)`` in the hub once set (soon, if it already is).

        A link is called once; link again to hear about a later ``set()``.
        """
        if not callable(callback):
            raise TypeError(f"expected a callable, not {callback!r}")
        hub = self._hub = get_hub()
        links = self._links
        links.append(callback)
        if self._flag and len(links) == 1:
            hub._callbacks.append((self._flush_links, ()))

    def unlink(self, callback: Link) -> None:
        """Remove a callback added by :meth:`rawlink`; harmless if it is not there."""
        try:
            self._links.remove(callback)
        except ValueError:
            in_flight = self._links_in_flight
            if in_flight is not None:
                try:
                    in_flight.remove(callback)
                except ValueError:
                    pass


class Event(_Signal):
    """A flag greenlets can wait for, like :class:`threading.Event`.

    Greenlets that were waiting when :meth:`set` was called all return True from
    :meth:`wait`, even if :meth:`clear` runs before they are resumed.
    """

    __slots__ = ()

    def is_set(self) -> bool:
        """True if the flag is set."""
        return self._flag

    def isSet(self) -> bool:  # noqa: N802 - threading's old name
        """Deprecated alias of :meth:`is_set`, as in :mod:`threading`."""
        warnings.warn(
            "isSet() is deprecated, use is_set() instead", DeprecationWarning, stacklevel=2
        )
        return self._flag

    def set(self) -> None:
        """Set the flag and wake every waiting greenlet."""
        # _fire, inlined: it is half of what an Event handoff costs.
        if self._flag:
            return
        self._flag = True
        waiters = self._waiters
        if self._links or len(waiters) > 1:
            self._notify_later()
        elif waiters:
            self._gen += 1
            self._hub._callbacks.append((waiters.pop().switch, ()))  # type: ignore[union-attr]

    def clear(self) -> None:
        """Reset the flag; greenlets already woken by a :meth:`set` still return True."""
        self._flag = False

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the flag is set, at most ``timeout`` seconds.

        Returns:
            True if the flag was set (now, or while waiting), False on timeout.
        """
        if self._flag:
            return True
        if timeout is not None:
            return self._block(timeout)
        # _block's untimed case, inlined: it is what an Event handoff costs. A greenlet
        # spawned by greenwire has the hub as its parent, which saves a get_hub().
        g = getcurrent()
        hub = self._hub
        if hub is None or g.parent is not hub:
            hub = self._hub = _hub_to_park_in(g)
        waiters = self._waiters
        waiters.append(g)
        gen = self._gen
        try:
            while self._gen == gen:
                hub.switch()
        except BaseException:
            _withdraw(waiters, g)
            raise
        return True

    def _at_fork_reinit(self) -> None:
        # threading calls this in a forked child; its waiters do not exist there.
        self._flag = False
        self._waiters = []
        self._links = []
        self._links_in_flight = None
        self._hub = None

    def __repr__(self) -> str:
        state = "set" if self._flag else "unset"
        return f"<{type(self).__name__} {state} waiters={len(self._waiters)} at {id(self):#x}>"


class AsyncResult(_Signal, Generic[T]):
    """A value or an exception that will be delivered later, to any number of waiters.

    Passing it to ``Greenlet.link`` delivers the greenlet's outcome to it.
    """

    __slots__ = ("_value", "_exc_info")

    def __init__(self) -> None:
        super().__init__()
        self._value: T | None = None
        self._exc_info: ExcInfo | None = None

    def set(self, value: T | None = None) -> None:
        """Store ``value`` and wake the waiters."""
        self._value = value
        self._exc_info = None
        if not self._flag:
            self._fire()

    def set_exception(
        self, exception: BaseException | type[BaseException], exc_info: Any = None
    ) -> None:
        """Store an exception that :meth:`get` will raise, and wake the waiters.

        Args:
            exception: an exception instance (or class, which is instantiated).
            exc_info: an optional ``sys.exc_info()`` triple whose traceback is kept
                instead of the exception's own.
        """
        exc = exception() if isinstance(exception, type) else exception
        tb = exc_info[2] if exc_info else exc.__traceback__
        self._value = None
        self._exc_info = (type(exc), exc, tb)
        if not self._flag:
            self._fire()

    def __call__(self, source: Any) -> None:
        """Take the outcome of ``source`` (a finished Greenlet); what links call."""
        if source.successful():
            self.set(source.value)
        else:
            self.set_exception(source.exception)

    def successful(self) -> bool:
        """True if set with a value (not an exception)."""
        return self._flag and self._exc_info is None

    @property
    def value(self) -> T | None:
        """The value, or None if not set or set with an exception."""
        return self._value

    @property
    def exception(self) -> BaseException | None:
        """The exception it was set with, or None."""
        info = self._exc_info
        return None if info is None else info[1]

    @property
    def exc_info(self) -> ExcInfo | None:
        """``(type, exception, traceback)`` if set with an exception, else None."""
        return self._exc_info

    def get(self, block: bool = True, timeout: float | None = None) -> T | None:
        """Return the value, or raise the stored exception (with its traceback).

        Raises:
            Timeout: not set within ``timeout`` (at once if ``block`` is False).
        """
        if not self._flag:
            if not block:
                raise Timeout()
            if not self._block(timeout):
                raise Timeout(timeout)
        info = self._exc_info
        if info is not None:
            # Restore the traceback it was stored with, so that getting it again and
            # again does not make it grow.
            raise info[1].with_traceback(info[2])
        return self._value

    def get_nowait(self) -> T | None:
        """:meth:`get` without blocking."""
        return self.get(block=False)

    def wait(self, timeout: float | None = None) -> T | None:
        """Block until set, at most ``timeout`` seconds, and return :attr:`value`.

        Never raises the stored exception (like gevent): None then, as on timeout.
        """
        if not self._flag:
            self._block(timeout)
        return self._value

    def __repr__(self) -> str:
        if not self._flag:
            state = "unset"
        elif self._exc_info is not None:
            state = f"exception={self._exc_info[1]!r}"
        else:
            state = f"value={self._value!r}"
        return f"<AsyncResult {state} at {id(self):#x}>"
