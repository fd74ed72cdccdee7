"""greenwire.green.threading: threading.Thread as greenlets, under patch.

Patching is process-wide: every test that patches runs a fresh interpreter (see
``_green_patching``) and asserts on what it prints. The dummy-thread stand-in is also
tested in-process, without patching.
"""

from __future__ import annotations

import gc
import sys
import threading
from collections.abc import Iterator

import pytest
from greenlet import greenlet as RawGreenlet

import greenwire
from _green_patching import check_patched, run_patched
from greenwire.green import thread as green_thread
from greenwire.green import threading as green_threading

# ------------------------------------------------------------------- in-process tests


@pytest.fixture(autouse=True)
def _forget_dummy_trackers() -> Iterator[None]:
    """Python 3.13 keeps a tracker of the last dummy thread in an unpatched local."""
    yield
    info = getattr(threading, "_thread_local_info", None)
    if info is not None:
        vars(info).pop("_track_dummy_thread_ref", None)


def test_declarations_name_what_threading_copied_from_thread() -> None:
    assert green_threading.__target__ == "threading"
    implemented = set(green_threading.__implements__)
    assert {"get_ident", "_allocate_lock", "Lock", "_CRLock", "local", "_DummyThread"} <= (
        implemented
    )
    if sys.version_info >= (3, 13):
        assert {"_start_joinable_thread", "_ThreadHandle", "_thread_shutdown"} <= implemented
    else:
        assert {"_start_new_thread", "_set_sentinel"} <= implemented
    for name in implemented:
        assert hasattr(threading, name), name
    assert green_threading.get_ident is green_thread.get_ident
    assert green_threading.local is greenwire.local
    assert isinstance(green_threading._thread_local_info, greenwire.local)


def test_a_greenlets_dummy_thread_leaves_when_the_greenlet_ends() -> None:
    seen: list[threading.Thread] = []

    def touch() -> None:
        seen.append(green_threading._DummyThread())

    g = greenwire.spawn(touch)
    g.join()
    [dummy] = seen
    assert isinstance(dummy, threading._DummyThread)
    assert dummy.name.startswith("Dummy-") and dummy.daemon
    greenwire.sleep(0)  # links run in the hub
    assert threading._active.get(dummy.ident) is not dummy


def test_a_raw_greenlets_dummy_thread_leaves_when_it_is_collected() -> None:
    seen: list[threading.Thread] = []
    g = RawGreenlet(lambda: seen.append(green_threading._DummyThread()))
    g.switch()
    [dummy] = seen
    assert threading._active.get(dummy.ident) is dummy
    del g
    gc.collect()
    assert threading._active.get(dummy.ident) is not dummy


def test_an_os_threads_dummy_thread_stays_as_in_the_stdlib() -> None:
    dummy = green_threading._DummyThread.__new__(green_threading._DummyThread)
    ident = threading.get_ident()
    saved = threading._active.get(ident)
    try:
        dummy.__init__()
        assert threading._active[ident] is dummy
        assert not hasattr(dummy, "_greenwire_greenlet_ref")
    finally:
        if saved is None:
            threading._active.pop(ident, None)
        else:
            threading._active[ident] = saved


def test_a_replaced_entry_is_not_removed() -> None:
    ident_holder: list[int] = []

    def touch() -> None:
        dummy = green_threading._DummyThread()
        ident_holder.append(dummy.ident)
        threading._active[dummy.ident] = threading.main_thread()  # someone else's now

    g = greenwire.spawn(touch)
    g.join()
    greenwire.sleep(0)
    [ident] = ident_holder
    assert threading._active.pop(ident) is threading.main_thread()


# ---------------------------------------------------------------------- under patch


def test_a_thousand_threads_block_at_once_in_one_os_thread() -> None:
    out = check_patched(
        """
        import queue, threading

        native = threading.get_native_id()
        event = threading.Event()
        q = queue.Queue()
        waiting = []
        natives = set()

        def wait_for_event(i):
            waiting.append(i)
            natives.add(threading.get_native_id())
            event.wait()
            q.put(i)

        def wait_for_item():
            waiting.append(-1)
            q.put(("got", q.get()))

        threads = [threading.Thread(target=wait_for_event, args=(i,)) for i in range(1000)]
        threads.append(threading.Thread(target=wait_for_item))
        for t in threads:
            t.start()
        print(len(waiting), threading.active_count(), natives == {native})
        event.set()
        for t in threads:
            t.join()
        items = [q.get_nowait() for _ in range(q.qsize())]
        print(len(items), sum(1 for x in items if isinstance(x, tuple)))
        print(threading.active_count(), [t.is_alive() for t in threads].count(True))
        """
    )
    assert out.splitlines() == ["1001 1002 True", "1000 1", "1 0"]


