"""Group and Pool: membership, join, kill, map/imap/apply, slots and fairness."""

from __future__ import annotations

import gc
import itertools
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest
from greenlet import getcurrent

import greenwire
from _sync_helpers import settle
from greenwire import Greenlet, GreenletExit
from greenwire._core import VirtualClock
from greenwire.pool import Group, Pool, PoolFull

if TYPE_CHECKING:
    from tests.conftest import ErrorLog


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


# ------------------------------------------------------------------ membership


def test_spawned_greenlets_leave_the_group_when_done() -> None:
    group = Group()
    a = group.spawn(lambda: "a")
    b = group.spawn(greenwire.sleep, 0)
    assert len(group) == 2 and a in group and b in group
    assert list(group) == [a, b]
    assert a.get() == "a"
    greenwire.sleep(0)  # the rawlink that removes it runs in the hub
    assert a not in group
    assert group.join() is True
    assert len(group) == 0 and not group


def test_add_start_discard_and_constructor() -> None:
    g1 = Greenlet(lambda: 1)
    g2 = Greenlet(lambda: 2)
    group = Group([g1])
    group.add(g1)  # twice is harmless
    group.start(g2)
    assert list(group) == [g1, g2] and not g1.started and g2.started
    group.discard(g2)
    group.discard(g2)
    assert g2 not in group
    assert g2.get() == 2  # discarding does not stop it
    g1.start()
    assert group.join() is True
    assert "members=0" in repr(group)


def test_iteration_is_a_snapshot() -> None:
    group = Group()
    for _ in range(3):
        group.spawn(greenwire.sleep, 0)
    seen = []
    for g in group:
        seen.append(g)
        greenwire.sleep(0)  # members leave meanwhile
    assert len(seen) == 3
    group.join()


def test_group_is_never_full() -> None:
    group = Group()
    assert not group.full()
    assert group.free_count() == sys.maxsize
    assert group.wait_available() == sys.maxsize


# ------------------------------------------------------------------------ join


def test_join_timeout(vclock: VirtualClock) -> None:
    group = Group()
    group.spawn(nap, 10)
    assert group.join(timeout=1) is False
    assert vclock.now() == 1
    assert group.join() is True
    assert vclock.now() == 10


def test_join_empty_group_returns_at_once() -> None:
    assert Group().join() is True
    assert Group().join(raise_error=True) is True


def test_failures_of_members_reach_the_hub(hub_errors: ErrorLog) -> None:
    group = Group()
    g = group.spawn(fail)
    assert group.join() is True
    assert hub_errors.types() == [ValueError] and hub_errors[0][0] is g


def test_join_raise_error_raises_the_first_failure_unreported(
    vclock: VirtualClock, hub_errors: ErrorLog
) -> None:
    group = Group()
    slow = group.spawn(nap, 5, "slow")
    group.spawn(fail, "first", 1)
    with pytest.raises(ValueError, match="first"):
        group.join(raise_error=True)
    assert vclock.now() == 1 and slow in group  # raised at once, the rest keeps running
    assert hub_errors == []
    assert group.join(raise_error=True) is True
    assert slow.get() == "slow"


def test_join_raise_error_reports_the_other_failures_once(hub_errors: ErrorLog) -> None:
    group = Group()
    first = group.spawn(fail, "one")
    second = group.spawn(fail, "two")
    with pytest.raises(ValueError, match="one"):
        group.join(raise_error=True)
    # Both failed before join looked; the one not raised is reported instead of lost.
    assert [(c, str(e)) for c, e in hub_errors] == [(second, "two")]
    assert first.exception is not None
    group.join()


def test_join_raise_error_sees_a_member_that_already_failed(hub_errors: ErrorLog) -> None:
    group = Group()
    g = Greenlet(fail, "early")
    group.add(g)
    g.kill(ValueError("early"))  # finishes now; its links (and removal) run later
    assert g in group and g.ready()
    with pytest.raises(ValueError, match="early"):
        group.join(raise_error=True)
    assert hub_errors.types() == [ValueError]  # it was reported when it happened
    group.join()


def test_join_raise_error_counts_members_added_while_waiting(hub_errors: ErrorLog) -> None:
    group = Group()
    group.spawn(nap, 0.0)

    def add_a_failure_soon() -> None:
        group.spawn(fail, "late")

    greenwire.spawn(add_a_failure_soon)
    with pytest.raises(ValueError, match="late"):
        group.join(raise_error=True)
    assert hub_errors == []
    group.join()


def test_join_raise_error_timeout(vclock: VirtualClock) -> None:
    group = Group()
    group.spawn(nap, 5)
    assert group.join(timeout=1, raise_error=True) is False
    group.kill()


