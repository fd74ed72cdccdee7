"""The gevent-style :class:`Timeout`, kept in the core so every layer can raise it."""

from __future__ import annotations

from types import TracebackType

from greenlet import getcurrent
from greenlet import greenlet as RawGreenlet

from greenwire._core.hub import get_hub
from greenwire._core.timers import Timer

__all__ = ["Timeout"]


class Timeout(BaseException):
    """A timer that raises an exception in the greenlet that started it.

    Args:
        seconds: delay before it fires; None never fires.
        exception: what to raise. None raises this Timeout itself; False also raises it,
            but a ``with`` block then swallows it silently; an exception class or
            instance raises that instead.

    It derives from BaseException so that ``except Exception:`` clauses in the code it
    interrupts do not swallow it.
    """

    def __init__(
        self,
        seconds: float | None = None,
        exception: BaseException | type[BaseException] | bool | None = None,
    ) -> None:
        super().__init__(seconds)
        self.seconds = seconds
        self.exception = exception
        self.timer: Timer | None = None

    def start(self) -> None:
        """Arm the timeout for the current greenlet."""
        if self.pending:
            raise RuntimeError(f"{self!r} is already started; cancel it first")
        if self.seconds is None:
            return
        self.timer = get_hub().call_later(self.seconds, self._fire, getcurrent())

    @classmethod
    def start_new(
        cls,
        timeout: float | Timeout | None = None,
        exception: BaseException | type[BaseException] | bool | None = None,
    ) -> Timeout:
        """Create and start a Timeout (or start the given one)."""
        if isinstance(timeout, Timeout):
            if not timeout.pending:
                timeout.start()
            return timeout
        t = cls(timeout, exception)
        t.start()
        return t

    def _fire(self, target: RawGreenlet) -> None:
        if target.dead:
            return
        exc = self.exception
        if exc is None or exc is False or exc is True:
            target.throw(self)
        elif isinstance(exc, BaseException):
            target.throw(exc)
        else:
            target.throw(exc())

    @property
    def pending(self) -> bool:
        """True while armed and not yet fired."""
        return self.timer is not None and self.timer.active

    def cancel(self) -> None:
        """Disarm; harmless if it already fired or never started."""
        if self.timer is not None:
            self.timer.cancel()

    close = cancel

    def __enter__(self) -> Timeout:
        if not self.pending:
            self.start()
        return self

    def __exit__(
        self,
        typ: type[BaseException] | None,
        value: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        self.cancel()
        return value is self and self.exception is False

    def __str__(self) -> str:
        if self.seconds is None:
            return ""
        suffix = "" if self.seconds == 1 else "s"
        if self.exception is None or self.exception is False or self.exception is True:
            return f"{self.seconds} second{suffix}"
        return f"{self.seconds} second{suffix}: {self.exception}"

    def __repr__(self) -> str:
        state = "pending" if self.pending else "inactive"
        return f"<Timeout seconds={self.seconds} exception={self.exception!r} {state}>"
