"""Event and AsyncResult: waking, generations, timeouts, kills, links, wait/iwait."""

from __future__ import annotations

import traceback
from typing import Any

import pytest
from greenlet import getcurrent

import greenwire
from _sync_helpers import settle
from greenwire._core import Hub, HubBlockingError, LoopExit, VirtualClock, get_hub
from greenwire.event import AsyncResult, Event
from greenwire.greenlet import iwait, wait
from greenwire.timeout import Timeout, TooSlowError, fail_after, move_on_after

# ---------------------------------------------------------------------------- Event


def test_initial_state_and_set_clear() -> None:
    ev = Event()
    assert not ev.is_set() and not ev.ready()
    ev.set()
    assert ev.is_set() and ev.ready()
    ev.set()  # idempotent
    assert ev.is_set()
    ev.clear()
    assert not ev.is_set()
    ev.clear()
    assert not ev.is_set()


def test_is_set_alias_warns_like_threading() -> None:
    ev = Event()
    with pytest.deprecated_call():
        assert ev.isSet() is False
    ev.set()
    with pytest.deprecated_call():
        assert ev.isSet() is True


def test_wait_on_set_event_never_touches_the_hub(fresh_hub: Hub) -> None:
    ev = Event()
    ev.set()
    results: list[bool] = []

    def in_hub() -> None:
        # Blocking inside the hub would raise; an already-set event does not block.
        results.append(ev.wait())
        results.append(ev.wait(5))

    fresh_hub.run_callback(in_hub)
    greenwire.sleep(0)
    assert results == [True, True]
    assert ev._hub is None  # never needed one


def test_wait_in_hub_on_unset_event_raises(fresh_hub: Hub, hub_errors: Any) -> None:
    ev = Event()
    fresh_hub.run_callback(ev.wait)
    fresh_hub.run_callback(ev.wait, 1.0)
    greenwire.sleep(0)
    assert hub_errors.types() == [HubBlockingError, HubBlockingError]
    assert ev._waiters == []


def test_set_wakes_every_waiter_in_fifo_order() -> None:
    ev = Event()
    order: list[tuple[int, bool]] = []

    def waiter(i: int) -> None:
        order.append((i, ev.wait()))

    gs = [greenwire.spawn(waiter, i) for i in range(5)]
    settle()
    assert order == []
    ev.set()
    greenwire.joinall(gs)
    assert order == [(i, True) for i in range(5)]


def test_main_greenlet_waits_and_is_woken() -> None:
    ev = Event()
    g = greenwire.spawn(ev.set)
    assert ev.wait() is True
    g.join()


def test_set_schedules_one_callback_for_many_waiters(fresh_hub: Hub) -> None:
    ev = Event()
    gs = [greenwire.spawn(ev.wait) for _ in range(10)]
    settle()
    before = len(fresh_hub._callbacks)
    ev.set()
    assert len(fresh_hub._callbacks) == before + 1
    greenwire.joinall(gs)
    assert all(g.value is True for g in gs)


def test_set_schedules_one_callback_for_one_waiter(fresh_hub: Hub) -> None:
    ev = Event()
    g = greenwire.spawn(ev.wait)
    settle()
    ev.set()
    assert len(fresh_hub._callbacks) == 1
    g.join()
    assert g.value is True


def test_waiters_at_set_return_true_even_if_cleared_before_resuming() -> None:
    for count in (1, 4):  # the one-waiter fast path and the general path
        ev = Event()
        gs = [greenwire.spawn(ev.wait) for _ in range(count)]
        settle()
        ev.set()
        ev.clear()  # before any waiter has been resumed
        greenwire.joinall(gs)
        assert [g.value for g in gs] == [True] * count
        assert not ev.is_set()


def test_waiter_arriving_after_clear_waits_for_the_next_set() -> None:
    ev = Event()
    early = greenwire.spawn(ev.wait)
    settle()
    ev.set()
    ev.clear()
    late = greenwire.spawn(ev.wait)
    settle()
    assert early.ready() and early.value is True
    assert not late.ready()
    ev.set()
    late.join()
    assert late.value is True


