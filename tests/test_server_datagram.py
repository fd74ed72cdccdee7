"""DatagramServer: real loopback UDP between client greenlets and the server.

Steps are ordered with events and queues; timing runs on a virtual clock that lets real
loopback I/O settle (up to 50 ms) before it jumps.
"""

from __future__ import annotations

import errno
import logging
import socket as std
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import greenwire as gw
from _server_helpers import has_ipv6_loopback, settling_clock, started_servers
from greenwire._core import Hub, VirtualClock
from greenwire.green import socket as gs
from greenwire.server import DatagramServer

LOGGER = "greenwire.server"


@pytest.fixture
def clock(fresh_hub: Hub) -> VirtualClock:
    """Virtual time that lets real loopback I/O settle (up to 50 ms) before jumping."""
    return settling_clock(fresh_hub)


@pytest.fixture
def serving() -> Iterator[Callable[..., DatagramServer]]:
    """Start DatagramServers (on 127.0.0.1 by default); each one is stopped at teardown."""
    yield from started_servers(DatagramServer)


def ask(address: Any, payload: bytes) -> bytes:
    """Send one datagram to ``address`` and return the first reply."""
    family = gs.AF_INET6 if ":" in address[0] else gs.AF_INET
    with gs.socket(family, gs.SOCK_DGRAM) as c:
        c.sendto(payload, address[:2])
        reply, _ = c.recvfrom(65536)
        return reply


def upper_echo(server_ref: list[DatagramServer]) -> Callable[[bytes, Any], None]:
    def handle(data: bytes, address: Any) -> None:
        server_ref[0].sendto(data.upper(), address)

    return handle


def test_echo_many_clients(serving: Callable[..., DatagramServer]) -> None:
    ref: list[DatagramServer] = []
    server = serving(upper_echo(ref))
    ref.append(server)
    with gw.fail_after(30):
        clients = [gw.spawn(ask, server.address, b"hello %d" % i) for i in range(30)]
        assert [c.get() for c in clients] == [b"HELLO %d" % i for i in range(30)]


def test_lifecycle_and_context_manager() -> None:
    ref: list[DatagramServer] = []
    server = DatagramServer("127.0.0.1:0", upper_echo(ref))
    ref.append(server)
    assert not server.started and not server.closed
    with pytest.raises(RuntimeError, match="not started"):
        server.sendto(b"x", ("127.0.0.1", 9))
    with server, gw.fail_after(30):
        assert server.started and server.server_port
        assert ask(server.address, b"ctx") == b"CTX"
    assert server.closed and not server.started
    assert server.socket is not None and server.socket.fileno() == -1


def test_serve_forever_blocks_until_stop_from_a_handler() -> None:
    def handle(data: bytes, address: Any) -> None:
        server.sendto(b"bye", address)
        server.stop()

    server = DatagramServer(("127.0.0.1", 0), handle)
    runner = gw.spawn(server.serve_forever)
    with gw.fail_after(30):
        while not server.started:
            gw.sleep(0)
        assert ask(server.address, b"stop") == b"bye"
        runner.get()
    assert server.closed


def test_pool_cap_leaves_datagrams_in_the_socket(serving: Callable[..., DatagramServer]) -> None:
    entered: gw.Queue[bytes] = gw.Queue()
    release = gw.Event()

    def handle(data: bytes, address: Any) -> None:
        entered.put(data)
        release.wait()

    server = serving(handle, pool=1)
    with gw.fail_after(30), gs.socket(gs.AF_INET, gs.SOCK_DGRAM) as c:
        c.sendto(b"one", server.address)
        assert entered.get() == b"one"
        c.sendto(b"two", server.address)
        gw.idle()
        assert entered.empty() and len(server.pool) == 1
        release.set()
        assert entered.get() == b"two"


def test_handler_exception_is_logged_and_serving_goes_on(
    serving: Callable[..., DatagramServer], caplog: pytest.LogCaptureFixture
) -> None:
    def handle(data: bytes, address: Any) -> None:
        if data == b"boom":
            raise ValueError("bad datagram")
        server.sendto(data, address)

    with caplog.at_level(logging.ERROR, logger=LOGGER), gw.fail_after(30):
        server = serving(handle)
        with gs.socket(gs.AF_INET, gs.SOCK_DGRAM) as c:
            c.sendto(b"boom", server.address)
            c.sendto(b"fine", server.address)
            assert c.recvfrom(100)[0] == b"fine"
    [record] = [r for r in caplog.records if r.name == LOGGER]
    assert record.exc_info is not None and isinstance(record.exc_info[1], ValueError)
    assert "Traceback" in caplog.text


def test_stop_waits_then_kills(clock: VirtualClock) -> None:
    entered = gw.Event()
    outcome: list[str] = []

    def handle(data: bytes, address: Any) -> None:
        entered.set()
        try:
            gw.Event().wait()
        except gw.GreenletExit:
            outcome.append(f"killed at {clock.now():g}")
            raise

    server = DatagramServer(("127.0.0.1", 0), handle)
    server.start()
    with gw.fail_after(60), gs.socket(gs.AF_INET, gs.SOCK_DGRAM) as c:
        c.sendto(b"hang", server.address)
        entered.wait()
        server.stop(timeout=2.5)
    assert outcome == ["killed at 2.5"]
    assert len(server.pool) == 0


