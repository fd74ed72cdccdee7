"""One repeating timer watches the deadlines of many connections."""

from __future__ import annotations

from greenwire import VirtualClock, sleep
from greenwire._core import Hub
from greenwire.green import socket as gsocket
from greenwire.server._wsgi_deadlines import DeadlineWatch, shut_down


class Conn:
    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self.expired_at: float | None = None
        self.clock: VirtualClock | None = None

    def expire(self) -> None:
        assert self.clock is not None
        self.expired_at = self.clock.now()


def test_interval_is_a_fraction_of_the_shortest_timeout_within_bounds() -> None:
    assert DeadlineWatch(2.0).interval == 0.5
    assert DeadlineWatch(100.0).interval == 1.0
    assert DeadlineWatch(0.001).interval == 0.05


def test_overdue_connections_expire_once_within_an_interval(
    vclock: VirtualClock, fresh_hub: Hub
) -> None:
    watch = DeadlineWatch(4.0)  # checks every second
    start = vclock.now()
    early, late = Conn(start + 2.5), Conn(start + 10.0)
    for c in (early, late):
        c.clock = vclock
        watch.add(c)
    sleep(5.0)
    assert early.expired_at is not None and 2.5 <= early.expired_at - start <= 3.5
    assert late.expired_at is None
    assert early.deadline == float("inf")  # not expired again
    watch.discard(early)
    watch.discard(late)
    assert len(watch) == 0
    assert fresh_hub.statistics().timers == 0  # the timer stops with the last connection


def test_shut_down_wakes_a_reader_with_end_of_file(fresh_hub: Hub, vclock: VirtualClock) -> None:
    a, b = gsocket.socketpair()
    try:
        fresh_hub.call_later(0.01, shut_down, a, b"bye")
        assert a.recv(10) == b""
        assert b.recv(10) == b"bye"
    finally:
        a.close()
        b.close()
