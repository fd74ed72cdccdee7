"""Queues: order, bounds, blocking, timeouts, kills, shutdown, joining, and the channel."""

from __future__ import annotations

import queue as stdqueue
import sys
from collections import deque
from collections.abc import Callable
from typing import Any

import pytest

import greenwire
from greenwire import LoopExit, TooSlowError, fail_after, move_on_after
from greenwire._core import Hub, HubBlockingError, VirtualClock
from greenwire.queue import (
    Channel,
    Empty,
    Full,
    JoinableQueue,
    LifoQueue,
    PriorityQueue,
    Queue,
    ShutDown,
)

QueueClass = Callable[..., Queue[Any]]
ALL_QUEUES = [Queue, LifoQueue, PriorityQueue, JoinableQueue]


def settle() -> None:
    """Let every other runnable greenlet run until all of them are parked."""
    greenwire.idle()


def getter(q: Queue[Any] | Channel[Any], log: list[Any], **kwargs: Any) -> greenwire.Greenlet[Any]:
    """Spawn a greenlet that gets one item into ``log`` (or the exception's type)."""

    def run() -> None:
        try:
            log.append(q.get(**kwargs))
        except Exception as e:
            log.append(type(e))

    return greenwire.spawn(run)


def putter(
    q: Queue[Any] | Channel[Any], item: Any, log: list[Any], **kwargs: Any
) -> greenwire.Greenlet[Any]:
    """Spawn a greenlet that puts ``item``, then logs ``("put", item)`` or the error."""

    def run() -> None:
        try:
            q.put(item, **kwargs)
            log.append(("put", item))
        except Exception as e:
            log.append(type(e))

    return greenwire.spawn(run)


# --------------------------------------------------------------------------- basics


def test_exceptions_are_the_standard_library_ones() -> None:
    assert Empty is stdqueue.Empty
    assert Full is stdqueue.Full
    assert issubclass(ShutDown, Exception)
    if sys.version_info >= (3, 13):
        assert ShutDown is stdqueue.ShutDown
    with pytest.raises(stdqueue.Empty):
        Queue().get_nowait()
    with pytest.raises(stdqueue.Full):
        Queue(1, items=[1]).put_nowait(2)


@pytest.mark.parametrize(
    ("cls", "expected"),
    [(Queue, [3, 1, 2]), (LifoQueue, [2, 1, 3]), (PriorityQueue, [1, 2, 3])],
)
def test_order_and_peek(cls: QueueClass, expected: list[int]) -> None:
    q = cls()
    for item in (3, 1, 2):
        q.put(item)
    assert q.peek() == expected[0]
    assert q.peek_nowait() == expected[0]
    assert q.qsize() == len(q) == len(q.queue) == 3
    assert [q.get() for _ in range(3)] == expected
    assert q.empty()


@pytest.mark.parametrize("cls", ALL_QUEUES)
def test_initial_items_sizes_and_nowait_errors(cls: QueueClass) -> None:
    q = cls(2, items=[1])
    assert q.maxsize == 2 and q.qsize() == 1 and not q.full() and not q.empty()
    q.put_nowait(2)
    assert q.full()
    with pytest.raises(Full):
        q.put_nowait(3)
    with pytest.raises(Full):
        q.put(3, block=False)
    with pytest.raises(Full):
        q.put(3, timeout=0)
    assert sorted([q.get_nowait(), q.get_nowait()]) == [1, 2]
    with pytest.raises(Empty):
        q.get_nowait()
    with pytest.raises(Empty):
        q.get(timeout=0)
    with pytest.raises(Empty):
        q.peek_nowait()
    assert bool(q) is True and len(q) == 0


@pytest.mark.parametrize("maxsize", [0, None, -1])
def test_unbounded(maxsize: int | None) -> None:
    q: Queue[int] = Queue(maxsize)
    assert q.maxsize == 0
    for i in range(1000):
        q.put_nowait(i)
    assert not q.full() and q.qsize() == 1000


def test_negative_timeout_is_rejected() -> None:
    q: Queue[int] = Queue(1, items=[1])
    with pytest.raises(ValueError):
        q.put(2, timeout=-1)
    with pytest.raises(ValueError):
        Queue().get(timeout=-1)
    ch: Channel[int] = Channel()
    with pytest.raises(ValueError):
        ch.put(1, timeout=-1)


