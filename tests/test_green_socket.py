"""The cooperative socket module: real loopback sockets between greenlets.

Timeouts run on a virtual clock that waits a little real time for loopback I/O before it
jumps (the kernel may finish a handshake or a window update a moment after the call that
caused it). Behaviour that must match the stdlib is checked against a stdlib socket doing
the same calls.
"""

from __future__ import annotations

import _socket
import errno
import gc
import io
import os
import re
import socket as std
import subprocess
import sys
import textwrap
import warnings
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import greenwire as gw
from greenwire import ClosedResourceError, ConcurrentWaitError
from greenwire._core import Hub, VirtualClock
from greenwire.green import dns
from greenwire.green import socket as gs

PATTERN = bytes(range(256)) * 4096  # 1 MiB, never a repeat of a shorter period per chunk


@pytest.fixture
def clock(fresh_hub: Hub) -> VirtualClock:
    """Virtual time that lets real loopback I/O settle (up to 50 ms) before jumping."""
    c = VirtualClock(autojump_threshold=0.05)
    fresh_hub.set_clock(c)
    return c


@pytest.fixture
def listener() -> Iterator[gs.socket]:
    srv = gs.create_server(("127.0.0.1", 0))
    yield srv
    srv.close()


@pytest.fixture
def pair(listener: gs.socket) -> Iterator[tuple[gs.socket, gs.socket]]:
    """A connected (client, server-side) pair of green TCP sockets."""
    client = gs.create_connection(listener.getsockname())
    server, _ = listener.accept()
    yield client, server
    client.close()
    server.close()


@pytest.fixture
def hanging_address() -> Iterator[tuple[str, int]]:
    """An address whose connects hang: a listener with a full backlog that never accepts."""
    lst = std.socket()
    lst.bind(("127.0.0.1", 0))
    lst.listen(0)
    fillers = []
    for _ in range(2):
        f = std.socket()
        f.setblocking(False)
        f.connect_ex(lst.getsockname())
        fillers.append(f)
    yield lst.getsockname()
    for f in fillers:
        f.close()
    lst.close()


def closed_port() -> int:
    s = std.socket()
    s.bind(("127.0.0.1", 0))
    port: int = s.getsockname()[1]
    s.close()
    return port


def recv_exactly(sock: Any, n: int) -> bytes:
    chunks = []
    while n:
        data = sock.recv(min(n, 1 << 20))
        assert data, "peer closed early"
        chunks.append(data)
        n -= len(data)
    return b"".join(chunks)


# ------------------------------------------------------------------- the module


def test_module_is_a_drop_in_for_the_stdlib_module() -> None:
    for name in std.__all__:
        assert hasattr(gs, name), name
    assert gs.AF_INET is std.AF_INET and gs.error is OSError and gs.timeout is TimeoutError
    assert gs.getdefaulttimeout is std.getdefaulttimeout
    assert gs._GLOBAL_DEFAULT_TIMEOUT is std._GLOBAL_DEFAULT_TIMEOUT  # type: ignore[attr-defined]
    assert gs.SocketIO is std.SocketIO
    assert issubclass(gs.socket, std.socket)
    assert gs.SocketType is _socket.socket  # left alone: the C base of every socket
    assert gs.__target__ == "socket"
    for name in gs.__implements__:
        assert getattr(gs, name) is not getattr(std, name), name
    assert "SocketType" not in gs.__implements__


def test_a_new_socket_is_non_blocking_underneath_and_blocking_on_top() -> None:
    with gs.socket() as s:
        assert s.gettimeout() is None and s.getblocking() and s.timeout is None
        assert not os.get_blocking(s.fileno())
        assert s.family == std.AF_INET and s.type == std.SOCK_STREAM
        assert isinstance(s.family, std.AddressFamily)
        assert "greenwire.green.socket.socket" in repr(s)


def test_default_timeout_and_sock_nonblock_at_creation_as_the_stdlib() -> None:
    std.setdefaulttimeout(2.5)
    try:
        with gs.socket() as s, std.socket() as ref:
            assert s.gettimeout() == ref.gettimeout() == 2.5
            fd = os.dup(s.fileno())
            with gs.socket(fileno=fd) as adopted:
                assert adopted.gettimeout() == 2.5
                assert adopted.type == std.SOCK_STREAM
    finally:
        std.setdefaulttimeout(None)
    kind = std.SOCK_STREAM | std.SOCK_NONBLOCK
    with gs.socket(std.AF_INET, kind) as s, std.socket(std.AF_INET, kind) as ref:
        assert s.gettimeout() == ref.gettimeout() == 0.0
        assert s.type == ref.type == std.SOCK_STREAM
        assert not s.getblocking()
    with pytest.raises(TypeError):
        gs.socket(std.AF_INET, "stream")  # type: ignore[arg-type]


@pytest.mark.parametrize("value", [None, 0, 0.0, 1, 2.5, 0.3, 1e-10, True, 1e8])
def test_settimeout_normalizes_like_the_stdlib(value: Any) -> None:
    with gs.socket() as s, std.socket() as ref:
        s.settimeout(value)
        ref.settimeout(value)
        assert s.gettimeout() == ref.gettimeout() and s.timeout == ref.timeout
        assert type(s.gettimeout()) is type(ref.gettimeout())
        assert s.getblocking() == ref.getblocking()
        assert not os.get_blocking(s.fileno())


@pytest.mark.parametrize("value", [-1, -0.5, float("nan"), "1", 1e300, 10**30, b"x"])
def test_settimeout_rejects_like_the_stdlib(value: Any) -> None:
    with gs.socket() as s, std.socket() as ref:
        with pytest.raises(Exception) as expected:
            ref.settimeout(value)
        with pytest.raises(type(expected.value)) as got:
            s.settimeout(value)
        assert str(got.value) == str(expected.value)
        assert not os.get_blocking(s.fileno())


@pytest.mark.parametrize("flag", [True, False, 1, 0, 7])
def test_setblocking_like_the_stdlib(flag: Any) -> None:
    with gs.socket() as s, std.socket() as ref:
        s.setblocking(flag)
        ref.setblocking(flag)
        assert (s.gettimeout(), s.getblocking()) == (ref.gettimeout(), ref.getblocking())
        assert not os.get_blocking(s.fileno())


def test_setblocking_odd_arguments_like_the_stdlib() -> None:
    class Index:
        def __index__(self) -> int:
            return 1

    with gs.socket() as s, std.socket() as ref:
        for bad in ("x", 2.5, None):
            with pytest.raises(TypeError) as expected:
                ref.setblocking(bad)  # type: ignore[arg-type]
            with pytest.raises(TypeError, match=re.escape(str(expected.value))):
                s.setblocking(bad)  # type: ignore[arg-type]
        s.settimeout(0)
        s.setblocking(Index())  # type: ignore[arg-type]
        assert s.gettimeout() is None and not os.get_blocking(s.fileno())


