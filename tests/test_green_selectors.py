"""The cooperative ``selectors``: the stdlib classes, subclassed to wait on the hub."""

from __future__ import annotations

import selectors as stdlib_selectors
import socket
import unittest.mock
from collections.abc import Iterator

import pytest

import greenwire
from _green_wait_helpers import call_as_io_arrives, later, no_fds_left
from greenwire import Timeout
from greenwire._core import Hub, VirtualClock
from greenwire.green import selectors as green_selectors

Pair = tuple[socket.socket, socket.socket]
READ, WRITE = stdlib_selectors.EVENT_READ, stdlib_selectors.EVENT_WRITE

CLASSES = [
    green_selectors.DefaultSelector,
    green_selectors.SelectSelector,
    green_selectors.PollSelector,
    green_selectors.EpollSelector,
]


@pytest.fixture(params=CLASSES, ids=lambda cls: cls.__name__)
def selector(request: pytest.FixtureRequest) -> Iterator[stdlib_selectors.BaseSelector]:
    sel: stdlib_selectors.BaseSelector = request.param()
    yield sel
    sel.close()


@pytest.fixture
def pair() -> Iterator[Pair]:
    a, b = socket.socketpair()
    yield a, b
    a.close()
    b.close()


def test_declarations() -> None:
    assert green_selectors.__target__ == "selectors"
    assert sorted(green_selectors.__implements__) == [
        "DefaultSelector",
        "EpollSelector",
        "PollSelector",
        "SelectSelector",
    ]
    assert green_selectors.DefaultSelector is green_selectors.EpollSelector
    assert green_selectors.SelectorKey is stdlib_selectors.SelectorKey
    for cls in CLASSES:
        # Subclasses of the stdlib's own, with the stdlib's names.
        assert issubclass(cls, getattr(stdlib_selectors, cls.__name__))


def test_ready_events_return_at_once(
    vclock: VirtualClock, selector: stdlib_selectors.BaseSelector, pair: Pair
) -> None:
    a, b = pair
    b.send(b"x")
    key = selector.register(a, READ | WRITE, "data")
    events = {}
    for k, ev in selector.select():
        assert k is key or k == key
        events[k.fd] = events.get(k.fd, 0) | ev
    assert events == {a.fileno(): READ | WRITE}
    assert vclock.now() == 0


def test_a_loop_over_a_ready_fd_lets_the_others_run(
    selector: stdlib_selectors.BaseSelector, pair: Pair
) -> None:
    a, b = pair
    key = selector.register(b, WRITE)
    for timeout in (10, None):
        turns: list[int] = []
        other = greenwire.spawn(turns.append, 1)
        assert selector.select(timeout) == [(key, WRITE)]
        assert turns == [1]  # the other greenlet ran before the events came back
        other.get()
    turns = []
    other = greenwire.spawn(turns.append, 1)
    assert selector.select(0) == [(key, WRITE)]  # only a look: no turn
    assert turns == []
    other.get()


def test_a_ready_select_lets_ready_io_run_first(
    selector: stdlib_selectors.BaseSelector, pair: Pair
) -> None:
    # serve_forever's loop: the listening socket is ready at once under load; the turn
    # the select takes must include the greenlets whose I/O became ready meanwhile.
    a, b = pair
    key = selector.register(b, WRITE)
    result, reader = call_as_io_arrives(lambda: selector.select(10))
    assert result == [(key, WRITE)]
    assert reader.ready() and reader.get() == b"x"


def test_select_waits_cooperatively(
    vclock: VirtualClock, fresh_hub: Hub, selector: stdlib_selectors.BaseSelector, pair: Pair
) -> None:
    a, b = pair
    key = selector.register(a, READ)
    later(2, b.send, b"x")
    assert selector.select() == [(key, READ)]
    assert vclock.now() == pytest.approx(2)
    assert no_fds_left(fresh_hub)


