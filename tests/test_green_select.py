"""The cooperative ``select()`` and ``poll()``."""

from __future__ import annotations

import errno
import os
import select as stdlib_select
import socket
from collections.abc import Callable, Iterator

import pytest

import greenwire
from _green_wait_helpers import FloatSub, Index, call_as_io_arrives, later, no_fds_left
from greenwire import Timeout
from greenwire._core import Hub, VirtualClock
from greenwire.green import select as green_select

Pair = tuple[socket.socket, socket.socket]


@pytest.fixture
def pair() -> Iterator[Pair]:
    a, b = socket.socketpair()
    yield a, b
    a.close()
    b.close()


def fill(sock: socket.socket) -> None:
    """Fill ``sock``'s send buffer so that it is no longer writable."""
    sock.setblocking(False)
    try:
        while True:
            sock.send(b"x" * 65536)
    except BlockingIOError:
        pass


def drain(sock: socket.socket) -> None:
    sock.setblocking(False)
    try:
        while sock.recv(1 << 20):
            pass
    except BlockingIOError:
        pass


class Nope:
    pass


class BadFileno:
    def fileno(self) -> str:
        return "fileno"


class FdHolder:
    def __init__(self, fd: int) -> None:
        self.fd = fd

    def fileno(self) -> int:
        return self.fd


# --------------------------------------------------------------------------- select()


def test_declarations() -> None:
    assert green_select.__target__ == "select"
    assert green_select.__implements__ == ["select", "poll"]
    assert green_select.epoll is stdlib_select.epoll  # left alone on purpose
    assert green_select.error is OSError


def test_ready_objects_return_at_once(vclock: VirtualClock, pair: Pair) -> None:
    a, b = pair
    b.send(b"x")
    holder = FdHolder(a.fileno())
    r, w, x = green_select.select([a, holder, b], [b], [], None)
    assert (r, w, x) == ([a, holder], [b], [])
    assert vclock.now() == 0


def test_waits_cooperatively_until_ready(vclock: VirtualClock, fresh_hub: Hub, pair: Pair) -> None:
    a, b = pair
    sender = later(2, b.send, b"x")
    assert green_select.select([a], [], [], None) == ([a], [], [])
    assert vclock.now() == pytest.approx(2)
    sender.get()
    assert no_fds_left(fresh_hub)  # the temporary registration is gone


def test_timeout_returns_fresh_empty_lists(
    vclock: VirtualClock, fresh_hub: Hub, pair: Pair
) -> None:
    a, b = pair
    r, w, x = green_select.select([a], [], [a], 1.5)
    assert (r, w, x) == ([], [], [])
    assert r is not w and r is not x and w is not x
    assert vclock.now() == pytest.approx(1.5)
    assert no_fds_left(fresh_hub)


@pytest.mark.parametrize("timeout, seconds", [(True, 1.0), (Index(2), 2.0), (FloatSub(0.5), 0.5)])
def test_timeouts_of_other_numeric_types(
    vclock: VirtualClock, pair: Pair, timeout: object, seconds: float
) -> None:
    a, b = pair
    assert green_select.select([a], [], [], timeout) == ([], [], [])  # type: ignore[arg-type]
    assert vclock.now() == pytest.approx(seconds)


def test_zero_timeout_only_looks(vclock: VirtualClock, pair: Pair) -> None:
    a, b = pair
    assert green_select.select([a], [], [], 0) == ([], [], [])
    assert green_select.select([a], [], [], 0.0) == ([], [], [])


def test_waits_for_writability(vclock: VirtualClock, pair: Pair) -> None:
    a, b = pair
    fill(a)
    assert green_select.select([], [a], [], 0) == ([], [], [])
    later(1, drain, b)
    assert green_select.select([], [a], [], 10) == ([], [a], [])
    assert vclock.now() == pytest.approx(1)