def test_timeout_calls_on_a_closed_socket_raise_ebadf_like_the_stdlib() -> None:
    s, ref = gs.socket(), std.socket()
    s.close()
    ref.close()
    calls: list[Callable[[Any], None]] = [lambda x: x.settimeout(1), lambda x: x.setblocking(1)]
    for call in calls:
        with pytest.raises(OSError) as expected:
            call(ref)
        with pytest.raises(OSError) as got:
            call(s)
        assert got.value.errno == expected.value.errno == errno.EBADF


def test_timeout_calls_on_an_fd_closed_behind_the_socket_raise_like_the_stdlib() -> None:
    def orphan(cls: Any) -> Any:
        """A socket object whose fd was closed by its twin (CPython's issue 28471)."""
        twin = std.socket()
        sock = cls(std.AF_INET, std.SOCK_STREAM, 0, twin.fileno())
        twin.close()
        return sock

    calls: list[Callable[[Any], None]] = [
        lambda x: x.settimeout(1.5),
        lambda x: x.setblocking(True),
        lambda x: x.setblocking(False),
    ]
    for call in calls:
        s, ref = orphan(gs.socket), orphan(std.socket)
        try:
            with pytest.raises(OSError) as expected:
                call(ref)
            with pytest.raises(OSError) as got:
                call(s)
            assert got.value.errno == expected.value.errno == errno.EBADF
            assert s.gettimeout() == ref.gettimeout()  # set before the error, as in C
        finally:
            s.detach()
            ref.detach()


# -------------------------------------------------------------- data transfer


def test_echo_between_greenlets(listener: gs.socket) -> None:
    def serve() -> int:
        conn, _ = listener.accept()
        assert isinstance(conn, gs.socket)
        served = 0
        with conn:
            while data := conn.recv(1024):
                conn.sendall(data.upper())
                served += 1
        return served

    server = gw.spawn(serve)
    with gs.create_connection(listener.getsockname()) as client:
        assert isinstance(client, gs.socket)
        for word in (b"one", b"two", b"three"):
            client.sendall(word)
            assert client.recv(1024) == word.upper()
    assert server.get() == 3


def test_many_connections_are_served_concurrently(listener: gs.socket) -> None:
    arrived = gw.Event()
    count = 0

    def handle(conn: gs.socket) -> None:
        nonlocal count
        with conn:
            request = conn.recv(100)
            count += 1
            if count == 20:
                arrived.set()
            arrived.wait()  # nobody is answered before all 20 have asked
            conn.sendall(request[::-1])

    def serve() -> None:
        for _ in range(20):
            conn, _ = listener.accept()
            gw.spawn(handle, conn)

    def ask(i: int) -> bytes:
        with gs.create_connection(listener.getsockname()) as c:
            c.sendall(b"req%02d" % i)
            return c.recv(100)

    server = gw.spawn(serve)
    clients = [gw.spawn(ask, i) for i in range(20)]
    assert [c.get() for c in clients] == [(b"req%02d" % i)[::-1] for i in range(20)]
    server.get()


def test_large_sendall_and_recv_between_greenlets(pair: tuple[gs.socket, gs.socket]) -> None:
    client, server = pair
    payload = PATTERN * 6
    sender = gw.spawn(client.sendall, payload)
    received = gw.spawn(recv_exactly, server, len(payload))
    assert sender.get() is None
    assert received.get() == payload


def test_sendall_accepts_any_buffer(pair: tuple[gs.socket, gs.socket]) -> None:
    import array

    client, server = pair
    numbers = array.array("i", range(300_000))  # 1.2 MB, itemsize 4
    sender = gw.spawn(client.sendall, numbers)
    data = recv_exactly(server, len(numbers) * numbers.itemsize)
    sender.get()
    assert data == numbers.tobytes()
    client.sendall(bytearray(b"ab"))
    client.sendall(memoryview(b"cd"))
    assert recv_exactly(server, 4) == b"abcd"


def test_recv_into_recvfrom_and_recvfrom_into(pair: tuple[gs.socket, gs.socket]) -> None:
    client, server = pair
    buf = bytearray(10)
    g = gw.spawn(server.recv_into, buf)
    gw.sleep(0)
    client.send(b"hello")
    assert g.get() == 5 and buf[:5] == b"hello"
    g2 = gw.spawn(server.recvfrom, 10)
    gw.sleep(0)
    client.send(b"world")
    assert g2.get()[0] == b"world"
    g3 = gw.spawn(server.recvfrom_into, buf, 3)
    gw.sleep(0)
    client.send(b"abcdef")
    assert g3.get()[0] == 3 and buf[:3] == b"abc"


def test_half_close(pair: tuple[gs.socket, gs.socket]) -> None:
    client, server = pair

    def answer() -> bytes:
        request = b""
        while data := server.recv(100):
            request += data
        server.sendall(b"got " + request)
        server.shutdown(std.SHUT_WR)
        return request

    g = gw.spawn(answer)
    client.sendall(b"question")
    client.shutdown(std.SHUT_WR)
    assert client.recv(100) == b"got question"
    assert client.recv(100) == b""
    assert g.get() == b"question"


def test_udp_sendto_and_recvfrom() -> None:
    with gs.socket(std.AF_INET, std.SOCK_DGRAM) as a, gs.socket(std.AF_INET, std.SOCK_DGRAM) as b:
        a.bind(("127.0.0.1", 0))
        b.bind(("localhost", 0))  # a name: resolved cooperatively, as connect would
        g = gw.spawn(a.recvfrom, 100)
        gw.sleep(0)
        b.sendto(b"ping", ("localhost", a.getsockname()[1]))
        data, peer = g.get()
        assert data == b"ping" and peer == b.getsockname()
        a.sendto(b"pong", 0, peer)
        assert b.recvfrom(100) == (b"pong", a.getsockname())


