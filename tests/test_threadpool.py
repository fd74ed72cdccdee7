"""ThreadPool: a hub that never blocks, bounds, shutdown, several hubs, the default pool.

Every test joins its threads, and a fixture checks that the process has no more threads
than it started with. Results, waits, kills and timeouts are in test_threadresult.py.
"""

from __future__ import annotations

import os
import threading
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import greenwire
from _threadpool_helpers import REAL_WAIT, Concurrency, RealEvent, no_threads_left
from greenwire._core import Hub, HubBlockingError, _originals, get_hub
from greenwire._core import threadpool as core_threadpool
from greenwire.threadpool import (
    ThreadPool,
    ThreadPoolClosed,
    ThreadPoolStatistics,
    ThreadResult,
    get_threadpool,
    run_in_thread,
)


@pytest.fixture(autouse=True)
def every_thread_joined(fresh_hub: Hub) -> Iterator[None]:
    with no_threads_left():
        yield


@pytest.fixture
def pool() -> Iterator[ThreadPool]:
    p = ThreadPool(4)
    yield p
    assert p.shutdown(cancel_pending=True, timeout=REAL_WAIT)
    assert p.size == 0


@pytest.fixture
def helper() -> Iterator[ThreadPool]:
    """A second pool, to wait cooperatively for real events while the first is busy."""
    p = ThreadPool(2)
    yield p
    assert p.shutdown(timeout=REAL_WAIT)


# --------------------------------------------------------------------------- results


def test_apply_returns_value_and_passes_arguments(pool: ThreadPool) -> None:
    def combine(a: int, b: int = 0, fn: str = "") -> tuple[int, str, int]:
        return a + b, fn, _originals.get_ident()

    total, name, ident = pool.apply(combine, 1, b=2, fn="kw named fn")
    assert (total, name) == (3, "kw named fn")
    assert ident != _originals.get_ident()


def test_apply_reraises_with_the_worker_traceback(pool: ThreadPool) -> None:
    def failing_in_thread() -> None:
        raise ValueError("from the thread")

    with pytest.raises(ValueError, match="from the thread") as info:
        pool.apply(failing_in_thread)
    names = [frame.name for frame in traceback.extract_tb(info.value.__traceback__)]
    assert "failing_in_thread" in names
    assert "test_apply_reraises_with_the_worker_traceback" in names


class CustomBase(BaseException):
    pass


@pytest.mark.parametrize("exc_type", [SystemExit, KeyboardInterrupt, CustomBase])
def test_base_exceptions_reach_the_waiter(pool: ThreadPool, exc_type: type) -> None:
    def leave() -> None:
        raise exc_type("bye")

    with pytest.raises(exc_type):
        pool.apply(leave)
    assert pool.apply(int, "5") == 5  # the thread survived it


def test_exceptions_never_kill_the_worker() -> None:
    with ThreadPool(1) as p:
        first = p.apply(_originals.get_ident)
        for _ in range(3):
            with pytest.raises(ZeroDivisionError):
                p.apply(lambda: 1 / 0)
        assert p.apply(_originals.get_ident) == first
        assert p.statistics() == ThreadPoolStatistics(threads=1, idle=1, queued=0, completed=5)


def test_map_keeps_order_and_raises_the_first_failure(pool: ThreadPool) -> None:
    assert pool.map(lambda x: x * x, range(20)) == [x * x for x in range(20)]
    assert pool.map(abs, []) == []
    with pytest.raises(ValueError):
        pool.map(int, ["1", "two", "3"])


def test_apply_from_a_pool_thread_runs_inline() -> None:
    with ThreadPool(1) as p:
        outer, inner = p.apply(lambda: (_originals.get_ident(), p.apply(_originals.get_ident)))
        assert outer == inner  # a full pool of one would deadlock if it queued


def test_pool_threads_call_other_pools_inline(pool: ThreadPool) -> None:
    other = ThreadPool(1)

    def nested() -> tuple[int, int, int, bool]:
        here = _originals.get_ident()
        has_hub = core_threadpool._get_hub_or_none() is not None
        return here, other.apply(_originals.get_ident), run_in_thread(_originals.get_ident), has_hub

    here, via_other, via_default, had_hub = pool.apply(nested)
    assert here == via_other == via_default and not had_hub
    assert other.size == 0  # never needed a thread
    assert other.shutdown()


