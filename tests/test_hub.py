"""The hub: callbacks, timers, the time budget, LoopExit, errors, threads, lifecycle."""

from __future__ import annotations

import os
import socket
import threading

import pytest
from greenlet import getcurrent

import greenwire
from greenwire._core import Hub, HubBlockingError, LoopExit, VirtualClock, get_hub
from greenwire._core.hub import set_hub
from greenwire._core.timers import COMPACT_MIN


def test_one_hub_per_thread() -> None:
    hub = get_hub()
    assert get_hub() is hub
    seen: list[Hub] = []

    def other() -> None:
        h = get_hub()
        seen.append(h)
        h.destroy()

    t = threading.Thread(target=other)
    t.start()
    t.join()
    assert seen and seen[0] is not hub
    assert seen[0].thread_ident != hub.thread_ident


def test_callbacks_run_in_order(fresh_hub: Hub) -> None:
    order: list[int] = []
    for i in range(5):
        fresh_hub.run_callback(order.append, i)
    greenwire.sleep(0)
    assert order == [0, 1, 2, 3, 4]


def test_timers_fire_in_deadline_order(vclock: VirtualClock, fresh_hub: Hub) -> None:
    fired: list[tuple[str, float]] = []
    fresh_hub.call_later(0.3, lambda: fired.append(("c", vclock.now())))
    fresh_hub.call_later(0.1, lambda: fired.append(("a", vclock.now())))
    fresh_hub.call_at(0.2, lambda: fired.append(("b", vclock.now())))
    fresh_hub.call_later(0.1, lambda: fired.append(("a2", vclock.now())))
    greenwire.sleep(1)
    assert fired == [("a", 0.1), ("a2", 0.1), ("b", 0.2), ("c", 0.3)]
    assert vclock.now() == 1.0


def test_cancelled_timer_never_fires_and_heap_compacts(vclock: VirtualClock) -> None:
    hub = get_hub()
    fired: list[int] = []
    timers = [hub.call_later(1 + i, fired.append, i) for i in range(COMPACT_MIN * 3)]
    for t in timers[1:]:
        t.cancel()
        t.cancel()  # idempotent
    assert len(hub._timers) == 1
    assert len(hub._timers.entries) < COMPACT_MIN * 3  # compacted, not just flagged
    greenwire.sleep(10_000)
    assert fired == [0]
    assert not timers[0].pending
    assert "done" in repr(timers[0])


def test_loop_exit_when_nothing_can_wake_the_waiter(fresh_hub: Hub) -> None:
    with pytest.raises(LoopExit, match="block forever"):
        fresh_hub.park()
    # The hub survives and keeps working afterwards.
    g = greenwire.spawn(lambda: 42)
    assert g.get() == 42


def test_loop_exit_waiting_on_a_stuck_greenlet(fresh_hub: Hub) -> None:
    def stuck() -> None:
        fresh_hub.park()

    g = greenwire.spawn(stuck)
    with pytest.raises(LoopExit):
        g.join()
    g.kill()
    assert g.ready()


def test_cannot_block_inside_the_hub(fresh_hub: Hub, hub_errors: list) -> None:
    fresh_hub.run_callback(greenwire.sleep, 0)
    fresh_hub.run_callback(fresh_hub.park)
    fresh_hub.run_callback(fresh_hub.wait_idle)
    fresh_hub.run_callback(fresh_hub.park_one_turn)
    greenwire.sleep(0)
    assert [type(e) for _, e in hub_errors] == [HubBlockingError] * 4
    assert "inside the hub" in str(hub_errors[0][1])


def test_callback_error_is_reported_and_loop_continues(fresh_hub: Hub, hub_errors: list) -> None:
    ran: list[str] = []

    def boom() -> None:
        raise ValueError("boom")

    fresh_hub.run_callback(boom)
    fresh_hub.run_callback(ran.append, "after")
    greenwire.sleep(0)
    assert ran == ["after"]
    assert len(hub_errors) == 1 and isinstance(hub_errors[0][1], ValueError)


def test_timer_error_is_reported(vclock: VirtualClock, hub_errors: list) -> None:
    get_hub().call_later(1, lambda: 1 / 0)
    greenwire.sleep(2)
    assert [type(e) for _, e in hub_errors] == [ZeroDivisionError]