def test_sendmsg_recvmsg_and_fd_passing() -> None:
    a, b = gs.socketpair()
    with a, b:
        g = gw.spawn(b.recvmsg, 100)
        gw.sleep(0)
        assert a.sendmsg([b"hel", b"lo"]) == 5
        assert g.get()[0] == b"hello"
        buf = bytearray(5)
        g2 = gw.spawn(b.recvmsg_into, [buf])
        gw.sleep(0)
        a.sendmsg([b"world"])
        assert g2.get()[0] == 5 and buf == b"world"
        r, w = os.pipe()
        try:
            received = gw.spawn(gs.recv_fds, b, 100, 1)
            gw.sleep(0)
            gs.send_fds(a, [b"fd"], [w])
            msg, fds, _, _ = received.get()
            assert msg == b"fd" and len(fds) == 1
            os.write(fds[0], b"through the passed fd")
            os.close(fds[0])
            assert os.read(r, 100) == b"through the passed fd"
        finally:
            os.close(r)
            os.close(w)


def test_sendmsg_with_an_address_resolves_the_name() -> None:
    with gs.socket(std.AF_INET, std.SOCK_DGRAM) as a, gs.socket(std.AF_INET, std.SOCK_DGRAM) as b:
        a.bind(("127.0.0.1", 0))
        b.sendmsg([b"x"], [], 0, ("localhost", a.getsockname()[1]))
        assert a.recv(10) == b"x"


def test_sendfile_regular_file_and_fallback(
    pair: tuple[gs.socket, gs.socket], tmp_path: Path
) -> None:
    client, server = pair
    path = tmp_path / "data"
    path.write_bytes(PATTERN * 3)
    with path.open("rb") as f:
        receiver = gw.spawn(recv_exactly, server, len(PATTERN) * 3)
        assert client.sendfile(f) == len(PATTERN) * 3
        assert f.tell() == len(PATTERN) * 3
        assert receiver.get() == PATTERN * 3
    with path.open("rb") as f:
        receiver = gw.spawn(recv_exactly, server, 1000)
        assert client.sendfile(f, offset=10, count=1000) == 1000
        assert f.tell() == 1010
        assert receiver.get() == (PATTERN * 3)[10:1010]
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    with empty.open("rb") as f:
        assert client.sendfile(f) == 0
    receiver = gw.spawn(recv_exactly, server, 50_000)
    assert client.sendfile(io.BytesIO(PATTERN[:50_000])) == 50_000  # send() fallback
    assert receiver.get() == PATTERN[:50_000]
    client.settimeout(0)
    with path.open("rb") as f, pytest.raises(ValueError, match="non-blocking"):
        client.sendfile(f)


def test_sendfile_waits_when_the_peer_is_slow(
    pair: tuple[gs.socket, gs.socket], tmp_path: Path
) -> None:
    client, server = pair
    size = len(PATTERN) * 8
    path = tmp_path / "big"
    path.write_bytes(PATTERN * 8)
    with path.open("rb") as f:
        sender = gw.spawn(client.sendfile, f)
        gw.sleep(0)
        assert not sender.ready()  # the socket buffer filled up: it waits, cooperatively
        assert recv_exactly(server, size) == PATTERN * 8
        assert sender.get() == size


def test_sendfile_error_after_some_data_is_raised(
    pair: tuple[gs.socket, gs.socket], tmp_path: Path
) -> None:
    client, server = pair
    path = tmp_path / "big"
    path.write_bytes(PATTERN * 8)
    with path.open("rb") as f:
        sender = gw.spawn(client.sendfile, f)
        gw.sleep(0)
        server.close()  # the reader goes away: the sender gets a reset or broken pipe
        with pytest.raises(OSError):
            sender.get()
        assert f.tell() > 0


# -------------------------------------------------------------------- makefile


def test_makefile_text_binary_buffered_and_unbuffered(
    pair: tuple[gs.socket, gs.socket],
) -> None:
    client, server = pair
    turn = gw.Queue[str]()

    def talk() -> None:
        # One phase at a time: a buffered reader may read ahead whatever is there.
        with server.makefile("w", encoding="utf-8") as w:
            w.write("first line\nsecond line\n")
        turn.get()
        with server.makefile("wb", buffering=0) as raw:
            raw.write(b"binary line\n")
        turn.get()
        with server.makefile("wb") as buffered:
            buffered.write(b"buffered line\ntail")
        server.shutdown(std.SHUT_WR)

    writer = gw.spawn(talk)
    with client.makefile("r", encoding="utf-8") as text:
        assert text.readline() == "first line\n"
        assert text.readline() == "second line\n"
    turn.put("binary")
    with client.makefile("rb", buffering=0) as raw:
        line = b""
        while not line.endswith(b"\n"):
            line += raw.read(1)
        assert line == b"binary line\n"
    turn.put("buffered")
    with client.makefile("rb") as binary:
        assert binary.readline() == b"buffered line\n"
        assert binary.read() == b"tail"
    writer.get()
    assert client.fileno() >= 0  # the socket outlives its files


def test_makefile_read_write_pair(pair: tuple[gs.socket, gs.socket]) -> None:
    client, server = pair
    echo = gw.spawn(lambda: server.sendall(server.recv(100)))
    with client.makefile("rwb") as f:
        f.write(b"round trip\n")
        f.flush()
        assert f.readline() == b"round trip\n"
    echo.get()


def test_makefile_timeout_marks_the_file(clock: VirtualClock, pair: tuple[gs.socket, ...]) -> None:
    client, _ = pair
    client.settimeout(1.0)
    with client.makefile("rb", buffering=0) as raw:
        with pytest.raises(TimeoutError):
            raw.read(10)
        with pytest.raises(OSError, match="timed out object"):
            raw.read(10)
    assert clock.now() == 1.0


# -------------------------------------------------------------------- timeouts


def test_recv_timeout_on_the_virtual_clock(
    clock: VirtualClock, pair: tuple[gs.socket, ...]
) -> None:
    client, server = pair
    client.settimeout(5.0)
    with pytest.raises(TimeoutError, match="timed out") as exc:
        client.recv(10)
    assert isinstance(exc.value, std.timeout)
    assert clock.now() == 5.0
    server.sendall(b"late")
    assert client.recv(10) == b"late"  # a timeout does not break the socket


def test_a_timeout_restarts_on_each_call(clock: VirtualClock, pair: tuple[gs.socket, ...]) -> None:
    client, server = pair
    client.settimeout(3.0)

    def trickle() -> None:
        for chunk in (b"a", b"b"):
            gw.sleep(2.0)
            server.sendall(chunk)

    g = gw.spawn(trickle)
    assert client.recv(1) == b"a" and clock.now() == 2.0
    assert client.recv(1) == b"b" and clock.now() == 4.0
    g.get()


def test_accept_timeout(clock: VirtualClock, listener: gs.socket) -> None:
    listener.settimeout(2.0)
    with pytest.raises(TimeoutError):
        listener.accept()
    assert clock.now() == 2.0


