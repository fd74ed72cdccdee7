"""greenwire.green.thread: _thread's API where every new thread is a greenlet.

Most tests use the module directly (no patching); the last ones patch ``_thread`` in a
fresh interpreter.
"""

from __future__ import annotations

import _thread
import gc
import sys
import weakref
from typing import Any

import pytest
from greenlet import getcurrent

import greenwire
from _green_patching import check_patched
from greenwire._core import VirtualClock
from greenwire.green import thread
from greenwire.green._registry import original
from greenwire.lock import Lock as GreenwireLock
from greenwire.lock import RLock as GreenwireRLock

# ----------------------------------------------------------------------------- identity


def test_main_greenlet_has_the_real_thread_ident() -> None:
    assert thread.get_ident() == _thread.get_ident()


def test_each_greenlet_has_its_own_stable_ident() -> None:
    seen: list[tuple[int, int, int]] = []

    def record() -> None:
        first = thread.get_ident()
        greenwire.sleep(0)
        seen.append((first, thread.get_ident(), id(getcurrent())))

    greenwire.joinall([greenwire.spawn(record) for _ in range(3)])
    idents = {first for first, _, _ in seen}
    assert len(idents) == 3
    assert all(first == again == own for first, again, own in seen)
    assert _thread.get_ident() not in idents


def test_the_hub_has_an_ident_of_its_own() -> None:
    hub = greenwire.get_hub()
    seen: list[int] = []
    hub.run_callback(lambda: seen.append(thread.get_ident()))
    greenwire.sleep(0)
    assert seen == [id(hub)]


# ----------------------------------------------------------------------- starting threads


def test_start_new_thread_runs_the_function_in_a_greenlet() -> None:
    done = greenwire.Event()
    seen: list[Any] = []

    def work(a: int, b: int, *, c: int) -> None:
        seen.append((a, b, c, thread.get_ident()))
        done.set()

    ident = thread.start_new_thread(work, (1, 2), {"c": 3})
    assert not seen  # scheduled, not run: the caller goes on first
    done.wait()
    assert seen == [(1, 2, 3, ident)]
    assert thread.start_new is thread.start_new_thread


def test_threads_run_concurrently_in_one_os_thread() -> None:
    gate = greenwire.Event()
    started: list[int] = []
    finished: list[int] = []

    def work(i: int) -> None:
        started.append(i)
        gate.wait()
        finished.append(i)

    for i in range(100):
        thread.start_new_thread(work, (i,))
    greenwire.sleep(0)
    assert len(started) == 100 and not finished
    gate.set()
    while len(finished) < 100:
        greenwire.sleep(0)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((42, ()), "first arg must be callable"),
        ((print, [1]), "2nd arg must be a tuple"),
        ((print, (), [("a", 1)]), "optional 3rd arg must be a dictionary"),
    ],
)
def test_start_new_thread_checks_its_arguments(args: tuple[Any, ...], message: str) -> None:
    with pytest.raises(TypeError, match=message):
        thread.start_new_thread(*args)


def test_count_follows_live_green_threads() -> None:
    gate = greenwire.Event()
    before = thread._count()
    for _ in range(3):
        thread.start_new_thread(gate.wait, ())
    assert thread._count() == before + 3
    greenwire.sleep(0)
    gate.set()
    while thread._count() != before:
        greenwire.sleep(0)


def test_an_exception_goes_to_the_unraisable_hook(monkeypatch: pytest.MonkeyPatch) -> None:
    reported: list[Any] = []
    monkeypatch.setattr(sys, "unraisablehook", reported.append)

    def fail() -> None:
        raise ValueError("task failed")

    thread.start_new_thread(fail, ())
    greenwire.sleep(0)
    [args] = reported
    assert args.exc_type is ValueError
    assert str(args.exc_value) == "task failed"
    assert args.exc_traceback is not None
    if sys.version_info >= (3, 13):
        assert args.object is None
        assert args.err_msg == f"Exception ignored in thread started by {fail!r}"
    else:
        assert args.object is fail
        assert args.err_msg == "Exception ignored in thread started by"