def test_set_clear_set_before_anyone_runs() -> None:
    ev = Event()
    first = [greenwire.spawn(ev.wait) for _ in range(2)]
    settle()
    ev.set()
    ev.clear()
    second = greenwire.spawn(ev.wait)
    greenwire.sleep(0)  # first batch resumes, second starts waiting
    ev.set()
    ev.clear()
    greenwire.joinall([*first, second])
    assert [g.value for g in [*first, second]] == [True, True, True]


def test_event_ping_pong() -> None:
    a_turn, b_turn = Event(), Event()
    log: list[str] = []

    def side_a() -> None:
        for _ in range(100):
            b_turn.set()
            a_turn.wait()
            a_turn.clear()
            log.append("a")

    def side_b() -> None:
        for _ in range(100):
            b_turn.wait()
            b_turn.clear()
            log.append("b")
            a_turn.set()

    greenwire.joinall([greenwire.spawn(side_a), greenwire.spawn(side_b)])
    assert log == ["b", "a"] * 100


def test_wait_timeout_on_virtual_clock(vclock: VirtualClock) -> None:
    ev = Event()
    assert ev.wait(2.5) is False
    assert vclock.now() == 2.5
    assert ev._waiters == []


def test_wait_with_zero_or_negative_timeout_does_not_block(vclock: VirtualClock) -> None:
    ev = Event()
    assert ev.wait(0) is False
    assert ev.wait(-1) is False
    ev.set()
    assert ev.wait(0) is True
    assert vclock.now() == 0


def test_timed_wait_woken_by_set_before_deadline(vclock: VirtualClock, fresh_hub: Hub) -> None:
    ev = Event()
    fresh_hub.call_later(1.0, ev.set)
    assert ev.wait(10) is True
    assert vclock.now() == 1.0
    assert len(fresh_hub._timers) == 0  # the wait's own timer was cancelled


def test_set_and_deadline_in_the_same_instant_counts_as_set(
    vclock: VirtualClock, fresh_hub: Hub
) -> None:
    for count in (1, 3):
        ev = Event()
        # This timer is scheduled first, so it fires first at t+1: the set() comes
        # before the waiters' own timers fire, which then resume them.
        fresh_hub.call_later(1.0, ev.set)
        gs = [greenwire.spawn(ev.wait, 1.0) for _ in range(count)]
        greenwire.joinall(gs)
        assert [g.value for g in gs] == [True] * count
        # Whatever the stale wake-ups do, the greenlets keep working afterwards.
        other = Event()
        gs2 = [greenwire.spawn(other.wait) for _ in range(count)]
        settle()
        assert not any(g.ready() for g in gs2)
        other.set()
        greenwire.joinall(gs2)
        assert [g.value for g in gs2] == [True] * count


def test_waiters_leaving_by_timer_after_set_get_no_stale_wakeup(
    vclock: VirtualClock, fresh_hub: Hub
) -> None:
    ev = Event()
    results: list[Any] = []

    def waiter() -> None:
        results.append(ev.wait(1))
        # Park with nothing registered: only the explicit switch below may resume us.
        results.append(get_hub().switch())

    fresh_hub.call_later(1, ev.set)  # fires just before the waiters' timers
    gs = [greenwire.spawn(waiter) for _ in range(3)]
    greenwire.sleep(2)
    assert results == [True, True, True]
    for g in gs:
        fresh_hub.run_callback(g.switch, "explicit")
    greenwire.joinall(gs)
    assert results == [True] * 3 + ["explicit"] * 3


def test_kill_while_waiting_removes_the_waiter() -> None:
    ev = Event()
    gs = [greenwire.spawn(ev.wait) for _ in range(3)]
    settle()
    gs[1].kill()
    assert gs[1].ready() and isinstance(gs[1].value, greenwire.GreenletExit)
    assert ev._waiters == [gs[0], gs[2]]
    ev.set()
    greenwire.joinall(gs)
    assert gs[0].value is True and gs[2].value is True


def test_kill_timed_waiter_cancels_its_timer(vclock: VirtualClock, fresh_hub: Hub) -> None:
    ev = Event()
    g = greenwire.spawn(ev.wait, 30)
    settle()
    assert len(fresh_hub._timers) == 1
    g.kill()
    assert len(fresh_hub._timers) == 0
    assert ev._waiters == []