def test_select_timeout(
    vclock: VirtualClock, fresh_hub: Hub, selector: stdlib_selectors.BaseSelector, pair: Pair
) -> None:
    a, b = pair
    selector.register(a, READ)
    assert selector.select(0) == []
    assert selector.select(-1) == []
    assert vclock.now() == 0
    assert selector.select(1.5) == []
    assert vclock.now() == pytest.approx(1.5)
    assert no_fds_left(fresh_hub)


def test_empty_selector(vclock: VirtualClock, selector: stdlib_selectors.BaseSelector) -> None:
    assert selector.select(timeout=0) == []
    assert selector.select(timeout=3) == []
    assert vclock.now() == pytest.approx(3)


def test_two_greenlets_on_one_selector(
    vclock: VirtualClock, selector: stdlib_selectors.BaseSelector, pair: Pair
) -> None:
    a, b = pair
    key = selector.register(a, READ)
    waiters = [greenwire.spawn(selector.select, 10) for _ in range(2)]
    later(1, b.send, b"x")
    if isinstance(selector, green_selectors.PollSelector):
        # A poll object refuses concurrent polls, in threads as in greenlets.
        with pytest.raises(RuntimeError, match="concurrent poll"):
            waiters[1].get()
        del waiters[1]
    assert [g.get() for g in waiters] == [[(key, READ)]] * len(waiters)


def test_kill_while_selecting(
    vclock: VirtualClock, fresh_hub: Hub, selector: stdlib_selectors.BaseSelector, pair: Pair
) -> None:
    a, b = pair
    selector.register(a, READ)
    g = greenwire.spawn(selector.select)
    greenwire.sleep(0)
    assert fresh_hub.statistics().io_waiters >= 1
    g.kill()
    assert no_fds_left(fresh_hub)


def test_timeout_while_selecting(
    vclock: VirtualClock, selector: stdlib_selectors.BaseSelector, pair: Pair
) -> None:
    a, b = pair
    selector.register(a, READ)
    with pytest.raises(Timeout), Timeout(2):
        selector.select()
    assert vclock.now() == pytest.approx(2)


def test_registration_errors_are_the_stdlibs(
    selector: stdlib_selectors.BaseSelector, pair: Pair
) -> None:
    a, b = pair
    selector.register(a, READ)
    with pytest.raises(KeyError):
        selector.register(a, READ)
    with pytest.raises(KeyError):
        selector.register(a.fileno(), READ)
    with pytest.raises(ValueError):
        selector.register(b, 999999)
    with pytest.raises(ValueError):
        selector.register(-10, READ)
    with pytest.raises(KeyError):
        selector.unregister(b)
    key = selector.modify(a, WRITE, "new")
    assert selector.get_key(a) == key and key.data == "new"
    selector.unregister(a)
    assert selector.get_map() == {}


def test_modify_failure_unregisters(pair: Pair) -> None:
    a, b = pair
    with unittest.mock.patch.object(green_selectors.PollSelector, "_selector_cls") as cls:
        cls.return_value.modify = unittest.mock.Mock(side_effect=ZeroDivisionError)
        sel = green_selectors.PollSelector()
        sel.register(a, READ)
        with pytest.raises(ZeroDivisionError):
            sel.modify(a, WRITE)
        assert len(sel.get_map()) == 0
        sel.close()


def test_epoll_selector_has_its_epoll_fd(pair: Pair) -> None:
    with green_selectors.EpollSelector() as sel:
        assert sel.fileno() >= 0
        sel.register(pair[0], WRITE)
        assert len(sel.select(None)) == 1


def test_epoll_selector_waits_with_many_fds(vclock: VirtualClock, fresh_hub: Hub) -> None:
    pairs = [socket.socketpair() for _ in range(50)]
    try:
        with green_selectors.EpollSelector() as sel:
            for a, _ in pairs:
                sel.register(a, READ)
            g = greenwire.spawn(sel.select)
            greenwire.sleep(0)
            # One observer on the epoll fd, whatever the number of registered fds.
            assert fresh_hub.statistics().io_waiters == 1
            pairs[30][1].send(b"x")
            assert [key.fileobj for key, _ in g.get()] == [pairs[30][0]]
    finally:
        for s in [s for p in pairs for s in p]:
            s.close()
