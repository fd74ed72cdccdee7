"""Semaphores: FIFO fairness, no barging, timeouts, kills, bounded release."""

from __future__ import annotations

import threading
from typing import Any

import pytest

import greenwire
from _sync_helpers import settle
from greenwire._core import Hub, HubBlockingError, LoopExit, VirtualClock, get_hub
from greenwire.lock import Lock
from greenwire.semaphore import BoundedSemaphore, Semaphore
from greenwire.timeout import Timeout, TooSlowError, fail_after, move_on_after

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


def test_a_semaphore_refuses_waiters_from_two_threads() -> None:
    sem = Semaphore(0)
    waiter = greenwire.spawn(sem.acquire)
    settle()
    errors: list[BaseException] = []

    def other_thread() -> None:
        try:
            sem.acquire()
        except RuntimeError as e:
            errors.append(e)
        finally:
            get_hub().destroy()

    t = threading.Thread(target=other_thread)
    t.start()
    t.join(10)
    assert len(errors) == 1 and "one OS thread" in str(errors[0])
    sem.release()
    waiter.join()
    assert waiter.value is True