def test_generators_and_tuples_are_accepted(vclock: VirtualClock, pair: Pair) -> None:
    a, b = pair
    later(1, b.send, b"x")
    r, w, x = green_select.select((s for s in [a]), (), iter([]), 5)
    assert (r, w, x) == ([a], [], [])


def test_many_greenlets_select_the_same_fd(vclock: VirtualClock, pair: Pair) -> None:
    a, b = pair
    selectors = [greenwire.spawn(green_select.select, [a], [], [], 10) for _ in range(4)]
    later(1, b.send, b"x")
    assert [g.get() for g in selectors] == [([a], [], [])] * 4


def test_a_reader_and_a_selector_share_an_fd(vclock: VirtualClock, pair: Pair) -> None:
    a, b = pair
    a.setblocking(False)

    def read() -> bytes:
        while True:
            try:
                return a.recv(10)
            except BlockingIOError:
                greenwire.wait_readable(a)

    reader = greenwire.spawn(read)
    selector = greenwire.spawn(green_select.select, [a], [], [], 10)
    greenwire.sleep(0)
    b.send(b"1")
    # The reader was parked first and takes the data: the selector's wake-up was a false
    # alarm, so it goes on waiting instead of reporting a fd with nothing to read.
    assert reader.get() == b"1"
    greenwire.sleep(0)
    assert not selector.ready()
    later(1, b.send, b"2")
    assert selector.get() == ([a], [], [])
    assert vclock.now() == pytest.approx(1)
    greenwire.get_hub().notify_closing(a)


def test_pipes_and_plain_fds(vclock: VirtualClock) -> None:
    r, w = os.pipe()
    try:
        later(1, os.write, w, b"data")
        assert green_select.select([r], [], [], None) == ([r], [], [])
        assert green_select.select([r, r], [w], [], 0) == ([r, r], [w], [])
    finally:
        os.close(r)
        os.close(w)


def test_regular_files_are_always_ready(tmp_path: os.PathLike[str]) -> None:
    with open(os.path.join(tmp_path, "f"), "wb") as f:
        assert green_select.select([f], [f], [], None) == ([f], [f], [])


def test_exceptional_conditions_ready_at_once() -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    client = socket.create_connection(listener.getsockname())
    server, _ = listener.accept()
    try:
        client.send(b"!", socket.MSG_OOB)
        for _ in range(100):
            _, _, x = green_select.select([], [], [server], 0.01)
            if x:
                break
        assert x == [server]
    finally:
        for s in (listener, client, server):
            s.close()


@pytest.mark.parametrize(
    "args",
    [
        (1, 2, 3),
        ([Nope()], [], []),
        ([BadFileno()], [], []),
        ([FdHolder(-1)], [], []),
        ([-5], [], []),
        ([], [], [], "not a number"),
        ([], [], [], -1),
        ([], [], [], float("nan")),
        ([], [], [], 1e300),
        ([2**40], [], []),
    ],
)
def test_errors_are_the_stdlibs(args: tuple[object, ...]) -> None:
    real_args = args if len(args) == 4 else (*args, 0)
    with pytest.raises(Exception) as real:
        stdlib_select.select(*real_args)  # type: ignore[arg-type]
    with pytest.raises(type(real.value)) as green:
        green_select.select(*args)  # type: ignore[arg-type]
    assert str(green.value) == str(real.value)


def test_closed_fd_is_ebadf() -> None:
    r, w = os.pipe()
    os.close(r)
    os.close(w)
    with pytest.raises(OSError) as info:
        green_select.select([r], [], [], None)
    assert info.value.errno == errno.EBADF


def test_kill_while_selecting_cleans_up(vclock: VirtualClock, fresh_hub: Hub, pair: Pair) -> None:
    a, b = pair
    g = greenwire.spawn(green_select.select, [a], [], [], None)
    greenwire.sleep(0)
    assert fresh_hub.statistics().io_waiters == 1
    g.kill()
    assert isinstance(g.value, greenwire.GreenletExit)
    assert no_fds_left(fresh_hub)