def test_broken_error_handler_falls_back_to_printing(
    fresh_hub: Hub, capsys: pytest.CaptureFixture[str]
) -> None:
    def bad_handler(context: object, exc: BaseException) -> None:
        raise RuntimeError("handler broke")

    fresh_hub.error_handler = bad_handler
    fresh_hub.run_callback(lambda: 1 / 0)
    greenwire.sleep(0)
    err = capsys.readouterr().err
    assert "handler broke" in err and "ZeroDivisionError" in err


def test_keyboard_interrupt_in_callback_reaches_main(fresh_hub: Hub) -> None:
    def interrupt() -> None:
        raise KeyboardInterrupt

    fresh_hub.run_callback(interrupt)
    with pytest.raises(KeyboardInterrupt):
        greenwire.sleep(0)


def test_budget_lets_timers_run_between_busy_callbacks() -> None:
    class TickingClock:
        """Advances 1 ms every time it is read: a CPU-bound loop, deterministically."""

        virtual = True

        def __init__(self) -> None:
            self.t = 0.0

        def now(self) -> float:
            self.t += 0.001
            return self.t

    hub = get_hub()
    hub.set_clock(TickingClock())
    fired_after: list[int] = []
    passes = [0]

    def busy() -> None:
        while passes[0] < 10_000 and not fired_after:
            passes[0] += 1
            greenwire.sleep(0)

    g = greenwire.spawn(busy)
    hub.call_later(0.010, lambda: fired_after.append(passes[0]))
    g.join()
    assert fired_after, "the timer never fired while callbacks kept coming"
    # The clock is read every 64 callbacks; 10 readings later the timer is due.
    assert fired_after[0] < 64 * 12


def test_idle_runs_after_busy_greenlets(fresh_hub: Hub) -> None:
    order: list[str] = []

    def busy() -> None:
        for i in range(3):
            order.append(f"busy{i}")
            greenwire.sleep(0)

    def idler() -> None:
        greenwire.idle()
        order.append("idle")

    gs = [greenwire.spawn(idler), greenwire.spawn(busy)]
    greenwire.joinall(gs)
    assert order == ["busy0", "busy1", "busy2", "idle"]


def test_one_turn_includes_the_io_that_became_ready(hub: Hub) -> None:
    # A greenlet that yields while others keep the ready queue busy must not keep I/O
    # unread: the greenlets whose fds are ready run before it goes on (a server's accept
    # loop otherwise moves all its requests in lockstep; see Hub.park_one_turn).
    order: list[str] = []
    spins = [0]
    a, b = socket.socketpair()
    try:
        a.setblocking(False)
        b.setblocking(False)

        def read() -> None:
            hub.wait_readable(b)
            order.append(f"read {b.recv(10)!r}")

        def spin() -> None:
            while spins[0] < 100:  # keeps a callback queued the whole time
                spins[0] += 1
                greenwire.sleep(0)

        reader = greenwire.spawn(read)
        greenwire.sleep(0)  # the reader parks on b
        spinner = greenwire.spawn(spin)
        a.send(b"x")
        hub.park_one_turn()
        order.append("resumed")
        assert order == ["read b'x'", "resumed"]
        assert spins[0] < 100  # the queue never ran dry: the turn polled anyway
        greenwire.joinall([reader, spinner])
    finally:
        a.close()
        b.close()


def test_idle_waiter_killed(fresh_hub: Hub) -> None:
    g = greenwire.spawn(greenwire.idle)
    greenwire.sleep(0)
    g.kill()
    assert g.ready() and not fresh_hub._idle_waiters


def test_threadsafe_callback_wakes_a_blocked_hub(fresh_hub: Hub) -> None:
    got: list[int] = []
    me = getcurrent()
    fresh_hub.hold()
    go = threading.Event()

    def worker() -> None:
        go.wait()
        fresh_hub.run_callback_threadsafe(got.append, threading.get_ident())
        fresh_hub.run_callback_threadsafe(me.switch)

    t = threading.Thread(target=worker)
    t.start()
    try:
        fresh_hub.run_callback(go.set)
        while not got:
            fresh_hub.park()
    finally:
        fresh_hub.release()
        t.join()
    assert got == [t.ident]