def test_accept_after_a_timeout_gives_the_default_timeout(listener: gs.socket) -> None:
    listener.settimeout(30.0)
    with gs.create_connection(listener.getsockname()):
        conn, _ = listener.accept()
        with conn:
            assert conn.gettimeout() is None and not os.get_blocking(conn.fileno())


def test_sendall_timeout_covers_the_whole_call(
    clock: VirtualClock, pair: tuple[gs.socket, ...]
) -> None:
    client, server = pair
    client.settimeout(3.0)
    drained = 0

    def slow_reader() -> None:
        nonlocal drained
        for _ in range(2):
            gw.sleep(2.0)  # every wait of the writer is shorter than its timeout...
            drained += len(server.recv(1 << 22))

    reader = gw.spawn(slow_reader)
    with pytest.raises(TimeoutError):
        client.sendall(PATTERN * 64)  # ...but the whole call is not
    assert clock.now() == 3.0
    assert drained > 0  # it did make progress before the deadline
    reader.get()


def test_create_connection_timeout(clock: VirtualClock, hanging_address: tuple[str, int]) -> None:
    with pytest.raises(TimeoutError, match="timed out"):
        gs.create_connection(hanging_address, timeout=4.0)
    assert clock.now() == 4.0


def test_connect_and_connect_ex_timeouts_like_the_stdlib(
    clock: VirtualClock, hanging_address: tuple[str, int]
) -> None:
    with gs.socket() as s:
        s.settimeout(1.0)
        assert s.connect_ex(hanging_address) == errno.EWOULDBLOCK  # the stdlib's value
    with gs.socket() as s:
        s.settimeout(1.0)
        with pytest.raises(TimeoutError):
            s.connect(hanging_address)
    assert clock.now() == 2.0
    with std.socket() as ref:  # the same, for real, on the stdlib (50 ms)
        ref.settimeout(0.05)
        assert ref.connect_ex(hanging_address) == errno.EWOULDBLOCK


def test_connect_without_timeout_waits_cooperatively(listener: gs.socket) -> None:
    others_ran: list[bool] = []
    ticker = gw.spawn(others_ran.append, True)
    with gs.socket() as s:
        s.connect(listener.getsockname())
        assert s.getpeername() == listener.getsockname()
    ticker.get()
    assert others_ran == [True]
    listener.accept()[0].close()


# ------------------------------------------------------------ closing and errors


def test_close_wakes_a_waiting_reader_with_ebadf(
    clock: VirtualClock, pair: tuple[gs.socket, ...]
) -> None:
    client, _ = pair
    reader = gw.spawn(client.recv, 10)
    gw.sleep(0)
    client.close()
    with pytest.raises(OSError) as exc:
        reader.get()
    assert exc.value.errno == errno.EBADF
    assert isinstance(exc.value, ClosedResourceError)
    assert clock.now() == 0.0  # promptly: no timer was involved


def test_close_wakes_a_waiting_accept(listener: gs.socket) -> None:
    acceptor = gw.spawn(listener.accept)
    gw.sleep(0)
    listener.close()
    with pytest.raises(OSError) as exc:
        acceptor.get()
    assert exc.value.errno == errno.EBADF


def test_closing_the_last_makefile_wakes_the_waiter(pair: tuple[gs.socket, ...]) -> None:
    client, _ = pair
    raw = client.makefile("rb", buffering=0)
    reader = gw.spawn(raw.read, 10)
    gw.sleep(0)
    client.close()  # a file is still open: the fd stays, the reader keeps waiting
    gw.sleep(0)
    assert not reader.ready() and client.fileno() >= 0
    raw.close()  # the last reference: _real_close, which tells the hub first
    with pytest.raises(OSError) as exc:
        reader.get()
    assert exc.value.errno == errno.EBADF
    assert client.fileno() == -1


def test_detach_wakes_the_waiter_and_hands_over_a_blocking_fd(
    pair: tuple[gs.socket, ...], fresh_hub: Hub
) -> None:
    client, server = pair
    reader = gw.spawn(client.recv, 10)
    gw.sleep(0)
    fd = client.detach()
    with pytest.raises(OSError) as exc:
        reader.get()
    assert exc.value.errno == errno.EBADF
    assert os.get_blocking(fd)  # what the stdlib would hand over for timeout None
    assert fresh_hub.statistics().fds == 0  # the server side never waited: unregistered
    with gs.fromfd(fd, std.AF_INET, std.SOCK_STREAM) as again:
        server.sendall(b"still here")
        assert again.recv(100) == b"still here"
    os.close(fd)


def test_detach_keeps_non_blocking_mode_for_a_timeout() -> None:
    s = gs.socket()
    s.settimeout(2.0)
    fd = s.detach()
    assert not os.get_blocking(fd)
    os.close(fd)


def test_a_killed_waiter_leaves_the_socket_usable(pair: tuple[gs.socket, ...]) -> None:
    client, server = pair
    reader = gw.spawn(client.recv, 10)
    gw.sleep(0)
    reader.kill()
    server.sendall(b"for the next")
    assert client.recv(100) == b"for the next"


def test_two_readers_on_one_socket_is_an_error(pair: tuple[gs.socket, ...]) -> None:
    client, server = pair
    first = gw.spawn(client.recv, 10)
    gw.sleep(0)
    with pytest.raises(ConcurrentWaitError):
        client.recv(10)
    server.sendall(b"x")
    assert first.get() == b"x"


def test_an_unclosed_socket_is_forgotten_by_the_hub(fresh_hub: Hub) -> None:
    a, b = gs.socketpair()
    g = gw.spawn(lambda ref: ref().recv(1), weakref.ref(a))  # keeps no strong reference
    gw.sleep(0)
    b.sendall(b"x")
    assert g.get() == b"x"
    assert fresh_hub.statistics().fds == 1
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        del a
        gc.collect()
    assert any(issubclass(w.category, ResourceWarning) for w in caught)
    assert fresh_hub.statistics().fds == 0
    b.close()


def test_connect_errors_like_the_stdlib() -> None:
    port = closed_port()
    with gs.socket() as s, std.socket() as ref:
        assert s.connect_ex(("127.0.0.1", port)) == ref.connect_ex(("127.0.0.1", port))
    with gs.socket() as s:
        assert s.connect_ex(("127.0.0.1", port)) == errno.ECONNREFUSED
    with gs.socket() as s, pytest.raises(ConnectionRefusedError) as exc:
        s.connect(("127.0.0.1", port))
    assert exc.value.errno == errno.ECONNREFUSED
    assert str(exc.value) == "[Errno 111] Connection refused"
    with gs.socket() as s, pytest.raises(std.gaierror):
        s.connect(("name.that.does.not.exist.invalid", 80))
    with gs.socket() as s, std.socket() as ref:
        with pytest.raises(TypeError) as expected:
            ref.connect("not an address")
        with pytest.raises(TypeError, match=re.escape(str(expected.value))):
            s.connect("not an address")