def test_repr_shows_state() -> None:
    q: Queue[int] = Queue(3, items=[1])
    assert "maxsize=3" in repr(q) and "qsize=1" in repr(q)
    q.shutdown()
    assert "shutdown" in repr(q) and q.is_shutdown
    assert repr(JoinableQueue()).startswith("<JoinableQueue")
    assert "offered=0" in repr(Channel())


# ------------------------------------------------------------------ blocking & order


@pytest.mark.parametrize("cls", ALL_QUEUES)
def test_get_waits_for_put(cls: QueueClass) -> None:
    q = cls()
    log: list[Any] = []
    g = getter(q, log)
    settle()
    assert log == []
    q.put("x")
    g.join()
    assert log == ["x"]


def test_blocked_getters_are_served_in_fifo_order() -> None:
    q: Queue[int] = Queue()
    log: list[Any] = []
    gs = [getter(q, log) for _ in range(5)]
    settle()
    for i in range(5):
        q.put(i)
    greenwire.joinall(gs)
    assert log == [0, 1, 2, 3, 4]
    assert [g.value for g in gs] == [None] * 5


def test_blocked_getters_fifo_and_each_gets_its_own() -> None:
    q: Queue[int] = Queue()
    got: dict[int, int] = {}

    def run(n: int) -> None:
        got[n] = q.get()

    gs = [greenwire.spawn(run, n) for n in range(4)]
    settle()
    for i in range(4):
        q.put(i * 10)
    greenwire.joinall(gs)
    assert got == {0: 0, 1: 10, 2: 20, 3: 30}


@pytest.mark.parametrize("cls", ALL_QUEUES)
def test_blocked_putters_are_served_in_fifo_order(cls: QueueClass) -> None:
    q = cls(1, items=[0])
    log: list[Any] = []
    ps = [putter(q, i, log) for i in (1, 2, 3)]
    settle()
    assert log == [] and q.qsize() == 1
    got = [q.get() for _ in range(4)]
    greenwire.joinall(ps)
    assert log == [("put", 1), ("put", 2), ("put", 3)]
    if cls is Queue or cls is JoinableQueue:
        assert got == [0, 1, 2, 3]
    else:
        assert sorted(got) == [0, 1, 2, 3]


@pytest.mark.parametrize("maxsize", [1, 3])
def test_bounded_queue_never_exceeds_maxsize(maxsize: int) -> None:
    q: Queue[int] = Queue(maxsize)
    sizes: list[int] = []
    received: list[int] = []

    def produce(base: int) -> None:
        for i in range(20):
            q.put(base + i)
            sizes.append(q.qsize())

    def consume() -> None:
        for _ in range(40):
            sizes.append(q.qsize())
            received.append(q.get())
            if len(received) % 3 == 0:
                greenwire.sleep(0)

    gs = [greenwire.spawn(produce, 0), greenwire.spawn(produce, 100), greenwire.spawn(consume)]
    # A barging putter that never waits, racing the woken ones.
    for i in range(10):
        try:
            q.put_nowait(1000 + i)
            received.append(q.get())
        except Full:
            pass
        greenwire.sleep(0)
        sizes.append(q.qsize())
    greenwire.joinall(gs)
    assert max(sizes) == maxsize
    assert sorted(r for r in received if r < 1000) == list(range(20)) + list(range(100, 120))


def test_a_barging_get_does_not_cost_the_waiter_its_turn() -> None:
    q: Queue[str] = Queue()
    first_log: list[Any] = []
    second_log: list[Any] = []
    first = getter(q, first_log)
    second = getter(q, second_log)
    settle()
    q.put("a")  # wakes `first`...
    assert q.get_nowait() == "a"  # ...but we take the item before it runs
    settle()  # `first` found nothing and went back to the head of the line
    assert first_log == [] and second_log == []
    q.put("b")
    q.put("c")
    greenwire.joinall([first, second])
    assert first_log == ["b"] and second_log == ["c"]


def test_a_stale_wake_up_does_not_make_get_return(fresh_hub: Hub) -> None:
    q: Queue[int] = Queue()
    log: list[Any] = []
    g = getter(q, log)
    settle()
    fresh_hub.run_callback(g.switch)  # a leftover callback from some earlier wait
    settle()
    assert log == [] and not g.ready()
    q.put(7)
    g.join()
    assert log == [7]


def test_peek_waits_then_passes_the_wake_up_on() -> None:
    q: Queue[str] = Queue()
    peeked: list[str] = []
    log: list[Any] = []
    p = greenwire.spawn(lambda: peeked.append(q.peek()))
    g = getter(q, log)
    settle()
    q.put("x")
    greenwire.joinall([p, g])
    assert peeked == ["x"] and log == ["x"] and q.empty()


