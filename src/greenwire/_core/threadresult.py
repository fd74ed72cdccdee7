"""The result of a call made in a pool thread, waited for by greenlets of one hub.

A :class:`ThreadResult` crosses threads exactly twice: a worker thread takes the call from
it and stores the outcome in it, then hands it to the submitting thread's hub with
``run_callback_threadsafe``. From then on only that hub's thread touches it: the hub marks it
ready, wakes the greenlets parked in :meth:`ThreadResult.wait`, and runs the ``rawlink``
callbacks. A waiter that leaves early (killed, timed out) just removes itself; the outcome
still arrives and is dropped, and a failure that nobody waited for or linked to is reported
once through ``hub.handle_error`` (KeyboardInterrupt and SystemExit are raised in the
thread's main greenlet, as the hub does for every unobserved one).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, TypeVar

from greenlet import GreenletExit, getcurrent
from greenlet import greenlet as RawGreenlet

from greenwire._core import _originals
from greenwire._core.hub import Hub
from greenwire._core.timeout import Timeout

T = TypeVar("T")

__all__ = ["ThreadResult"]


class ThreadResult(Generic[T]):
    """The outcome of one call submitted to a :class:`ThreadPool`, waitable by greenlets.

    It becomes ready in the hub of the thread that submitted the call; only greenlets of
    that thread may wait for it. Works with ``greenwire.wait`` / ``iwait``.
    """

    __slots__ = (
        "_hub",
        "_fn",
        "_args",
        "_kwargs",
        "_done",
        "_value",
        "_exception",
        "_waiters",
        "_consumers",
        "_links",
    )

    def __init__(
        self, hub: Hub, fn: Callable[..., T], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> None:
        self._hub = hub
        self._fn: Callable[..., T] | None = fn
        self._args = args
        self._kwargs = kwargs
        self._done = False
        self._value: T | None = None
        self._exception: BaseException | None = None
        self._waiters: list[RawGreenlet] | None = None
        # Greenlets that will look at the outcome (waiters, map()): failures are theirs.
        self._consumers = 0
        self._links: list[Callable[[Any], Any]] | None = None

    # --------------------------------------------------------- worker side

    def _run(self) -> None:
        """Make the call and keep its outcome; runs in a worker thread, never raises.

        The outcome is stored but not visible (``ready()`` stays False) until
        :meth:`_send` has carried it to the submitting hub.
        """
        fn, args, kwargs = self._fn, self._args, self._kwargs
        assert fn is not None
        self._fn = None
        self._args = ()
        self._kwargs = {}
        try:
            self._value = fn(*args, **kwargs)
        except BaseException as e:
            self._exception = e
        finally:
            # This frame ends up in a failure's traceback: do not let it hold the result.
            del self

    def _send(self, cancelled: bool) -> None:
        """Hand the stored outcome to the submitting hub (from any thread)."""
        hub = self._hub
        if not hub.destroyed:
            hub.run_callback_threadsafe(self._set_outcome, cancelled)

    def _set_outcome(self, cancelled: bool) -> None:
        """Publish the outcome and wake the waiters; runs in the submitting hub.

        Runs exactly once: under the state lock a call is either taken by one thread or
        cancelled by shutdown, never both.
        """
        self._done = True
        exc = self._exception
        hub = self._hub
        hub.release()
        waiters = self._waiters
        if exc is not None and not cancelled and not self._consumers and not self._links:
            hub.handle_error(self, exc)
        if waiters:
            for g in tuple(waiters):
                if g in waiters:  # an earlier waiter may have killed a later one
                    try:
                        g.switch()
                    except GreenletExit:
                        raise
                    except BaseException as e:
                        hub.handle_error(g, e)
        if self._links:
            self._notify_links()

    def _notify_links(self) -> None:
        links, self._links = self._links, None
        for link in links or ():
            try:
                link(self)
            except GreenletExit:
                raise
            except BaseException as e:
                self._hub.handle_error(link, e)

    # ----------------------------------------------------------- outcome

    def ready(self) -> bool:
        """True once the outcome has reached the submitting hub."""
        return self._done

    def successful(self) -> bool:
        """True if the call returned without raising."""
        return self._done and self._exception is None

    @property
    def value(self) -> T | None:
        """The return value, or None until it is ready (or if the call failed)."""
        return self._value if self._done else None

    @property
    def exception(self) -> BaseException | None:
        """The exception the call raised, or None (also until it is ready)."""
        return self._exception if self._done else None

    def wait(self, timeout: float | None = None) -> bool:
        """Block the current greenlet until the result is ready, at most ``timeout`` seconds.

        Returns:
            True if the result is ready.

        Raises:
            RuntimeError: called from another OS thread than the one that submitted.
        """
        if self._done:
            return True
        hub = self._hub
        if _originals.get_ident() != hub.thread_ident:
            raise RuntimeError("a ThreadResult can only be waited for in the submitting thread")
        g = getcurrent()
        deadline = None if timeout is None else hub.now() + timeout
        waiters = self._waiters
        if waiters is None:
            waiters = self._waiters = []
        waiters.append(g)
        self._consumers += 1
        try:
            while not self._done:
                if not hub.park_until(deadline):
                    break
        finally:
            self._consumers -= 1
            waiters.remove(g)
        return self._done

    def get(self, block: bool = True, timeout: float | None = None) -> T:
        """Return the call's value, or raise its exception (with the worker's traceback).

        Raises:
            greenwire.Timeout: not ready within ``timeout`` (at once if ``block`` is False).
        """
        if not self._done and (not block or not self.wait(timeout)):
            raise Timeout(timeout)
        exc = self._exception
        if exc is None:
            return self._value  # type: ignore[return-value]
        try:
            raise exc
        finally:
            # Break the cycle result -> exception -> traceback -> this frame -> result.
            del exc, self

    def rawlink(self, callback: Callable[[Any], Any]) -> None:
        """Call ``callback(self)`` in the hub when the result is ready (soon if it is)."""
        links = self._links
        if links is None:
            links = self._links = []
        links.append(callback)
        if self._done and len(links) == 1:
            self._hub.run_callback(self._notify_links)

    def unlink(self, callback: Callable[[Any], Any]) -> None:
        """Remove a callback added by :meth:`rawlink`; harmless if absent."""
        if self._links and callback in self._links:
            self._links.remove(callback)

    def __repr__(self) -> str:
        if not self._done:
            state = "pending"
        elif self._exception is not None:
            state = f"failed with {type(self._exception).__name__}"
        else:
            state = "done"
        return f"<ThreadResult {state} at {id(self):#x}>"