def test_signal_callback_writes_the_wakeup_fd_even_from_the_hubs_thread(fresh_hub: Hub) -> None:
    got: list[str] = []
    fresh_hub.run_callback_from_signal(got.append, "ran")
    # Unlike run_callback_threadsafe from this thread, the wake-up fd is written: a
    # signal handler may have interrupted the hub's own poll.
    assert os.read(fresh_hub._wake_r, 8)
    greenwire.sleep(0)
    assert got == ["ran"]


def test_signal_callback_does_not_wait_for_an_interrupted_wake_lock_holder(
    fresh_hub: Hub,
) -> None:
    got: list[str] = []
    with fresh_hub._wake_lock:  # as if the handler interrupted a thread holding it
        fresh_hub.run_callback_from_signal(got.append, "ran")
    with pytest.raises(BlockingIOError):
        os.read(fresh_hub._wake_r, 8)  # the holder is the one waking the hub
    greenwire.sleep(0)
    assert got == ["ran"]


def test_statistics_and_repr(fresh_hub: Hub, vclock: VirtualClock) -> None:
    fresh_hub.call_later(5, lambda: None)
    fresh_hub.run_callback(lambda: None)
    stats = fresh_hub.statistics()
    assert stats.timers == 1 and stats.ready_callbacks == 1
    assert stats.backend == fresh_hub.backend_name
    assert "timers=1" in repr(fresh_hub)
    with pytest.raises(RuntimeError, match="clock"):
        fresh_hub.set_clock(VirtualClock())
    greenwire.sleep(10)


def test_destroy_closes_fds_and_next_get_hub_is_new() -> None:
    hub = get_hub()
    greenwire.sleep(0)  # start the loop
    before = set(os.listdir("/proc/self/fd"))
    hub.destroy()
    hub.destroy()  # idempotent
    after = set(os.listdir("/proc/self/fd"))
    assert len(before - after) >= 2  # the epoll fd and the wake-up fd
    assert hub.destroyed and hub.dead
    new = get_hub()
    assert new is not hub
    assert greenwire.spawn(lambda: "ok").get() == "ok"


def test_destroy_hooks_run(fresh_hub: Hub, capsys: pytest.CaptureFixture[str]) -> None:
    called: list[Hub] = []
    fresh_hub.add_destroy_hook(called.append)

    def broken(hub: Hub) -> None:
        raise RuntimeError("hook failed")

    fresh_hub.add_destroy_hook(broken)
    fresh_hub.destroy()
    assert called == [fresh_hub]
    assert "hook failed" in capsys.readouterr().err


def test_destroy_from_inside_the_hub_is_refused(fresh_hub: Hub, hub_errors: list) -> None:
    fresh_hub.run_callback(fresh_hub.destroy)
    greenwire.sleep(0)
    assert [type(e) for _, e in hub_errors] == [HubBlockingError]


def test_set_hub_installs_a_custom_hub() -> None:
    old = get_hub()
    custom = Hub(clock=VirtualClock(100.0))
    set_hub(custom)
    try:
        assert get_hub() is custom
        greenwire.sleep(5)
        assert custom.now() == 105.0
    finally:
        custom.destroy()
        set_hub(old)


def test_fork_child_gets_a_fresh_hub() -> None:
    hub = get_hub()
    greenwire.sleep(0)
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: report whether it got a new, working hub
        try:
            child_hub = get_hub()
            ok = child_hub is not hub and greenwire.spawn(lambda: 7).get() == 7
            os.write(w, b"1" if ok else b"0")
        finally:
            os._exit(0)
    os.close(w)
    try:
        assert os.read(r, 1) == b"1"
    finally:
        os.close(r)
        os.waitpid(pid, 0)
    assert get_hub() is hub


@pytest.mark.realtime
def test_exception_from_signal_handler_reaches_main(fresh_hub: Hub) -> None:
    import signal
    import socket

    class Interrupted(Exception):
        pass

    def handler(signum: int, frame: object) -> None:
        raise Interrupted

    old = signal.signal(signal.SIGALRM, handler)
    a, b = socket.socketpair()
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.01)
        with pytest.raises(Interrupted):
            fresh_hub.wait_readable(a)  # the hub blocks in epoll until the signal
        assert fresh_hub.statistics().io_waiters == 0
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
        for s in (a, b):
            fresh_hub.notify_closing(s)
            s.close()
