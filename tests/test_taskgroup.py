"""TaskGroup: structured concurrency, failure propagation, cancellation in both directions."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

import pytest

import greenwire
from greenwire import GreenletExit, Timeout, TooSlowError, fail_after, move_on_after
from greenwire._core import VirtualClock
from greenwire.taskgroup import TaskGroup, TaskGroupError, _LegacyTaskGroupError

if TYPE_CHECKING:
    from tests.conftest import ErrorLog

needs_groups = pytest.mark.skipif(sys.version_info < (3, 11), reason="exception groups")


@pytest.fixture(autouse=True)
def _virtual_time(vclock: VirtualClock) -> VirtualClock:
    """Every test runs on the virtual clock: a broken cancellation fails fast, not in 100 s."""
    return vclock


def fail(message: str = "boom", after: float = 0) -> None:
    if after:
        greenwire.sleep(after)
    raise ValueError(message)


def nap(seconds: float, value: Any = None) -> Any:
    greenwire.sleep(seconds)
    return value


def failures(info: pytest.ExceptionInfo[Any]) -> list[str]:
    """The messages of the exceptions inside a raised group."""
    return [str(e) for e in info.value.exceptions]


class Custom(BaseException):
    """A BaseException that is not a cancellation."""


# ----------------------------------------------------------------- the basics


def test_exit_waits_for_every_child(vclock: VirtualClock) -> None:
    with TaskGroup() as tg:
        a = tg.spawn(nap, 2, "a")
        b = tg.spawn(nap, 1, value="b")
        assert tg.children == [a, b]
    assert vclock.now() == 2
    assert (a.get(), b.get()) == ("a", "b")
    assert tg.children == [] and not tg.cancel_called
    assert "closed" in repr(tg)


def test_children_can_spawn_into_the_group_while_exit_waits(vclock: VirtualClock) -> None:
    seen: list[str] = []

    def parent_task(tg: TaskGroup) -> None:
        greenwire.sleep(1)
        tg.spawn(nap, 1, "grandchild").rawlink(lambda g: seen.append(g.value))

    with TaskGroup() as tg:
        tg.spawn(parent_task, tg)
    assert seen == ["grandchild"] and vclock.now() == 2


def test_spawn_outside_the_block_and_reentry_are_errors() -> None:
    tg = TaskGroup()
    with pytest.raises(RuntimeError, match="not been entered"):
        tg.spawn(str)
    with tg:
        pass
    with pytest.raises(RuntimeError, match="is closed"):
        tg.spawn(str)
    with pytest.raises(RuntimeError, match="only once"), tg:
        pass
    tg.cancel()  # closed: nothing to do
    assert not tg.cancel_called


# ------------------------------------------------------------ child failures


def test_child_failure_cancels_siblings_and_the_body(vclock: VirtualClock) -> None:
    reached: list[str] = []
    with pytest.raises(TaskGroupError) as info, TaskGroup() as tg:
        sibling = tg.spawn(nap, 100)
        tg.spawn(fail, "child", after=1)
        greenwire.sleep(50)
        reached.append("body went on")  # pragma: no cover - must not run
    assert failures(info) == ["child"]
    assert reached == [] and vclock.now() == 1
    assert isinstance(sibling.value, GreenletExit)
    assert tg.cancel_called


def test_every_failure_is_collected(vclock: VirtualClock) -> None:
    def fail_in_cleanup() -> None:
        try:
            greenwire.sleep(100)
        except GreenletExit:
            raise KeyError("during cleanup") from None

    with pytest.raises(TaskGroupError) as info, TaskGroup() as tg:
        tg.spawn(fail_in_cleanup)
        tg.spawn(fail, "first", after=1)
        tg.spawn(fail, "second", after=1)
    assert failures(info) == ["first", "second", "'during cleanup'"]
    assert info.value.message == "unhandled errors in a TaskGroup"


@needs_groups
def test_base_exception_failures_make_a_base_exception_group() -> None:
    def raise_custom() -> None:
        raise Custom("not an Exception")

    with pytest.raises(BaseExceptionGroup) as info, TaskGroup() as tg:  # noqa: F821
        tg.spawn(raise_custom)
    assert not isinstance(info.value, Exception)
    assert [type(e) for e in info.value.exceptions] == [Custom]


def test_body_error_joins_the_failures_and_cancels_children(vclock: VirtualClock) -> None:
    with pytest.raises(TaskGroupError) as info, TaskGroup() as tg:
        child = tg.spawn(nap, 100)
        tg.spawn(fail, "child")
        greenwire.sleep(0)  # the child fails; its link has not run yet
        raise RuntimeError("body")
    assert failures(info) == ["body", "child"] or failures(info) == ["child", "body"]
    assert isinstance(child.value, GreenletExit) and vclock.now() == 0


def test_body_error_alone_is_still_a_group() -> None:
    with pytest.raises(TaskGroupError) as info, TaskGroup():
        raise RuntimeError("only the body")
    assert failures(info) == ["only the body"]
    assert info.value.__cause__ is None and info.value.__suppress_context__


def test_body_that_swallows_the_cancellation_still_gets_the_failures() -> None:
    caught: list[str] = []
    with pytest.raises(TaskGroupError) as info, TaskGroup() as tg:
        tg.spawn(fail, "child")
        try:
            greenwire.sleep(100)
        except BaseException as e:
            caught.append(type(e).__name__)
    assert caught == ["_GroupCancelled"] and failures(info) == ["child"]


@needs_groups
def test_all_exceptions_make_an_exception_group() -> None:
    with pytest.raises(ExceptionGroup) as info, TaskGroup() as tg:  # noqa: F821
        tg.spawn(fail, "v")
        tg.spawn(dict.__getitem__, {}, "k")
    assert [type(e) for e in info.value.exceptions] == [ValueError, KeyError]
    assert info.value.split(ValueError)[0] is not None  # usable with except*


@pytest.mark.skipif(sys.version_info >= (3, 11), reason="Python 3.10 only")
def test_python_310_raises_task_group_error() -> None:  # pragma: no cover - 3.10 only
    with pytest.raises(TaskGroupError) as info, TaskGroup() as tg:
        tg.spawn(fail)
    assert isinstance(info.value, Exception) and type(info.value) is _LegacyTaskGroupError
    assert failures(info) == ["boom"]


@needs_groups
def test_task_group_error_names_the_exception_group_type() -> None:
    assert TaskGroupError is BaseExceptionGroup  # noqa: F821
    with pytest.raises(TaskGroupError) as info, TaskGroup() as tg:
        tg.spawn(fail)
    assert failures(info) == ["boom"]


def test_legacy_task_group_error_for_python_310() -> None:
    errors = [ValueError("a"), KeyError("b")]
    e = _LegacyTaskGroupError("unhandled errors in a TaskGroup", errors)
    assert isinstance(e, Exception)
    assert e.exceptions == errors and e.message == "unhandled errors in a TaskGroup"
    assert str(e) == "unhandled errors in a TaskGroup (2 sub-exceptions)"
    assert str(_LegacyTaskGroupError("m", errors[:1])) == "m (1 sub-exception)"


def test_child_that_ignores_the_kill_once_is_waited_for(vclock: VirtualClock) -> None:
    cleaned: list[float] = []

    def slow_cleanup() -> None:
        try:
            greenwire.sleep(100)
        except GreenletExit:
            greenwire.sleep(3)  # blocking cleanup, then it finishes normally
            cleaned.append(vclock.now())

    with pytest.raises(TaskGroupError) as info, TaskGroup() as tg:
        tg.spawn(slow_cleanup)
        tg.spawn(fail, "trigger", after=1)
    assert cleaned == [4] and vclock.now() == 4
    assert failures(info) == ["trigger"]


def test_failure_seen_after_the_body_finished() -> None:
    # The failure's link runs once the parent already waits in __exit__: nothing to
    # interrupt, the parent is simply woken and raises.
    with pytest.raises(TaskGroupError) as info, TaskGroup() as tg:
        tg.spawn(fail, "late")
    assert failures(info) == ["late"]


def test_spawn_into_a_cancelled_group_never_runs() -> None:
    ran: list[str] = []
    with TaskGroup() as tg:
        tg.cancel()
        g = tg.spawn(ran.append, "x")
        assert g.ready() and isinstance(g.value, GreenletExit)
    assert ran == []


# --------------------------------------------------------------------- cancel()


def test_cancel_from_the_body_interrupts_it_at_the_next_block(vclock: VirtualClock) -> None:
    steps: list[str] = []
    with TaskGroup() as tg:
        child = tg.spawn(nap, 100)
        tg.cancel()
        steps.append("cancel() returned")
        greenwire.sleep(10)
        steps.append("not reached")  # pragma: no cover - must not run
    assert steps == ["cancel() returned"] and vclock.now() == 0
    assert isinstance(child.value, GreenletExit) and tg.cancel_called


def test_cancel_from_a_child_kills_it_too(vclock: VirtualClock) -> None:
    after: list[str] = []

    def canceller(tg: TaskGroup) -> None:
        greenwire.sleep(1)
        tg.cancel()
        after.append("still running after cancel()")
        greenwire.sleep(100)
        after.append("not reached")  # pragma: no cover - must not run

    with TaskGroup() as tg:
        c = tg.spawn(canceller, tg)
        other = tg.spawn(nap, 100)
        greenwire.sleep(100)
    assert vclock.now() == 1
    assert after == ["still running after cancel()"]
    assert isinstance(c.value, GreenletExit) and isinstance(other.value, GreenletExit)


def test_cancel_then_leaving_without_blocking() -> None:
    with TaskGroup() as tg:
        child = tg.spawn(nap, 100)
        tg.cancel()
        tg.cancel()
    assert isinstance(child.value, GreenletExit)


# --------------------------------------------------- cancelling the parent itself


def test_move_on_after_in_the_body_kills_children(vclock: VirtualClock) -> None:
    with move_on_after(5) as scope, TaskGroup() as tg:
        child = tg.spawn(nap, 100)
        greenwire.sleep(100)
    assert scope.cancelled_caught and vclock.now() == 5
    assert isinstance(child.value, GreenletExit)
    assert tg.cancel_called


def test_move_on_after_while_exit_waits(vclock: VirtualClock) -> None:
    with move_on_after(5) as scope, TaskGroup() as tg:
        child = tg.spawn(nap, 100)
    assert scope.cancelled_caught and vclock.now() == 5
    assert child.ready()


def test_fail_after_and_timeout_pass_through(vclock: VirtualClock) -> None:
    with pytest.raises(TooSlowError), fail_after(2), TaskGroup() as tg:
        tg.spawn(nap, 100)
    assert vclock.now() == 2
    t = Timeout(1)
    with pytest.raises(Timeout) as info, t, TaskGroup() as tg2:
        tg2.spawn(nap, 100)
        greenwire.sleep(100)
    assert info.value is t and tg2.children == []


def test_parent_killed_kills_children_and_waits(vclock: VirtualClock) -> None:
    children: list[greenwire.Greenlet[Any]] = []

    def parent() -> None:
        with TaskGroup() as tg:
            children.append(tg.spawn(nap, 100))
            greenwire.sleep(100)

    p = greenwire.spawn(parent)
    greenwire.sleep(1)
    p.kill()
    assert isinstance(p.value, GreenletExit)
    assert children[0].ready() and isinstance(children[0].value, GreenletExit)


def test_parent_cancellation_waits_for_slow_cleanup(vclock: VirtualClock) -> None:
    def slow_cleanup() -> None:
        try:
            greenwire.sleep(100)
        except GreenletExit:
            greenwire.sleep(3)

    with move_on_after(1) as scope, TaskGroup() as tg:
        c = tg.spawn(slow_cleanup)
    assert scope.cancelled_caught and vclock.now() == 4 and c.successful()


def test_failures_during_parent_cancellation_go_to_the_hub(
    vclock: VirtualClock, hub_errors: ErrorLog
) -> None:
    def bad_cleanup() -> None:
        try:
            greenwire.sleep(100)
        except GreenletExit:
            raise KeyError("cleanup failed") from None

    with move_on_after(1) as scope, TaskGroup() as tg:
        tg.spawn(bad_cleanup)
    assert scope.cancelled_caught
    assert [(c, type(e)) for c, e in hub_errors] == [(tg, KeyError)]


def test_body_error_then_parent_cancelled_reports_the_body_error(
    vclock: VirtualClock, hub_errors: ErrorLog
) -> None:
    def slow_cleanup() -> None:
        try:
            greenwire.sleep(100)
        except GreenletExit:
            greenwire.sleep(10)

    with move_on_after(1) as scope, TaskGroup() as tg:
        tg.spawn(slow_cleanup)
        greenwire.sleep(0)  # the child starts
        raise RuntimeError("body")  # the deadline then fires while __exit__ waits
    assert scope.cancelled_caught and vclock.now() == 10
    assert hub_errors.types() == [RuntimeError]


def test_outer_deadline_replaces_inner_one_during_cleanup(vclock: VirtualClock) -> None:
    def slow_cleanup() -> None:
        try:
            greenwire.sleep(100)
        except GreenletExit:
            greenwire.sleep(10)

    with move_on_after(3) as outer:
        with move_on_after(1) as inner, TaskGroup() as tg:
            tg.spawn(slow_cleanup)
        pytest.fail("the outer deadline must leave its block")  # pragma: no cover
    assert outer.cancelled_caught and not inner.cancelled_caught
    assert vclock.now() == 11  # the children were still waited for


def test_custom_base_exception_in_the_body_passes_through() -> None:
    with pytest.raises(Custom), TaskGroup() as tg:
        child = tg.spawn(nap, 100)
        raise Custom()
    assert isinstance(child.value, GreenletExit)


# ------------------------------------------------------------------------ nesting


def test_nested_inner_failure_propagates_through_the_outer_group() -> None:
    with pytest.raises(TaskGroupError) as info, TaskGroup() as outer:
        outer_child = outer.spawn(nap, 100)
        with TaskGroup() as inner:
            inner.spawn(fail, "inner child")
    (inner_group,) = info.value.exceptions
    assert isinstance(inner_group, TaskGroupError)
    assert [str(e) for e in inner_group.exceptions] == ["inner child"]
    assert isinstance(outer_child.value, GreenletExit)


def test_nested_outer_failure_cancels_the_inner_group(vclock: VirtualClock) -> None:
    with pytest.raises(TaskGroupError) as info, TaskGroup() as outer:
        outer.spawn(fail, "outer child", after=1)
        with TaskGroup() as inner:
            inner_child = inner.spawn(nap, 100)
            greenwire.sleep(100)
    assert failures(info) == ["outer child"]
    assert isinstance(inner_child.value, GreenletExit) and vclock.now() == 1


def test_nested_outer_failure_while_inner_exit_waits(vclock: VirtualClock) -> None:
    with pytest.raises(TaskGroupError) as info, TaskGroup() as outer:
        outer.spawn(fail, "outer child", after=1)
        with TaskGroup() as inner:
            inner_child = inner.spawn(nap, 100)
    assert failures(info) == ["outer child"]
    assert isinstance(inner_child.value, GreenletExit) and vclock.now() == 1


def test_group_used_from_a_spawned_parent(vclock: VirtualClock) -> None:
    def parent() -> list[Any]:
        with TaskGroup() as tg:
            kids = [tg.spawn(nap, i, i) for i in range(3)]
        return [k.get() for k in kids]

    assert greenwire.spawn(parent).get() == [0, 1, 2]
    assert vclock.now() == 2


def test_cancel_from_an_outsider_interrupts_the_body() -> None:
    with TaskGroup() as tg:
        child = tg.spawn(nap, 100)
        greenwire.spawn(tg.cancel)
        greenwire.sleep(100)
    assert isinstance(child.value, GreenletExit)


def test_keyboard_interrupt_is_not_replaced_by_a_later_deadline(vclock: VirtualClock) -> None:
    def slow_cleanup() -> None:
        try:
            greenwire.sleep(100)
        except GreenletExit:
            greenwire.sleep(10)

    main = greenwire.getcurrent()
    greenwire.get_hub().call_later(1, main.throw, KeyboardInterrupt())
    with pytest.raises(KeyboardInterrupt), move_on_after(2) as scope, TaskGroup() as tg:
        tg.spawn(slow_cleanup)
    assert not scope.cancelled_caught and vclock.now() == 11
