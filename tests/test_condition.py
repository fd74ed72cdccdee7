"""Condition: threading's behaviour, FIFO notification, timeouts, kills, foreign locks."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest

import greenwire
from _sync_helpers import settle
from greenwire._core import Hub, HubBlockingError, LoopExit, VirtualClock, get_hub
from greenwire.condition import Condition
from greenwire.lock import Lock, RLock
from greenwire.semaphore import BoundedSemaphore
from greenwire.timeout import TooSlowError, fail_after, move_on_after

# ------------------------------------------------------------------------ Condition


def test_condition_requires_the_lock() -> None:
    for cond in (Condition(), Condition(Lock())):
        with pytest.raises(RuntimeError, match="un-acquired"):
            cond.wait()
        with pytest.raises(RuntimeError, match="un-acquired"):
            cond.notify()
        with pytest.raises(RuntimeError):
            cond.notify_all()


def test_condition_producer_consumer() -> None:
    cond = Condition()
    items: list[int] = []
    got: list[int] = []

    def consumer() -> None:
        for _ in range(5):
            with cond:
                while not items:
                    assert cond.wait() is True
                got.append(items.pop(0))

    c = greenwire.spawn(consumer)
    for i in range(5):
        with cond:
            items.append(i)
            cond.notify()
        settle()
    c.join()
    assert got == [0, 1, 2, 3, 4]


@pytest.mark.parametrize("make_lock", [RLock, Lock], ids=["RLock", "Lock"])
def test_condition_notify_n_fifo_and_notify_all(make_lock: Callable[[], Any]) -> None:
    cond = Condition(make_lock())
    woken: list[int] = []

    def waiter(i: int) -> None:
        with cond:
            cond.wait()
            woken.append(i)

    gs = [greenwire.spawn(waiter, i) for i in range(5)]
    settle()
    with cond:
        cond.notify(2)
    settle()
    assert woken == [0, 1]
    with cond:
        cond.notify()
    settle()
    assert woken == [0, 1, 2]
    with cond:
        assert "Condition(" in repr(cond) and ", 2)>" in repr(cond)
        with pytest.deprecated_call():
            cond.notifyAll()
    greenwire.joinall(gs)
    assert woken == [0, 1, 2, 3, 4]
    with cond:
        cond.notify()  # nobody waits: no-op


def test_condition_wait_timeout_restores_recursive_lock(vclock: VirtualClock) -> None:
    lock = RLock()
    cond = Condition(lock)
    with cond, cond:
        assert cond.wait(1.5) is False
        assert lock._recursion_count() == 2
        assert cond.wait(0) is False
    assert vclock.now() == 1.5
    assert not cond._waiters and not lock.locked()


def test_condition_releases_lock_while_waiting() -> None:
    cond = Condition(Lock())
    seen: list[bool] = []

    def other() -> None:
        with cond:
            seen.append(True)
            cond.notify()

    with cond:
        g = greenwire.spawn(other)
        assert cond.wait() is True
        assert seen == [True]
    g.join()


def test_condition_wait_for(vclock: VirtualClock, fresh_hub: Hub) -> None:
    cond = Condition()
    state = {"n": 0}

    def bump() -> None:
        with cond:
            state["n"] += 1
            cond.notify_all()

    for t in (1, 2, 3):
        fresh_hub.call_later(t, lambda: greenwire.spawn(bump))
    with cond:
        assert cond.wait_for(lambda: state["n"] >= 2) is True
        assert vclock.now() == 2
        assert cond.wait_for(lambda: state["n"] >= 10, timeout=5) is False
        assert vclock.now() == 7
        assert cond.wait_for(lambda: state["n"], timeout=0) == 3


def test_condition_notified_then_timer_fires_counts_as_notified(
    vclock: VirtualClock, fresh_hub: Hub
) -> None:
    cond = Condition()

    def notifier() -> None:
        with cond:
            cond.notify()

    # Scheduled first: at t=1 the notify comes before the waiter's own timer fires.
    fresh_hub.call_later(1, lambda: greenwire.spawn(notifier))
    fresh_hub.call_later(1, lambda: None)
    with cond:
        assert cond.wait(1.0000001) is True


def test_condition_timed_out_after_notify_gets_no_stale_wakeup(
    vclock: VirtualClock, fresh_hub: Hub
) -> None:
    cond = Condition()
    results: list[Any] = []

    def waiter() -> None:
        with cond:
            results.append(cond.wait(1))
        # Park with nothing registered: only the explicit switch below may resume us.
        results.append(get_hub().switch())

    # Fires at t=1 before the waiter's own timer: the notify chooses the waiter, then
    # its timer resumes it before the wake-up callback runs.
    fresh_hub.call_later(1, cond._notify_waiters, 1)
    g = greenwire.spawn(waiter)
    greenwire.sleep(2)
    assert results == [True]
    fresh_hub.run_callback(g.switch, "explicit")
    g.join()
    assert results == [True, "explicit"]


def test_condition_kill_while_waiting_reacquires_then_raises() -> None:
    lock = Lock()
    cond = Condition(lock)
    trail: list[str] = []

    def waiter() -> None:
        with cond:
            try:
                cond.wait()
            finally:
                trail.append(f"locked={lock.locked()}")

    g = greenwire.spawn(waiter)
    settle()
    lock.acquire()
    g.kill(block=False)
    settle()
    assert trail == []  # it must get the lock back before it can leave
    lock.release()
    g.join()
    assert trail == ["locked=True"]
    assert isinstance(g.value, greenwire.GreenletExit)
    assert not cond._waiters and not lock.locked()


def test_condition_notified_then_killed_passes_the_notification_on() -> None:
    cond = Condition()
    woken: list[int] = []

    def waiter(i: int) -> None:
        with cond:
            cond.wait()
            woken.append(i)

    first = greenwire.spawn(waiter, 1)
    second = greenwire.spawn(waiter, 2)
    settle()
    with cond:
        first.kill(block=False)  # the kill is delivered first...
        cond.notify()  # ...but the notify has chosen it already
    greenwire.joinall([first, second])
    assert woken == [2]
    assert isinstance(first.value, greenwire.GreenletExit)


def test_condition_scopes_and_loop_exit(vclock: VirtualClock) -> None:
    cond = Condition()
    with cond:
        with move_on_after(1) as scope:
            cond.wait()
        assert scope.cancelled_caught and cond._is_owned()
        with pytest.raises(TooSlowError), fail_after(1):
            cond.wait(10)
        assert cond._is_owned()
        with pytest.raises(LoopExit):
            cond.wait()
        assert cond._is_owned() and not cond._waiters


def test_condition_in_hub_refused(fresh_hub: Hub, hub_errors: Any) -> None:
    cond = Condition()

    def in_hub() -> None:
        with cond:
            cond.wait()

    fresh_hub.run_callback(in_hub)
    greenwire.sleep(0)
    assert hub_errors.types() == [HubBlockingError]
    assert not cond._lock.locked() and not cond._waiters


def test_condition_with_a_foreign_lock_and_fork_reinit() -> None:
    lock = threading.Lock()  # no _is_owned: the acquire(False) fallback is used
    cond = Condition(lock)
    with pytest.raises(RuntimeError):
        cond.wait(0)
    with cond:
        assert cond.wait(0) is False
        assert lock.locked()
    cond2 = Condition(Lock())
    cond2.acquire()
    cond2._at_fork_reinit()
    assert not cond2._lock.locked()
    assert get_hub() is not None


def test_with_blocks_release_and_hand_over() -> None:
    bounded = BoundedSemaphore(1)
    with bounded:
        assert bounded.value == 0
    with pytest.raises(ValueError):
        bounded.__exit__(None, None, None)

    lock = Lock()
    with pytest.raises(RuntimeError, match="release unlocked lock"):
        lock.__exit__(None, None, None)

    rlock = RLock()
    with pytest.raises(RuntimeError, match="un-acquired"):
        rlock.__exit__(None, None, None)
    order: list[str] = []

    def contender() -> None:
        with rlock:
            order.append("contender")

    with rlock:
        g = greenwire.spawn(contender)
        settle()
        order.append("owner")
    g.join()
    assert order == ["owner", "contender"]


def test_condition_on_rlock_hands_lock_over_and_restores_under_contention() -> None:
    lock = RLock()
    cond = Condition(lock)
    trail: list[str] = []

    def contender() -> None:
        with lock:
            trail.append("contender in")
            cond.notify()
            greenwire.sleep(0)
            trail.append("contender out")

    with lock, lock:
        g = greenwire.spawn(contender)
        settle()  # queued on the lock
        assert cond.wait() is True  # _release_save wakes it; _acquire_restore queues
        trail.append("waiter back")
        assert lock._recursion_count() == 2
    g.join()
    assert trail == ["contender in", "contender out", "waiter back"]
