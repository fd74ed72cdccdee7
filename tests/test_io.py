"""Readiness waits on real sockets, for both backends: the edge-triggered traps."""

from __future__ import annotations

import os
import socket
import struct

import pytest

import greenwire
from greenwire import ClosedResourceError, ConcurrentWaitError, wait_readable, wait_writable
from greenwire._core import Hub


def recv(sock: socket.socket, n: int = 65536) -> bytes:
    """The canonical pattern: try first, wait only on BlockingIOError."""
    while True:
        try:
            return sock.recv(n)
        except BlockingIOError:
            wait_readable(sock)


def test_reader_wakes_when_data_arrives(hub: Hub, pair: tuple[socket.socket, ...]) -> None:
    a, b = pair
    g = greenwire.spawn(recv, a)
    greenwire.sleep(0)
    assert not g.ready()
    b.send(b"hello")
    assert g.get() == b"hello"
    assert hub.statistics().io_waiters == 0


def test_edge_arriving_while_nobody_waits_is_not_lost(
    hub: Hub, pair: tuple[socket.socket, ...]
) -> None:
    a, b = pair
    wait_writable(a)  # registers a with the backend
    b.send(b"x")
    # Let the hub poll once while nobody waits on a: the read edge is consumed here.
    hub.park_one_turn()
    # A level-triggered backend sees the data again; an edge-triggered one must have
    # remembered it. Either way the wait returns without the 5 s timeout firing.
    wait_readable(a, timeout=5)
    assert a.recv(10) == b"x"


def test_spurious_wakeups_are_harmless(hub: Hub, pair: tuple[socket.socket, ...]) -> None:
    a, b = pair
    wakeups = [0]

    def reader() -> bytes:
        data = b""
        while len(data) < 6:
            try:
                chunk = a.recv(100)
            except BlockingIOError:
                wait_readable(a)
                wakeups[0] += 1
                continue
            data += chunk
        return data

    g = greenwire.spawn(reader)
    greenwire.sleep(0)
    b.send(b"abc")
    hub.park_one_turn()  # the reader takes "abc" and waits again
    assert wakeups[0] == 1
    hub.run_callback(a_switch_spuriously, g)  # a stale wake-up: nothing to read
    hub.park_one_turn()
    b.send(b"def")
    assert g.get() == b"abcdef"
    assert wakeups[0] >= 2


def a_switch_spuriously(g: greenwire.Greenlet[object]) -> None:
    if not g.dead:
        g.switch()


def test_peer_half_close_wakes_reader_with_eof(hub: Hub, pair: tuple[socket.socket, ...]) -> None:
    a, b = pair
    g = greenwire.spawn(recv, a)
    greenwire.sleep(0)
    b.shutdown(socket.SHUT_WR)
    assert g.get() == b""
    # The other direction still works after the peer's half-close.
    a.send(b"still here")
    assert recv(b) == b"still here"


def test_peer_reset_wakes_reader_with_error(hub: Hub) -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    client = socket.create_connection(listener.getsockname())
    server, _ = listener.accept()
    listener.close()
    server.setblocking(False)
    try:
        g = greenwire.spawn(recv, server)
        greenwire.sleep(0)
        client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        client.close()
        with pytest.raises(ConnectionResetError):
            g.get()
    finally:
        hub.notify_closing(server)
        server.close()


def test_closing_wakes_reader_and_writer(
    hub: Hub, pair: tuple[socket.socket, ...], hub_errors: list
) -> None:
    a, b = pair
    # Fill a's send buffer so a writer really has to wait.
    try:
        while True:
            a.send(b"x" * 65536)
    except BlockingIOError:
        pass

    def writer() -> None:
        while True:
            try:
                a.send(b"y" * 65536)
            except BlockingIOError:
                wait_writable(a)

    r = greenwire.spawn(recv, a)
    w = greenwire.spawn(writer)
    greenwire.sleep(0)
    assert hub.statistics().io_waiters == 2
    hub.notify_closing(a)
    a.close()
    with pytest.raises(ClosedResourceError):
        r.get()
    with pytest.raises(ClosedResourceError) as info:
        w.get()
    assert isinstance(info.value, OSError)
    # Nobody was waiting on the writer when it failed, so the hub reported it once.
    assert [(c, type(e)) for c, e in hub_errors] == [(w, ClosedResourceError)]
    assert hub.statistics().io_waiters == 0
    hub.notify_closing(a)  # a second notice is harmless


def test_fd_number_reused_after_close(hub: Hub) -> None:
    a, b = socket.socketpair()
    a.setblocking(False)
    wait_writable(a)
    fd = a.fileno()
    hub.notify_closing(a)
    a.close()
    b.close()
    c, d = socket.socketpair()
    c.setblocking(False)
    try:
        assert fd in (c.fileno(), d.fileno())
        reused = c if c.fileno() == fd else d
        other = d if reused is c else c
        reused.setblocking(False)
        g = greenwire.spawn(recv, reused)
        greenwire.sleep(0)
        other.send(b"new socket")
        assert g.get() == b"new socket"
    finally:
        for s in (c, d):
            hub.notify_closing(s)
            s.close()


def test_fd_reused_without_notice_by_another_object(hub: Hub) -> None:
    a, b = socket.socketpair()
    a.setblocking(False)
    wait_writable(a)
    fd = a.fileno()
    a.close()  # forgot notify_closing
    b.close()
    c, d = socket.socketpair()
    try:
        reused, other = (c, d) if c.fileno() == fd else (d, c)
        assert reused.fileno() == fd
        reused.setblocking(False)
        g = greenwire.spawn(recv, reused)  # passes the object: the hub notices
        greenwire.sleep(0)
        other.send(b"noticed")
        assert g.get() == b"noticed"
    finally:
        for s in (c, d):
            hub.notify_closing(s)
            s.close()