def test_the_default_hook_prints_like_cpython(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(sys, "unraisablehook", sys.__unraisablehook__)

    def fail() -> None:
        raise KeyError("lost")

    thread.start_new_thread(fail, ())
    greenwire.sleep(0)
    err = capsys.readouterr().err
    assert err.startswith("Exception ignored in thread started by")
    assert "Traceback (most recent call last)" in err
    assert err.rstrip().endswith("KeyError: 'lost'")


def test_a_broken_hook_reports_its_own_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def broken_hook(args: object) -> None:
        raise RuntimeError("hook broke")

    monkeypatch.setattr(sys, "unraisablehook", broken_hook)
    thread.start_new_thread(lambda: 1 / 0, ())
    greenwire.sleep(0)
    assert "RuntimeError: hook broke" in capsys.readouterr().err


def test_no_stderr_no_report(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "unraisablehook", sys.__unraisablehook__)
    monkeypatch.setattr(sys, "stderr", None)
    thread.start_new_thread(lambda: 1 / 0, ())
    greenwire.sleep(0)  # nothing to write to: nothing written, nothing raised


@pytest.mark.parametrize("exc", [SystemExit, greenwire.GreenletExit])
def test_quiet_ways_out(monkeypatch: pytest.MonkeyPatch, exc: type[BaseException]) -> None:
    reported: list[Any] = []
    monkeypatch.setattr(sys, "unraisablehook", reported.append)

    def leave() -> None:
        raise exc

    before = thread._count()
    thread.start_new_thread(leave, ())
    greenwire.sleep(0)
    assert reported == []
    assert thread._count() == before


# ------------------------------------------------------------------------------- locks


def test_locks_are_greenwire_locks_that_can_be_weakly_referenced() -> None:
    lock = thread.allocate_lock()
    assert isinstance(lock, GreenwireLock) and isinstance(lock, thread.LockType)
    assert type(thread.allocate()) is thread.LockType
    rlock = thread.RLock(1, a=2)  # arguments are ignored, as by the C type
    assert isinstance(rlock, GreenwireRLock)
    refs = [weakref.ref(lock), weakref.ref(rlock)]
    del lock, rlock
    assert [r() for r in refs] == [None, None]


@pytest.mark.skipif(sys.version_info >= (3, 13), reason="3.13 made the lock type callable")
def test_the_lock_type_cannot_be_called_as_the_c_type_cannot() -> None:
    with pytest.raises(TypeError, match="cannot create 'greenwire.green.thread.Lock' instances"):
        thread.LockType()
    with pytest.raises(TypeError, match="cannot create '_thread.lock' instances"):
        type(_thread.allocate_lock())()  # the stdlib's behaviour, for comparison
    lock = thread.allocate_lock()
    assert lock.acquire(False) and not lock.acquire(False)
    lock.release()

    class KeepsTheFactory:  # as test suites do; a builtin does not bind as a method
        locktype = thread.allocate_lock

    assert type(KeepsTheFactory().locktype()) is thread.LockType


def test_a_lock_blocks_only_the_greenlet(vclock: VirtualClock) -> None:
    lock = thread.allocate_lock()
    lock.acquire()
    results: list[bool] = []
    g = greenwire.spawn(lambda: results.append(lock.acquire(True, 1.0)))
    g.join()
    assert results == [False]
    g = greenwire.spawn(lambda: results.append(lock.acquire()))
    greenwire.sleep(0)
    lock.release()
    g.join()
    assert results == [False, True]


# -------------------------------------------------------------------- sentinels (<3.13)


def _thread_with_sentinel(gate: greenwire.Event) -> list[Any]:
    """Start a green thread that takes a sentinel as threading does, then waits."""
    box: list[Any] = []

    def work() -> None:
        sentinel = thread._set_sentinel()
        sentinel.acquire()
        box.append(sentinel)
        gate.wait()

    thread.start_new_thread(work, ())
    greenwire.sleep(0)
    return box


def test_a_sentinel_is_released_when_its_thread_ends(vclock: VirtualClock) -> None:
    gate = greenwire.Event()
    [sentinel] = _thread_with_sentinel(gate)
    assert sentinel.locked()
    assert not sentinel.acquire(True, 5.0)  # join(timeout): still running
    greenwire.spawn_later(1.0, gate.set)
    assert sentinel.acquire()  # join()
    sentinel.release()
    assert not sentinel.locked()


def test_a_sentinel_reads_unlocked_while_other_joiners_queue() -> None:
    gate = greenwire.Event()
    [sentinel] = _thread_with_sentinel(gate)
    order: list[str] = []

    def join(name: str) -> None:
        sentinel.acquire()
        sentinel.release()
        # threading asserts this right after releasing, other joiners still queued
        order.append(f"{name} locked={sentinel.locked()}")

    joiners = [greenwire.spawn(join, name) for name in "ab"]
    greenwire.sleep(0)
    gate.set()
    greenwire.joinall(joiners)
    assert order == ["a locked=False", "b locked=False"]


def test_a_sentinel_outside_a_green_thread_is_a_plain_lock() -> None:
    sentinel = thread._set_sentinel()
    assert not sentinel.locked()
    sentinel.acquire()
    assert sentinel.locked()
    sentinel.release()


# ------------------------------------------------------------------- handles (3.13 API)


def test_a_joinable_thread_is_joined_through_its_handle(vclock: VirtualClock) -> None:
    gate = greenwire.Event()
    idents: list[int] = []

    def work() -> None:
        idents.append(thread.get_ident())
        gate.wait()

    handle = thread.start_joinable_thread(work)
    assert handle.ident != 0 and not handle.is_done()
    assert repr(handle) == f"<greenwire.green.thread._ThreadHandle object: ident={handle.ident}>"
    start = vclock.now()
    handle.join(2.0)
    assert vclock.now() - start == pytest.approx(2.0)
    assert not handle.is_done()
    assert idents == [handle.ident]
    greenwire.spawn_later(1.0, gate.set)
    handle.join(-1)  # negative: forever, as the C handle
    assert handle.is_done()
    handle.join()  # joining again returns at once


def test_handle_errors() -> None:
    handle = thread._ThreadHandle()
    assert handle.ident == 0
    with pytest.raises(RuntimeError, match="thread not started"):
        handle.join()
    with pytest.raises(RuntimeError, match="thread not started"):
        handle._set_done()
    with pytest.raises(TypeError, match="callable"):
        thread.start_joinable_thread(42)  # type: ignore[arg-type]
    errors: list[BaseException] = []

    def join_self() -> None:
        try:
            handle.join()
        except RuntimeError as e:
            errors.append(e)

    thread.start_joinable_thread(join_self, handle=handle)
    with pytest.raises(RuntimeError, match="thread already started"):
        thread.start_joinable_thread(join_self, handle=handle)
    handle.join()
    assert [str(e) for e in errors] == ["Cannot join current thread"]


def test_a_thread_holding_a_real_handle_gets_a_green_one() -> None:
    class MadeBeforePatching:  # a threading.Thread whose handle is a C _ThreadHandle
        def __init__(self) -> None:
            self._handle: object = object()
            self.ran = False

        def bootstrap(self) -> None:
            self.ran = True

    t = MadeBeforePatching()
    handle = thread.start_joinable_thread(t.bootstrap, handle=t._handle)
    assert t._handle is handle and isinstance(handle, thread._ThreadHandle)
    handle.join()
    assert t.ran


def test_shutdown_waits_for_non_daemon_threads_only() -> None:
    gate = greenwire.Event()
    finished: list[str] = []

    def work(name: str) -> None:
        gate.wait()
        finished.append(name)

    thread.start_joinable_thread(lambda: work("daemon"), daemon=True)
    thread.start_joinable_thread(lambda: work("worker"), daemon=False)
    greenwire.spawn_later(0, gate.set)
    thread._shutdown()
    assert "worker" in finished
    greenwire.sleep(0)  # let the daemon end too
    assert sorted(finished) == ["daemon", "worker"]


def test_shutdown_from_a_non_daemon_thread_does_not_wait_for_itself() -> None:
    done = greenwire.Event()

    def work() -> None:
        thread._shutdown()
        done.set()

    thread.start_joinable_thread(work, daemon=False)
    assert done.wait(1.0)


def test_make_thread_handle_is_running_until_set_done() -> None:
    handle = thread._make_thread_handle(12345)
    assert (handle.ident, handle.is_done()) == (12345, False)
    greenwire.spawn_later(0, handle._set_done)
    handle.join()
    assert handle.is_done()


def test_a_thread_killed_before_it_ran_releases_its_joiners() -> None:
    before = thread._count()
    handle = thread._ThreadHandle()
    thread.start_joinable_thread(lambda: None, handle=handle, daemon=False)
    greenlets = [g for g in _live_green_threads() if g._handle is handle]
    assert len(greenlets) == 1
    greenlets[0].kill()
    assert handle.is_done()
    assert thread._count() == before
    thread._shutdown()  # nothing left to wait for


def _live_green_threads() -> list[Any]:
    return [o for o in gc.get_objects() if isinstance(o, thread._GreenThread) and not o.dead]


def test_after_fork_only_the_forking_greenlet_survives() -> None:
    gate = greenwire.Event()
    mine: list[Any] = []

    def forking() -> None:
        thread._after_fork_in_child()  # what os.fork's child hook does
        mine.append(handle.is_done())
        gate.wait()

    other = thread.start_joinable_thread(gate.wait, daemon=False)
    handle = thread.start_joinable_thread(forking, daemon=False)
    greenwire.sleep(0)
    assert other.is_done() and mine == [False]
    gate.set()
    handle.join()


# ------------------------------------------------------------------------- declarations


def test_declarations() -> None:
    assert thread.__target__ == "_thread"
    for name in thread.__implements__:
        assert hasattr(_thread, name), name
        assert hasattr(thread, name), name
    expected = {"allocate_lock", "LockType", "RLock", "get_ident", "_local", "start_new_thread"}
    assert expected <= set(thread.__implements__)
    if sys.version_info >= (3, 13):
        assert "start_joinable_thread" in thread.__implements__
    else:
        assert "_set_sentinel" in thread.__implements__
    assert thread._local is greenwire.local
    assert thread.error is _thread.error and thread.TIMEOUT_MAX == _thread.TIMEOUT_MAX
    assert original("_thread", "get_ident") is _thread.get_ident


# ------------------------------------------------------------------------ under patch


def test_patched_thread_module_starts_greenlets_and_keeps_real_threads() -> None:
    out = check_patched(
        """
        import _thread, threading
        from greenlet import getcurrent
        from greenwire.green import original

        native = threading.get_native_id()
        results = []
        lock = _thread.allocate_lock()
        lock.acquire()

        def green(i):
            results.append((i, _thread.get_ident() == id(getcurrent())))
            if len(results) == 3:
                lock.release()

        for i in range(3):
            _thread.start_new_thread(green, (i,))
        lock.acquire()  # cooperative: lets the three run
        print(sorted(results))

        real_lock = original("_thread", "allocate_lock")()
        real_lock.acquire()
        seen = []

        def real():
            seen.append(threading.get_native_id() != native)
            real_lock.release()

        original("_thread", "start_new_thread")(real, ())
        real_lock.acquire()
        print(seen, type(lock).__module__)
        """,
        modules=("thread",),
    )
    assert out.splitlines() == [
        "[(0, True), (1, True), (2, True)]",
        "[True] greenwire.green.thread",
    ]


def test_thread_start_switches_into_the_new_thread_at_once() -> None:
    # Thread.start() waits for the new thread anyway: the thread runs first, then the
    # greenlets already ready, then the starter (parking on the thread's Event would have
    # run the ready ones first). A plain start_new_thread, which nobody waits for, is only
    # scheduled: its caller goes on first.
    out = check_patched(
        """
        import _thread, threading
        import greenwire

        log = []
        greenwire.sleep(0)  # the hub is running
        greenwire.spawn(log.append, "ready before")
        t = threading.Thread(target=log.append, args=("thread",))
        t.start()
        print(log)
        _thread.start_new_thread(log.append, ("plain",))
        print(log[-1])
        greenwire.sleep(0)
        print(log[-1])
        t.join()
        print(t.is_alive(), threading.active_count())
        """
    )
    assert out.splitlines() == [
        "['thread', 'ready before']",
        "ready before",
        "plain",
        "False 1",
    ]


# ------------------------------------------------------------------- real OS threads


def test_count_leaves_the_thread_pools_workers_out() -> None:
    from greenwire.threadpool import ThreadPool

    before, real_before = thread._count(), _thread._count()
    with ThreadPool(1) as pool:
        pool.submit(int).get()  # the worker stays, idle, after the call
        assert _thread._count() == real_before + 1
        assert thread._count() == before


def test_a_real_thread_joins_a_green_thread_through_its_handle() -> None:
    import threading

    gate = greenwire.Event()
    handle = thread.start_joinable_thread(gate.wait)
    joining = threading.Event()
    seen: list[bool] = []

    def joiner() -> None:
        joining.set()
        handle.join(30)
        seen.append(handle.is_done())

    real = threading.Thread(target=joiner)
    real.start()
    assert joining.wait(30)
    gate.set()
    handle.join()  # the green thread ends, which lets the real joiner go
    real.join(30)
    assert seen == [True]