def test_timeout_exception_while_selecting(
    vclock: VirtualClock, fresh_hub: Hub, pair: Pair
) -> None:
    a, b = pair
    with pytest.raises(Timeout), Timeout(3):
        green_select.select([a], [], [], None)
    assert vclock.now() == pytest.approx(3)
    assert no_fds_left(fresh_hub)


def test_closing_a_watched_socket_wakes_the_selector(fresh_hub: Hub, pair: Pair) -> None:
    a, b = pair
    fresh_hub.register_fd(a)  # a green socket would have done this

    def close_a() -> None:
        fresh_hub.notify_closing(a)
        a.close()

    greenwire.spawn(close_a)
    with pytest.raises(ValueError, match="negative"):
        green_select.select([a], [], [], None)


# ----------------------------------------------------------------------------- poll()


def test_a_loop_over_a_ready_fd_lets_the_others_run(pair: Pair) -> None:
    # An asyncore-style loop over an always-writable socket must not starve the greenlet
    # it is waiting for (CPython's test_ftplib TLS tests hang otherwise).
    a, b = pair
    pollster = green_select.poll()
    pollster.register(b, stdlib_select.POLLOUT)
    calls: list[Callable[[], object]] = [
        lambda: green_select.select([], [b], [], 10),
        lambda: green_select.select([], [b], [], None),
        lambda: pollster.poll(10_000),
        lambda: pollster.poll(),
    ]
    for call in calls:
        turns: list[int] = []
        other = greenwire.spawn(turns.append, 1)
        assert call() in (([], [b], []), [(b.fileno(), stdlib_select.POLLOUT)])
        assert turns == [1]
        other.get()


def test_a_ready_call_lets_ready_io_run_first(pair: Pair) -> None:
    # serve_forever's loop: after each request it polls the listening socket, and under
    # load it is ready at once. The turn it then takes must include the greenlets whose
    # I/O became ready meanwhile, not only the queued ones (see _waiting).
    a, b = pair
    pollster = green_select.poll()
    pollster.register(b, stdlib_select.POLLOUT)
    calls: list[Callable[[], object]] = [
        lambda: green_select.select([], [b], [], 10),
        lambda: pollster.poll(10_000),
    ]
    for call in calls:
        result, reader = call_as_io_arrives(call)
        assert result in (([], [b], []), [(b.fileno(), stdlib_select.POLLOUT)])
        assert reader.ready() and reader.get() == b"x"


def test_a_zero_timeout_looks_without_yielding(pair: Pair) -> None:
    a, b = pair
    pollster = green_select.poll()
    pollster.register(b, stdlib_select.POLLOUT)
    turns: list[int] = []
    other = greenwire.spawn(turns.append, 1)
    assert green_select.select([], [b], [], 0) == ([], [b], [])
    assert pollster.poll(0) == [(b.fileno(), stdlib_select.POLLOUT)]
    assert turns == []
    other.get()


def test_poll_objects_cannot_be_made_by_hand() -> None:
    p = green_select.poll()
    with pytest.raises(TypeError, match="cannot create 'greenwire.green.select.poll' instances"):
        type(p)()


def test_poll_waits_cooperatively(vclock: VirtualClock, fresh_hub: Hub, pair: Pair) -> None:
    a, b = pair
    p = green_select.poll()
    p.register(a)  # default: POLLIN | POLLPRI | POLLOUT
    assert p.poll(0) == [(a.fileno(), stdlib_select.POLLOUT)]
    p.modify(a, stdlib_select.POLLIN)
    assert p.poll(0) == []
    assert p.poll(1500) == []
    assert vclock.now() == pytest.approx(1.5)
    later(1, b.send, b"x")
    assert p.poll() == [(a.fileno(), stdlib_select.POLLIN)]
    assert vclock.now() == pytest.approx(2.5)
    assert no_fds_left(fresh_hub)


