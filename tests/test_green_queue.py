"""greenwire.green.queue: the queue module's classes, cooperative, with stdlib semantics."""

from __future__ import annotations

import collections
import queue as stdlib_queue
from typing import Any

import pytest

import greenwire
from _green_patching import check_patched
from greenwire._core import VirtualClock
from greenwire.green import queue as green_queue

JOINABLE = [green_queue.Queue, green_queue.LifoQueue, green_queue.PriorityQueue]
ALL = [*JOINABLE, green_queue.SimpleQueue]

ORDER = {
    green_queue.Queue: [3, 1, 2],
    green_queue.LifoQueue: [2, 1, 3],
    green_queue.PriorityQueue: [1, 2, 3],
    green_queue.SimpleQueue: [3, 1, 2],
}


def _make(cls: type[Any], maxsize: int = 0) -> Any:
    return cls() if cls is green_queue.SimpleQueue else cls(maxsize)


@pytest.mark.parametrize("cls", ALL)
def test_order_size_and_nowait(cls: type[Any]) -> None:
    q = _make(cls)
    assert q.empty() and q.qsize() == 0
    for item in (3, 1, 2):
        q.put(item)
    assert q.qsize() == 3 and not q.empty()
    assert [q.get() for _ in range(3)] == ORDER[cls]
    with pytest.raises(stdlib_queue.Empty):
        q.get_nowait()
    with pytest.raises(stdlib_queue.Empty):
        q.get(block=False)
    q.put_nowait(7)
    assert q.get_nowait() == 7


@pytest.mark.parametrize("cls", JOINABLE)
def test_full_queues_raise_the_stdlib_full(cls: type[Any], vclock: VirtualClock) -> None:
    q = cls(2)
    q.put(1)
    q.put(2)
    assert q.full() and q.maxsize == 2
    with pytest.raises(stdlib_queue.Full):
        q.put_nowait(3)
    start = vclock.now()
    with pytest.raises(stdlib_queue.Full):
        q.put(3, timeout=0.5)
    assert vclock.now() - start == pytest.approx(0.5)


@pytest.mark.parametrize("cls", ALL)
def test_a_blocked_get_is_served_by_a_put(cls: type[Any]) -> None:
    q = _make(cls)
    g = greenwire.spawn(q.get)
    greenwire.sleep(0)
    q.put("x")
    assert g.get() == "x"


@pytest.mark.parametrize("cls", JOINABLE)
def test_a_blocked_put_is_served_by_a_get(cls: type[Any]) -> None:
    q = cls(1)
    q.put(1)
    g = greenwire.spawn(q.put, 2)
    greenwire.sleep(0)
    assert not g.ready()
    assert q.get() == 1
    g.get()
    assert q.get() == 2


@pytest.mark.parametrize("cls", ALL)
def test_get_times_out_with_empty(cls: type[Any], vclock: VirtualClock) -> None:
    q = _make(cls)
    with pytest.raises(stdlib_queue.Empty):
        q.get(timeout=1.0)
    assert vclock.now() == pytest.approx(1.0)


@pytest.mark.parametrize("cls", ALL)
def test_negative_timeouts_are_refused_before_looking(cls: type[Any]) -> None:
    q = _make(cls)
    if cls is not green_queue.SimpleQueue:  # SimpleQueue.put ignores block and timeout
        with pytest.raises(ValueError, match="non-negative"):
            q.put(1, timeout=-1)
    q.put(1)
    with pytest.raises(ValueError, match="non-negative"):
        q.get(timeout=-1)
    assert q.get(False, -1) == 1  # not blocking: the timeout is ignored, as in the stdlib


@pytest.mark.parametrize("cls", JOINABLE)
def test_task_done_and_join(cls: type[Any]) -> None:
    q = cls()
    for i in range(3):
        q.put(i)
    assert q.unfinished_tasks == 3
    done: list[str] = []

    def consume() -> None:
        for _ in range(3):
            q.get()
            greenwire.sleep(0)
            q.task_done()
        done.append("consumer")

    greenwire.spawn(consume)
    q.join()
    done.append("joined")
    assert done == ["consumer", "joined"]
    assert q.unfinished_tasks == 0
    with pytest.raises(ValueError, match="too many times"):
        q.task_done()
    q.unfinished_tasks = 1  # a plain attribute in the stdlib
    q.task_done()


def test_simple_queue_has_no_tasks_and_no_bound() -> None:
    q: green_queue.SimpleQueue[int] = green_queue.SimpleQueue()
    assert not hasattr(q, "task_done") and not hasattr(q, "join")
    for i in range(1000):
        q.put(i, block=True, timeout=-1)  # never blocks; arguments ignored
    assert q.qsize() == 1000