def test_maxsize_can_grow_and_shrink() -> None:
    q: Queue[int] = Queue(1, items=[0])
    log: list[Any] = []
    ps = [putter(q, i, log) for i in (1, 2, 3)]
    settle()
    q.maxsize = 3
    greenwire.joinall(ps[:2])
    settle()
    assert q.qsize() == 3 and log == [("put", 1), ("put", 2)]
    q.maxsize = 1
    assert q.full()
    for _ in range(3):
        q.get()
    ps[2].join()
    assert q.qsize() == 1 and q.get() == 3
    q.maxsize = None
    assert q.maxsize == 0 and not q.full()


def test_iteration_stops_at_stop_iteration_item() -> None:
    q: Queue[Any] = Queue()
    for item in (1, 2, 3, StopIteration, 4):
        q.put(item)
    assert list(q) == [1, 2, 3]
    assert q.get() == 4


def test_iteration_waits_and_stops_at_shutdown() -> None:
    q: Queue[int] = Queue()
    seen: list[int] = []
    g = greenwire.spawn(lambda: seen.extend(q))
    settle()
    q.put(1)
    q.put(2)
    settle()
    q.shutdown()
    g.join()
    assert seen == [1, 2]


# -------------------------------------------------------------------------- timeouts


def test_get_timeout_on_virtual_clock(vclock: VirtualClock) -> None:
    q: Queue[int] = Queue()
    with pytest.raises(Empty):
        q.get(timeout=5)
    assert vclock.now() == 5
    with pytest.raises(Empty):
        q.peek(timeout=2)
    assert vclock.now() == 7


def test_put_timeout_on_virtual_clock(vclock: VirtualClock) -> None:
    q: Queue[int] = Queue(1, items=[1])
    with pytest.raises(Full):
        q.put(2, timeout=3)
    assert vclock.now() == 3 and q.qsize() == 1


def test_get_with_timeout_succeeds_before_it(vclock: VirtualClock) -> None:
    q: Queue[int] = Queue()
    greenwire.spawn_later(2, q.put, 9)
    assert q.get(timeout=5) == 9
    assert vclock.now() == 2
    greenwire.sleep(10)  # the cancelled timer does not fire into us later


def test_move_on_after_around_get(vclock: VirtualClock) -> None:
    q: Queue[int] = Queue()
    with move_on_after(1) as scope:
        q.get()
    assert scope.cancelled_caught and vclock.now() == 1
    q.put(5)  # nobody is registered any more: the item stays
    assert q.qsize() == 1 and q.get_nowait() == 5


def test_fail_after_around_put(vclock: VirtualClock) -> None:
    q: Queue[int] = Queue(1, items=[1])
    with pytest.raises(TooSlowError), fail_after(2):
        q.put(2)
    assert vclock.now() == 2
    assert q.get_nowait() == 1 and q.empty()


def test_timed_out_getter_leaves_the_line(vclock: VirtualClock) -> None:
    q: Queue[int] = Queue()
    log: list[Any] = []
    quick = getter(q, log, timeout=1)
    patient = getter(q, log)
    greenwire.sleep(2)
    assert log == [Empty]
    q.put(3)
    greenwire.joinall([quick, patient])
    assert log == [Empty, 3]


def test_getter_timing_out_as_it_is_woken_still_gets_the_item(
    vclock: VirtualClock, fresh_hub: Hub
) -> None:
    q: Queue[int] = Queue()
    log: list[Any] = []
    other: list[Any] = []
    # The put is scheduled before the getter's own deadline timer, for the same moment:
    # the put wakes the getter, then its timer fires before the wake-up is delivered.
    fresh_hub.call_at(1, q.put_nowait, 42)
    g = getter(q, log, timeout=1)
    h = getter(q, other, timeout=5)
    g.join()
    assert log == [42] and vclock.now() == 1
    h.join()
    assert other == [Empty]


def test_putter_timing_out_as_it_is_woken_still_puts(vclock: VirtualClock, fresh_hub: Hub) -> None:
    q: Queue[int] = Queue(1, items=[0])
    log: list[Any] = []
    fresh_hub.call_at(1, q.get_nowait)
    p = putter(q, 1, log, timeout=1)
    p.join()
    assert log == [("put", 1)] and q.get_nowait() == 1


# ---------------------------------------------------------------------------- kills