def test_create_connection_tries_every_address_and_reports(listener: gs.socket) -> None:
    port = closed_port()
    with pytest.raises(ConnectionRefusedError):
        gs.create_connection(("127.0.0.1", port))
    if sys.version_info >= (3, 11):
        with pytest.raises(ExceptionGroup) as group:  # noqa: F821
            gs.create_connection(("127.0.0.1", port), all_errors=True)
        assert isinstance(group.value.exceptions[0], ConnectionRefusedError)
    source = ("127.0.0.1", closed_port())
    with gs.create_connection(listener.getsockname(), 7.0, source) as c:
        assert c.getsockname() == source and c.gettimeout() == 7.0
    listener.accept()[0].close()


def test_create_connection_with_no_addresses(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dns, "getaddrinfo", lambda *args: [])
    with pytest.raises(OSError, match="getaddrinfo returns an empty list"):
        gs.create_connection(("somewhere", 80))


def test_create_server_is_the_stdlib_one_made_green() -> None:
    with gs.create_server(("127.0.0.1", 0), backlog=5, reuse_port=True) as srv:
        assert type(srv) is gs.socket and srv.gettimeout() is None
    with pytest.raises(ValueError) as expected:
        std.create_server(("127.0.0.1", 0), dualstack_ipv6=True)
    with pytest.raises(ValueError, match=re.escape(str(expected.value))):
        gs.create_server(("127.0.0.1", 0), dualstack_ipv6=True)
    blocker = std.create_server(("127.0.0.1", 0))
    with pytest.raises(OSError, match="while attempting to bind"):
        gs.create_server(blocker.getsockname())
    blocker.close()


# ----------------------------------------------------------- non-blocking mode


def _non_blocking_story(module: Any) -> list[object]:
    """Outcomes of the same non-blocking calls, for the stdlib or the green module."""
    import select

    outcomes: list[object] = []

    def attempt(call: Any) -> None:
        try:
            result = call()
        except OSError as e:
            outcomes.append((type(e).__name__, e.errno))
        else:
            outcomes.append(("ok", result if isinstance(result, int) else None))

    lst = module.socket()
    lst.bind(("127.0.0.1", 0))
    lst.listen()
    lst.setblocking(False)
    attempt(lst.accept)
    c = module.socket()
    c.setblocking(False)
    outcomes.append((c.gettimeout(), c.getblocking()))
    attempt(lambda: c.connect(lst.getsockname()))
    select.select([lst], [c], [], 5.0)
    lst.setblocking(True)
    conn, _ = lst.accept()
    conn.setblocking(False)
    buf = bytearray(10)
    attempt(lambda: conn.recv(10))
    attempt(lambda: conn.recv_into(buf))
    attempt(lambda: conn.recvfrom(10))
    attempt(lambda: conn.recvfrom_into(buf))
    attempt(lambda: conn.recvmsg(10))
    attempt(lambda: conn.recvmsg_into([buf]))
    attempt(lambda: c.connect_ex(lst.getsockname()))
    attempt(lambda: c.sendall(PATTERN * 64))  # some goes, then it would block
    while True:  # fill the buffers
        try:
            c.send(PATTERN)
        except BlockingIOError as e:
            outcomes.append(("full", e.errno))
            break
    attempt(lambda: c.sendall(PATTERN))
    attempt(lambda: c.send(b"x"))
    attempt(lambda: c.sendmsg([b"x"]))
    fresh = module.socket()
    fresh.setblocking(False)
    attempt(lambda: fresh.connect_ex(lst.getsockname()))
    for s in (fresh, conn, c, lst):
        s.close()
    return outcomes


def test_non_blocking_mode_matches_the_stdlib_call_by_call() -> None:
    expected = _non_blocking_story(std)
    assert ("BlockingIOError", errno.EAGAIN) in expected
    assert _non_blocking_story(gs) == expected


# ------------------------------------------------------ dup, fromfd, socketpair


def test_dup_shares_the_connection_and_closes_independently(
    pair: tuple[gs.socket, gs.socket],
) -> None:
    client, server = pair
    client.settimeout(7.0)
    twin = client.dup()
    assert type(twin) is gs.socket and twin.gettimeout() == 7.0
    assert twin.fileno() != client.fileno()
    for sock, data in ((client, b"1"), (twin, b"2")):  # both wait: both are registered
        g = gw.spawn(sock.recv, 10)
        gw.sleep(0)
        server.sendall(data)
        assert g.get() == data
    client.close()
    g = gw.spawn(twin.recv, 10)
    gw.sleep(0)
    server.sendall(b"3")
    assert g.get() == b"3"
    twin.close()


def test_fromfd_makes_a_green_socket_on_a_duplicate(pair: tuple[gs.socket, gs.socket]) -> None:
    client, server = pair
    with gs.fromfd(server.fileno(), std.AF_INET, std.SOCK_STREAM) as copy:
        assert type(copy) is gs.socket and copy.fileno() != server.fileno()
        g = gw.spawn(copy.recv, 10)
        gw.sleep(0)
        client.sendall(b"via copy")
        assert g.get() == b"via copy"


def test_socketpair_is_green_and_follows_the_stdlib_defaults() -> None:
    a, b = gs.socketpair()
    with a, b:
        assert type(a) is gs.socket and a.family == std.AF_UNIX
        g = gw.spawn(b.recv, 10)
        gw.sleep(0)
        a.sendall(b"pair")
        assert g.get() == b"pair"
        b.sendall(b"back")
        assert a.recv(10) == b"back"
    a, b = gs.socketpair(std.AF_UNIX, std.SOCK_STREAM | std.SOCK_NONBLOCK)
    with a, b:
        assert a.gettimeout() == 0.0 and a.type == std.SOCK_STREAM
        with pytest.raises(BlockingIOError):
            a.recv(1)


def _has_ipv6_loopback() -> bool:
    if not std.has_ipv6:
        return False
    try:
        with std.socket(std.AF_INET6) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.skipif(not _has_ipv6_loopback(), reason="this machine has no IPv6 loopback (::1)")
def test_ipv6_loopback_echo() -> None:
    with gs.create_server(("::1", 0), family=std.AF_INET6) as srv:

        def echo_once() -> None:
            conn, _ = srv.accept()
            with conn:
                conn.sendall(conn.recv(100))

        g = gw.spawn(echo_once)
        with gs.create_connection(("::1", srv.getsockname()[1]), timeout=10) as c:
            assert c.family == std.AF_INET6
            c.sendall(b"over ipv6")
            assert c.recv(100) == b"over ipv6"
        g.get()