def test_queue_attribute_is_the_container() -> None:
    q: green_queue.Queue[int] = green_queue.Queue()
    q.put(1)
    assert isinstance(q.queue, collections.deque) and list(q.queue) == [1]
    q.queue.clear()  # the stdlib idiom for emptying a queue
    assert q.empty()
    q.queue = collections.deque([5, 6])
    assert q.get() == 5 and q.qsize() == 1


def test_initial_items_count_as_tasks() -> None:
    q = green_queue.PriorityQueue(items=[3, 1, 2])
    assert q.unfinished_tasks == 3
    assert [q.get_nowait() for _ in range(3)] == [1, 2, 3]


# ------------------------------------------------------- subclasses overriding the hooks


class UrllibStyleLifo(green_queue.Queue[Any]):
    """urllib3's LifoQueue: a stdlib Queue with all four hooks overridden."""

    def _init(self, _: int) -> None:
        self.queue = collections.deque()

    def _qsize(self, len: Any = len) -> int:
        return int(len(self.queue))

    def _put(self, item: Any) -> None:
        self.queue.append(item)

    def _get(self) -> Any:
        return self.queue.pop()


def test_a_subclass_with_hooks_keeps_its_items_where_its_hooks_say() -> None:
    q = UrllibStyleLifo(2)
    assert UrllibStyleLifo._hooked and not green_queue.Queue._hooked
    q.put(1)
    q.put(2)
    assert list(q.queue) == [1, 2] and q.qsize() == 2 and q.full()
    with pytest.raises(stdlib_queue.Full):
        q.put(3, block=False)
    assert q.peek() == 1  # FIFO peek index on a LIFO container: the hooks decide gets
    assert [q.get(), q.get()] == [2, 1]
    assert q.empty()
    with pytest.raises(stdlib_queue.Empty):
        q.get(block=False)


def test_a_hooked_subclass_blocks_and_wakes() -> None:
    q = UrllibStyleLifo(1)
    q.put("a")
    putter = greenwire.spawn(q.put, "b")
    greenwire.sleep(0)
    assert q.get() == "a"
    putter.get()
    getter = greenwire.spawn(q.get)
    greenwire.sleep(0)
    assert getter.get() == "b"


def test_a_subclass_overriding_one_hook_uses_the_stdlib_defaults_for_the_others() -> None:
    class Doubling(green_queue.PriorityQueue[int]):
        def _put(self, item: int) -> None:
            super()._put(item * 2)

    class Sub(Doubling):  # inherits being hooked
        pass

    q = Sub(items=[5])
    assert Sub._hooked
    q.put(3)
    q.put(1)
    assert isinstance(q.queue, list)
    assert [q.get(), q.get(), q.get()] == [2, 6, 10]
    assert q.unfinished_tasks == 3
    q.put(4)
    q.shutdown(immediate=True)
    assert q.qsize() == 0

    class Lifo(green_queue.LifoQueue[int]):
        def _qsize(self) -> int:
            return len(self.queue)

    lq = Lifo()
    lq.put(1)
    lq.put(2)
    assert isinstance(lq.queue, list) and lq.get() == 2


def test_a_failing_hook_leaves_the_queue_consistent() -> None:
    class Failing(green_queue.Queue[int]):
        fail = False

        def _put(self, item: int) -> None:
            if self.fail:
                raise RuntimeError("you lose")
            super()._put(item)

    q = Failing()
    q.fail = True
    with pytest.raises(RuntimeError):
        q.put(1)
    q.fail = False
    q.put(2)
    assert q.qsize() == 1 and q.get() == 2


# ------------------------------------------------------------------------ under patch


def test_declarations() -> None:
    assert green_queue.__target__ == "queue"
    assert set(green_queue.__implements__) == {
        "Queue",
        "LifoQueue",
        "PriorityQueue",
        "SimpleQueue",
    }
    assert green_queue.Empty is stdlib_queue.Empty and green_queue.Full is stdlib_queue.Full


def test_patched_queue_module_cooperates_and_keeps_its_exceptions() -> None:
    out = check_patched(
        """
        import queue, threading
        from greenwire.green import queue as green_queue, original

        assert queue.Queue is green_queue.Queue and queue.SimpleQueue is green_queue.SimpleQueue
        assert original("queue", "Queue").__module__ == "queue"
        q = queue.Queue(maxsize=3)
        got = []

        def consumer():
            while True:
                try:
                    item = q.get(timeout=1)
                except queue.Empty:
                    return
                got.append(item)
                q.task_done()
                if item is None:
                    return

        threads = [threading.Thread(target=consumer) for _ in range(4)]
        for t in threads:
            t.start()
        for i in range(100):
            q.put(i)
        q.join()
        for _ in threads:
            q.put(None)
        for t in threads:
            t.join()
        print(sorted(x for x in got if x is not None) == list(range(100)))
        try:
            queue.SimpleQueue().get(timeout=0.01)
        except queue.Empty:
            print("Empty")
        """
    )
    assert out.split() == ["True", "Empty"]
