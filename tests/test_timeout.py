"""Timeout objects, with_timeout, and scoped deadlines (fail_after / move_on_after)."""

from __future__ import annotations

import pytest

import greenwire
from greenwire import CancelScope, Timeout, TooSlowError
from greenwire._core import VirtualClock
from greenwire.timeout import fail_at, move_on_at


def test_timeout_raises_itself(vclock: VirtualClock) -> None:
    t = Timeout(2)
    with pytest.raises(Timeout) as info, t:
        greenwire.sleep(10)
    assert info.value is t
    assert vclock.now() == 2
    assert not t.pending
    assert str(t) == "2 seconds"


def test_timeout_false_is_silent(vclock: VirtualClock) -> None:
    with Timeout(1, False):
        greenwire.sleep(10)
    assert vclock.now() == 1


def test_timeout_with_exception_class_and_instance(vclock: VirtualClock) -> None:
    with pytest.raises(ValueError), Timeout(1, ValueError):
        greenwire.sleep(10)
    err = OSError("custom")
    with pytest.raises(OSError) as info, Timeout(1, err):
        greenwire.sleep(10)
    assert info.value is err
    assert str(Timeout(1, err)) == "1 second: custom"


def test_timeout_not_reached_is_cancelled(vclock: VirtualClock) -> None:
    with Timeout(5) as t:
        assert t.pending
        greenwire.sleep(1)
    assert not t.pending
    greenwire.sleep(10)  # would have fired here if still armed
    assert vclock.now() == 11


def test_nested_timeouts_unwind_to_the_right_one(vclock: VirtualClock) -> None:
    outer = Timeout(1)
    inner = Timeout(5)
    with pytest.raises(Timeout) as info, outer, inner:
        greenwire.sleep(10)
    assert info.value is outer and vclock.now() == 1
    assert not inner.pending

    outer2, inner2 = Timeout(5), Timeout(1)
    with outer2:
        with pytest.raises(Timeout) as info, inner2:
            greenwire.sleep(10)
        assert info.value is inner2
        assert outer2.pending
    assert vclock.now() == 2


def test_start_new_cancel_and_reuse(vclock: VirtualClock) -> None:
    t = Timeout.start_new(1)
    assert Timeout.start_new(t) is t
    with pytest.raises(RuntimeError, match="already started"):
        t.start()
    t.cancel()
    t.close()
    assert not t.pending
    never = Timeout(None)
    never.start()
    assert not never.pending and str(never) == ""
    assert "inactive" in repr(never)


def test_timeout_does_not_fire_into_dead_greenlet(vclock: VirtualClock) -> None:
    def leaves_it_armed() -> None:
        Timeout(1).start()

    greenwire.spawn(leaves_it_armed).join()
    greenwire.sleep(2)  # firing into a dead greenlet is a no-op


def test_timeout_passes_through_except_exception(vclock: VirtualClock) -> None:
    caught: list[str] = []
    with Timeout(1, False):
        try:
            greenwire.sleep(10)
        except Exception:
            caught.append("swallowed")
    assert caught == []


def test_with_timeout(vclock: VirtualClock) -> None:
    assert greenwire.with_timeout(5, lambda x: x * 2, 21) == 42
    assert greenwire.with_timeout(1, greenwire.sleep, 10, timeout_value="late") == "late"
    with pytest.raises(Timeout):
        greenwire.with_timeout(1, greenwire.sleep, 10)
    other = Timeout(1)

    def raises_other() -> None:
        raise other

    with pytest.raises(Timeout) as info:
        greenwire.with_timeout(5, raises_other, timeout_value="x")
    assert info.value is other


def test_fail_after(vclock: VirtualClock) -> None:
    with pytest.raises(TooSlowError) as info, greenwire.fail_after(3) as scope:
        greenwire.sleep(10)
    assert isinstance(info.value, TimeoutError)
    assert scope.cancelled_caught and vclock.now() == 3
    with greenwire.fail_after(3) as scope:
        greenwire.sleep(1)
    assert not scope.cancelled_caught


def test_move_on_after(vclock: VirtualClock) -> None:
    reached: list[str] = []
    with greenwire.move_on_after(2) as scope:
        greenwire.sleep(10)
        reached.append("never")
    assert scope.cancelled_caught and reached == [] and vclock.now() == 2
    assert "move_on" in repr(scope)


def test_scope_cannot_be_left_armed(vclock: VirtualClock) -> None:
    with greenwire.move_on_after(5):
        pass
    greenwire.sleep(10)  # the scope's timer must not fire out here
    assert vclock.now() == 10


def test_nested_scopes_each_catch_their_own(vclock: VirtualClock) -> None:
    with greenwire.move_on_after(1) as outer, greenwire.move_on_after(5) as inner:
        greenwire.sleep(10)
    assert outer.cancelled_caught and not inner.cancelled_caught
    with greenwire.move_on_after(5) as outer:
        with greenwire.move_on_after(1) as inner:
            greenwire.sleep(10)
        greenwire.sleep(1)
    assert inner.cancelled_caught and not outer.cancelled_caught
    assert vclock.now() == 3


def test_scope_survives_swallowed_expiry(vclock: VirtualClock) -> None:
    with pytest.raises(TooSlowError), greenwire.fail_after(1):
        try:
            greenwire.sleep(10)
        except BaseException:
            pass  # badly behaved code swallows the expiry; leaving still reports it


def test_scope_cancel(vclock: VirtualClock) -> None:
    with greenwire.move_on_after(100) as scope:
        scope.cancel()
        greenwire.sleep(10)
    assert scope.cancelled_caught and vclock.now() == 0

    def canceller(s: CancelScope) -> None:
        s.cancel()

    with greenwire.move_on_after(100) as scope:
        greenwire.spawn(canceller, scope)
        greenwire.sleep(10)
    assert scope.cancelled_caught and vclock.now() == 0

    early = greenwire.move_on_after(100)
    early.cancel()
    with early:
        pass
    assert early.cancelled_caught


def test_scope_enter_once_and_absolute_deadlines(vclock: VirtualClock) -> None:
    scope = move_on_at(4)
    with scope:
        greenwire.sleep(10)
    assert vclock.now() == 4
    with pytest.raises(RuntimeError, match="only once"), scope:
        pass
    with pytest.raises(TooSlowError), fail_at(6):
        greenwire.sleep(10)
    assert vclock.now() == 6


def test_scope_deadline_none_never_expires(vclock: VirtualClock) -> None:
    with CancelScope(None, raise_on_expiry=True) as scope:
        greenwire.sleep(5)
    assert not scope.cancelled_caught


def test_scope_exception_from_inside_propagates(vclock: VirtualClock) -> None:
    with pytest.raises(KeyError), greenwire.move_on_after(5):
        raise KeyError("mine")


def test_scope_interrupts_io_wait(vclock: VirtualClock) -> None:
    import socket

    a, b = socket.socketpair()
    a.setblocking(False)
    try:
        with greenwire.move_on_after(1) as scope:
            greenwire.wait_readable(a)
        assert scope.cancelled_caught
        assert greenwire.get_hub().statistics().io_waiters == 0
    finally:
        for s in (a, b):
            greenwire.notify_closing(s)
            s.close()