def test_join_killed_while_waiting_unregisters() -> None:
    group = Group()
    blocker = group.spawn(greenwire.sleep, 100)
    joiner = greenwire.spawn(group.join, None, True)
    greenwire.sleep(0)
    joiner.kill()
    assert joiner.successful() and group._joiners == []
    assert blocker._consumers == 0
    group.kill()


# ------------------------------------------------------------------------ kill


def test_kill_kills_everyone_and_waits() -> None:
    group = Group()
    started: list[int] = []

    def worker(i: int) -> None:
        started.append(i)
        greenwire.sleep(100)

    members = [group.spawn(worker, i) for i in range(3)]
    greenwire.sleep(0)
    group.kill()
    assert len(group) == 0
    assert all(g.ready() and isinstance(g.value, GreenletExit) for g in members)


def test_kill_without_blocking_and_unstarted_members() -> None:
    group = Group()
    running = group.spawn(greenwire.sleep, 100)
    never = Greenlet(lambda: pytest.fail("must not run"))
    group.add(never)
    greenwire.sleep(0)
    group.kill(block=False)
    assert never.ready() and not running.ready()
    assert group.join() is True
    assert running.ready()


def test_kill_with_custom_exception(hub_errors: ErrorLog) -> None:
    group = Group()
    g = group.spawn(greenwire.sleep, 100)
    greenwire.sleep(0)
    group.kill(KeyError)
    assert isinstance(g.exception, KeyError)
    assert hub_errors.types() == [KeyError]


def test_kill_also_kills_greenlets_added_meanwhile() -> None:
    group = Group()

    def stubborn() -> None:
        try:
            greenwire.sleep(100)
        except GreenletExit:
            group.start(Greenlet(greenwire.sleep, 100))  # a replacement appears meanwhile
            greenwire.sleep(0)
            raise

    group.spawn(stubborn)
    greenwire.sleep(0)
    group.kill()
    assert len(group) == 0


def test_kill_timeout_gives_up_on_a_greenlet_that_ignores_it(vclock: VirtualClock) -> None:
    group = Group()

    def ignore_once() -> None:
        try:
            greenwire.sleep(100)
        except GreenletExit:
            greenwire.sleep(10)

    g = group.spawn(ignore_once)
    greenwire.sleep(0)
    group.kill(timeout=1)
    assert vclock.now() == 1 and g in group
    group.kill()  # not killed a second time: it finishes its cleanup
    assert vclock.now() == 10 and g.successful()


def test_kill_from_a_member_spares_the_caller() -> None:
    group = Group()
    others = [group.spawn(greenwire.sleep, 100) for _ in range(2)]

    def killer() -> str:
        group.kill()
        return "survived"

    k = group.spawn(killer)
    assert k.get() == "survived"
    assert all(g.ready() for g in others)


def test_killone() -> None:
    group = Group()
    a = group.spawn(greenwire.sleep, 100)
    b = group.spawn(greenwire.sleep, 100)
    greenwire.sleep(0)
    group.killone(a)
    assert a.ready() and not b.ready()
    group.killone(a)  # no longer a member: nothing happens
    group.killone(b, block=False)
    assert not b.ready()
    group.join()
    assert b.ready()


# --------------------------------------------------------------- apply and map


def test_apply_and_apply_from_a_member() -> None:
    group = Group()
    assert group.apply(lambda a, b=0: a + b, (1,), {"b": 2}) == 3
    with pytest.raises(ValueError):
        group.apply(fail)

    def inside() -> Any:
        return group.apply(getcurrent)  # runs directly in the member

    g = group.spawn(inside)
    assert g.get() is g


def test_apply_async_and_map_async_callbacks() -> None:
    group = Group()
    results: list[Any] = []
    g = group.apply_async(lambda x: x * 2, (21,), callback=results.append)
    m = group.map_async(lambda x: x + 1, [1, 2], callback=results.append)
    assert g.get() == 42 and m.get() == [2, 3]
    group.join()
    greenwire.sleep(0)
    assert sorted(map(str, results)) == ["42", "[2, 3]"]
    assert group.apply_async(str).get() == ""
    assert group.apply_async(str, None, None).get() == ""  # gevent's spelling of "none"
    assert group.apply(str, None) == ""
    assert group.map_async(str, []).get() == []


def test_map_keeps_input_order(vclock: VirtualClock) -> None:
    group = Group()
    assert group.map(lambda x: nap(3 - x, x), range(3)) == [0, 1, 2]
    assert vclock.now() == 3  # concurrently


def test_map_raises_the_first_failure_and_kills_the_rest(vclock: VirtualClock) -> None:
    group = Group()

    def work(x: int) -> int:
        if x == 1:
            greenwire.sleep(1)
            fail(f"item {x}")
        greenwire.sleep(5 * x)
        return x

    with pytest.raises(ValueError, match="item 1"):
        group.map(work, range(4))
    assert len(group) == 0 and vclock.now() == 1