def test_getter_killed_as_it_is_woken_passes_the_item_on(fresh_hub: Hub) -> None:
    q: Queue[str] = Queue()
    first_log: list[Any] = []
    second_log: list[Any] = []
    first = getter(q, first_log)
    second = getter(q, second_log)
    settle()
    first.kill(block=False)  # the kill is delivered before...
    q.put("only")  # ...the wake-up this put schedules for `first`
    greenwire.joinall([first, second])
    assert first_log == [] and second_log == ["only"] and q.empty()


def test_killed_getter_leaves_no_registration() -> None:
    q: Queue[int] = Queue()
    g = getter(q, [])
    settle()
    g.kill()
    q.put(1)
    settle()
    assert q.qsize() == 1


def test_putter_killed_as_it_is_woken_passes_the_slot_on() -> None:
    q: Queue[int] = Queue(1, items=[0])
    log: list[Any] = []
    first = putter(q, 1, log)
    second = putter(q, 2, log)
    settle()
    first.kill(block=False)
    assert q.get() == 0  # frees the slot and wakes `first`, which is already dying
    greenwire.joinall([first, second])
    assert log == [("put", 2)] and q.get_nowait() == 2 and q.empty()


@pytest.mark.parametrize("cls", ALL_QUEUES)
def test_many_getters_some_killed_every_item_delivered_once(cls: QueueClass) -> None:
    q = cls()
    logs: list[list[Any]] = [[] for _ in range(10)]
    gs = [getter(q, log) for log in logs]
    settle()
    for g in gs[::3]:
        g.kill(block=False)
    for i in range(6):
        q.put(i)
    greenwire.joinall(gs)
    received = [item for log in logs for item in log]
    assert sorted(received) == list(range(6)) and q.empty()


# --------------------------------------------------------------------- wait forever


def test_loop_exit_when_nobody_can_fill_the_queue() -> None:
    q: Queue[int] = Queue()
    with pytest.raises(LoopExit):
        q.get()
    q.put(1)  # no stale registration: the item stays for the next get
    assert q.get_nowait() == 1


def test_loop_exit_when_nobody_can_empty_the_queue() -> None:
    q: Queue[int] = Queue(1, items=[1])
    with pytest.raises(LoopExit):
        q.put(2)
    assert q.get_nowait() == 1 and q.empty()


def test_blocking_inside_the_hub_is_an_error(fresh_hub: Hub) -> None:
    errors: list[type[BaseException]] = []

    def in_hub(fn: Callable[[], Any]) -> None:
        try:
            fn()
        except Exception as e:
            errors.append(type(e))

    q: Queue[int] = Queue()
    ch: Channel[int] = Channel()
    fresh_hub.run_callback(in_hub, q.get)
    fresh_hub.run_callback(in_hub, lambda: ch.put_nowait(1))  # does not block: just Full
    fresh_hub.run_callback(in_hub, lambda: ch.put(1))
    greenwire.sleep(0)
    assert errors == [HubBlockingError, Full, HubBlockingError]
    assert ch.empty() and q.empty()


# ------------------------------------------------------------------------- shutdown


@pytest.mark.parametrize("cls", ALL_QUEUES)
def test_shutdown_lets_getters_drain_then_raises(cls: QueueClass) -> None:
    q = cls(items=[1, 2])
    q.shutdown()
    with pytest.raises(ShutDown):
        q.put(3)
    with pytest.raises(ShutDown):
        q.put_nowait(3)
    assert sorted([q.get(), q.get()]) == [1, 2]
    with pytest.raises(ShutDown):
        q.get()
    with pytest.raises(ShutDown):
        q.get_nowait()
    with pytest.raises(ShutDown):
        q.peek()


def test_immediate_shutdown_discards_items() -> None:
    q: Queue[int] = Queue(items=[1, 2])
    q.shutdown(immediate=True)
    assert q.empty()
    with pytest.raises(ShutDown):
        q.get()


def test_shutdown_wakes_blocked_getters_and_putters() -> None:
    empty: Queue[int] = Queue()
    full: Queue[int] = Queue(1, items=[0])
    log: list[Any] = []
    gs = [getter(empty, log), getter(empty, log), putter(full, 1, log)]
    settle()
    empty.shutdown()
    full.shutdown()
    greenwire.joinall(gs)
    assert log == [ShutDown, ShutDown, ShutDown]
    assert full.get() == 0  # not immediate: what was in stays available
    full.maxsize = 5  # resizing a shut-down queue does not reopen it
    with pytest.raises(ShutDown):
        full.put(1)


# -------------------------------------------------------------------------- joining


