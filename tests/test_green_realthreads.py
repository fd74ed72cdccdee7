"""greenwire.green._realthreads: the real OS thread behind get_original("threading", "Thread").

The first tests use the class directly in this (unpatched) process, where greenlets of the
main thread meet real threads; the last ones check it under the patch in fresh
interpreters. Every cross-thread step is ordered with real events, bounded by timeouts.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest

import greenwire
from _green_patching import check_patched
from greenwire._core import existing_hub, get_hub
from greenwire.green import _realthreads
from greenwire.green._realthreads import Thread

TIMEOUT = 30


def test_the_private_threading_runs_on_the_original_thread_module() -> None:
    real = _realthreads.real_threading
    assert real is not threading and real.__name__ != "threading"
    assert real._start_new_thread is threading._start_new_thread  # type: ignore[attr-defined]
    assert real.get_ident is threading.get_ident
    assert issubclass(Thread, threading.Thread) and issubclass(Thread, real.Thread)


def test_a_real_thread_with_the_stdlib_api() -> None:
    seen: dict[str, Any] = {}
    go = threading.Event()

    def work(a: int, b: int = 0) -> None:
        go.wait(TIMEOUT)
        seen["sum"] = a + b
        seen["native"] = threading.get_native_id()
        seen["current"] = threading.current_thread()

    t = Thread(target=work, args=(1,), kwargs={"b": 2}, name="worker", daemon=True)
    assert (t.name, t.daemon, t.is_alive(), t.ident) == ("worker", True, False, None)
    with pytest.raises(RuntimeError, match="before it is started"):
        t.join()
    t.start()
    assert t.is_alive() and t in threading.enumerate()
    assert t.join(0) is None and t.is_alive()  # join(timeout) returns, thread still runs
    with pytest.raises(RuntimeError, match="only be started once"):
        t.start()
    go.set()
    t.join(TIMEOUT)
    assert not t.is_alive() and t not in threading.enumerate()
    assert seen["sum"] == 3 and seen["current"] is t
    assert seen["native"] != threading.get_native_id()
    assert "worker" in repr(t) and "stopped" in repr(t)


def test_run_can_be_overridden() -> None:
    class Worker(Thread):
        def run(self) -> None:
            self.result = threading.current_thread() is self

    w = Worker()
    w.start()
    w.join(TIMEOUT)
    assert w.result is True


def test_an_exception_goes_to_the_current_excepthook(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[type[BaseException] | None, str | None]] = []
    monkeypatch.setattr(
        threading, "excepthook", lambda args: seen.append((args.exc_type, args.thread.name))
    )

    def fail() -> None:
        raise ValueError("boom")

    t = Thread(target=fail, name="failing")
    t.start()
    t.join(TIMEOUT)
    assert seen == [(ValueError, "failing")]


def test_the_thread_gets_a_hub_of_its_own_and_destroys_it() -> None:
    main_hub = get_hub()
    seen: dict[str, Any] = {}

    def work() -> None:
        seen["before"] = existing_hub()
        hub = get_hub()
        seen["hub"] = hub
        event = greenwire.Event()
        greenwire.spawn(event.set)
        seen["waited"] = event.wait(TIMEOUT)  # a green primitive, in this thread's hub
        seen["thread"] = hub.thread_ident == threading.get_ident()

    t = Thread(target=work)
    t.start()
    t.join(TIMEOUT)
    assert seen["before"] is None and seen["hub"] is not main_hub
    assert seen["waited"] is True and seen["thread"] is True
    assert seen["hub"].destroyed  # its fds are closed with the thread


def test_join_from_a_greenlet_lets_the_other_greenlets_run() -> None:
    from_greenlet = threading.Event()

    # The thread can only end after a greenlet of this hub has run: join() must park the
    # main greenlet, not block the OS thread.
    t = Thread(target=lambda: from_greenlet.wait(TIMEOUT))
    t.start()
    greenwire.spawn(from_greenlet.set)
    t.join()
    assert not t.is_alive() and from_greenlet.is_set()


def test_the_starting_hub_is_not_declared_stuck_while_the_thread_runs() -> None:
    event = greenwire.Event()
    hub = get_hub()
    # A greenlet-only primitive, set from the thread through the hub's thread-safe door:
    # the main greenlet waits with nothing else to run, and no LoopExit may come.
    t = Thread(target=lambda: hub.run_callback_threadsafe(event.set))
    t.start()
    assert event.wait(TIMEOUT) is True
    t.join(TIMEOUT)
    greenwire.sleep(0)  # the thread's release of the hold
    assert hub.statistics().keepalive == 0


def test_a_patched_lock_is_shared_by_greenlets_and_a_real_thread() -> None:
    out = check_patched(
        """
        import threading, time
        import greenwire
        from greenwire.green import original

        RealThread = original("threading", "Thread")
        lock = threading.Lock()
        assert type(lock).__module__ == "greenwire.green.thread"
        total = [0]
        main_native = threading.get_native_id()
        natives = set()

        def bump(n):
            natives.add(threading.get_native_id())
            for i in range(n):
                with lock:
                    value = total[0]
                    if i % 3 == 0:
                        time.sleep(0)  # a switch (a green one in green threads)
                    total[0] = value + 1

        real = [RealThread(target=bump, args=(2000,)) for _ in range(2)]
        green = [threading.Thread(target=bump, args=(2000,)) for _ in range(2)]
        for t in real + green:
            t.start()
        for t in real + green:
            t.join()
        print(total[0], len(natives - {main_native}))
        """,
        modules=("thread", "threading", "threading_local", "queue", "time"),
        timeout=120,
    )
    assert out.split() == ["8000", "2"]


def test_under_patch_all_exceptions_names_and_exit() -> None:
    out = check_patched(
        """
        import sys, threading
        from greenwire import monkey

        monkey.patch_all()
        RealThread = monkey.get_original("threading", "Thread")
        threading.excepthook = lambda args: print("hook", args.exc_type.__name__,
                                                  args.thread.name, flush=True)
        started = threading.Event()
        release = threading.Event()

        def fail():
            raise KeyError("x")

        t = RealThread(target=fail, name="failing")
        t.start()
        t.join()

        def late():
            started.set()
            release.wait()  # set by a green thread, after main has finished
            print("non-daemon real thread done", flush=True)

        RealThread(target=late).start()
        started.wait()
        print("main done", flush=True)
        threading.Thread(target=release.set).start()
        """,
        modules=("threading_local",),  # the rest by patch_all()
        timeout=60,
    )
    assert out.splitlines() == [
        "hook KeyError failing",
        "main done",
        "non-daemon real thread done",
    ]


def test_count_leaves_the_thread_pool_out_under_patch() -> None:
    out = check_patched(
        """
        import _thread, threading
        from greenwire.green import original
        from greenwire.threadpool import run_in_thread

        real_count = original("_thread", "_count")
        before = (_thread._count(), real_count())
        run_in_thread(int)  # leaves an idle pool thread behind for seconds
        during = (_thread._count(), real_count())
        RealThread = original("threading", "Thread")
        gate = threading.Event()
        t = RealThread(target=gate.wait)
        t.start()
        with_real = _thread._count()
        gate.set()
        t.join()
        print(before, during, with_real)
        """,
    )
    assert out.split("\n")[0] == "(0, 0) (0, 1) 1"