@pytest.mark.parametrize("forever", [None, -1, -1000, -0.1, -1e-100])
def test_poll_none_or_negative_waits_forever(
    vclock: VirtualClock, pair: Pair, forever: float | None
) -> None:
    a, b = pair
    p = green_select.poll()
    p.register(a.fileno(), stdlib_select.POLLIN)
    later(1000, b.send, b"x")
    assert p.poll(forever) == [(a.fileno(), stdlib_select.POLLIN)]
    assert vclock.now() == pytest.approx(1000)


def test_poll_rounds_milliseconds_up(vclock: VirtualClock, pair: Pair) -> None:
    a, b = pair
    p = green_select.poll()
    p.register(a, stdlib_select.POLLIN)
    assert p.poll(0.1) == []
    assert vclock.now() == pytest.approx(0.001)


def test_poll_waits_for_writability(vclock: VirtualClock, pair: Pair) -> None:
    a, b = pair
    fill(a)
    p = green_select.poll()
    p.register(a, stdlib_select.POLLOUT)
    later(1, drain, b)
    assert p.poll() == [(a.fileno(), stdlib_select.POLLOUT)]


def test_poll_reports_closed_fds_at_once() -> None:
    r, w = os.pipe()
    os.close(r)
    os.close(w)
    p = green_select.poll()
    p.register(r)
    assert p.poll() == [(r, stdlib_select.POLLNVAL)]


def test_concurrent_poll_is_refused(vclock: VirtualClock, pair: Pair) -> None:
    a, b = pair
    p = green_select.poll()
    p.register(a, stdlib_select.POLLIN)
    first = greenwire.spawn(p.poll, 10_000)
    greenwire.sleep(0)
    with pytest.raises(RuntimeError, match="concurrent poll"):
        p.poll(0)
    # Registrations may change meanwhile; the running poll keeps its own set.
    p.unregister(a)
    p.register(b, stdlib_select.POLLOUT)
    b.send(b"x")
    assert first.get() == [(b.fileno(), stdlib_select.POLLOUT)]
    assert p.poll(0) == [(b.fileno(), stdlib_select.POLLOUT)]


def test_killed_poll_can_poll_again(vclock: VirtualClock, fresh_hub: Hub, pair: Pair) -> None:
    a, b = pair
    p = green_select.poll()
    p.register(a, stdlib_select.POLLIN)
    g = greenwire.spawn(p.poll)
    greenwire.sleep(0)
    g.kill()
    assert no_fds_left(fresh_hub)
    b.send(b"x")
    assert p.poll(0) == [(a.fileno(), stdlib_select.POLLIN)]


@pytest.mark.parametrize(
    "call",
    [
        lambda p: p.register(p),
        lambda p: p.register(Nope(), 0),
        lambda p: p.register(BadFileno(), 0),
        lambda p: p.register(0, -1),
        lambda p: p.register(0, 1 << 64),
        lambda p: p.unregister(p),
        lambda p: p.unregister(3),
        lambda p: p.modify(1, -1),
        lambda p: p.modify(99, stdlib_select.POLLIN),
        lambda p: p.poll(1 << 64),
        lambda p: p.poll(2**31),
        lambda p: p.poll("x"),
        lambda p: p.poll(float("nan")),
    ],
)
def test_poll_errors_are_the_stdlibs(call: Callable[[object], object]) -> None:
    with pytest.raises(Exception) as real:
        call(stdlib_select.poll())
    with pytest.raises(type(real.value)) as green:
        call(green_select.poll())
    assert str(green.value) == str(real.value)


def test_poll_unregister_by_object(pair: Pair) -> None:
    a, b = pair
    p = green_select.poll()
    p.register(a, stdlib_select.POLLOUT)
    p.unregister(a)
    assert p.poll(0) == []
    with pytest.raises(KeyError):
        p.unregister(a)
