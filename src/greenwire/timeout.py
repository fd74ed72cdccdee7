"""Timeouts and deadlines.

Two styles are offered:

* :class:`Timeout`, familiar from gevent: an exception object that is also a timer.
  ``start()`` arms it for the current greenlet; when it fires it is thrown into that
  greenlet wherever it is blocked. It must be cancelled (``cancel()`` or a ``with`` block)
  or it stays armed.
* Scoped deadlines, which cannot be left armed: ``with fail_after(5):`` raises
  :class:`TooSlowError` (a :class:`TimeoutError`) if the block takes longer, and
  ``with move_on_after(5) as scope:`` silently leaves the block and sets
  ``scope.cancelled_caught``. Scopes nest: each one catches only its own expiry.
"""

from __future__ import annotations

from collections.abc import Callable
from types import TracebackType
from typing import Any, TypeVar

from greenlet import getcurrent
from greenlet import greenlet as RawGreenlet

from greenwire._core import Timeout, Timer, get_hub

T = TypeVar("T")

__all__ = [
    "CancelScope",
    "Timeout",
    "TooSlowError",
    "fail_after",
    "fail_at",
    "move_on_after",
    "move_on_at",
    "with_timeout",
]


_NOT_GIVEN: Any = object()


def with_timeout(
    seconds: float | None,
    function: Callable[..., T],
    *args: Any,
    timeout_value: Any = _NOT_GIVEN,
    **kwargs: Any,
) -> Any:
    """Call ``function(*args, **kwargs)``; give up after ``seconds``.

    Returns ``timeout_value`` on timeout if it was given, else raises :class:`Timeout`.
    """
    timeout = Timeout.start_new(seconds)
    try:
        return function(*args, **kwargs)
    except Timeout as t:
        if t is timeout and timeout_value is not _NOT_GIVEN:
            return timeout_value
        raise
    finally:
        timeout.cancel()


class TooSlowError(TimeoutError):
    """Raised by :func:`fail_after` / :func:`fail_at` when the deadline passes."""


class _DeadlineExpired(BaseException):
    """Thrown into a greenlet when its scope's deadline passes; caught by that scope."""

    def __init__(self, scope: CancelScope) -> None:
        super().__init__("deadline expired")
        self.scope = scope


class CancelScope:
    """A block of code with a deadline; use :func:`fail_after` or :func:`move_on_after`.

    Attributes:
        deadline: absolute time on the hub's clock, or None for none.
        cancelled_caught: True if the block was left because of this scope's deadline
            (or its :meth:`cancel`).
    """

    def __init__(self, deadline: float | None, raise_on_expiry: bool) -> None:
        self.deadline = deadline
        self._raise = raise_on_expiry
        self._timer: Timer | None = None
        self._owner: RawGreenlet | None = None
        self._expired = False
        self.cancelled_caught = False

    def __enter__(self) -> CancelScope:
        if self._owner is not None:
            raise RuntimeError("a cancel scope can be entered only once")
        self._owner = getcurrent()
        if self.deadline is not None:
            self._timer = get_hub().call_at(self.deadline, self._expire)
        return self

    def _expire(self) -> None:
        owner = self._owner
        if self._expired or owner is None or owner.dead:
            return
        self._expired = True
        if owner is getcurrent():
            raise _DeadlineExpired(self)
        owner.throw(_DeadlineExpired(self))

    def cancel(self) -> None:
        """Leave the block now, as if its deadline had passed."""
        if self._timer is not None:
            self._timer.cancel()
        if self._owner is None:
            self._expired = True
            return
        if self._owner is getcurrent():
            self._expire()
        else:
            get_hub().run_callback(self._expire)

    def __exit__(
        self,
        typ: type[BaseException] | None,
        value: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        if self._timer is not None:
            self._timer.cancel()
        ours = isinstance(value, _DeadlineExpired) and value.scope is self
        if not ours and value is not None:
            return False
        if not ours and not self._expired:
            return False
        self.cancelled_caught = True
        if self._raise:
            raise TooSlowError("deadline exceeded") from None
        return True

    def __repr__(self) -> str:
        kind = "fail" if self._raise else "move_on"
        return f"<CancelScope {kind} deadline={self.deadline} caught={self.cancelled_caught}>"


def fail_at(deadline: float) -> CancelScope:
    """A scope that raises :class:`TooSlowError` if still running at ``deadline``."""
    return CancelScope(deadline, raise_on_expiry=True)


def fail_after(seconds: float) -> CancelScope:
    """A scope that raises :class:`TooSlowError` if it runs longer than ``seconds``."""
    return CancelScope(get_hub().now() + seconds, raise_on_expiry=True)


def move_on_at(deadline: float) -> CancelScope:
    """A scope that is silently left if still running at ``deadline``."""
    return CancelScope(deadline, raise_on_expiry=False)


def move_on_after(seconds: float) -> CancelScope:
    """A scope that is silently left if it runs longer than ``seconds``."""
    return CancelScope(get_hub().now() + seconds, raise_on_expiry=False)