def test_a_hub_made_by_a_call_in_a_pool_thread_is_destroyed_with_it(pool: ThreadPool) -> None:
    other = ThreadPool(1)

    def waits_through_its_own_hub() -> tuple[int, bool]:
        value = other.submit(int, "3").get()  # makes a hub in this worker thread
        return value, core_threadpool._get_hub_or_none() is not None

    assert pool.apply(waits_through_its_own_hub) == (3, True)
    assert pool.shutdown(timeout=REAL_WAIT)  # its thread exits and closes that hub's fds
    assert other.shutdown(timeout=REAL_WAIT)


def test_apply_inside_the_hub_is_refused(fresh_hub: Hub, pool: ThreadPool) -> None:
    caught: list[BaseException] = []

    def in_hub() -> None:
        try:
            pool.apply(int)
        except HubBlockingError as e:
            caught.append(e)

    fresh_hub.run_callback(in_hub)
    greenwire.sleep(0)
    assert len(caught) == 1
    assert pool.statistics().queued == 0


# ----------------------------------------------------------- the hub keeps running


def test_many_waiters_while_threads_block_and_the_hub_keeps_running(helper: ThreadPool) -> None:
    pool = ThreadPool(10)
    gate = RealEvent()
    busy = Concurrency(target=10)
    passes = [0]
    stop = [False]

    def blocking_call(i: int) -> int:
        with busy:
            gate.wait()
        return i * 2

    def counter() -> None:
        while not stop[0]:
            passes[0] += 1
            greenwire.sleep(0)

    ticker = greenwire.spawn(counter)
    waiters = [greenwire.spawn(pool.apply, blocking_call, i) for i in range(200)]
    # Park this greenlet until all ten threads are blocked; the counter runs meanwhile.
    assert helper.apply(busy.all_in.wait)
    assert passes[0] > 0
    assert pool.statistics() == ThreadPoolStatistics(threads=10, idle=0, queued=190, completed=0)
    progress_from = passes[0]
    for _ in range(100):
        greenwire.sleep(0)
    assert passes[0] >= progress_from + 100  # the hub serves greenlets: threads still blocked
    assert busy.running == 10 and not any(w.ready() for w in waiters)
    gate.set()
    assert [w.get() for w in waiters] == [i * 2 for i in range(200)]
    stop[0] = True
    ticker.join()
    assert busy.peak == 10
    assert pool.statistics().completed == 200
    assert get_hub().statistics().keepalive == 0
    assert pool.shutdown(timeout=REAL_WAIT)


def test_never_more_threads_than_maxsize(helper: ThreadPool) -> None:
    pool = ThreadPool(4)
    gate = RealEvent()
    busy = Concurrency(target=4)

    def call(i: int) -> int:
        with busy:
            gate.wait()
        return i

    results = [pool.submit(call, i) for i in range(20)]
    assert helper.apply(busy.all_in.wait)
    assert pool.size == 4 and pool.maxsize == 4
    assert pool.statistics() == ThreadPoolStatistics(threads=4, idle=0, queued=16, completed=0)
    gate.set()
    assert [r.get() for r in results] == list(range(20))
    assert busy.peak == 4
    stats = pool.statistics()
    assert stats.threads == 4 and stats.queued == 0 and stats.completed == 20
    assert pool.shutdown(timeout=REAL_WAIT)


def test_threads_start_lazily_and_are_reused(pool: ThreadPool) -> None:
    assert pool.size == 0
    idents = {pool.apply(_originals.get_ident) for _ in range(10)}
    assert len(idents) == 1 and pool.size == 1  # sequential calls need one thread


def test_idle_threads_exit_after_the_idle_timeout() -> None:
    pool = ThreadPool(1, idle_timeout=0.0)
    for _ in range(3):
        assert pool.apply(int, "3") == 3
        # With no idle period the thread retires at once: join it, without shutdown.
        for lock in list(pool._exit_locks):
            assert lock.acquire(True, REAL_WAIT)
            lock.release()
        assert pool.size == 0 and not pool.closed
    assert pool.statistics().completed == 3
    assert pool.shutdown(timeout=REAL_WAIT)