def test_imap_ordered_and_unordered(vclock: VirtualClock) -> None:
    group = Group()
    delays = [3, 1, 2]
    assert list(group.imap(lambda d: nap(d, d), delays)) == [3, 1, 2]
    assert list(group.imap_unordered(lambda d: nap(d, d), delays)) == [1, 2, 3]
    assert list(group.imap(lambda a, b: a * b, [1, 2, 3], [4, 5])) == [4, 10]
    assert list(group.imap(str, [])) == []


def test_imap_failure_is_raised_in_place_and_iteration_can_go_on() -> None:
    group = Group()

    def work(x: int) -> int:
        if x == 1:
            fail("one")
        return x

    it = group.imap(work, range(3))
    assert next(it) == 0
    with pytest.raises(ValueError, match="one"):
        next(it)
    assert list(it) == [2]
    assert iter(it) is it


def test_imap_input_error_comes_after_the_items(hub_errors: ErrorLog) -> None:
    def items() -> Iterator[int]:
        yield 1
        yield 2
        raise KeyError("input broke")

    group = Group()
    it = group.imap_unordered(lambda x: x, items())
    got = [next(it), next(it)]
    with pytest.raises(KeyError):
        next(it)
    with pytest.raises(StopIteration):
        next(it)
    assert sorted(got) == [1, 2] and hub_errors == []


def test_imap_maxsize_bounds_outstanding_results() -> None:
    group = Group()
    started: list[int] = []

    def work(x: int) -> int:
        started.append(x)
        return x

    it = group.imap(work, range(10), maxsize=2)
    settle(5)
    assert started == [0, 1]  # finished but not consumed: the feeder waits
    assert next(it) == 0
    settle(5)
    assert started == [0, 1, 2]
    assert list(it) == list(range(1, 10))
    with pytest.raises(ValueError):
        group.imap(work, [], maxsize=0)


def test_imap_close_kills_running_calls_and_reports_unconsumed_failures(
    hub_errors: ErrorLog,
) -> None:
    group = Group()

    def work(x: int) -> int:
        if x == 0:
            fail("never consumed")
        greenwire.sleep(100)
        return x

    it = group.imap(work, range(3))
    greenwire.sleep(0)
    greenwire.sleep(0)
    it.close()
    it.close()
    assert len(group) == 0
    assert [str(e) for _, e in hub_errors] == ["never consumed"]
    assert "spawned=3" in repr(it)
    with pytest.raises(StopIteration):
        next(it)


def test_imap_unconsumed_failure_reported_when_collected(hub_errors: ErrorLog) -> None:
    group = Group()
    it = group.imap_unordered(fail, ["dropped"])
    settle(3)
    assert group.join() is True
    settle(3)
    assert hub_errors == []
    del it
    gc.collect()
    assert [str(e) for _, e in hub_errors] == ["dropped"]


def test_imap_second_consumer_is_refused() -> None:
    group = Group()
    it = group.imap(nap, [1])
    waiter = greenwire.spawn(next, it)
    greenwire.sleep(0)
    with pytest.raises(RuntimeError, match="already waiting"):
        next(it)
    waiter.kill()
    it.close()


# ------------------------------------------------------------------------ Pool


def test_pool_size_must_be_positive() -> None:
    with pytest.raises(ValueError):
        Pool(0)
    with pytest.raises(ValueError):
        Pool(-1)


def test_pool_spawn_blocks_until_a_slot_frees(vclock: VirtualClock) -> None:
    pool = Pool(2)
    assert pool.free_count() == 2 and not pool.full()
    pool.spawn(nap, 1)
    pool.spawn(nap, 2)
    assert pool.full() and pool.free_count() == 0
    third = pool.spawn(nap, 1)
    assert vclock.now() == 1  # waited for the first
    assert len(pool) == 2 and third in pool
    pool.join()
    assert vclock.now() == 2
    assert "size=2" in repr(pool)


def test_pool_slots_go_in_fifo_order() -> None:
    pool = Pool(1)
    order: list[str] = []
    holder = pool.spawn(greenwire.sleep, 100)
    spawners = [
        greenwire.spawn(pool.spawn, order.append, name) for name in ("first", "second", "third")
    ]
    greenwire.sleep(0)
    holder.kill()
    greenwire.joinall(spawners)
    pool.join()
    assert order == ["first", "second", "third"]


def test_pool_newcomer_does_not_jump_the_queue() -> None:
    pool = Pool(1)
    order: list[str] = []
    holder = pool.spawn(greenwire.sleep, 100)
    queued = greenwire.spawn(pool.spawn, order.append, "queued")
    greenwire.sleep(0)
    holder.kill(block=False)
    greenwire.sleep(0)
    greenwire.sleep(0)  # the slot is free and "queued" is woken, but has not run yet
    with pytest.raises(PoolFull):
        pool.add(Greenlet(order.append, "newcomer"), blocking=False)
    queued.join()
    pool.join()
    assert order == ["queued"]