def test_join_waits_for_every_task() -> None:
    q: JoinableQueue[Any] = JoinableQueue()
    done: list[int] = []

    def worker() -> None:
        for item in q:
            done.append(item)
            q.task_done()

    workers = [greenwire.spawn(worker) for _ in range(3)]
    for i in range(10):
        q.put(i)
    assert q.unfinished_tasks == 10
    assert q.join() is True
    assert sorted(done) == list(range(10)) and q.unfinished_tasks == 0
    for _ in workers:
        q.put(StopIteration)
    greenwire.joinall(workers)


def test_join_when_nothing_is_pending_and_task_done_too_often() -> None:
    q: JoinableQueue[int] = JoinableQueue()
    assert q.join() is True
    with pytest.raises(ValueError):
        q.task_done()


def test_initial_items_are_tasks(vclock: VirtualClock) -> None:
    q: JoinableQueue[str] = JoinableQueue(items=["a", "b"])
    assert q.unfinished_tasks == 2
    assert q.join(timeout=1) is False
    assert vclock.now() == 1
    q.get()
    q.get()
    q.task_done()
    q.task_done()
    assert q.join(timeout=1) is True and vclock.now() == 1


def test_join_wakes_when_count_reaches_zero_even_if_more_work_arrives() -> None:
    q: JoinableQueue[int] = JoinableQueue(items=[1])
    results: list[bool] = []
    joiners = [greenwire.spawn(lambda: results.append(q.join())) for _ in range(2)]
    settle()
    q.get()
    q.task_done()  # wakes both joiners...
    q.put(2)  # ...and the count is no longer zero when they run
    greenwire.joinall(joiners)
    assert results == [True, True]


def test_join_raises_loop_exit_when_nobody_can_finish() -> None:
    q: JoinableQueue[int] = JoinableQueue(items=[1])
    with pytest.raises(LoopExit):
        q.join()
    q.get()
    q.task_done()
    assert q.join() is True


def test_join_is_killable_and_leaves_no_registration(vclock: VirtualClock) -> None:
    q: JoinableQueue[int] = JoinableQueue(items=[1])
    with move_on_after(1):
        q.join()
    q.get()
    q.task_done()
    assert q.join() is True


def test_immediate_shutdown_finishes_discarded_tasks_and_releases_join() -> None:
    q: JoinableQueue[int] = JoinableQueue(items=[1, 2, 3])
    results: list[bool] = []
    j = greenwire.spawn(lambda: results.append(q.join()))
    settle()
    q.shutdown()
    settle()
    assert results == [] and q.unfinished_tasks == 3  # a plain shutdown finishes nothing
    q.get()
    q.shutdown(immediate=True)  # discards 2 items; the one taken is still unfinished
    settle()
    assert results == [] and q.unfinished_tasks == 1
    q.task_done()
    j.join()
    assert results == [True]


def test_immediate_shutdown_of_untouched_tasks_releases_join() -> None:
    q: JoinableQueue[int] = JoinableQueue(items=[1, 2])
    results: list[bool] = []
    j = greenwire.spawn(lambda: results.append(q.join()))
    settle()
    q.shutdown(immediate=True)
    j.join()
    assert results == [True] and q.unfinished_tasks == 0 and q.queue == deque()


# -------------------------------------------------------------------------- channel


def test_channel_put_returns_only_once_taken() -> None:
    ch: Channel[str] = Channel()
    log: list[Any] = []
    p = putter(ch, "x", log)
    settle()
    assert log == [] and ch.qsize() == 1 and not ch.empty() and ch.full()
    assert ch.peek() == "x"
    assert ch.get() == "x"
    assert log == []  # the putter has not run yet, but it has been released
    p.join()
    assert log == [("put", "x")] and ch.empty()


def test_channel_get_waits_for_a_putter() -> None:
    ch: Channel[int] = Channel()
    log: list[Any] = []
    g = getter(ch, log)
    settle()
    assert not ch.full()
    ch.put(5)
    g.join()
    assert log == [5] and ch.maxsize == 0


def test_channel_nowait() -> None:
    ch: Channel[int] = Channel()
    with pytest.raises(Full):
        ch.put_nowait(1)
    with pytest.raises(Full):
        ch.put(1, timeout=0)
    with pytest.raises(Empty):
        ch.get_nowait()
    log: list[Any] = []
    g = getter(ch, log)
    settle()
    ch.put_nowait(2)
    g.join()
    assert log == [2]


