"""Greenlets: spawning, joining, killing, linking, sleeping.

A :class:`Greenlet` runs a function in its own greenlet whose parent is the hub, so when
it finishes control returns to the event loop. Its outcome is kept: ``get()`` returns the
value or re-raises the exception. An exception that nobody is waiting for when it happens
is reported once, with its traceback, through the hub's error handler.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, Generic, Protocol, TypeVar

from greenlet import GreenletExit, getcurrent
from greenlet import greenlet as RawGreenlet

from greenwire._core import HubBlockingError, LoopExit, Timer, get_hub
from greenwire.timeout import Timeout

T = TypeVar("T")

__all__ = [
    "Greenlet",
    "GreenletExit",
    "getcurrent",
    "idle",
    "iwait",
    "joinall",
    "killall",
    "sleep",
    "spawn",
    "spawn_later",
    "wait",
]

_counter = itertools.count(1)
_NONE: Any = object()


class Waitable(Protocol):
    """Anything :func:`wait` and :func:`iwait` accept (Greenlet, Event, AsyncResult...)."""

    def ready(self) -> bool: ...

    def rawlink(self, callback: Callable[[Any], Any]) -> None: ...

    def unlink(self, callback: Callable[[Any], Any]) -> None: ...


class _SpawnedLink:
    """A link that runs its callback in a new greenlet (what ``link()`` promises)."""

    __slots__ = ("callback",)

    def __init__(self, callback: Callable[[Any], Any]) -> None:
        self.callback = callback

    def __call__(self, source: Any) -> None:
        Greenlet.spawn(self.callback, source)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, _SpawnedLink):
            return self.callback == other.callback
        return self.callback == other

    def __hash__(self) -> int:
        return hash(self.callback)


class _FilteredLink(_SpawnedLink):
    __slots__ = ("want_success",)

    def __init__(self, callback: Callable[[Any], Any], want_success: bool) -> None:
        super().__init__(callback)
        self.want_success = want_success

    def __call__(self, source: Any) -> None:
        if source.successful() == self.want_success:
            Greenlet.spawn(self.callback, source)


class Greenlet(RawGreenlet, Generic[T]):
    """A function running in its own greenlet, with a result others can wait for.

    Args:
        run: the function to call; subclasses may override ``_run`` instead.
        *args, **kwargs: its arguments.
    """

    # Defaults live on the class so that creating a greenlet sets only what differs:
    # spawning is on the hot path of every server.
    _value: Any = None
    _exception: BaseException | None = None
    _done = False
    _started = False
    _start_timer: Timer | None = None
    _name: str | None = None
    _report_errors = True
    _consumers = 0
    _links: list[Callable[[Any], Any]] | None = None
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = {}  # shared default: never mutated, only replaced

    def __init__(self, run: Callable[..., T] | None = None, *args: Any, **kwargs: Any) -> None:
        hub = get_hub()
        RawGreenlet.__init__(self, None, hub)
        if run is not None:
            self._run = run  # type: ignore[method-assign]
        if args:
            self.args = args
        if kwargs:
            self.kwargs = kwargs
        self._hub = hub

    # ------------------------------------------------------------- starting

    @classmethod
    def spawn(cls, run: Callable[..., T], *args: Any, **kwargs: Any) -> Greenlet[T]:
        """Create a greenlet and schedule it to start."""
        g: Greenlet[T] = cls(run, *args, **kwargs)
        g._started = True
        g._hub._callbacks.append((g.switch, ()))
        return g

    @classmethod
    def spawn_later(
        cls, seconds: float, run: Callable[..., T], *args: Any, **kwargs: Any
    ) -> Greenlet[T]:
        """Create a greenlet and start it after ``seconds``."""
        g: Greenlet[T] = cls(run, *args, **kwargs)
        g.start_later(seconds)
        return g

    def start(self) -> None:
        """Schedule the greenlet to run (once)."""
        if not self._started:
            self._started = True
            self._hub._callbacks.append((self.switch, ()))

    def start_later(self, seconds: float) -> None:
        """Schedule the greenlet to run after ``seconds``."""
        if not self._started:
            self._started = True
            self._start_timer = self._hub.call_later(seconds, self.switch)

    @property
    def started(self) -> bool:
        return self._started

    def _run(self, *args: Any, **kwargs: Any) -> T:
        raise NotImplementedError("pass a function to Greenlet() or override _run")

    def run(self) -> None:
        if self._done:  # killed before it started
            return
        try:
            if self.args or self.kwargs:
                value = self._run(*self.args, **self.kwargs)
            else:
                value = self._run()
        except GreenletExit as e:
            self._finish(e, None)
        except BaseException as e:
            self._finish(_NONE, e)
        else:
            # The common case, inlined: _finish(value, None) without the call.
            if value is not None:
                self._value = value
            self._done = True
            if self.args:
                del self.args
            if self.kwargs:
                del self.kwargs
            if self._links:
                self._hub._callbacks.append((self._notify_links, ()))

    def _finish(self, value: Any, exception: BaseException | None) -> None:
        if value is not _NONE:
            self._value = value
        if exception is not None:
            self._exception = exception
        self._done = True
        # Drop references to the arguments (back to the class defaults).
        if self.args:
            del self.args
        if self.kwargs:
            del self.kwargs
        hub = self._hub
        if self._links:
            hub._callbacks.append((self._notify_links, ()))
        if exception is not None:
            if isinstance(exception, (KeyboardInterrupt, SystemExit)):
                hub.handle_system_error(exception)
            elif self._report_errors and not self._consumers:
                hub.handle_error(self, exception)

    def _notify_links(self) -> None:
        links, self._links = self._links or [], None
        for link in links:
            try:
                link(self)
            except GreenletExit:
                raise
            except BaseException as e:
                self._hub.handle_error(link, e)

    # -------------------------------------------------------------- outcome

    def ready(self) -> bool:
        """True once the greenlet has finished (or was killed before it started)."""
        return self._done

    def successful(self) -> bool:
        """True if it finished without an exception (being killed counts as success)."""
        return self._done and self._exception is None

    @property
    def value(self) -> T | None:
        """The return value (or the GreenletExit that killed it), None until ready."""
        return self._value if self._done else None

    @property
    def exception(self) -> BaseException | None:
        """The exception it failed with, or None."""
        return self._exception

    def get(self, block: bool = True, timeout: float | None = None) -> T:
        """Return the value, or raise the exception the greenlet failed with.

        Raises:
            Timeout: not ready within ``timeout`` (or at once if ``block`` is False).
        """
        if not self._done:
            if not block:
                raise Timeout()
            self._consumers += 1
            try:
                self.join(timeout)
            finally:
                self._consumers -= 1
            if not self._done:
                raise Timeout(timeout)
        if self._exception is not None:
            raise self._exception
        return self._value  # type: ignore[no-any-return]

    def join(self, timeout: float | None = None) -> None:
        """Wait until the greenlet finishes, at most ``timeout`` seconds."""
        if self._done:
            return
        hub = self._hub
        me = getcurrent()
        if me is self:
            raise RuntimeError("a greenlet cannot join itself")
        deadline = None if timeout is None else hub.now() + timeout
        waker = me.switch
        if self._links is None:
            self._links = [waker]
        else:
            self._links.append(waker)
        try:
            while not self._done:
                if not hub.park_until(deadline) and not self._done:
                    return
        finally:
            if self._links:
                try:
                    self._links.remove(waker)
                except ValueError:
                    pass

    # ---------------------------------------------------------------- links

    def rawlink(self, callback: Callable[[Any], Any]) -> None:
        """Call ``callback(self)`` in the hub when the greenlet finishes."""
        if self._links is None:
            self._links = [callback]
        else:
            self._links.append(callback)
        if self._done and len(self._links) == 1:
            self._hub._callbacks.append((self._notify_links, ()))

    def link(self, callback: Callable[[Any], Any]) -> None:
        """Run ``callback(self)`` in a new greenlet when this one finishes."""
        self.rawlink(_SpawnedLink(callback))

    def link_value(self, callback: Callable[[Any], Any]) -> None:
        """Like :meth:`link`, only if the greenlet finishes successfully."""
        self.rawlink(_FilteredLink(callback, True))

    def link_exception(self, callback: Callable[[Any], Any]) -> None:
        """Like :meth:`link`, only if the greenlet fails."""
        self.rawlink(_FilteredLink(callback, False))

    def unlink(self, callback: Callable[[Any], Any]) -> None:
        """Remove a callback added by any of the link methods."""
        links = self._links
        if links is None:
            return
        for i, link in enumerate(links):
            if link == callback or callback == link:
                del links[i]
                return

    # ----------------------------------------------------------------- kill

    def kill(
        self,
        exception: BaseException | type[BaseException] = GreenletExit,
        block: bool = True,
        timeout: float | None = None,
    ) -> None:
        """Raise ``exception`` in the greenlet; by default wait for it to finish.

        A greenlet killed before it started never runs and counts as killed.
        """
        if self._done:
            return
        exc = exception() if isinstance(exception, type) else exception
        if not self:  # never ran (not started, scheduled, or waiting for start_later)
            if self._start_timer is not None:
                self._start_timer.cancel()
            self._started = True
            if isinstance(exc, GreenletExit):
                self._finish(exc, None)
            else:
                self._finish(_NONE, exc)
            return
        if getcurrent() is self:
            raise exc
        self._hub._callbacks.append((self._throw_in, (exc,)))
        if block:
            self.join(timeout)

    def _throw_in(self, exc: BaseException) -> None:
        if not self.dead and not self._done:
            self.throw(exc)

    # ------------------------------------------------------------- identity

    @property
    def name(self) -> str:
        if self._name is None:
            fn = getattr(self, "_run", None)
            fname = getattr(fn, "__qualname__", None) or "greenlet"
            self._name = f"{fname}-{next(_counter)}"
        return self._name

    @name.setter
    def name(self, value: str) -> None:
        self._name = value

    def __repr__(self) -> str:
        if self._done:
            state = "failed" if self._exception is not None else "done"
        elif self:
            state = "running"
        elif self._started:
            state = "scheduled"
        else:
            state = "new"
        return f"<Greenlet {self.name!r} {state} at {id(self):#x}>"


def spawn(function: Callable[..., T], *args: Any, **kwargs: Any) -> Greenlet[T]:
    """Run ``function(*args, **kwargs)`` in a new greenlet; return the Greenlet."""
    g: Greenlet[T] = Greenlet(function, *args, **kwargs)
    g._started = True
    g._hub._callbacks.append((g.switch, ()))
    return g


def spawn_later(
    seconds: float, function: Callable[..., T], *args: Any, **kwargs: Any
) -> Greenlet[T]:
    """Like :func:`spawn`, but start after ``seconds``."""
    return Greenlet.spawn_later(seconds, function, *args, **kwargs)


def sleep(seconds: float = 0) -> None:
    """Block the current greenlet for ``seconds``; ``sleep(0)`` lets the others run."""
    hub = get_hub()
    g = getcurrent()
    if g is hub:
        raise HubBlockingError("cannot sleep inside the hub (in a callback or timer)")
    if seconds <= 0:
        hub._callbacks.append((g.switch, ()))
        hub.switch()
        return
    timer = hub.call_later(seconds, g.switch)
    try:
        while timer.active:
            hub.switch()
    finally:
        timer.cancel()


def idle() -> None:
    """Block until the hub has nothing else to do."""
    get_hub().wait_idle()


def iwait(
    objects: Iterable[Waitable], timeout: float | None = None, count: int | None = None
) -> Iterator[Any]:
    """Yield the objects as they become ready, until ``count`` or ``timeout``."""
    hub = get_hub()
    me = getcurrent()
    items = list(objects)
    if count is None:
        count = len(items)
    ready: deque[Any] = deque()
    waiting = [False]

    def on_ready(obj: Any) -> None:
        ready.append(obj)
        if waiting[0]:
            waiting[0] = False
            me.switch()

    pending = []
    for obj in items:
        if obj.ready():
            ready.append(obj)
        else:
            obj.rawlink(on_ready)
            pending.append(obj)
    deadline = None if timeout is None else hub.now() + timeout
    try:
        yielded = 0
        while yielded < count:
            if not ready:
                waiting[0] = True
                try:
                    woke = hub.park_until(deadline)
                finally:
                    waiting[0] = False
                if not woke and not ready:
                    return
                continue
            yielded += 1
            yield ready.popleft()
    finally:
        for obj in pending:
            obj.unlink(on_ready)


def wait(
    objects: Sequence[Waitable] | None = None,
    timeout: float | None = None,
    count: int | None = None,
) -> list[Any]:
    """Wait for ``objects`` (or ``count`` of them) to be ready; return the ready ones.

    With no objects, wait until nothing is left to run (the hub would block forever).
    """
    if objects is None:
        hub = get_hub()
        try:
            if timeout is None:
                while True:
                    hub.park()
            else:
                deadline = hub.now() + timeout
                while hub.park_until(deadline):
                    pass
        except LoopExit:
            return []
        return []
    return list(iwait(objects, timeout, count))


def joinall(
    greenlets: Sequence[Greenlet[Any]],
    timeout: float | None = None,
    raise_error: bool = False,
    count: int | None = None,
) -> list[Greenlet[Any]]:
    """Wait for the greenlets to finish; return those that did.

    Args:
        raise_error: re-raise the first failure as soon as it is seen.
    """
    if not raise_error and count is None:
        # Joining one after the other costs no link per greenlet: most are already
        # done by the time the first join returns.
        hub = get_hub()
        deadline = None if timeout is None else hub.now() + timeout
        for g in greenlets:
            if not g._done:
                g.join(None if deadline is None else max(0.0, deadline - hub.now()))
                if not g._done:
                    break
        return [g for g in greenlets if g._done]
    if not raise_error:
        return wait(greenlets, timeout, count)
    done = []
    for g in iwait(greenlets, timeout, count):
        if g.exception is not None:
            raise g.exception
        done.append(g)
    return done


def killall(
    greenlets: Iterable[Greenlet[Any]],
    exception: BaseException | type[BaseException] = GreenletExit,
    block: bool = True,
    timeout: float | None = None,
) -> None:
    """Kill every greenlet; by default wait for all of them to finish."""
    items = [g for g in greenlets if not g.ready()]
    for g in items:
        g.kill(exception, block=False)
    if block:
        wait(items, timeout)