def test_producers_and_consumers_deliver_ten_thousand_items_once() -> None:
    out = check_patched(
        """
        import collections, queue, threading

        q = queue.Queue(maxsize=50)
        received = collections.Counter()
        lock = threading.Lock()

        def produce(start):
            for i in range(start, start + 2500):
                q.put(i)

        def consume():
            while True:
                item = q.get()
                if item is None:
                    q.task_done()
                    return
                with lock:
                    received[item] += 1
                q.task_done()

        consumers = [threading.Thread(target=consume) for _ in range(8)]
        producers = [threading.Thread(target=produce, args=(n * 2500,)) for n in range(4)]
        for t in consumers + producers:
            t.start()
        for t in producers:
            t.join()
        q.join()
        for _ in consumers:
            q.put(None)
        for t in consumers:
            t.join()
        print(len(received), set(received.values()), sorted(received) == list(range(10000)))
        """
    )
    assert out.split() == ["10000", "{1}", "True"]


def test_join_with_a_timeout_and_is_alive() -> None:
    out = check_patched(
        """
        import threading, time

        release = threading.Event()
        t = threading.Thread(target=release.wait, name="sleeper", daemon=True)
        print(t.is_alive())
        t.start()
        start = time.monotonic()
        t.join(0.05)
        waited = time.monotonic() - start
        started = repr(t).startswith("<Thread(sleeper, started daemon")
        print(t.is_alive(), 0.04 <= waited < 2, started)
        release.set()
        t.join()
        print(t.is_alive(), repr(t).startswith("<Thread(sleeper, stopped daemon"))
        t.join(0)
        try:
            threading.current_thread().join()
        except RuntimeError as e:
            print(e)
        """
    )
    assert out.splitlines() == [
        "False",
        "True True True",
        "False True",
        "cannot join current thread",
    ]


def test_two_joiners_of_one_thread() -> None:
    out = check_patched(
        """
        import threading

        go = threading.Event()
        worker = threading.Thread(target=go.wait)
        worker.start()
        joined = []
        joiners = [threading.Thread(target=lambda n=n: (worker.join(), joined.append(n)))
                   for n in range(3)]
        for j in joiners:
            j.start()
        go.set()
        worker.join()
        for j in joiners:
            j.join()
        print(sorted(joined), worker.is_alive())
        """
    )
    assert out.split("\n")[0] == "[0, 1, 2] False"


def test_timer_fires_and_can_be_cancelled() -> None:
    out = check_patched(
        """
        import threading

        fired = []
        timer = threading.Timer(0.01, fired.append, args=("fired",))
        timer.start()
        timer.join()
        cancelled = threading.Timer(0.01, fired.append, args=("cancelled",))
        cancelled.start()
        cancelled.cancel()
        cancelled.join()
        print(fired, timer.is_alive(), cancelled.is_alive())
        """
    )
    assert out.strip() == "['fired'] False False"


def test_locals_are_per_greenlet() -> None:
    out = check_patched(
        """
        import _threading_local, threading
        import greenwire

        state = threading.local()
        fallback = _threading_local.local()
        state.value = fallback.value = "main"
        seen = []

        def work(i):
            assert not hasattr(state, "value") and not hasattr(fallback, "value")
            state.value = fallback.value = i
            threading.Event().wait(0.001)
            seen.append((state.value, fallback.value))

        threads = [threading.Thread(target=work, args=(i,)) for i in range(5)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        g = greenwire.spawn(lambda: hasattr(state, "value"))
        print(sorted(seen), state.value, fallback.value, g.get())
        print(type(state) is greenwire.local, type(fallback) is greenwire.local)
        """
    )
    assert out.splitlines() == [
        "[(0, 0), (1, 1), (2, 2), (3, 3), (4, 4)] main main False",
        "True True",
    ]


