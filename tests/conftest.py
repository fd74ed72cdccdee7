"""Shared fixtures: every test gets a fresh hub and is checked for leaks afterwards.

Teardown fails a test that leaves greenlets running, leaks file descriptors, or lets an
error reach the hub's error handler without the test asking for it (``hub_errors``).
"""

from __future__ import annotations

import gc
import os
import socket
from collections.abc import Iterator

import pytest

import greenwire
from greenwire._core import EpollBackend, Hub, SelectorsBackend, VirtualClock, get_hub
from greenwire._core.hub import _get_hub_or_none, set_hub


def _open_fds() -> set[int]:
    return {int(fd) for fd in os.listdir("/proc/self/fd")}


class ErrorLog(list[tuple[object, BaseException]]):
    """What reached the hub's error handler during a test."""

    consumed = False

    def types(self) -> list[type[BaseException]]:
        return [type(e) for _, e in self]


def _live_greenlets() -> list[greenwire.Greenlet[object]]:
    gc.collect()
    return [
        g
        for g in gc.get_objects()
        if isinstance(g, greenwire.Greenlet) and g.started and not g.ready()
    ]


@pytest.fixture(autouse=True)
def fresh_hub(request: pytest.FixtureRequest) -> Iterator[Hub]:
    old = _get_hub_or_none()
    if old is not None:
        old.destroy()
    before_fds = _open_fds()
    before_live = {id(g) for g in _live_greenlets()}
    errors = ErrorLog()
    hub = get_hub()
    hub.error_handler = lambda context, exc: errors.append((context, exc))
    request.node._greenwire_errors = errors
    yield hub
    live = [g for g in _live_greenlets() if id(g) not in before_live]
    for g in live:
        g.kill(block=False)
    current = _get_hub_or_none()
    if current is not None and not current.destroyed:
        # Let killed greenlets unwind before the hub goes away.
        if live:
            try:
                greenwire.sleep(0)
            except greenwire.LoopExit:
                pass
        current.destroy()
    problems = []
    if live:
        problems.append(f"greenlets left running: {live!r}")
    if errors and not errors.consumed:
        problems.append(f"unreported hub errors: {[(c, e) for c, e in errors]!r}")
    leaked = _open_fds() - before_fds
    if leaked:
        gc.collect()
        leaked = _open_fds() - before_fds
    if leaked:
        problems.append(f"file descriptors leaked: {sorted(leaked)}")
    if problems:
        pytest.fail("; ".join(problems), pytrace=False)


@pytest.fixture
def hub_errors(request: pytest.FixtureRequest, fresh_hub: Hub) -> ErrorLog:
    """The list of (context, exception) the hub reported; the test must check it."""
    errors: ErrorLog = request.node._greenwire_errors
    errors.consumed = True
    return errors


@pytest.fixture
def vclock(fresh_hub: Hub) -> VirtualClock:
    """Install a virtual clock on the test's hub and return it."""
    clock = VirtualClock()
    fresh_hub.set_clock(clock)
    return clock


@pytest.fixture(params=["epoll", "selectors"])
def hub(request: pytest.FixtureRequest, fresh_hub: Hub) -> Iterator[Hub]:
    """A hub on each backend, with a virtual clock for the timeouts."""
    backend = EpollBackend() if request.param == "epoll" else SelectorsBackend()
    fresh_hub.destroy()
    h = Hub(backend=backend, clock=VirtualClock())
    h.error_handler = fresh_hub.error_handler
    set_hub(h)
    yield h
    h.destroy()


@pytest.fixture
def pair(hub: Hub) -> Iterator[tuple[socket.socket, socket.socket]]:
    """A connected pair of non-blocking sockets, closed properly afterwards."""
    a, b = socket.socketpair()
    a.setblocking(False)
    b.setblocking(False)
    yield a, b
    for s in (a, b):
        if s.fileno() >= 0:
            hub.notify_closing(s)
            s.close()