def test_two_readers_on_one_fd(hub: Hub, pair: tuple[socket.socket, ...]) -> None:
    a, b = pair
    first = greenwire.spawn(recv, a)
    greenwire.sleep(0)
    with pytest.raises(ConcurrentWaitError, match="already waiting to read"):
        wait_readable(a)
    # A reader and a writer on the same fd are fine.
    wait_writable(a)
    b.send(b"one")
    assert first.get() == b"one"


def test_two_writers_on_one_fd(hub: Hub, pair: tuple[socket.socket, ...]) -> None:
    a, b = pair
    try:
        while True:
            a.send(b"x" * 65536)
    except BlockingIOError:
        pass
    g = greenwire.spawn(wait_writable, a)
    greenwire.sleep(0)
    with pytest.raises(ConcurrentWaitError, match="already waiting to write"):
        wait_writable(a)
    for _ in range(10_000):  # drain the peer until the writer is woken
        if g.ready():
            break
        try:
            b.recv(1 << 20)
        except BlockingIOError:
            greenwire.sleep(0)
    g.get()


def test_regular_file_is_always_ready(hub: Hub, tmp_path: os.PathLike[str]) -> None:
    path = os.path.join(tmp_path, "f")
    with open(path, "w+b") as f:
        f.write(b"data")
        f.flush()
        wait_readable(f, timeout=1)
        wait_writable(f.fileno(), timeout=1)
        hub.notify_closing(f)


def test_wait_timeout_frees_the_slot(hub: Hub, pair: tuple[socket.socket, ...]) -> None:
    a, b = pair
    start = hub.now()
    with pytest.raises(TimeoutError):
        wait_readable(a, timeout=2.5)
    assert hub.now() - start == pytest.approx(2.5)
    assert hub.statistics().io_waiters == 0
    b.send(b"later")
    wait_readable(a, timeout=2.5)
    assert a.recv(10) == b"later"


def test_killing_a_waiter_frees_the_slot(hub: Hub, pair: tuple[socket.socket, ...]) -> None:
    a, b = pair
    g = greenwire.spawn(recv, a)
    greenwire.sleep(0)
    g.kill()
    assert isinstance(g.value, greenwire.GreenletExit)
    assert hub.statistics().io_waiters == 0
    g2 = greenwire.spawn(recv, a)
    greenwire.sleep(0)
    b.send(b"z")
    assert g2.get() == b"z"


def test_writer_waits_for_peer_to_drain(hub: Hub, pair: tuple[socket.socket, ...]) -> None:
    a, b = pair
    payload = os.urandom(4 << 20)

    def sendall() -> int:
        view = memoryview(payload)
        while view:
            try:
                view = view[a.send(view) :]
            except BlockingIOError:
                wait_writable(a)
        return len(payload)

    def readall() -> bytes:
        chunks = []
        total = 0
        while total < len(payload):
            chunk = recv(b, 1 << 20)
            chunks.append(chunk)
            total += len(chunk)
        return b"".join(chunks)

    w = greenwire.spawn(sendall)
    r = greenwire.spawn(readall)
    assert r.get() == payload
    assert w.get() == len(payload)


def test_many_connections_through_a_listener(hub: Hub) -> None:
    listener = socket.create_server(("127.0.0.1", 0), backlog=128)
    listener.setblocking(False)
    port = listener.getsockname()[1]
    served: list[socket.socket] = []

    def serve_one(conn: socket.socket) -> None:
        conn.setblocking(False)
        served.append(conn)
        data = recv(conn)
        conn.send(data.upper())

    def accept_loop(n: int) -> None:
        for _ in range(n):
            while True:
                try:
                    conn, _ = listener.accept()
                    break
                except BlockingIOError:
                    wait_readable(listener)
            greenwire.spawn(serve_one, conn)

    def client(i: int) -> bytes:
        s = socket.socket()
        s.setblocking(False)
        try:
            try:
                s.connect(("127.0.0.1", port))
            except BlockingIOError:
                wait_writable(s)
            s.send(b"msg%d" % i)
            return recv(s)
        finally:
            hub.notify_closing(s)
            s.close()

    acceptor = greenwire.spawn(accept_loop, 50)
    clients = [greenwire.spawn(client, i) for i in range(50)]
    greenwire.joinall(clients + [acceptor], raise_error=True)
    assert sorted(c.value for c in clients) == sorted(b"MSG%d" % i for i in range(50))
    for conn in served:
        hub.notify_closing(conn)
        conn.close()
    hub.notify_closing(listener)
    listener.close()


def test_invalid_fd_is_refused(hub: Hub) -> None:
    with pytest.raises(ValueError):
        hub.register_fd(-1)


def test_waiting_first_after_a_short_read_loses_nothing(
    hub: Hub, pair: tuple[socket.socket, ...]
) -> None:
    a, b = pair
    messages = [b"m%03d" % i for i in range(200)]

    def reader() -> bytes:
        got = b""
        wait_readable(a)
        while len(got) < 4 * len(messages):
            try:
                chunk = a.recv(4096)
            except BlockingIOError:
                wait_readable(a)
                continue
            got += chunk
            if len(chunk) < 4096 and len(got) < 4 * len(messages):
                wait_readable(a, timeout=5)  # drained: wait for the next edge, no EAGAIN
        return got

    g = greenwire.spawn(reader)
    for i, m in enumerate(messages):
        b.send(m)
        for _ in range(i % 3):  # vary whether the reader is parked or busy
            greenwire.sleep(0)
    assert g.get() == b"".join(messages)