def test_raising_maxsize_starts_threads_for_queued_calls(helper: ThreadPool) -> None:
    pool = ThreadPool(1, idle_timeout=None)
    gate = RealEvent()
    busy = Concurrency(target=3)
    first_in = RealEvent()

    def call() -> None:
        with busy:
            first_in.set()
            gate.wait()

    results = [pool.submit(call) for _ in range(3)]
    assert helper.apply(first_in.wait)
    assert pool.statistics() == ThreadPoolStatistics(threads=1, idle=0, queued=2, completed=0)
    pool.maxsize = 3
    assert helper.apply(busy.all_in.wait)
    gate.set()
    greenwire.wait(results)
    assert busy.peak == 3
    # Lowering it retires the surplus idle threads; later calls run one at a time.
    pool.maxsize = 1
    later = Concurrency(target=1)

    def one_at_a_time() -> None:
        with later:
            pass

    pool.map(lambda _: one_at_a_time(), range(10))
    assert later.peak == 1
    assert pool.shutdown(timeout=REAL_WAIT)
    with pytest.raises(ValueError):
        pool.maxsize = 0


def test_bad_sizes_are_refused() -> None:
    for bad in (0, -1, 2.5):
        with pytest.raises(ValueError):
            ThreadPool(bad)  # type: ignore[arg-type]


# --------------------------------------------------------------------- shutdown


def test_shutdown_runs_the_pending_calls_then_refuses_new_ones() -> None:
    pool = ThreadPool(1)
    gate = RealEvent()
    results = [pool.submit(lambda i=i: gate.wait() and i) for i in range(5)]
    closer = greenwire.spawn(pool.shutdown)
    greenwire.sleep(0)
    assert pool.closed and not closer.ready()
    with pytest.raises(ThreadPoolClosed):
        pool.submit(int)
    with pytest.raises(RuntimeError):
        pool.apply(int)
    gate.set()
    assert closer.get() is True
    assert [r.get() for r in results] == list(range(5))
    assert pool.size == 0 and "closed" in repr(pool)
    assert pool.shutdown() is True  # again: nothing to do


def test_shutdown_can_cancel_the_pending_calls(helper: ThreadPool) -> None:
    pool = ThreadPool(1)
    gate = RealEvent()
    started = RealEvent()

    def first() -> str:
        started.set()
        gate.wait()
        return "ran"

    running = pool.submit(first)
    queued = [pool.submit(int, "1") for _ in range(4)]
    assert helper.apply(started.wait)
    waiter = greenwire.spawn(queued[0].get)
    greenwire.sleep(0)
    assert pool.shutdown(wait=False, cancel_pending=True) is False  # one thread still busy
    with pytest.raises(ThreadPoolClosed):
        waiter.get()
    greenwire.wait(queued)
    assert all(isinstance(r.exception, ThreadPoolClosed) for r in queued)
    gate.set()
    assert running.get() == "ran"
    assert pool.shutdown() is True
    assert pool.statistics().completed == 1


def test_shutdown_gives_up_after_its_timeout(fresh_hub: Hub) -> None:
    pool = ThreadPool(2)
    gate = RealEvent()
    stuck = pool.submit(gate.wait)
    greenwire.sleep(0)
    assert pool.shutdown(timeout=0.01) is False  # cooperative wait, real clock
    blocking: list[bool] = []
    fresh_hub.run_callback(lambda: blocking.append(pool.shutdown(timeout=0.01)))
    greenwire.sleep(0)
    assert blocking == [False]  # inside the hub it cannot park: a bounded real join
    gate.set()
    assert stuck.get() is True
    assert pool.shutdown(timeout=REAL_WAIT) is True


def test_shutdown_from_one_of_the_pool_threads() -> None:
    pool = ThreadPool(2)
    assert pool.apply(pool.shutdown, timeout=REAL_WAIT) is True  # does not wait for itself
    assert pool.shutdown(timeout=REAL_WAIT) is True


def test_context_manager_shuts_down() -> None:
    with ThreadPool(2) as pool:
        assert pool.apply(len, "abc") == 3
    assert pool.closed and pool.size == 0


# ---------------------------------------------------------------- several threads