def test_truncates_to_max_datagram_size(serving: Callable[..., DatagramServer]) -> None:
    got: gw.Queue[bytes] = gw.Queue()
    server = serving(lambda data, address: got.put(data), max_datagram_size=4)
    with gw.fail_after(30), gs.socket(gs.AF_INET, gs.SOCK_DGRAM) as c:
        c.sendto(b"abcdefgh", server.address)
        assert got.get() == b"abcd"


class FlakySocket(gs.socket):
    """A bound UDP green socket whose recvfrom() fails as scripted before working."""

    def __init__(self, failures: list[BaseException], clock: VirtualClock) -> None:
        super().__init__(gs.AF_INET, gs.SOCK_DGRAM)
        self.bind(("127.0.0.1", 0))
        self.failures = failures
        self.calls: list[float] = []
        self.clock = clock
        self.full_sends = 0

    def recvfrom(self, bufsize: int, flags: int = 0, /) -> tuple[bytes, Any]:
        self.calls.append(self.clock.now())
        if self.failures:
            raise self.failures.pop(0)
        return super().recvfrom(bufsize, flags)

    def sendto(self, data: Any, *args: Any) -> int:
        if len(args) == 2 and self.full_sends:  # the MSG_DONTWAIT attempt
            self.full_sends -= 1
            raise BlockingIOError(errno.EAGAIN, "send buffer full")
        return super().sendto(data, *args)


def test_receive_errors_back_off_or_retry(
    clock: VirtualClock, caplog: pytest.LogCaptureFixture
) -> None:
    failures: list[BaseException] = [
        OSError(errno.ENOBUFS, "No buffer space available"),
        OSError(errno.ENOBUFS, "No buffer space available"),
        OSError(errno.ECONNREFUSED, "Connection refused"),  # ICMP: retry at once
    ]
    sock = FlakySocket(failures, clock)
    ref: list[DatagramServer] = []
    server = DatagramServer(sock, upper_echo(ref))
    ref.append(server)
    with caplog.at_level(logging.DEBUG, logger=LOGGER), gw.fail_after(60), server:
        assert ask(server.address, b"later") == b"LATER"
    assert sock.calls[:4] == pytest.approx([0, 0.01, 0.03, 0.03])
    levels = [r.levelno for r in caplog.records if r.name == LOGGER]
    assert levels == [logging.WARNING, logging.WARNING, logging.DEBUG]


def test_sendto_waits_in_turn_when_the_buffer_is_full(
    clock: VirtualClock, serving: Callable[..., DatagramServer]
) -> None:
    sock = FlakySocket([], clock)
    sock.full_sends = 3

    def handle(data: bytes, address: Any) -> None:
        server.sendto(data, address)

    server = serving(handle, sock)
    with gw.fail_after(60):
        clients = [gw.spawn(ask, server.address, b"%d" % i) for i in range(5)]
        assert [c.get() for c in clients] == [b"%d" % i for i in range(5)]
    assert sock.full_sends == 0


@pytest.mark.skipif(
    not has_ipv6_loopback(std.SOCK_DGRAM), reason="this machine has no IPv6 loopback (::1)"
)
def test_ipv6(serving: Callable[..., DatagramServer]) -> None:
    ref: list[DatagramServer] = []
    server = serving(upper_echo(ref), ("::1", 0))
    ref.append(server)
    assert server.address[0] == "::1"
    with gw.fail_after(30):
        assert ask(server.address, b"six") == b"SIX"


def test_reuse_port_lets_two_servers_share_a_port(
    serving: Callable[..., DatagramServer],
) -> None:
    def tagged(tag: bytes) -> Callable[[bytes, Any], None]:
        def handle(data: bytes, address: Any) -> None:
            (first if tag == b"A" else second).sendto(tag, address)

        return handle

    first = serving(tagged(b"A"), reuse_port=True)
    second = serving(tagged(b"B"), ("127.0.0.1", first.server_port), reuse_port=True)
    assert second.server_port == first.server_port
    with gw.fail_after(30):
        assert {ask(first.address, b"?") for _ in range(10)} <= {b"A", b"B"}
        first.stop()
        assert {ask(second.address, b"?") for _ in range(3)} == {b"B"}
    with pytest.raises(OSError) as info:
        DatagramServer(second.address, tagged(b"C")).start()
    assert info.value.errno == errno.EADDRINUSE


def test_adopts_a_plain_bound_socket(serving: Callable[..., DatagramServer]) -> None:
    plain = std.socket(std.AF_INET, std.SOCK_DGRAM)
    plain.bind(("127.0.0.1", 0))
    address = plain.getsockname()
    ref: list[DatagramServer] = []
    server = serving(upper_echo(ref), plain)
    ref.append(server)
    assert plain.fileno() == -1 and isinstance(server.socket, gs.socket)
    with gw.fail_after(30):
        assert ask(address, b"adopted") == b"ADOPTED"


def test_rejects_sockets_it_cannot_serve() -> None:
    with gs.socket(gs.AF_INET, gs.SOCK_DGRAM) as unbound, pytest.raises(ValueError, match="bound"):
        DatagramServer(unbound, print)
    with gs.create_server(("127.0.0.1", 0)) as tcp, pytest.raises(ValueError, match="datagram"):
        DatagramServer(tcp, print)
    with pytest.raises(TypeError, match="handle"):
        DatagramServer(("127.0.0.1", 0))
    with pytest.raises(ValueError, match="max_datagram_size"):
        DatagramServer(("127.0.0.1", 0), print, max_datagram_size=0)