def test_pool_add_nonblocking_and_timeout(vclock: VirtualClock) -> None:
    pool = Pool(1)
    pool.spawn(nap, 10)
    with pytest.raises(PoolFull):
        pool.add(Greenlet(str), blocking=False)
    with pytest.raises(PoolFull):
        pool.add(Greenlet(str), timeout=1)
    assert vclock.now() == 1
    assert pool._slot_waiters == deque_empty()
    late = Greenlet(str)
    pool.add(late, timeout=20)
    pool.add(late)  # already a member
    assert vclock.now() == 10
    late.start()
    pool.join()


def deque_empty() -> Any:
    from collections import deque

    return deque()


def test_pool_waiter_killed_passes_the_turn_on() -> None:
    pool = Pool(1)
    done: list[str] = []
    holder = pool.spawn(greenwire.sleep, 100)
    doomed = greenwire.spawn(pool.spawn, done.append, "doomed")
    patient = greenwire.spawn(pool.spawn, done.append, "patient")
    greenwire.sleep(0)
    holder.kill(block=False)
    greenwire.sleep(0)  # the holder died; its links (freeing the slot) are queued
    doomed.kill(block=False)  # lands after "doomed" is woken for the slot, before it runs
    patient.join()
    assert doomed.ready() and pool._slot_waiters == deque_empty()
    pool.join()
    assert done == ["patient"]


def test_pool_several_slots_free_at_once_wake_several_waiters() -> None:
    pool = Pool(2)
    holders = [pool.spawn(greenwire.sleep, 100) for _ in range(2)]
    got: list[int] = []
    spawners = [greenwire.spawn(pool.spawn, got.append, i) for i in range(2)]
    greenwire.sleep(0)
    for h in holders:
        h.kill(block=False)
    greenwire.joinall(spawners)
    pool.join()
    assert got == [0, 1]


def test_pool_wait_available(vclock: VirtualClock) -> None:
    pool = Pool(1)
    assert pool.wait_available() == 1
    pool.spawn(nap, 5)
    assert pool.wait_available(timeout=1) == 0
    assert pool.wait_available() == 1
    assert vclock.now() == 5


def test_unbounded_pool() -> None:
    pool = Pool()
    members = [pool.spawn(greenwire.sleep, 0) for _ in range(50)]
    assert len(pool) == 50 and not pool.full()
    assert pool.free_count() == sys.maxsize
    assert pool.wait_available() == sys.maxsize
    greenwire.joinall(members)
    pool.join()


def test_pool_imap_on_an_endless_iterable_respects_the_size() -> None:
    pool = Pool(3)
    running = 0
    peak = 0

    def work(x: int) -> int:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        greenwire.sleep(0)
        running -= 1
        return x * x

    it = pool.imap(work, itertools.count())
    assert [next(it) for _ in range(20)] == [x * x for x in range(20)]
    assert peak == 3
    it.close()
    assert len(pool) == 0


def test_pool_imap_unordered_with_maxsize(vclock: VirtualClock) -> None:
    pool = Pool(4)
    it = pool.imap_unordered(lambda d: nap(d, d), [4, 3, 3, 1], maxsize=2)
    # Without maxsize all four would start at once: [1, 3, 3, 4].
    assert list(it) == [3, 4, 1, 3]
    assert vclock.now() == 6


def test_pool_map_and_apply(vclock: VirtualClock) -> None:
    pool = Pool(2)
    assert pool.map(lambda x: nap(1, x), range(4)) == [0, 1, 2, 3]
    assert vclock.now() == 2
    assert pool.apply(nap, (1, "x")) == "x"


def test_pool_apply_async_when_full_does_not_block(vclock: VirtualClock) -> None:
    pool = Pool(1)
    pool.spawn(nap, 5)
    results: list[str] = []
    helper = pool.apply_async(nap, (1, "late"), callback=results.append)
    assert vclock.now() == 0 and helper not in pool
    assert helper.get() == "late"
    assert vclock.now() == 6 and results == ["late"]
    pool.join()


def test_pool_apply_from_a_member_of_a_full_pool_does_not_deadlock() -> None:
    pool = Pool(1)
    assert pool.spawn(lambda: pool.apply(lambda: "inner")).get() == "inner"


def test_pool_greenlet_class() -> None:
    class Tagged(Greenlet[Any]):
        tag = "custom"

    pool = Pool(2, greenlet_class=Tagged)
    g = pool.spawn(str, 1)
    assert isinstance(g, Tagged) and g.get() == "1"
    pool.join()
