"""Semaphores, locks and conditions: threading's behaviour, FIFO fairness, timeouts, kills."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
from greenlet import getcurrent

import greenwire
from greenwire._core import Hub, HubBlockingError, LoopExit, VirtualClock, get_hub
from greenwire.lock import BoundedSemaphore, Condition, Lock, RLock, Semaphore
from greenwire.timeout import Timeout, TooSlowError, fail_after, move_on_after


def settle(passes: int = 3) -> None:
    """Let every greenlet that can run do so (a few full hub passes)."""
    for _ in range(passes):
        greenwire.sleep(0)


def outcome(fn: Callable[[], Any]) -> Any:
    """What a call returns, or the type of exception it raises."""
    try:
        return fn()
    except Exception as e:
        return type(e)


# ------------------------------------------------------------------------ Semaphore


def test_semaphore_counts() -> None:
    sem = Semaphore(2)
    assert sem.value == sem.counter == sem._value == 2
    assert not sem.locked()
    assert sem.acquire() is True
    assert sem.acquire(blocking=False) is True
    assert sem.value == 0 and sem.locked()
    assert sem.acquire(blocking=False) is False
    sem.release()
    assert sem.value == 1
    sem.release(2)
    assert sem.value == 3
    with sem:
        assert sem.value == 2
    assert sem.value == 3


def test_semaphore_argument_errors() -> None:
    with pytest.raises(ValueError):
        Semaphore(-1)
    sem = Semaphore(0)
    with pytest.raises(ValueError):
        sem.acquire(False, 1)
    with pytest.raises(ValueError):
        sem.release(0)
    assert Semaphore(0).value == 0


def test_semaphore_blocks_and_serves_fifo() -> None:
    sem = Semaphore(0)
    order: list[int] = []

    def worker(i: int) -> None:
        sem.acquire()
        order.append(i)

    gs = [greenwire.spawn(worker, i) for i in range(5)]
    settle()
    assert order == []
    sem.release()
    settle()
    assert order == [0]
    sem.release(3)
    settle()
    assert order == [0, 1, 2, 3]
    sem.release()
    greenwire.joinall(gs)
    assert order == [0, 1, 2, 3, 4]
    assert sem.value == 0


def test_semaphore_limits_concurrency() -> None:
    sem = Semaphore(3)
    inside = [0]
    peak = [0]

    def worker() -> None:
        with sem:
            inside[0] += 1
            peak[0] = max(peak[0], inside[0])
            greenwire.sleep(0)
            greenwire.sleep(0)
            inside[0] -= 1

    greenwire.joinall([greenwire.spawn(worker) for _ in range(20)])
    assert peak[0] == 3 and inside[0] == 0 and sem.value == 3


def test_no_barging_past_queued_waiters() -> None:
    sem = Semaphore(1)
    sem.acquire()
    waiter = greenwire.spawn(sem.acquire)
    settle()
    sem.release()
    # The permit is promised to the queued greenlet: a newcomer cannot take it.
    assert sem.locked()
    assert sem.acquire(blocking=False) is False
    order: list[str] = []

    def late() -> None:
        sem.acquire()
        order.append("late")

    g = greenwire.spawn(late)
    waiter.join()
    order.append("waiter")
    assert waiter.value is True
    sem.release()
    g.join()
    assert order == ["waiter", "late"]


def test_releaser_looping_does_not_starve_waiter() -> None:
    lock = Lock()
    got: list[str] = []

    def hog() -> None:
        for _ in range(5):
            with lock:
                greenwire.sleep(0)
            got.append("hog")

    def polite() -> None:
        with lock:
            got.append("polite")

    lock.acquire()
    h = greenwire.spawn(hog)
    settle()
    p = greenwire.spawn(polite)
    settle()
    lock.release()
    greenwire.joinall([h, p])
    # polite queued behind hog's first acquire, so it gets in right after it.
    assert got.index("polite") == 1


def test_semaphore_timeout(vclock: VirtualClock) -> None:
    sem = Semaphore(0)
    assert sem.acquire(timeout=2) is False
    assert vclock.now() == 2
    assert sem.acquire(timeout=0) is False
    assert sem.acquire(timeout=-1) is False
    assert vclock.now() == 2
    assert not sem._waiters and sem.value == 0


def test_semaphore_acquired_just_before_deadline(vclock: VirtualClock, fresh_hub: Hub) -> None:
    sem = Semaphore(0)
    fresh_hub.call_later(1, sem.release)  # scheduled first: fires first at t=1
    assert sem.acquire(timeout=1) is True
    assert sem.value == 0


def test_timed_out_waiter_does_not_lose_the_permit(vclock: VirtualClock) -> None:
    sem = Semaphore(0)
    results: dict[str, bool] = {}

    def short() -> None:
        results["short"] = sem.acquire(timeout=1)

    def long() -> None:
        results["long"] = sem.acquire(timeout=10)

    gs = [greenwire.spawn(short), greenwire.spawn(long)]
    greenwire.sleep(2)
    assert results == {"short": False}
    sem.release()
    greenwire.joinall(gs)
    assert results == {"short": False, "long": True}
    assert sem.value == 0


def test_killed_head_passes_the_permit_on() -> None:
    sem = Semaphore(0)
    first = greenwire.spawn(sem.acquire)
    second = greenwire.spawn(sem.acquire)
    settle()
    first.kill(block=False)  # its throw runs before the release's callback
    sem.release()
    greenwire.joinall([first, second])
    assert isinstance(first.value, greenwire.GreenletExit)
    assert second.value is True
    assert sem.value == 0 and not sem._waiters


def test_head_leaving_with_permit_available_wakes_the_next(fresh_hub: Hub, hub_errors: Any) -> None:
    sem = Semaphore(0)
    first = greenwire.spawn(sem.acquire)
    second = greenwire.spawn(sem.acquire)
    settle()
    sem.release()
    # Before the serve callback runs, the head leaves: the permit must go on.
    fresh_hub._callbacks.appendleft((first.throw, (KeyError("gone"),)))
    greenwire.joinall([first, second])
    assert isinstance(first.exception, KeyError)
    assert second.value is True
    assert hub_errors.types() == [KeyError]


def test_semaphore_kill_and_scopes(vclock: VirtualClock) -> None:
    sem = Semaphore(0)
    g = greenwire.spawn(sem.acquire)
    settle()
    g.kill()
    assert not sem._waiters
    with move_on_after(1) as scope:
        sem.acquire()
    assert scope.cancelled_caught
    with pytest.raises(TooSlowError), fail_after(1):
        sem.acquire(timeout=5)
    with Timeout(1, False):
        sem.acquire()
    assert not sem._waiters and vclock.now() == 3
    sem.release()
    assert sem.acquire(blocking=False) is True


def test_semaphore_wait(vclock: VirtualClock, fresh_hub: Hub) -> None:
    sem = Semaphore(2)
    assert sem.wait() == 2 and sem.value == 2
    sem = Semaphore(0)
    assert sem.wait(1) == 0
    assert vclock.now() == 1
    fresh_hub.call_later(1, sem.release)
    assert sem.wait() == 1
    assert sem.value == 1  # wait() does not take the permit


def test_wait_and_acquire_share_the_queue() -> None:
    sem = Semaphore(0)
    log: list[str] = []

    def waiter() -> None:
        log.append(f"wait={sem.wait()}")

    def acquirer() -> None:
        sem.acquire()
        log.append("acquired")

    gs = [greenwire.spawn(waiter), greenwire.spawn(acquirer), greenwire.spawn(waiter)]
    settle()
    sem.release()
    greenwire.joinall(gs[:2])
    settle()
    assert log == ["wait=1", "acquired"]
    assert not gs[2].ready()
    sem.release()
    gs[2].join()
    assert log[-1] == "wait=1"


def test_semaphore_loop_exit() -> None:
    sem = Semaphore(0)
    with pytest.raises(LoopExit):
        sem.acquire()
    assert not sem._waiters


def test_acquire_inside_the_hub(fresh_hub: Hub, hub_errors: Any) -> None:
    sem = Semaphore(1)
    results: list[bool] = []
    fresh_hub.run_callback(lambda: results.append(sem.acquire()))  # free: fine
    fresh_hub.run_callback(sem.acquire)  # would block: refused
    greenwire.sleep(0)
    assert results == [True]
    assert hub_errors.types() == [HubBlockingError]


def test_bounded_semaphore() -> None:
    sem = BoundedSemaphore(2)
    with pytest.raises(ValueError, match="too many"):
        sem.release()
    sem.acquire()
    with pytest.raises(ValueError):
        sem.release(2)
    with pytest.raises(ValueError):
        sem.release(0)
    sem.release()
    assert sem.value == 2
    sem.acquire()
    sem.acquire()
    waiter = greenwire.spawn(sem.acquire)
    settle()
    sem.release()
    waiter.join()
    assert waiter.value is True and sem.value == 0


def test_semaphore_repr_and_fork_reinit() -> None:
    sem = Semaphore(3)
    assert "value=3" in repr(sem) and "Semaphore" in repr(sem)
    sem.acquire()
    sem._at_fork_reinit()
    assert sem.value == 2 and not sem._waiters


# ----------------------------------------------------------------------------- Lock


def test_lock_matches_threading_in_one_greenlet() -> None:
    def script(lock: Any) -> list[Any]:
        return [
            outcome(lambda: lock.locked()),
            outcome(lambda: lock.release()),
            outcome(lambda: lock.acquire()),
            outcome(lambda: lock.locked()),
            outcome(lambda: lock.acquire(False)),
            outcome(lambda: lock.acquire(True, 0)),
            outcome(lambda: lock.acquire(False, 1)),
            outcome(lambda: lock.acquire(False, -1)),
            outcome(lambda: lock.acquire(True, -2)),
            outcome(lambda: lock.acquire(timeout=None)),
            outcome(lambda: lock.acquire(timeout=1e300)),
            outcome(lambda: lock.release()),
            outcome(lambda: lock.__enter__()),
            outcome(lambda: lock.__exit__(None, None, None)),
            outcome(lambda: lock.locked()),
        ]

    assert script(Lock()) == script(threading.Lock())


def test_lock_blocks_and_any_greenlet_may_release(vclock: VirtualClock) -> None:
    lock = Lock()
    lock.acquire()
    g = greenwire.spawn(lock.acquire)
    settle()
    assert not g.ready()
    greenwire.spawn(lock.release).join()
    g.join()
    assert g.value is True and lock.locked()
    assert lock.acquire(timeout=1.5) is False
    assert vclock.now() == 1.5
    lock.release()
    assert not lock.locked()


def test_lock_fifo_and_kill(vclock: VirtualClock) -> None:
    lock = Lock()
    order: list[int] = []

    def worker(i: int) -> None:
        with lock:
            order.append(i)
            greenwire.sleep(0)

    lock.acquire()
    gs = [greenwire.spawn(worker, i) for i in range(6)]
    settle()
    gs[2].kill()
    with move_on_after(1) as scope:
        lock.acquire()
    assert scope.cancelled_caught
    lock.release()
    greenwire.joinall(gs)
    assert order == [0, 1, 3, 4, 5]
    assert not lock.locked() and not lock._waiters


def test_lock_aliases_repr_and_fork_reinit() -> None:
    lock = Lock()
    assert repr(lock).startswith("<unlocked greenwire.lock.Lock object at")
    assert lock.acquire_lock() is True
    assert lock.locked_lock() is True
    assert repr(lock).startswith("<locked ")
    lock.release_lock()
    assert not lock.locked()
    lock.acquire()
    lock._at_fork_reinit()
    assert not lock.locked()


def test_lock_loop_exit() -> None:
    lock = Lock()
    lock.acquire()
    with pytest.raises(LoopExit):
        lock.acquire()
    assert lock._waiters == type(lock._waiters)()
    lock.release()


def test_lock_timeout_inside_fail_after(vclock: VirtualClock) -> None:
    lock = Lock()
    lock.acquire()
    with pytest.raises(TooSlowError), fail_after(2):
        lock.acquire(timeout=5)
    assert vclock.now() == 2
    assert not lock._waiters
    with move_on_after(5):
        assert lock.acquire(timeout=1) is False
    assert vclock.now() == 3


# ---------------------------------------------------------------------------- RLock


def test_rlock_matches_threading_in_one_greenlet() -> None:
    def script(lock: Any, me: object) -> list[Any]:
        return [
            outcome(lambda: lock.release()),
            outcome(lambda: lock._is_owned()),
            outcome(lambda: lock.acquire()),
            outcome(lambda: lock.acquire()),
            outcome(lambda: lock._is_owned()),
            outcome(lambda: lock._recursion_count()),
            outcome(lambda: lock.acquire(False)),
            outcome(lambda: lock.acquire(False, 1)),
            outcome(lambda: lock.acquire(True, -2)),
            outcome(lambda: lock._release_save()[0]),
            outcome(lambda: lock._is_owned()),
            outcome(lambda: lock._release_save()),
            outcome(lambda: lock.release()),
            outcome(lambda: lock._acquire_restore((3, me))),
            outcome(lambda: lock._recursion_count()),
            outcome(lambda: lock.release()),
            outcome(lambda: lock.release()),
            outcome(lambda: lock.release()),
            outcome(lambda: lock.release()),
            outcome(lambda: lock.__enter__()),
            outcome(lambda: lock.__exit__(None, None, None)),
            outcome(lambda: lock._is_owned()),
        ]

    # The owner that _release_save saves is a thread ident there, a greenlet here.
    assert script(RLock(), getcurrent()) == script(threading.RLock(), threading.get_ident())


def test_rlock_owned_by_one_greenlet() -> None:
    lock = RLock()
    lock.acquire()
    lock.acquire()
    errors: list[type[BaseException]] = []

    def intruder() -> None:
        errors.append(outcome(lock.release))
        assert lock._is_owned() is False
        assert lock.acquire(blocking=False) is False
        lock.acquire()
        assert lock._recursion_count() == 1
        lock.release()

    g = greenwire.spawn(intruder)
    settle()
    assert errors == [RuntimeError]
    assert not g.ready()
    lock.release()
    settle()
    assert not g.ready()  # still held once
    lock.release()
    g.join()
    assert g.exception is None
    assert repr(lock).startswith("<unlocked greenwire.lock.RLock object owner=None count=0")


def test_rlock_timeout_kill_and_fork_reinit(vclock: VirtualClock) -> None:
    lock = RLock()
    lock.acquire()
    g = greenwire.spawn(lock.acquire, True, 2)
    g.join()
    assert g.value is False and vclock.now() == 2
    g2 = greenwire.spawn(lock.acquire)
    settle()
    g2.kill()
    assert not lock._waiters
    assert "locked" in repr(lock) and "count=1" in repr(lock)
    lock._at_fork_reinit()
    assert lock._owner is None and lock._count == 0 and not lock.locked()


def test_rlock_with_stdlib_condition() -> None:
    # threading.Condition drives RLock through _is_owned/_release_save/_acquire_restore.
    lock = RLock()
    cond = threading.Condition(lock)  # type: ignore[arg-type]
    with cond, cond:
        assert cond._is_owned()  # type: ignore[attr-defined]
        assert cond.wait(0) is False  # released completely, then restored
        assert lock._recursion_count() == 2
        cond.notify()
    assert not lock.locked()


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