def test_unix_stream_connect(tmp_path: Path) -> None:
    path = str(tmp_path / "sock")
    with gs.socket(std.AF_UNIX, std.SOCK_STREAM) as srv:
        srv.bind(path)
        srv.listen()
        with gs.socket(std.AF_UNIX, std.SOCK_STREAM) as c:
            c.connect(path)
            conn, _ = srv.accept()
            with conn:
                c.sendall(b"unix")
                assert conn.recv(10) == b"unix"


def test_unix_connect_to_a_full_backlog(clock: VirtualClock, tmp_path: Path) -> None:
    path = str(tmp_path / "sock")
    srv = std.socket(std.AF_UNIX, std.SOCK_STREAM)
    srv.bind(path)
    srv.listen(0)
    queued = std.socket(std.AF_UNIX, std.SOCK_STREAM)
    queued.setblocking(False)
    queued.connect_ex(path)  # takes the only place in the backlog
    try:
        # With a timeout the stdlib does not wait for room: EAGAIN at once.
        with gs.socket(std.AF_UNIX, std.SOCK_STREAM) as c, std.socket(std.AF_UNIX) as ref:
            c.settimeout(1.0)
            ref.settimeout(1.0)
            assert c.connect_ex(path) == ref.connect_ex(path) == errno.EAGAIN
            with pytest.raises(BlockingIOError):
                c.connect(path)
        assert clock.now() == 0.0
        # Blocking, it waits for room (the kernel would): nothing signals it, so it looks
        # again now and then, cooperatively.
        with gs.socket(std.AF_UNIX, std.SOCK_STREAM) as c:
            connector = gw.spawn(c.connect, path)
            gw.sleep(0.01)
            assert not connector.ready()
            srv.accept()[0].close()
            connector.get()
            assert c.getpeername() == path
    finally:
        queued.close()
        srv.close()


def test_a_socket_can_move_to_another_thread(pair: tuple[gs.socket, gs.socket]) -> None:
    import threading

    from greenwire._core import get_hub

    client, server = pair
    g = gw.spawn(client.recv, 10)  # registered with this thread's hub
    gw.sleep(0)
    server.sendall(b"a")
    assert g.get() == b"a"
    outcome: list[object] = []

    def in_thread() -> None:
        try:
            client.settimeout(0.05)  # a real wait on the thread's own hub
            client.recv(10)
        except TimeoutError as e:
            outcome.append(e)
        finally:
            client.settimeout(None)
            get_hub().destroy()

    t = threading.Thread(target=in_thread)
    t.start()
    t.join(10)
    assert len(outcome) == 1 and isinstance(outcome[0], TimeoutError)
    g = gw.spawn(client.recv, 10)  # and back on this thread's hub
    gw.sleep(0)
    server.sendall(b"b")
    assert g.get() == b"b"


# ------------------------------------------------------------ patched by hand

PATCH_BY_HAND = """
import socket
from greenwire.green import record_original
from greenwire.green import dns as gdns, socket as gsocket
for module in (gsocket, gdns):
    for name in module.__implements__:
        record_original("socket", name, getattr(socket, name))
        setattr(socket, name, getattr(module, name))
"""


