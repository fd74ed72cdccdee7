"""Structured concurrency: a block of code that owns the greenlets it starts.

::

    with TaskGroup() as tg:
        tg.spawn(fetch, "a")
        tg.spawn(fetch, "b")
    # both have finished here, whatever happened

Leaving the ``with`` block waits for every child. Nothing started in the group outlives
it, and no failure is lost:

* The first child that fails cancels the group: every other child is killed with
  :class:`GreenletExit`, and the body of the ``with`` block, if the parent is still in
  it, is interrupted at its current (or next) blocking call. ``__exit__`` then waits for
  the children to finish and raises every failure together: a
  :class:`BaseExceptionGroup` (an :class:`ExceptionGroup` when all are ``Exception``) on
  Python 3.11+, a :class:`TaskGroupError` on 3.10. An ``Exception`` raised by the body
  itself cancels the group the same way and joins the group's failures, as in
  :class:`asyncio.TaskGroup`.
* When the parent itself is cancelled (killed, or an enclosing ``move_on_after`` /
  ``fail_after`` / :class:`~greenwire.Timeout` fires, or any other ``BaseException`` that
  is not an ``Exception`` hits it) in the body or while ``__exit__`` waits, the children
  are killed and waited for, then that exception propagates unchanged, so the scope that
  fired catches its own expiry. Failures collected meanwhile cannot travel with it; they
  are reported through the hub's error handler instead.
* :meth:`TaskGroup.cancel` cancels everything and leaves the block quietly.

Children are ordinary :class:`~greenwire.Greenlet` objects, except that their failures are
not reported by the hub: the group re-raises them.

Python 3.10 has no exception groups: there the failures arrive as :class:`TaskGroupError`,
an ``Exception`` with an ``exceptions`` list. On 3.11+ ``TaskGroupError`` is simply
another name for :class:`BaseExceptionGroup`, so ``except TaskGroupError as e:
e.exceptions`` works on every version, and 3.11 code can use ``except*`` instead.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Any, TypeVar

from greenlet import getcurrent
from greenlet import greenlet as RawGreenlet

from greenwire._core import Hub, get_hub
from greenwire.greenlet import Greenlet, GreenletExit

T = TypeVar("T")

__all__ = ["TaskGroup", "TaskGroupError"]

_MESSAGE = "unhandled errors in a TaskGroup"


class _LegacyTaskGroupError(Exception):
    """Several failures of a :class:`TaskGroup`, on Pythons without exception groups.

    Attributes:
        message: a summary.
        exceptions: the failures, in the order they happened.
    """

    def __init__(self, message: str, exceptions: Sequence[BaseException]) -> None:
        super().__init__(message, list(exceptions))
        self.message = message
        self.exceptions = list(exceptions)

    def __str__(self) -> str:
        n = len(self.exceptions)
        return f"{self.message} ({n} sub-exception{'' if n == 1 else 's'})"


if sys.version_info >= (3, 11):
    TaskGroupError = BaseExceptionGroup  # noqa: F821 (a builtin since 3.11)
else:  # pragma: no cover - Python 3.10
    TaskGroupError = _LegacyTaskGroupError


def _group_of(failures: list[BaseException]) -> BaseException:
    if sys.version_info >= (3, 11):
        return BaseExceptionGroup(_MESSAGE, failures)  # noqa: F821
    return _LegacyTaskGroupError(_MESSAGE, failures)  # pragma: no cover - 3.10 only


class _GroupCancelled(BaseException):
    """Thrown into the parent's body when its group is cancelled; that group's exit eats it."""

    def __init__(self, group: TaskGroup) -> None:
        super().__init__("the TaskGroup was cancelled")
        self.group = group


_NEW, _OPEN, _CLOSED = 0, 1, 2


class TaskGroup:
    """A ``with`` block that waits for, and cancels together, the greenlets it spawns."""

    __slots__ = (
        "_state",
        "_hub",
        "_parent",
        "_children",
        "_failures",
        "_cancelled",
        "_in_body",
        "_body_interrupted",
        "_exit_waiter",
    )

    def __init__(self) -> None:
        self._state = _NEW
        self._hub: Hub | None = None
        self._parent: RawGreenlet | None = None
        self._children: dict[Greenlet[Any], None] = {}  # an insertion-ordered set
        self._failures: list[BaseException] = []
        self._cancelled = False
        self._in_body = False
        self._body_interrupted = False
        self._exit_waiter: RawGreenlet | None = None

    # ---------------------------------------------------------------- spawning

    def spawn(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> Greenlet[T]:
        """Start ``fn(*args, **kwargs)`` as a child of the group.

        Allowed from the body and, until the group closes, from anywhere else (typically
        a child). In a cancelled group the child is killed before it ever runs.

        Raises:
            RuntimeError: the group was not entered yet, or has already closed.
        """
        if self._state != _OPEN:
            state = "has not been entered" if self._state == _NEW else "is closed"
            raise RuntimeError(f"cannot spawn into a TaskGroup that {state}")
        g: Greenlet[T] = Greenlet(fn, *args, **kwargs)
        g._report_errors = False  # the group re-raises its children's failures
        self._children[g] = None
        g.rawlink(self._child_done)
        if self._cancelled:
            g.kill(block=False)  # never runs; finishes at once as killed
        else:
            g.start()
        return g

    def cancel(self) -> None:
        """Kill every child and leave the ``with`` block quietly.

        The body is interrupted at its next blocking call (if it reaches ``__exit__``
        first, it just waits there for the children). A child that calls this is killed
        at its own next blocking call. Failures already collected are still raised.
        """
        if self._state == _OPEN:
            self._cancel_all()

    @property
    def cancel_called(self) -> bool:
        """True once the group was cancelled (by :meth:`cancel` or a failure)."""
        return self._cancelled

    @property
    def children(self) -> list[Greenlet[Any]]:
        """The children still running (a snapshot)."""
        return list(self._children)

    def _cancel_all(self) -> None:
        if self._cancelled:
            return
        self._cancelled = True
        hub = self._hub
        assert hub is not None
        me = getcurrent()
        for child in list(self._children):
            if child is me:
                # Killing ourselves would raise right here, in the middle of cancel().
                hub.run_callback(child._throw_in, GreenletExit())
            else:
                child.kill(block=False)
        if self._in_body:
            # Thrown in from the hub, where the parent is suspended, never running.
            hub.run_callback(self._interrupt_body)

    def _interrupt_body(self) -> None:
        parent = self._parent
        if self._in_body and not self._body_interrupted and parent is not None:
            self._body_interrupted = True
            if not parent.dead:
                parent.throw(_GroupCancelled(self))

    def _child_done(self, child: Greenlet[Any]) -> None:
        # A rawlink: runs in the hub after a child finished.
        del self._children[child]
        exc = child.exception
        if exc is not None:
            self._failures.append(exc)
            self._cancel_all()
        if not self._children and self._exit_waiter is not None:
            assert self._hub is not None
            self._hub.run_callback(self._exit_waiter.switch)

    # ------------------------------------------------------------- the block

    def __enter__(self) -> TaskGroup:
        if self._state != _NEW:
            raise RuntimeError("a TaskGroup can be entered only once")
        self._hub = get_hub()
        self._parent = getcurrent()
        self._state = _OPEN
        self._in_body = True
        return self

    def __exit__(
        self,
        typ: type[BaseException] | None,
        value: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        self._in_body = False
        # The exception the parent was cancelled with, to let through unchanged.
        passthrough: BaseException | None = None
        if isinstance(value, _GroupCancelled) and value.group is self:
            pass
        elif isinstance(value, Exception):
            self._failures.append(value)
            self._cancel_all()
        elif value is not None:
            passthrough = value
            self._cancel_all()
        passthrough = self._wait_for_children(passthrough)
        self._state = _CLOSED
        failures, self._failures = self._failures, []
        if passthrough is not None:
            hub = self._hub
            assert hub is not None
            for exc in failures:
                if exc is not passthrough and not isinstance(exc, (KeyboardInterrupt, SystemExit)):
                    hub.handle_error(self, exc)
            if passthrough is value:
                return False
            raise passthrough
        if failures:
            raise _group_of(failures) from None
        return value is not None  # only our own _GroupCancelled gets here

    def _wait_for_children(self, passthrough: BaseException | None) -> BaseException | None:
        """Park until every child has finished; return the exception to propagate.

        An exception thrown in meanwhile cancels the parent: the children are killed but
        still waited for. A later one replaces an earlier one (an outer scope's expiry is
        the broader cancellation), except that KeyboardInterrupt and SystemExit stick.
        """
        hub = self._hub
        assert hub is not None
        me = getcurrent()
        while self._children:
            self._exit_waiter = me
            try:
                hub.park()
            except BaseException as e:
                if not isinstance(passthrough, (KeyboardInterrupt, SystemExit)):
                    passthrough = e
                self._cancel_all()
            finally:
                self._exit_waiter = None
        return passthrough

    def __repr__(self) -> str:
        state = ("new", "open", "closed")[self._state]
        cancelled = " cancelled" if self._cancelled else ""
        return (
            f"<TaskGroup {state}{cancelled} children={len(self._children)}"
            f" failures={len(self._failures)}>"
        )