def test_kill_after_set_before_resume() -> None:
    for count in (1, 3):
        ev = Event()
        gs = [greenwire.spawn(ev.wait) for _ in range(count)]
        settle()
        gs[0].kill(block=False)  # its throw is queued before the notification
        ev.set()
        greenwire.joinall(gs)
        assert isinstance(gs[0].value, greenwire.GreenletExit)
        assert [g.value for g in gs[1:]] == [True] * (count - 1)


def test_move_on_after_around_wait(vclock: VirtualClock) -> None:
    ev = Event()
    with move_on_after(3) as scope:
        ev.wait()
    assert scope.cancelled_caught
    assert vclock.now() == 3
    assert ev._waiters == []
    with move_on_after(3) as scope:
        ev.wait(10)
    assert scope.cancelled_caught and vclock.now() == 6


def test_fail_after_around_wait(vclock: VirtualClock) -> None:
    ev = Event()
    with pytest.raises(TooSlowError), fail_after(1):
        ev.wait()
    assert ev._waiters == []
    assert vclock.now() == 1


def test_gevent_style_timeout_around_wait(vclock: VirtualClock) -> None:
    ev = Event()
    with Timeout(2, False):
        ev.wait()
    assert vclock.now() == 2 and ev._waiters == []


def test_loop_exit_when_nobody_can_set() -> None:
    ev = Event()
    with pytest.raises(LoopExit):
        ev.wait()
    assert ev._waiters == []
    # The event still works afterwards.
    g = greenwire.spawn(ev.set)
    assert ev.wait() is True
    g.join()


def test_waiter_in_a_raw_greenlet_that_is_not_the_hubs_child() -> None:
    # A plain greenlet whose parent is the main greenlet: wait() must find the hub
    # itself instead of trusting the parent.
    from greenlet import greenlet as RawGreenlet

    ev = Event()
    results: list[bool] = []
    raw = RawGreenlet(lambda: results.append(ev.wait()))
    g = greenwire.spawn(ev.set)
    raw.switch()  # runs until it parks in the hub; the hub then resumes main
    assert results == [True]
    g.join()


def test_repr() -> None:
    ev = Event()
    assert "unset" in repr(ev) and "waiters=0" in repr(ev)
    ev.set()
    assert " set " in repr(ev)


def test_at_fork_reinit() -> None:
    ev = Event()
    ev.set()
    ev._at_fork_reinit()
    assert not ev.is_set() and ev._waiters == [] and ev._links == []


# ---------------------------------------------------------------------------- links


def test_rawlink_called_once_in_the_hub(fresh_hub: Hub) -> None:
    ev = Event()
    calls: list[tuple[Any, bool]] = []
    ev.rawlink(lambda src: calls.append((src, getcurrent() is fresh_hub)))
    settle()
    assert calls == []
    ev.set()
    settle()
    assert calls == [(ev, True)]
    ev.clear()
    ev.set()
    settle()
    assert len(calls) == 1  # a link is called once


def test_rawlink_on_set_event_is_called_soon() -> None:
    ev = Event()
    ev.set()
    calls: list[str] = []
    ev.rawlink(lambda src: calls.append("a"))
    ev.rawlink(lambda src: calls.append("b"))
    assert calls == []
    settle()
    assert calls == ["a", "b"]


def test_rawlink_on_set_event_then_cleared_waits_for_next_set() -> None:
    ev = Event()
    ev.set()
    calls: list[str] = []
    ev.rawlink(lambda src: calls.append("a"))
    ev.clear()
    settle()
    assert calls == []
    ev.set()
    settle()
    assert calls == ["a"]


def test_unlink_before_and_after_set() -> None:
    ev = Event()
    calls: list[str] = []

    def a(src: Any) -> None:
        calls.append("a")

    def b(src: Any) -> None:
        calls.append("b")

    ev.rawlink(a)
    ev.rawlink(b)
    ev.unlink(a)
    ev.unlink(a)  # harmless when absent
    ev.set()
    ev.unlink(b)  # taken back from the pending notification
    settle()
    assert calls == []


def test_link_unlinking_another_during_notification() -> None:
    ev = Event()
    calls: list[str] = []

    def b(src: Any) -> None:
        calls.append("b")

    def a(src: Any) -> None:
        calls.append("a")
        ev.unlink(b)

    ev.rawlink(a)
    ev.rawlink(b)
    ev.set()
    settle()
    assert calls == ["a"]