def run_patched(code: str) -> str:
    proc = subprocess.run(
        [sys.executable, "-c", PATCH_BY_HAND + textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_stdlib_http_server_and_client_cooperate_when_patched() -> None:
    out = run_patched(
        """
        import http.client, http.server, socketserver
        import greenwire as gw
        from greenwire.green import original

        assert socket.socket is gsocket.socket and socket.getaddrinfo is gdns.getaddrinfo
        assert original("socket", "socket") is not gsocket.socket
        everyone = gw.Event()
        paths = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                paths.append(self.path)
                if len(paths) == 10:
                    everyone.set()
                everyone.wait()  # only answers once all ten asked: needs concurrency
                body = self.path.encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        server = socketserver.TCPServer(("127.0.0.1", 0), Handler)
        assert isinstance(server.socket, gsocket.socket)
        port = server.server_address[1]

        def serve():
            for _ in range(10):
                conn, addr = server.socket.accept()
                gw.spawn(server.finish_request, conn, addr).link(lambda g: conn.close())

        def get(i):
            c = http.client.HTTPConnection("localhost", port, timeout=10)
            c.request("GET", f"/item{i}")
            r = c.getresponse()
            body = r.read()
            c.close()
            return r.status, body

        acceptor = gw.spawn(serve)
        clients = [gw.spawn(get, i) for i in range(10)]
        results = [g.get() for g in clients]
        acceptor.get()
        server.server_close()
        assert results == [(200, f"/item{i}".encode()) for i in range(10)], results
        print("ok", len(results))
        """
    )
    assert out.strip() == "ok 10"


def test_stdlib_create_connection_and_makefile_when_patched() -> None:
    out = run_patched(
        """
        import greenwire as gw

        listener = socket.create_server(("127.0.0.1", 0))
        assert type(listener) is gsocket.socket

        def serve():
            conn, _ = listener.accept()
            with conn, conn.makefile("rwb") as f:
                for line in f:
                    f.write(line.upper())
                    f.flush()

        g = gw.spawn(serve)
        with socket.create_connection(listener.getsockname(), timeout=5) as c:
            with c.makefile("rw", encoding="ascii") as f:
                for word in ("alpha", "beta"):
                    f.write(word + "\\n")
                    f.flush()
                    print(f.readline().strip())
        g.get()
        listener.close()
        """
    )
    assert out.split() == ["ALPHA", "BETA"]


# ----------------------------------------------- waiting: full buffers, hints


def fill(sock: gs.socket) -> int:
    """Send until the socket's buffers are full; return how many bytes went."""
    timeout = sock.gettimeout()
    sock.setblocking(False)
    sent = 0
    try:
        while True:
            sent += sock.send(PATTERN[:65536])
    except BlockingIOError:
        pass
    sock.settimeout(timeout)
    return sent


def test_send_and_sendall_wait_for_room(pair: tuple[gs.socket, gs.socket]) -> None:
    client, server = pair
    queued = fill(client)
    one = gw.spawn(client.send, b"after send")
    gw.sleep(0)
    assert not one.ready()
    assert len(recv_exactly(server, queued)) == queued
    assert one.get() == len(b"after send")
    assert recv_exactly(server, one.get()) == b"after send"
    queued = fill(client)
    all_ = gw.spawn(client.sendall, b"after sendall")
    gw.sleep(0)
    assert not all_.ready()
    recv_exactly(server, queued)
    all_.get()
    assert recv_exactly(server, len(b"after sendall")) == b"after sendall"


def test_sendto_and_sendmsg_wait_for_room_on_a_datagram_socket(tmp_path: Path) -> None:
    path = str(tmp_path / "dgram")
    with gs.socket(std.AF_UNIX, std.SOCK_DGRAM) as rx, gs.socket(std.AF_UNIX, std.SOCK_DGRAM) as tx:
        rx.bind(path)
        for send in (lambda: tx.sendto(b"late", path), lambda: tx.sendmsg([b"late"], [], 0, path)):
            tx.setblocking(False)
            queued = 0
            try:
                while True:
                    tx.sendto(b"x" * 100, path)
                    queued += 1
            except BlockingIOError:
                pass
            tx.setblocking(True)
            g = gw.spawn(send)
            gw.sleep(0)
            assert not g.ready()
            for _ in range(queued):
                rx.recv(1000)
            assert g.get() == 4
            assert rx.recv(100) == b"late"


def test_sendall_of_a_small_buffer_object(pair: tuple[gs.socket, gs.socket]) -> None:
    import array

    client, server = pair
    client.sendall(array.array("h", [1, 2, 3]))
    assert recv_exactly(server, 6) == array.array("h", [1, 2, 3]).tobytes()


def test_spurious_wake_ups_are_retried(clock: VirtualClock, pair: tuple[gs.socket, ...]) -> None:
    client, server = pair
    hub = gw.get_hub()
    buf = bytearray(10)
    a, b = gs.socketpair()
    a.settimeout(30.0)
    listener = gs.create_server(("127.0.0.1", 0))
    connected = []
    waiters = [
        (gw.spawn(client.recv, 10), lambda: server.sendall(b"real")),
        (gw.spawn(server.recv_into, buf), lambda: client.sendall(b"real")),
        (gw.spawn(a.recv_into, buf, 4), lambda: b.sendall(b"real")),  # with a timeout
        (
            gw.spawn(listener.accept),
            lambda: connected.append(gs.create_connection(listener.getsockname())),
        ),
    ]
    gw.sleep(0)
    for waiter, _ in waiters:
        hub.run_callback(waiter.switch)  # a stale wake-up: nothing there, it waits again
    gw.sleep(0)
    for waiter, wake in waiters:
        assert not waiter.ready()
        wake()
        assert waiter.get()
    accepted, _ = waiters[-1][0].get()
    for sock in (accepted, *connected, listener, a, b):
        sock.close()
    client.settimeout(5.0)
    timed = gw.spawn(client.recv, 10)
    hub.call_at(2.0, timed.switch)
    with pytest.raises(TimeoutError):
        timed.get()
    assert clock.now() == 5.0  # the deadline did not move


def test_a_wake_up_at_the_deadline_times_out(
    clock: VirtualClock, pair: tuple[gs.socket, ...]
) -> None:
    client, _ = pair
    hub = gw.get_hub()
    client.settimeout(5.0)
    timed = gw.spawn(client.recv, 10)
    hub.call_at(5.0, timed.switch)  # runs before the wait's own timer at the same time
    with pytest.raises(TimeoutError, match="timed out"):
        timed.get()
    queued = fill(client)
    assert queued > 0
    writer = gw.spawn(client.sendall, PATTERN)
    hub.call_at(10.0, writer.switch)
    with pytest.raises(TimeoutError, match="timed out"):
        writer.get()
    assert clock.now() == 10.0


def test_connect_survives_spurious_wake_ups(
    clock: VirtualClock, hanging_address: tuple[str, int]
) -> None:
    hub = gw.get_hub()
    with gs.socket() as s:
        s.settimeout(3.0)
        connector = gw.spawn(s.connect, hanging_address)
        hub.call_at(1.0, connector.switch)  # SO_ERROR 0, then connect says EALREADY
        with pytest.raises(TimeoutError):
            connector.get()
        assert clock.now() == 3.0
    with gs.socket() as s:
        s.settimeout(2.0)
        connector = gw.spawn(s.connect, hanging_address)
        hub.call_at(5.0, connector.switch)  # exactly at the deadline
        with pytest.raises(TimeoutError):
            connector.get()
        assert clock.now() == 5.0
    with gs.socket() as s:
        connector = gw.spawn(s.connect, hanging_address)
        hub.call_at(6.0, connector.switch)
        gw.sleep(2.0)
        assert not connector.ready()  # still waiting, no timeout
        connector.kill()


def test_sendfile_falls_back_when_the_file_cannot_be_stat(
    pair: tuple[gs.socket, gs.socket],
) -> None:
    client, server = pair

    class Odd(io.BytesIO):
        mode = "rb"

        def fileno(self) -> int:
            return 10_000  # not an open fd: fstat fails, send() takes over

    assert client.sendfile(Odd(b"fallback")) == 8
    assert recv_exactly(server, 8) == b"fallback"


def test_adopting_a_green_socket_keeps_it_and_odd_types_work() -> None:
    class Kind:
        def __index__(self) -> int:
            return int(std.SOCK_STREAM)

    with gs.socket(std.AF_INET, Kind()) as s:  # type: ignore[arg-type]
        assert gs._adopt(s) is s
        assert s.gettimeout() is None and not os.get_blocking(s.fileno())


def test_a_failure_seen_on_the_confirming_connect_is_reported(
    monkeypatch: pytest.MonkeyPatch, clock: VirtualClock, hanging_address: tuple[str, int]
) -> None:
    calls = []
    real_connect_ex = gs._c_connect_ex

    def connect_ex(sock: Any, address: Any) -> int:
        calls.append(address)
        return real_connect_ex(sock, address) if len(calls) == 1 else errno.ENETUNREACH

    monkeypatch.setattr(gs, "_c_connect_ex", connect_ex)
    with gs.socket() as s:
        connector = gw.spawn(s.connect_ex, hanging_address)
        gw.get_hub().call_at(1.0, connector.switch)  # writable "hint": confirm by connect
        assert connector.get() == errno.ENETUNREACH


def test_sendfile_falls_back_when_os_sendfile_refuses_the_file(
    pair: tuple[gs.socket, gs.socket], tmp_path: Path
) -> None:
    client, server = pair
    path = tmp_path / "write-only"
    path.write_bytes(b"refused by sendfile")
    fd = os.open(path, os.O_WRONLY)

    class WriteOnlyUnderneath(io.BytesIO):
        mode = "rb"

        def fileno(self) -> int:
            return fd  # os.sendfile says EBADF before sending anything

    try:
        assert client.sendfile(WriteOnlyUnderneath(b"sent by send()")) == 14
    finally:
        os.close(fd)
    assert recv_exactly(server, 14) == b"sent by send()"


def test_module_functions_honour_what_is_patched_over_them_later(
    monkeypatch: pytest.MonkeyPatch, listener: gs.socket
) -> None:
    real_getaddrinfo, plain_socket = std.getaddrinfo, std.socket

    class Instrumented(gs.socket):
        __slots__ = ()

    looked_up: list[str] = []

    def fake_getaddrinfo(host: str, port: int, *args: Any) -> Any:
        looked_up.append(host)
        return real_getaddrinfo("127.0.0.1", port, *args)

    monkeypatch.setattr(std, "socket", Instrumented)
    monkeypatch.setattr(std, "getaddrinfo", fake_getaddrinfo)
    with gs.create_connection(("mocked-name", listener.getsockname()[1])) as c:
        assert type(c) is Instrumented
    assert looked_up == ["mocked-name"]
    listener.accept()[0].close()
    a, b = gs.socketpair()
    with a, b:
        assert type(a) is Instrumented
    monkeypatch.setattr(std, "socket", type("NotGreen", (plain_socket,), {"__slots__": ()}))
    a, b = gs.socketpair()  # a class that is not green is not used
    with a, b:
        assert type(a) is gs.socket


def test_msg_dontwait_on_a_blocking_socket_does_not_wait(
    clock: VirtualClock, pair: tuple[gs.socket, gs.socket], tmp_path: Path
) -> None:
    client, server = pair
    nowait = std.MSG_DONTWAIT
    buf = bytearray(10)
    for call in (
        lambda: client.recv(10, nowait),
        lambda: client.recv_into(buf, 0, nowait),
        lambda: client.recvfrom(10, nowait),
        lambda: client.recvfrom_into(buf, 0, nowait),
        lambda: client.recvmsg(10, 0, nowait),
        lambda: client.recvmsg_into([buf], 0, nowait),
    ):
        with pytest.raises(BlockingIOError):
            call()
    fill(client)
    for call in (
        lambda: client.send(b"x", nowait),
        lambda: client.sendall(b"x", nowait),
        lambda: client.sendall(PATTERN * 8, nowait),
        lambda: client.sendmsg([b"x"], [], nowait),
    ):
        with pytest.raises(BlockingIOError):
            call()
    with gs.socket(std.AF_UNIX, std.SOCK_DGRAM) as rx, gs.socket(std.AF_UNIX, std.SOCK_DGRAM) as tx:
        path = str(tmp_path / "dgram")
        rx.bind(path)
        with pytest.raises(BlockingIOError):
            while True:
                tx.sendto(b"x" * 100, nowait, path)
    assert clock.now() == 0.0
    client.settimeout(2.0)  # with a timeout the stdlib polls first: it does wait
    with pytest.raises(TimeoutError):
        client.recv(10, nowait)
    assert clock.now() == 2.0


def test_one_shot_iterables_survive_a_wait() -> None:
    a, b = gs.socketpair()
    with a, b:
        buf = bytearray(5)
        reader = gw.spawn(b.recvmsg_into, (x for x in [buf]))
        gw.sleep(0)
        a.sendall(b"gen!!")
        assert reader.get()[0] == 5 and buf == b"gen!!"
        queued = fill(a)
        writer = gw.spawn(a.sendmsg, (x for x in [b"after", b" full"]), iter([]))
        gw.sleep(0)
        assert not writer.ready()
        assert len(recv_exactly(b, queued)) == queued
        assert writer.get() == 10
        assert recv_exactly(b, 10) == b"after full"
        with pytest.raises(TypeError):
            a.sendmsg(42)


def test_flags_and_sizes_bypass_the_fast_reader(pair: tuple[gs.socket, gs.socket]) -> None:
    client, server = pair
    hub = gw.get_hub()
    first = gw.spawn(client.recv, 10)  # waits once: the fast reader is made
    gw.sleep(0)
    server.sendall(b"first")
    assert first.get() == b"first"
    buf = bytearray(10)
    for call, expected in (
        (lambda: client.recv(10, std.MSG_PEEK), b"peeked"),
        (lambda: client.recv_into(buf, 3, std.MSG_PEEK), 3),
        (lambda: client.recv_into(buf, 4), 4),
        (lambda: client.recv(0), b""),
    ):
        waiter = gw.spawn(call)
        gw.sleep(0)
        hub.run_callback(waiter.switch)  # a stale wake-up on the way
        gw.sleep(0)
        if expected:
            assert not waiter.ready()
            server.sendall(b"peeked")
        assert waiter.get() == expected
        if expected == b"peeked" or expected == 3:
            assert client.recv(100) == b"peeked"  # a peek leaves the data in place
        elif expected == 4:
            assert buf[:4] == b"peek" and client.recv(100) == b"ed"


def test_a_closed_socket_never_reads_through_its_old_fd_number(
    pair: tuple[gs.socket, gs.socket],
) -> None:
    client, server = pair
    first = gw.spawn(client.recv, 10)  # the fast reader is made
    gw.sleep(0)
    server.sendall(b"x")
    assert first.get() == b"x"
    client.close()
    a, b = gs.socketpair()  # very likely takes the freed number
    with a, b:
        b.sendall(b"not yours")
        with pytest.raises(OSError) as exc:
            client.recv(100)
        assert exc.value.errno == errno.EBADF
        assert a.recv(100) == b"not yours"


def test_a_keyboard_interrupt_raised_in_the_finalizer_reaches_the_main_greenlet(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A Ctrl-C that arrives while a socket's finalizer runs raises there, where Python
    # would print and drop it; the socket passes it on to the main greenlet instead.
    a, b = gs.socketpair()
    gw.spawn(b.sendall, b"x")
    got = a.recv(1)  # it waited, so its hub knows it
    b.close()
    known = a._hub is not None
    fd = a.fileno()
    sockets = [a]
    del a

    def interrupted(self: gs.socket) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(gs.socket, "_forget_fd", interrupted)
    gw.spawn(sockets.clear)  # the finalizer runs there, in that greenlet
    with pytest.raises(KeyboardInterrupt):
        # The main greenlet parks, the drop runs (and queues the interrupt behind the
        # main greenlet's own wake-up), and the next park gets the interrupt.
        gw.sleep(0)
        gw.sleep(0)
    assert got == b"x" and known
    with pytest.raises(OSError):
        os.fstat(fd)  # closed all the same