def test_channel_fifo_among_putters_and_getters() -> None:
    ch: Channel[int] = Channel()
    log: list[Any] = []
    ps = [putter(ch, i, log) for i in range(3)]
    settle()
    assert [ch.get() for _ in range(3)] == [0, 1, 2]
    greenwire.joinall(ps)
    got: list[Any] = []
    gs = [getter(ch, got) for _ in range(3)]
    settle()
    for i in range(3):
        ch.put(i)
    greenwire.joinall(gs)
    assert got == [0, 1, 2]


def test_channel_putter_timeout_withdraws_the_item(vclock: VirtualClock) -> None:
    ch: Channel[str] = Channel()
    with pytest.raises(Full):
        ch.put("late", timeout=2)
    assert vclock.now() == 2 and ch.empty()
    with pytest.raises(Empty):
        ch.get(timeout=1)  # the withdrawn item is never delivered
    assert vclock.now() == 3


def test_channel_getter_timeout(vclock: VirtualClock) -> None:
    ch: Channel[int] = Channel()
    with pytest.raises(Empty):
        ch.get(timeout=4)
    assert vclock.now() == 4
    with pytest.raises(Empty):
        ch.peek(timeout=1)
    assert vclock.now() == 5


def test_channel_put_succeeds_when_taken_just_before_its_timeout(
    vclock: VirtualClock, fresh_hub: Hub
) -> None:
    ch: Channel[int] = Channel()
    log: list[Any] = []
    fresh_hub.call_at(1, ch.get_nowait)
    p = putter(ch, 1, log, timeout=1)
    p.join()
    assert log == [("put", 1)]


def test_channel_getter_killed_as_it_is_woken_passes_the_offer_on() -> None:
    ch: Channel[str] = Channel()
    first_log: list[Any] = []
    second_log: list[Any] = []
    first = getter(ch, first_log)
    second = getter(ch, second_log)
    settle()
    first.kill(block=False)
    ch.put("only")
    greenwire.joinall([first, second])
    assert first_log == [] and second_log == ["only"] and ch.empty()


def test_channel_putter_killed_withdraws_its_offer() -> None:
    ch: Channel[int] = Channel()
    p = putter(ch, 1, [])
    settle()
    assert ch.qsize() == 1
    p.kill()
    assert ch.empty()
    with pytest.raises(Empty):
        ch.get_nowait()


def test_channel_peek_waits_and_does_not_take() -> None:
    ch: Channel[int] = Channel()
    peeked: list[int] = []
    pk = greenwire.spawn(lambda: peeked.append(ch.peek()))
    settle()
    with pytest.raises(Full):
        ch.put_nowait(1)  # a peeker is not a taker
    log: list[Any] = []
    p = putter(ch, 2, log)
    pk.join()
    assert peeked == [2] and log == []
    assert ch.get() == 2
    p.join()
    assert log == [("put", 2)]


def test_channel_shutdown() -> None:
    ch: Channel[int] = Channel()
    log: list[Any] = []
    waiting_getter = getter(ch, log)
    settle()
    ch.put_nowait(1)  # committed to the channel: survives a plain shutdown
    ch.shutdown()
    waiting_getter.join()
    assert log == [1]

    ch = Channel()
    log = []
    committed_for = getter(ch, log)
    settle()
    committed_for.kill(block=False)  # dies before the wake-up the next line schedules:
    ch.put_nowait(1)  # so the committed item stays in the channel
    blocked = putter(ch, 2, log)
    settle()
    ch.shutdown()
    greenwire.joinall([committed_for, blocked])
    assert log == [ShutDown]  # the blocked putter's offer was withdrawn
    assert ch.get() == 1
    with pytest.raises(ShutDown):
        ch.get()
    with pytest.raises(ShutDown):
        ch.put(3)

    ch = Channel()
    gs = [getter(ch, log), getter(ch, log)]
    settle()
    gs[0].kill(block=False)
    gs[1].kill(block=False)
    ch.put_nowait(4)  # committed for getters that are about to die
    ch.shutdown(immediate=True)
    greenwire.joinall(gs)
    with pytest.raises(ShutDown):
        ch.get_nowait()


def test_channel_iteration_and_loop_exit() -> None:
    ch: Channel[Any] = Channel()

    def produce() -> None:
        for item in (1, 2, StopIteration):
            ch.put(item)

    p = greenwire.spawn(produce)
    assert list(ch) == [1, 2]
    p.join()
    with pytest.raises(LoopExit):
        ch.get()
    with pytest.raises(LoopExit):
        ch.put(1)
    assert ch.empty()
