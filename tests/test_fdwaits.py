"""Fd observers (``hub.observe_fd``): many watchers per fd, on both backends."""

from __future__ import annotations

import os
import select
import socket

import pytest
from greenlet import getcurrent

import greenwire
from greenwire import wait_readable
from greenwire._core import (
    FdObserver,
    Hub,
)
from greenwire._core.backends import READ_EVENTS, WRITE_EVENTS


def fill(sock: socket.socket) -> None:
    """Fill ``sock``'s send buffer so that it is no longer writable."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    try:
        while True:
            sock.send(b"x" * 65536)
    except BlockingIOError:
        pass


class Parker:
    """Waits like the green ``select`` does: observers wake one parked greenlet."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.greenlet = getcurrent()
        self.armed = False
        self.seen: list[tuple[int, int]] = []

    def wake(self, fd: int, events: int) -> None:
        self.seen.append((fd, events))
        if self.armed:
            self.armed = False
            self.greenlet.switch()

    def wait(self, specs: list[tuple[object, bool, bool]], timeout: float | None = None) -> bool:
        observers = [self.hub.observe_fd(f, r, w, self.wake) for f, r, w in specs]
        try:
            self.armed = True
            deadline = None if timeout is None else self.hub.now() + timeout
            return self.hub.park_until(deadline)
        finally:
            self.armed = False
            for obs in observers:
                obs.cancel()


def test_observer_wakes_on_read_and_leaves_the_reader_slot_free(
    hub: Hub, pair: tuple[socket.socket, socket.socket]
) -> None:
    a, b = pair

    def reader() -> bytes:
        while True:
            try:
                return a.recv(100)
            except BlockingIOError:
                wait_readable(a)

    r = greenwire.spawn(reader)
    greenwire.sleep(0)  # the reader holds the reader slot
    parker = Parker(hub)
    hub.run_callback(b.send, b"data")
    assert parker.wait([(a, True, False)], timeout=10)
    assert parker.seen and parker.seen[0][0] == a.fileno()
    assert parker.seen[0][1] & READ_EVENTS
    assert r.get() == b"data"
    assert hub.statistics().io_waiters == 0


def test_one_greenlet_observes_many_fds(hub: Hub) -> None:
    pairs = [socket.socketpair() for _ in range(5)]
    try:
        parker = Parker(hub)
        hub.run_callback(pairs[3][1].send, b"!")
        assert parker.wait([(a, True, False) for a, _ in pairs], timeout=10)
        assert [fd for fd, _ in parker.seen] == [pairs[3][0].fileno()]
    finally:
        for s in [s for p in pairs for s in p]:
            hub.notify_closing(s)
            s.close()


def test_many_observers_on_one_fd_all_wake(
    hub: Hub, pair: tuple[socket.socket, socket.socket]
) -> None:
    a, b = pair

    def observe() -> bool:
        return Parker(hub).wait([(a, True, False)], timeout=10)

    waiters = [greenwire.spawn(observe) for _ in range(3)]
    greenwire.sleep(0)
    assert hub.statistics().io_waiters == 3
    b.send(b"x")
    assert [g.get() for g in waiters] == [True, True, True]
    assert hub.statistics().io_waiters == 0


def test_write_observer_wakes_when_the_peer_drains(
    hub: Hub, pair: tuple[socket.socket, socket.socket]
) -> None:
    a, b = pair
    fill(a)

    def drain() -> None:
        try:
            while b.recv(1 << 20):
                pass
        except BlockingIOError:
            pass

    parker = Parker(hub)
    hub.run_callback(drain)
    assert parker.wait([(a, False, True)], timeout=10)
    assert parker.seen[-1][1] & WRITE_EVENTS


def test_timeout_and_cancel_forget_a_temporary_registration(
    hub: Hub, pair: tuple[socket.socket, socket.socket]
) -> None:
    a, b = pair
    before = hub.statistics().fds
    parker = Parker(hub)
    assert not parker.wait([(a.fileno(), True, False)], timeout=1.5)
    assert parker.seen == []
    stats = hub.statistics()
    assert (stats.fds, stats.io_waiters) == (before, 0)
    # The fd was removed from the backend too: observing it again works and sees data.
    hub.run_callback(b.send, b"again")
    assert parker.wait([(a, True, False)], timeout=10)


def test_cancel_keeps_a_registration_that_existed_before(
    hub: Hub, pair: tuple[socket.socket, socket.socket]
) -> None:
    a, b = pair
    st = hub.register_fd(a)
    obs = hub.observe_fd(a, True, False, lambda fd, ev: None)
    assert obs.active and obs.state is st
    obs.cancel()
    obs.cancel()  # twice is harmless
    assert not obs.active
    assert hub._fds[a.fileno()] is st and st.observers is None


def test_registering_while_observed_makes_the_state_permanent(
    hub: Hub, pair: tuple[socket.socket, socket.socket]
) -> None:
    a, b = pair
    obs = hub.observe_fd(a.fileno(), True, False, lambda fd, ev: None)
    st = hub.register_fd(a)  # a socket starts using the fd meanwhile
    obs.cancel()
    assert hub._fds[a.fileno()] is st
    b.send(b"y")
    wait_readable(a, timeout=10)  # still registered with the backend
    assert a.recv(10) == b"y"


def test_closing_detaches_and_notifies_observers(
    hub: Hub, pair: tuple[socket.socket, socket.socket]
) -> None:
    a, b = pair
    parker = Parker(hub)

    def close_a() -> None:
        hub.notify_closing(a)

    obs = hub.observe_fd(a, True, True, lambda fd, ev: None)
    greenwire.spawn(close_a)
    assert parker.wait([(a, True, False)], timeout=10)
    assert parker.seen == [(a.fileno(), 0)]
    assert not obs.active
    obs.cancel()
    assert hub.statistics().io_waiters == 0