def test_one_pool_shared_by_two_os_threads_with_their_own_hubs(helper: ThreadPool) -> None:
    pool = ThreadPool(6)
    gate = RealEvent()
    busy = Concurrency(target=6)
    outcomes: dict[str, Any] = {}

    def call(i: int) -> int:
        with busy:
            gate.wait()
        return i

    def thread_main(name: str) -> None:
        hub = get_hub()
        errors: list[Any] = []
        hub.error_handler = lambda context, exc: errors.append((context, exc))
        try:
            waiters = [greenwire.spawn(pool.apply, call, i) for i in range(3)]
            outcomes[name + "-result"] = pool.submit(call, 100)
            outcomes[name] = [w.get() for w in waiters]
            outcomes[name + "-value"] = outcomes[name + "-result"].get()
            outcomes[name + "-keepalive"] = hub.statistics().keepalive
            outcomes[name + "-errors"] = errors
        except BaseException as e:
            outcomes[name + "-failed"] = e
        finally:
            hub.destroy()

    threads = [threading.Thread(target=thread_main, args=(n,)) for n in ("a", "b")]
    for t in threads:
        t.start()
    assert helper.apply(busy.all_in.wait)  # six calls from two hubs in flight at once
    gate.set()
    for t in threads:
        t.join(REAL_WAIT)
    assert not any(t.is_alive() for t in threads)
    for name in ("a", "b"):
        assert name + "-failed" not in outcomes
        assert outcomes[name] == [0, 1, 2]
        assert outcomes[name + "-value"] == 100
        assert outcomes[name + "-keepalive"] == 0 and outcomes[name + "-errors"] == []
    assert outcomes["a-result"] is not outcomes["b-result"]
    assert busy.peak == 6
    assert pool.shutdown(timeout=REAL_WAIT)


def test_threadsafe_callback_from_a_foreign_thread_wakes_an_idle_hub(fresh_hub: Hub) -> None:
    me = greenwire.getcurrent()
    parked = RealEvent()
    ran_in: list[int] = []

    def callback() -> None:
        ran_in.append(_originals.get_ident())
        me.switch()

    def foreign() -> None:
        parked.wait()
        fresh_hub.run_callback_threadsafe(callback)

    t = threading.Thread(target=foreign)
    t.start()
    fresh_hub.hold()  # outside work: the hub sleeps in poll() instead of raising LoopExit
    try:
        fresh_hub.run_callback(parked.set)  # runs just before the hub goes idle
        woke = fresh_hub.park_until(fresh_hub.now() + REAL_WAIT)
    finally:
        fresh_hub.release()
    t.join(REAL_WAIT)
    assert woke is True
    assert ran_in == [_originals.get_ident()]  # run by the hub, in its own thread


# ------------------------------------------------------------------ blocking I/O


def test_regular_file_reads_through_the_pool(pool: ThreadPool, tmp_path: Path) -> None:
    paths = []
    for i in range(8):
        path = tmp_path / f"f{i}"
        path.write_bytes(bytes([i]) * (64 * 1024 + i))
        paths.append(path)

    def read_file(path: Path) -> bytes:
        with open(path, "rb") as f:
            return f.read()

    readers = [greenwire.spawn(pool.apply, read_file, p) for p in paths]
    for i, r in enumerate(readers):
        assert r.get() == bytes([i]) * (64 * 1024 + i)
    assert run_in_thread(read_file, paths[3]) == paths[3].read_bytes()


# ----------------------------------------------------------------- default pool