def test_rawlink_rejects_non_callable() -> None:
    with pytest.raises(TypeError):
        Event().rawlink(42)  # type: ignore[arg-type]


def test_failing_link_is_reported_and_others_still_run(hub_errors: Any) -> None:
    ev = Event()
    calls: list[str] = []

    def bad(src: Any) -> None:
        raise ValueError("link failed")

    ev.rawlink(bad)
    ev.rawlink(lambda src: calls.append("ok"))
    waiter = greenwire.spawn(ev.wait)
    settle()
    ev.set()
    waiter.join()
    settle()
    assert calls == ["ok"]
    assert hub_errors.types() == [ValueError]


def test_raw_greenlet_dying_with_error_in_notification_is_reported(
    fresh_hub: Hub, hub_errors: Any
) -> None:
    from greenlet import greenlet as RawGreenlet

    ev = Event()

    def body() -> None:
        ev.wait()
        raise KeyError("raw")

    raw = RawGreenlet(body, parent=fresh_hub)
    other = greenwire.spawn(ev.wait)
    fresh_hub.run_callback(raw.switch)
    settle()
    ev.set()
    other.join()
    assert other.value is True
    assert hub_errors.types() == [KeyError]
    assert hub_errors[0][0] is raw  # reported by the notification, naming the greenlet


def test_wait_and_iwait_on_events(vclock: VirtualClock, fresh_hub: Hub) -> None:
    e1, e2, e3 = Event(), Event(), Event()
    fresh_hub.call_later(2, e2.set)
    fresh_hub.call_later(1, e3.set)
    assert list(iwait([e1, e2, e3], timeout=5, count=2)) == [e3, e2]
    assert vclock.now() == 2
    assert wait([e1, e2], count=1) == [e2]
    assert wait([e1], timeout=1) == []
    assert vclock.now() == 3
    assert e1._links == [] and e2._links == [] and e3._links == []


def test_iwait_leaving_early_unlinks_pending_notification() -> None:
    e1, e2 = Event(), Event()
    calls: list[str] = []
    e2.rawlink(lambda src: calls.append("kept"))

    def setter() -> None:
        e1.set()
        e2.set()

    g = greenwire.spawn(setter)
    assert wait([e1, e2], count=1) == [e1]
    g.join()
    settle()
    assert calls == ["kept"]
    assert e2._links_in_flight is None


# ---------------------------------------------------------------------- AsyncResult


def test_async_result_set_and_get() -> None:
    r: AsyncResult[int] = AsyncResult()
    assert not r.ready() and not r.successful()
    assert r.value is None and r.exception is None and r.exc_info is None
    getters = [greenwire.spawn(r.get) for _ in range(3)]
    settle()
    r.set(42)
    greenwire.joinall(getters)
    assert [g.value for g in getters] == [42, 42, 42]
    assert r.ready() and r.successful() and r.value == 42
    assert r.get() == 42 and r.get_nowait() == 42 and r.wait() == 42


def test_async_result_set_default_and_again() -> None:
    r: AsyncResult[Any] = AsyncResult()
    r.set()
    assert r.ready() and r.get() is None
    r.set("second")
    assert r.get() == "second"


def test_async_result_get_nowait_raises_timeout() -> None:
    r: AsyncResult[int] = AsyncResult()
    with pytest.raises(Timeout):
        r.get_nowait()
    with pytest.raises(Timeout):
        r.get(block=False)


def test_async_result_get_timeout(vclock: VirtualClock) -> None:
    r: AsyncResult[int] = AsyncResult()
    with pytest.raises(Timeout) as info:
        r.get(timeout=1.5)
    assert info.value.seconds == 1.5
    assert vclock.now() == 1.5
    assert r.wait(2) is None
    assert vclock.now() == 3.5
    assert r._waiters == []


def test_async_result_wait_woken(vclock: VirtualClock, fresh_hub: Hub) -> None:
    r: AsyncResult[str] = AsyncResult()
    fresh_hub.call_later(1, r.set, "v")
    assert r.wait() == "v"
    assert vclock.now() == 1


def _fail_deep() -> None:
    raise ValueError("deep failure")