def test_current_main_enumerate_and_active_count() -> None:
    out = check_patched(
        """
        import threading
        import greenwire

        main = threading.main_thread()
        print(threading.current_thread() is main, main.name, main.ident == threading.get_ident())
        go = threading.Event()
        names = []

        def work():
            names.append(threading.current_thread().name)
            names.append(threading.main_thread() is main)
            go.wait()

        threads = [threading.Thread(target=work, name=f"worker-{i}") for i in range(3)]
        for t in threads:
            t.start()
        print(names)
        print(sorted(t.name for t in threading.enumerate()), threading.active_count())
        g = greenwire.spawn(lambda: threading.current_thread().name)
        print(g.get().startswith("Dummy-"), threading.active_count())
        go.set()
        for t in threads:
            t.join()
        greenwire.sleep(0)
        print(threading.active_count(), threading.enumerate() == [main])
        """
    )
    assert out.splitlines() == [
        "True MainThread True",
        "['worker-0', True, 'worker-1', True, 'worker-2', True]",
        "['MainThread', 'worker-0', 'worker-1', 'worker-2'] 4",
        "True 5",
        "1 True",
    ]


def test_unhandled_exceptions_go_through_excepthook() -> None:
    result = run_patched(
        """
        import threading

        def fail():
            raise ValueError("boom")

        t = threading.Thread(target=fail, name="failing")
        t.start()
        t.join()
        seen = []
        threading.excepthook = lambda args: seen.append(
            (args.exc_type.__name__, str(args.exc_value), args.thread.name))
        t = threading.Thread(target=fail, name="hooked")
        t.start()
        t.join()
        print(seen)
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[('ValueError', 'boom', 'hooked')]"
    assert "Exception in thread failing:" in result.stderr
    assert "ValueError: boom" in result.stderr


def test_non_daemon_threads_are_joined_at_exit_daemon_threads_are_not() -> None:
    out = check_patched(
        """
        import threading

        def late(name, delay):
            threading.Event().wait(delay)
            print(name, flush=True)

        threading.Thread(target=late, args=("daemon", 5.0), daemon=True).start()
        threading.Thread(target=late, args=("worker", 0.02)).start()
        threading.Thread(target=late, args=("worker2", 0.04)).start()
        print("main done", flush=True)
        """,
        timeout=20,
    )
    assert out.splitlines() == ["main done", "worker", "worker2"]


def test_a_thread_that_can_never_end_is_reported_at_exit_instead_of_hanging() -> None:
    result = run_patched(
        """
        import threading
        threading.Thread(target=threading.Event().wait).start()
        print("main done")
        """,
        timeout=20,
    )
    assert result.stdout == "main done\n"
    assert "LoopExit: this operation would block forever" in result.stderr


def test_logging_from_many_threads() -> None:
    out = check_patched(
        """
        import logging, sys, threading

        logging.basicConfig(stream=sys.stdout, level=logging.INFO,
                            format="%(threadName)s %(message)s")
        log = logging.getLogger("t")

        def work(i):
            for n in range(3):
                log.info("msg %d", n)
                threading.Event().wait(0)

        threads = [threading.Thread(target=work, args=(i,), name=f"w{i}") for i in range(50)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        """,
        # logging is imported before patching: its locks are real and stay so
        prelude="import logging",
    )
    lines = out.splitlines()
    assert len(lines) == 150
    assert {line.split()[0] for line in lines} == {f"w{i}" for i in range(50)}


def test_thread_pool_executor_workers_are_greenlets() -> None:
    out = check_patched(
        """
        import threading
        from concurrent.futures import ThreadPoolExecutor
        from greenlet import getcurrent

        native = threading.get_native_id()
        gate = threading.Event()
        running = []

        def task(i):
            running.append(i)
            if len(running) == 20:
                gate.set()
            gate.wait(5)
            return (threading.get_native_id() == native, threading.get_ident() == id(getcurrent()))

        with ThreadPoolExecutor(max_workers=20) as pool:
            results = list(pool.map(task, range(20)))
        print(len(running), set(results))
        """
    )
    assert out.strip() == "20 {(True, True)}"


def test_synchronization_classes_cooperate() -> None:
    out = check_patched(
        """
        import threading

        rlock = threading.RLock()
        cond = threading.Condition()
        sem = threading.BoundedSemaphore(2)
        barrier = threading.Barrier(3)
        log = []
        inside = [0]
        peak = [0]

        def work(i):
            with rlock:
                with rlock:
                    log.append(("rlock", i))
            with sem:
                inside[0] += 1
                peak[0] = max(peak[0], inside[0])
                threading.Event().wait(0.001)
                inside[0] -= 1
            barrier.wait()
            with cond:
                cond.wait_for(lambda: len(log) >= 3)

        threads = [threading.Thread(target=work, args=(i,)) for i in range(3)]
        for t in threads:
            t.start()
        with cond:
            cond.notify_all()
        for t in threads:
            t.join()
        try:
            sem.release()
        except ValueError as e:
            print("bounded:", e)
        print(len(log), peak[0], barrier.broken, type(rlock).__module__)
        """
    )
    assert out.splitlines() == [
        "bounded: Semaphore released too many times",
        "3 2 False greenwire.green.thread",
    ]


def test_locks_made_before_patching_keep_working_with_real_threads() -> None:
    out = check_patched(
        """
        import _thread, logging, threading
        from greenwire.green import original

        assert type(real_lock) is original("_thread", "LockType")
        handler_lock = logging.getLogger().handlers[0].lock
        print(type(handler_lock).__module__, type(logging._lock).__name__)

        # A real thread and green threads share the real locks.
        real_start = original("_thread", "start_new_thread")
        done = original("_thread", "allocate_lock")()
        done.acquire()

        def real_thread():
            for _ in range(100):
                with real_lock:
                    counter[0] += 1
                logging.getLogger("real").info("from a real thread")
            done.release()

        def green_thread():
            for _ in range(100):
                with real_lock:
                    counter[0] += 1
                logging.getLogger("green").info("from a green thread")

        counter = [0]
        real_start(real_thread, ())
        threads = [threading.Thread(target=green_thread) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        done.acquire()
        print(counter[0], real_lock.locked())
        """,
        prelude="""
        import logging, sys, threading
        logging.basicConfig(stream=sys.stderr, level=logging.INFO)
        real_lock = threading.Lock()
        """,
    )
    assert out.splitlines() == ["_thread RLock", "400 False"]


def test_threading_imported_after_patching_copies_the_green_names() -> None:
    out = check_patched(
        """
        import sys
        del sys.modules["threading"]
        import threading
        from greenlet import getcurrent
        from greenwire.green import thread

        print(threading._allocate_lock is thread.allocate_lock)
        print(threading.get_ident is thread.get_ident)
        main = threading.main_thread()
        seen = []
        t = threading.Thread(target=lambda: seen.append(
            (threading.current_thread().name, threading.get_ident() == id(getcurrent()))))
        t.start()
        t.join()
        print(seen, main is threading.current_thread(), main.ident == thread._real_get_ident())
        late = threading.Thread(target=lambda: (threading.Event().wait(0.02), print("late")))
        late.start()
        """
    )
    assert out.splitlines() == [
        "True",
        "True",
        "[('Thread-1 (<lambda>)', True)] True True",
        "late",
    ]


def test_a_thread_created_before_patching_and_started_after() -> None:
    out = check_patched(
        """
        import threading
        t.start()
        t.join()
        print(result)
        """,
        prelude="""
        import threading
        result = []
        t = threading.Thread(target=lambda: result.append(threading.current_thread().name))
        """,
    )
    assert out.strip() == "['Thread-1 (<lambda>)']"


def test_threading_mixin_server_with_xmlrpc() -> None:
    for name in ("socket", "select", "selectors"):
        pytest.importorskip(f"greenwire.green.{name}", reason="needs the green socket modules")
    out = check_patched(
        """
        import threading, xmlrpc.client
        from socketserver import ThreadingMixIn
        from xmlrpc.server import SimpleXMLRPCServer

        class Server(ThreadingMixIn, SimpleXMLRPCServer):
            daemon_threads = True
            # 20 green clients connect in the same instant: the default backlog of 5
            # overflows and the kernel resets some (real threads are rarely that quick).
            request_queue_size = 64

        server = Server(("127.0.0.1", 0), logRequests=False)
        server.register_function(lambda a, b: a + b, "add")
        serving = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
        serving.start()
        url = "http://127.0.0.1:%d" % server.server_address[1]
        results = []

        def client(i):
            results.append(xmlrpc.client.ServerProxy(url).add(i, 1))

        clients = [threading.Thread(target=client, args=(i,)) for i in range(20)]
        for c in clients:
            c.start()
        for c in clients:
            c.join()
        server.shutdown()
        server.server_close()
        serving.join()
        print(sorted(results) == list(range(1, 21)))
        """,
        modules=("socket", "select", "selectors", "thread", "threading", "queue"),
    )
    assert out.strip() == "True"