def test_default_pool_is_per_hub_and_sized_by_the_environment(
    fresh_hub: Hub, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GREENWIRE_THREADPOOL_SIZE", "3")
    pool = get_threadpool()
    assert get_threadpool() is pool and pool.maxsize == 3
    assert fresh_hub._threadpool is pool  # type: ignore[attr-defined]
    assert run_in_thread(sum, [1, 2, 3]) == 6
    pool.shutdown()
    monkeypatch.delenv("GREENWIRE_THREADPOOL_SIZE")
    fresh = get_threadpool()
    assert fresh is not pool and fresh.maxsize == core_threadpool.DEFAULT_SIZE
    for bad in ("0", "many"):
        monkeypatch.setenv("GREENWIRE_THREADPOOL_SIZE", bad)
        fresh.shutdown()
        with pytest.raises(ValueError, match="GREENWIRE_THREADPOOL_SIZE"):
            get_threadpool()


def test_destroying_the_hub_shuts_its_pool_down() -> None:
    hub = get_hub()
    pool = get_threadpool()
    assert pool.apply(int, "4") == 4
    assert pool.size == 1
    hub.destroy()
    assert pool.closed and pool.size == 0
    assert hub._threadpool is None  # type: ignore[attr-defined]
    assert get_threadpool() is not pool  # the next hub gets its own


def test_statistics_and_repr(pool: ThreadPool) -> None:
    assert pool.statistics() == ThreadPoolStatistics(threads=0, idle=0, queued=0, completed=0)
    pool.apply(int)
    assert pool.statistics() == ThreadPoolStatistics(threads=1, idle=1, queued=0, completed=1)
    assert repr(pool) == "<ThreadPool threads=1/4 idle=1 queued=0>"
    with pytest.raises(AttributeError):
        pool.statistics().threads = 3  # type: ignore[misc]


def test_a_forked_child_starts_with_an_empty_pool(pool: ThreadPool) -> None:
    assert pool.apply(int, "1") == 1  # one idle thread exists only in the parent
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through its exit status
        code = 1
        try:
            if pool.size == 0 and pool.apply(int, "7") == 7 and pool.shutdown(timeout=5):
                code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert pool.size == 1  # the parent's pool is untouched


# ------------------------------------------------------------ rare paths, white-box


def test_thread_that_cannot_start(monkeypatch: pytest.MonkeyPatch, helper: ThreadPool) -> None:
    pool = ThreadPool(2)

    def refuse(*args: object) -> int:
        raise RuntimeError("can't start new thread")

    real_start = _originals.start_new_thread
    monkeypatch.setattr(_originals, "start_new_thread", refuse)
    with pytest.raises(RuntimeError, match="can't start"):  # no thread would ever run it
        pool.submit(int)
    assert pool.statistics() == ThreadPoolStatistics(threads=0, idle=0, queued=0, completed=0)
    assert get_hub().statistics().keepalive == 0
    # With one thread running, a failed start is not fatal: that thread gets to the call.
    monkeypatch.setattr(_originals, "start_new_thread", real_start)
    gate = RealEvent()
    started = RealEvent()
    first = pool.submit(lambda: started.set() or gate.wait())
    assert helper.apply(started.wait)
    monkeypatch.setattr(_originals, "start_new_thread", refuse)
    second = pool.submit(int, "2")
    monkeypatch.setattr(_originals, "start_new_thread", real_start)
    assert pool.size == 1
    gate.set()
    assert first.get() is True and second.get() == 2
    assert pool.shutdown(timeout=REAL_WAIT)


def test_workers_inherit_threading_profile_hook(pool: ThreadPool) -> None:
    seen: list[int] = []

    def profiler(frame: object, event: str, arg: object) -> None:
        if event == "call":
            seen.append(_originals.get_ident())

    threading.setprofile(profiler)
    try:
        ident = pool.apply(_originals.get_ident)
    finally:
        threading.setprofile(None)  # type: ignore[arg-type]
    assert ident in seen


def test_workers_do_not_need_threading(monkeypatch: pytest.MonkeyPatch) -> None:
    pool = ThreadPool(1)
    monkeypatch.delitem(__import__("sys").modules, "threading")
    assert pool.apply(int, "8") == 8
    monkeypatch.undo()
    assert pool.shutdown(timeout=REAL_WAIT)


def test_idle_wait_timing_out_as_a_submitter_picks_the_thread(fresh_hub: Hub) -> None:
    pool = ThreadPool(1, idle_timeout=0.0)
    item: ThreadResult[int] = ThreadResult(fresh_hub, int, (), {})

    class RacingWake:
        """Times out, but a submitter has just popped it from the idle list and released it."""

        def __init__(self) -> None:
            self.timeouts: list[float] = []

        def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
            self.timeouts.append(timeout)
            if len(self.timeouts) == 1:
                with pool._lock:
                    pool._idle.remove(self)  # type: ignore[arg-type]
                    pool._pending.append(item)
                return False
            return True

    wake = RacingWake()
    pool._threads = 1  # this test's thread plays the worker
    assert pool._next_item(wake) is item  # type: ignore[arg-type]
    assert wake.timeouts == [0.0, -1] and pool.size == 1 and not pool._idle
    pool._threads = 0
    assert pool.shutdown()
