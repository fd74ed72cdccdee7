"""Lock and RLock: threading's behaviour, FIFO fairness, timeouts, kills, OS threads."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
from greenlet import GreenletExit, getcurrent
from greenlet import greenlet as RawGreenlet

import greenwire
from _sync_helpers import outcome, settle
from greenwire._core import LoopExit, VirtualClock, get_hub
from greenwire.lock import Lock, RLock
from greenwire.timeout import TooSlowError, fail_after, move_on_after

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


# ------------------------------------------------------- Lock and RLock across OS threads


def real_thread(fn: Callable[[], Any]) -> threading.Thread:
    """Start ``fn`` in a real OS thread (nothing is patched in this process)."""
    t = threading.Thread(target=fn, daemon=True)
    t.start()
    return t


def test_a_greenlet_waiter_is_woken_by_a_release_in_another_thread() -> None:
    lock = Lock()
    lock.acquire()
    parked = threading.Event()
    t = real_thread(lambda: (parked.wait(10), lock.release()))
    # Runs only once the main greenlet is parked in acquire(): nothing else is left to
    # run in this hub, so without the cross-thread wake-up (and the hold that keeps the
    # hub from declaring LoopExit) this would fail.
    greenwire.spawn(parked.set)
    assert lock.acquire(timeout=10) is True
    t.join(10)
    assert lock.locked() and not lock._waiters
    lock.release()


def test_a_real_thread_without_a_hub_blocks_in_the_os(monkeypatch: pytest.MonkeyPatch) -> None:
    import greenwire.lock as lock_module

    blocked = threading.Event()
    real_allocate = lock_module._allocate_os_lock

    class SignallingLock:
        """An OS lock that says when a second, blocking acquire starts."""

        def __init__(self) -> None:
            self.lock = real_allocate()
            self.calls = 0

        def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
            self.calls += 1
            if self.calls == 2:
                blocked.set()
            return self.lock.acquire(blocking, timeout)

        def release(self) -> None:
            self.lock.release()

    monkeypatch.setattr(lock_module, "_allocate_os_lock", SignallingLock)
    lock = Lock()
    lock.acquire()
    seen: list[object] = []

    def contender() -> None:
        seen.append(lock.acquire(timeout=10))
        seen.append(lock_module.existing_hub())
        lock.release()

    t = real_thread(contender)
    assert blocked.wait(10)
    assert len(lock._waiters) == 1 and lock._waiters[0][1] is None  # no hub: the OS
    lock.release()
    t.join(10)
    assert seen == [True, None]
    assert not lock.locked()


@pytest.mark.parametrize("make_lock", [Lock, RLock])
def test_greenlets_and_real_threads_exclude_each_other(make_lock: Callable[[], Any]) -> None:
    lock = make_lock()
    inside = [0]
    total = [0]
    rounds = 3000

    def enter() -> None:
        inside[0] += 1
        assert inside[0] == 1
        total[0] += 1

    def leave() -> None:
        inside[0] -= 1

    def greenlet_side() -> None:
        for i in range(rounds):
            with lock:
                enter()
                if i % 5 == 0:
                    greenwire.sleep(0)  # hold the lock across a switch
                leave()

    def thread_side() -> None:
        for _ in range(rounds):
            with lock:
                enter()
                leave()

    threads = [real_thread(thread_side) for _ in range(2)]
    greenwire.joinall([greenwire.spawn(greenlet_side) for _ in range(3)])
    for t in threads:
        t.join(60)
        assert not t.is_alive()
    assert total[0] == 5 * rounds and inside[0] == 0
    assert not lock.locked() and not lock._waiters


def test_stdlib_condition_on_greenwire_locks_across_threads() -> None:
    cond = threading.Condition(RLock())
    turn = [0]
    rounds = 300
    cond._allocate_lock = Lock  # type: ignore[attr-defined]  # its waiter locks: ours too

    def player(me: int) -> None:
        for _ in range(rounds):
            with cond:
                while turn[0] != me:
                    assert cond.wait(30)
                turn[0] = 1 - me
                cond.notify_all()

    t = real_thread(lambda: player(1))
    player(0)
    t.join(30)
    assert not t.is_alive() and turn[0] == 0


@pytest.mark.realtime
def test_a_timed_wait_gives_up_while_another_thread_holds_the_lock() -> None:
    lock = Lock()
    taken, done = threading.Event(), threading.Event()

    def holder() -> None:
        lock.acquire()
        taken.set()
        done.wait(10)
        lock.release()

    t = real_thread(holder)
    assert taken.wait(10)
    assert lock.acquire(timeout=0.05) is False
    assert not lock._waiters
    done.set()
    assert lock.acquire(timeout=10) is True
    lock.release()
    t.join(10)


def test_a_lock_handed_to_a_waiter_killed_before_it_ran_goes_to_the_next() -> None:
    for make_lock in (Lock, RLock):
        lock = make_lock()
        got: list[int] = []

        def take(i: int, lock: Any = lock, got: list[int] = got) -> None:
            with lock:
                got.append(i)

        lock.acquire()
        first, second = greenwire.spawn(take, 1), greenwire.spawn(take, 2)
        settle()
        lock.release()  # handed to `first`, which has not run yet
        assert lock.locked() and lock.acquire(False) is False  # nobody overtakes
        get_hub().run_callback(getcurrent().switch)  # come back here after the throw
        RawGreenlet.throw(first, GreenletExit)  # before its wake-up gets to it
        assert first.dead
        second.join()
        assert got == [2] and not lock.locked() and not lock._waiters


def test_a_timeout_that_fires_as_the_lock_is_handed_over_keeps_it(vclock: VirtualClock) -> None:
    lock = Lock()
    lock.acquire()
    # Due at the same time, the release first: the timer then switches into a waiter
    # that was handed the lock and whose wake-up is still queued. The hand-over wins.
    get_hub().call_later(1, lock.release)
    waiter = greenwire.spawn(lock.acquire, timeout=1)
    waiter.join()
    assert waiter.value is True and lock.locked()
    lock.release()


def test_the_cross_thread_wake_up_ignores_a_waiter_that_left() -> None:
    from greenwire.lock import _GONE, _wake_parked

    g = greenwire.spawn(greenwire.sleep, 0)
    g.join()
    _wake_parked([g, get_hub(), None, _GONE])  # would switch into a dead greenlet