def test_async_result_exception_reraised_with_traceback() -> None:
    r: AsyncResult[int] = AsyncResult()

    def worker() -> None:
        try:
            _fail_deep()
        except ValueError as e:
            r.set_exception(e)

    getter = greenwire.spawn(lambda: pytest.raises(ValueError, r.get))
    greenwire.spawn(worker).join()
    getter.join()
    assert r.ready() and not r.successful()
    assert isinstance(r.exception, ValueError)
    assert r.exc_info is not None and r.exc_info[0] is ValueError
    assert r.wait() is None and r.value is None
    lengths = []
    for _ in range(3):
        with pytest.raises(ValueError) as info:
            r.get()
        assert info.value is r.exception
        names = [f.name for f in traceback.extract_tb(info.value.__traceback__)]
        assert "_fail_deep" in names
        lengths.append(len(names))
    assert lengths[0] == lengths[1] == lengths[2]  # the traceback does not grow


def test_async_result_set_exception_with_exc_info_and_class() -> None:
    import sys

    r: AsyncResult[int] = AsyncResult()
    try:
        _fail_deep()
    except ValueError:
        info = sys.exc_info()
    r.set_exception(RuntimeError("other"), info)
    with pytest.raises(RuntimeError) as exc:
        r.get()
    assert "_fail_deep" in [f.name for f in traceback.extract_tb(exc.value.__traceback__)]

    r2: AsyncResult[int] = AsyncResult()
    r2.set_exception(KeyError)
    with pytest.raises(KeyError):
        r2.get()
    r2.set(5)  # a value replaces the exception
    assert r2.successful() and r2.get() == 5


def test_async_result_linked_to_greenlet(hub_errors: Any) -> None:
    ok: AsyncResult[int] = AsyncResult()
    g = greenwire.spawn(lambda: 7)
    g.rawlink(ok)
    assert ok.get() == 7

    failed: AsyncResult[int] = AsyncResult()
    bad = greenwire.spawn(_fail_deep)
    bad.link(failed)
    with pytest.raises(ValueError, match="deep failure"):
        failed.get()
    assert hub_errors.types() == [ValueError]  # nobody was waiting on the greenlet


def test_async_result_kill_waiter_and_timeouts(vclock: VirtualClock) -> None:
    r: AsyncResult[int] = AsyncResult()
    g = greenwire.spawn(r.get)
    settle()
    g.kill()
    assert r._waiters == []
    with move_on_after(1) as scope:
        r.get()
    assert scope.cancelled_caught
    with pytest.raises(TooSlowError), fail_after(1):
        r.wait()
    assert r._waiters == [] and vclock.now() == 2


def test_async_result_loop_exit() -> None:
    r: AsyncResult[int] = AsyncResult()
    with pytest.raises(LoopExit):
        r.get()
    assert r._waiters == []


def test_async_result_in_wait_iwait(vclock: VirtualClock, fresh_hub: Hub) -> None:
    results: list[AsyncResult[int]] = [AsyncResult() for _ in range(3)]
    fresh_hub.call_later(3, results[0].set, 0)
    fresh_hub.call_later(1, results[2].set_exception, ValueError("x"))
    fresh_hub.call_later(2, results[1].set, 1)
    assert list(iwait(results)) == [results[2], results[1], results[0]]
    assert vclock.now() == 3


def test_async_result_rawlink_when_ready() -> None:
    r: AsyncResult[int] = AsyncResult()
    r.set(3)
    seen: list[int | None] = []
    r.rawlink(lambda src: seen.append(src.get()))
    settle()
    assert seen == [3]


def test_async_result_repr() -> None:
    r: AsyncResult[int] = AsyncResult()
    assert "unset" in repr(r)
    r.set(5)
    assert "value=5" in repr(r)
    r.set_exception(ValueError("bad"))
    assert "exception=ValueError('bad')" in repr(r)


def test_hub_is_found_again_after_a_new_hub() -> None:
    # An Event that outlives a hub keeps working with the next one.
    ev = Event()
    g = greenwire.spawn(ev.wait)
    settle()
    ev.set()
    g.join()
    old = get_hub()
    old.destroy()
    assert get_hub() is not old
    g2 = greenwire.spawn(ev.clear)
    g2.join()
    setter = greenwire.spawn(ev.set)
    assert ev.wait() is True
    setter.join()