def test_regular_file_observer_fires_at_once(hub: Hub, tmp_path: os.PathLike[str]) -> None:
    with open(os.path.join(tmp_path, "f"), "w+b") as f:
        parker = Parker(hub)
        assert parker.wait([(f, True, False)], timeout=10)
        assert parker.seen[0][0] == f.fileno()
        # A cancelled observer of an always-ready fd is never called.
        calls: list[int] = []
        hub.observe_fd(f, True, False, lambda fd, ev: calls.append(fd)).cancel()
        greenwire.sleep(0)
        greenwire.sleep(0)
        assert calls == []
        hub.notify_closing(f)


def test_an_edge_after_the_zero_timeout_look_is_never_lost(
    hub: Hub, pair: tuple[socket.socket, socket.socket]
) -> None:
    a, b = pair
    hub.register_fd(a)
    # The canonical sequence: look, find nothing, register, (the edge comes), park.
    assert select.select([a], [], [], 0) == ([], [], [])
    parker = Parker(hub)
    b.send(b"edge")  # arrives before the observer is registered by parker.wait
    assert parker.wait([(a, True, False)], timeout=10)


def test_callback_cancelling_another_observer(
    hub: Hub, pair: tuple[socket.socket, socket.socket]
) -> None:
    a, b = pair
    calls: list[str] = []
    second: list[FdObserver] = []

    def first_cb(fd: int, ev: int) -> None:
        calls.append("first")
        second[0].cancel()

    first = hub.observe_fd(a, True, False, first_cb)
    second.append(hub.observe_fd(a, True, False, lambda fd, ev: calls.append("second")))
    parker = Parker(hub)
    b.send(b"z")
    assert parker.wait([(a, True, False)], timeout=10)
    first.cancel()
    assert calls[0] == "first" and "second" not in calls


def test_callback_errors_reach_the_hub(
    hub: Hub, pair: tuple[socket.socket, socket.socket], hub_errors: list
) -> None:
    a, b = pair

    def broken(fd: int, ev: int) -> None:
        raise ZeroDivisionError

    obs = hub.observe_fd(a, True, False, broken)
    parker = Parker(hub)
    b.send(b"!")
    assert parker.wait([(a, True, False)], timeout=10)
    obs.cancel()
    assert [(c, type(e)) for c, e in hub_errors] == [(broken, ZeroDivisionError)]


def test_hang_up_wakes_an_observer_of_either_direction(
    hub: Hub, pair: tuple[socket.socket, socket.socket]
) -> None:
    a, b = pair
    parker = Parker(hub)

    def hang_up() -> None:
        b.shutdown(socket.SHUT_RDWR)

    hub.run_callback(hang_up)
    assert parker.wait([(a, True, False)], timeout=10)


def test_level_triggered_interest_follows_observers(
    hub: Hub, pair: tuple[socket.socket, socket.socket]
) -> None:
    if hub.backend_name != "selectors":
        pytest.skip("only the level-triggered backend tracks interest")
    a, b = pair

    def interest() -> int:
        mask: int = hub._backend._interest.get(a.fileno(), 0)  # type: ignore[attr-defined]
        return mask

    obs_r = hub.observe_fd(a, True, False, lambda fd, ev: None)
    assert interest() == 1
    obs_w = hub.observe_fd(a, False, True, lambda fd, ev: None)
    assert interest() == 3
    obs_r.cancel()
    assert interest() == 2
    obs_w.cancel()
    assert interest() == 0


def test_level_triggered_reader_leaving_keeps_the_observer_watched(
    hub: Hub, pair: tuple[socket.socket, socket.socket]
) -> None:
    a, b = pair
    obs = hub.observe_fd(a, True, False, lambda fd, ev: None)
    with pytest.raises(TimeoutError):
        wait_readable(a, timeout=0.5)
    parker = Parker(hub)
    hub.run_callback(b.send, b"after")
    assert parker.wait([(a, True, False)], timeout=10)
    obs.cancel()
    assert hub.statistics().io_waiters == 0


def test_killed_observer_cleans_up(hub: Hub, pair: tuple[socket.socket, socket.socket]) -> None:
    a, b = pair

    def observe() -> bool:
        return Parker(hub).wait([(a, True, False)])

    g = greenwire.spawn(observe)
    greenwire.sleep(0)
    assert hub.statistics().io_waiters == 1
    g.kill()
    assert hub.statistics().io_waiters == 0


def test_a_number_reused_while_only_observed_is_registered_again(hub: Hub) -> None:
    a, b = socket.socketpair()
    fd = a.fileno()
    obs = hub.observe_fd(fd, True, False, lambda fd, ev: None)
    a.close()  # behind the hub's back: epoll forgets the old file by itself
    b.close()
    c, d = socket.socketpair()
    try:
        reused, other = (c, d) if c.fileno() == fd else (d, c)
        assert reused.fileno() == fd
        reused.setblocking(False)
        st = hub.register_fd(reused)  # adopts the observers' state...
        assert st is obs.state and st.owner is not None and st.owner() is reused
        other.send(b"seen")
        wait_readable(reused, timeout=5)  # ...and registers the new file with the backend
        assert reused.recv(10) == b"seen"
        obs.cancel()
        assert hub._fds[fd] is st  # somebody uses it now: it stays
        assert "FdObserver fd=None" in repr(obs)
    finally:
        for s in (c, d):
            hub.notify_closing(s)
            s.close()
