"""StreamServer: real loopback connections between client greenlets and the server.

Steps are ordered with events and queues. Timing (stop timeouts, back-off, handshake
deadlines) runs on a virtual clock that lets real loopback I/O settle (up to 50 ms) before
it jumps, since the kernel may finish a handshake a moment after the call that caused it.
"""

from __future__ import annotations

import errno
import logging
import socket as std
import ssl
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import trustme

import greenwire as gw
from _server_helpers import has_ipv6_loopback, settling_clock, started_servers
from greenwire._core import Hub, VirtualClock
from greenwire.green import socket as gs
from greenwire.server import StreamServer

LOGGER = "greenwire.server"
PAYLOAD = bytes(range(256)) * 512  # 128 KiB: more than one socket buffer's worth


@pytest.fixture
def clock(fresh_hub: Hub) -> VirtualClock:
    """Virtual time that lets real loopback I/O settle (up to 50 ms) before jumping."""
    return settling_clock(fresh_hub)


def echo(sock: Any, address: Any) -> None:
    while True:
        data = sock.recv(65536)
        if not data:
            return
        sock.sendall(data)


def read_all(sock: Any) -> bytes:
    chunks = []
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


def roundtrip(address: Any, payload: bytes) -> bytes:
    """Send ``payload``, half-close, and return everything the server sent back."""
    family = gs.AF_INET6 if ":" in address[0] else gs.AF_INET
    with gs.socket(family, gs.SOCK_STREAM) as c:
        c.connect(address[:2])
        c.sendall(payload)
        c.shutdown(gs.SHUT_WR)
        return read_all(c)


@pytest.fixture
def serving() -> Iterator[Callable[..., StreamServer]]:
    """Start StreamServers (on 127.0.0.1 by default); each one is stopped at teardown."""
    yield from started_servers(StreamServer)


# ----------------------------------------------------------------- serving


def test_echo_many_clients(serving: Callable[..., StreamServer]) -> None:
    seen: list[tuple[type[Any], int]] = []

    def handle(sock: Any, address: Any) -> None:
        seen.append((type(sock), sock.getsockopt(gs.IPPROTO_TCP, gs.TCP_NODELAY)))
        echo(sock, address)

    server = serving(handle)
    with gw.fail_after(30):
        clients = [gw.spawn(roundtrip, server.address, bytes([i]) * 7 + PAYLOAD) for i in range(40)]
        replies = [c.get() for c in clients]
    assert replies == [bytes([i]) * 7 + PAYLOAD for i in range(40)]
    assert len(seen) == 40
    assert {kind for kind, _ in seen} == {gs.socket}  # green, usable without patching
    assert all(nodelay for _, nodelay in seen)


def test_address_lifecycle_flags_and_context_manager() -> None:
    server = StreamServer(("127.0.0.1", 0), echo)
    assert server.address == ("127.0.0.1", 0)
    assert not server.started and not server.closed and server.socket is None
    with server:
        assert server.started and not server.closed
        host, port = server.address
        assert host == "127.0.0.1" and port > 0
        assert server.server_host == "127.0.0.1" and server.server_port == port
        assert "serving" in repr(server)
        with gw.fail_after(30):
            assert roundtrip(server.address, b"hello") == b"hello"
    assert server.closed and not server.started
    assert server.socket is not None and server.socket.fileno() == -1
    assert "stopped" in repr(server)
    with pytest.raises(RuntimeError, match="cannot be started again"):
        server.start()


def test_start_twice_is_an_error(serving: Callable[..., StreamServer]) -> None:
    server = serving(echo)
    with pytest.raises(RuntimeError, match="already started"):
        server.start()


def test_handler_socket_is_closed_after_the_handler_returns(
    serving: Callable[..., StreamServer],
) -> None:
    kept: list[Any] = []

    def handle(sock: Any, address: Any) -> None:
        kept.append(sock)
        sock.sendall(b"bye")

    server = serving(handle)
    with gw.fail_after(30):
        assert roundtrip(server.address, b"") == b"bye"
    assert kept[0].fileno() == -1


def test_subclass_with_handle_method(serving: Callable[..., StreamServer]) -> None:
    class Upper(StreamServer):
        def handle(self, sock: Any, address: Any) -> None:
            sock.sendall(read_all(sock).upper())

    server = Upper(("127.0.0.1", 0))
    with server, gw.fail_after(30):
        assert roundtrip(server.address, b"abc") == b"ABC"


def test_serve_forever_blocks_until_stop() -> None:
    server = StreamServer(("127.0.0.1", 0), echo)
    runner = gw.spawn(server.serve_forever)
    with gw.fail_after(30):
        while not server.started:
            gw.sleep(0)
        assert roundtrip(server.address, b"x") == b"x"
        assert not runner.ready()
        server.stop()
        runner.get()
    assert server.closed


# ------------------------------------------------------------ the pool cap


class CountingListener(gs.socket):
    """A listening green socket that counts the connections it has accepted."""

    accepted = 0

    def accept(self) -> tuple[gs.socket, Any]:
        result = super().accept()
        self.accepted += 1
        return result


def test_pool_cap_keeps_extra_connections_in_the_backlog(
    serving: Callable[..., StreamServer],
) -> None:
    listener = CountingListener()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    entered: gw.Queue[int] = gw.Queue()
    release = {i: gw.Event() for i in range(3)}

    def handle(sock: Any, address: Any) -> None:
        n = int(sock.recv(1))
        entered.put(n)
        release[n].wait()
        sock.sendall(b"done")

    server = serving(handle, listener, pool=2)

    def client(n: int) -> bytes:
        return roundtrip(server.address, str(n).encode())

    with gw.fail_after(30):
        first = [gw.spawn(client, 0), gw.spawn(client, 1)]
        assert {entered.get(), entered.get()} == {0, 1}
        third = gw.spawn(client, 2)
        gw.idle()  # everything has run that could: the third connection waits...
        assert entered.empty()
        assert len(server.pool) == 2
        assert listener.accepted == 2  # ...unaccepted, in the kernel's backlog
        release[0].set()
        assert first[0].get() == b"done"
        assert entered.get() == 2  # the slot went to the waiting connection
        assert listener.accepted == 3
        release[1].set()
        release[2].set()
        assert first[1].get() == b"done" and third.get() == b"done"


def test_pool_may_be_a_pool_object(serving: Callable[..., StreamServer]) -> None:
    pool = gw.Pool(3)
    server = serving(echo, pool=pool)
    assert server.pool is pool
    with gw.fail_after(30):
        assert [c.get() for c in [gw.spawn(roundtrip, server.address, b"p") for _ in range(6)]] == [
            b"p"
        ] * 6


def test_bad_pool_is_rejected() -> None:
    with pytest.raises(TypeError, match="pool"):
        StreamServer(("127.0.0.1", 0), echo, pool="big")
    with pytest.raises(ValueError, match="positive"):
        StreamServer(("127.0.0.1", 0), echo, pool=0)


# -------------------------------------------------------------- stopping


def test_stop_waits_for_handlers_then_kills_the_rest(clock: VirtualClock) -> None:
    entered: gw.Queue[str] = gw.Queue()
    finished: dict[str, tuple[str, float]] = {}
    polite_may_finish = gw.Event()

    def handle(sock: Any, address: Any) -> None:
        name = sock.recv(16).decode()
        entered.put(name)
        try:
            if name == "polite":
                polite_may_finish.wait()
            else:
                gw.Event().wait()  # never set
        except gw.GreenletExit:
            finished[name] = ("killed", clock.now())
            raise
        finished[name] = ("returned", clock.now())
        sock.sendall(b"ok")

    server = StreamServer(("127.0.0.1", 0), handle)
    server.start()
    address = server.address

    def client(name: str) -> bytes:
        with gs.create_connection(address) as c:
            c.sendall(name.encode())
            return read_all(c)

    with gw.fail_after(60):
        polite, stubborn = gw.spawn(client, "polite"), gw.spawn(client, "stubborn")
        assert {entered.get(), entered.get()} == {"polite", "stubborn"}
        gw.spawn_later(2, polite_may_finish.set)
        start = clock.now()
        server.stop(timeout=5)
        stopped_after = clock.now() - start
        assert polite.get() == b"ok" and stubborn.get() == b""
    assert finished["polite"] == ("returned", pytest.approx(start + 2))
    assert finished["stubborn"] == ("killed", pytest.approx(start + 5))
    assert stopped_after == pytest.approx(5)
    assert len(server.pool) == 0
    with pytest.raises(ConnectionRefusedError), gs.create_connection(address):
        pass


def test_stop_with_no_handlers_returns_at_once(clock: VirtualClock) -> None:
    server = StreamServer(("127.0.0.1", 0), echo)
    server.start()
    server.stop(timeout=10)
    assert clock.now() == 0
    server.stop()  # idempotent
    assert server.closed


def test_stop_before_start_closes_an_adopted_socket() -> None:
    sock = gs.create_server(("127.0.0.1", 0))
    server = StreamServer(sock, echo)
    server.stop()
    assert sock.fileno() == -1 and server.closed


def test_stop_from_a_handler(clock: VirtualClock) -> None:
    other_entered = gw.Event()
    other_outcome: list[str] = []

    def handle(sock: Any, address: Any) -> None:
        command = sock.recv(16)
        if command == b"stop":
            other_entered.wait()
            server.stop(timeout=3)
            server.stop()  # again, from the handler: returns at once
            sock.sendall(b"stopped")
            return
        other_entered.set()
        try:
            gw.Event().wait()
        except gw.GreenletExit:
            other_outcome.append(f"killed at {clock.now():g}")
            raise

    server = StreamServer(("127.0.0.1", 0), handle)
    runner = gw.spawn(server.serve_forever)

    def client(command: bytes) -> bytes:
        with gs.create_connection(server.address) as c:
            c.sendall(command)
            return read_all(c)

    with gw.fail_after(60):
        while not server.started:
            gw.sleep(0)
        other = gw.spawn(client, b"wait")
        stopper = gw.spawn(client, b"stop")
        runner.get()  # serve_forever returned once stop() finished
        server.stop()  # from outside, after the fact: a no-op
        assert stopper.get() == b"stopped"
        assert other.get() == b""
    assert other_outcome == ["killed at 3"]


def test_stop_waits_for_a_stop_already_under_way(clock: VirtualClock) -> None:
    entered = gw.Event()

    def handle(sock: Any, address: Any) -> None:
        entered.set()
        gw.Event().wait()

    server = StreamServer(("127.0.0.1", 0), handle)
    server.start()
    with gw.fail_after(60), gs.create_connection(server.address):
        entered.wait()
        first = gw.spawn(server.stop, 4)
        gw.sleep(0)
        server.stop(timeout=100)  # waits for the first stop instead of starting another
        assert clock.now() == pytest.approx(4)
        first.get()


# ------------------------------------------------------- handler failures


def test_handler_exception_is_logged_and_closes_only_that_connection(
    serving: Callable[..., StreamServer], caplog: pytest.LogCaptureFixture
) -> None:
    boom_seen = gw.Event()

    def handle(sock: Any, address: Any) -> None:
        data = sock.recv(4)
        if data == b"boom":
            boom_seen.set()
            raise ValueError("the handler broke")
        boom_seen.wait()
        sock.sendall(data + read_all(sock))

    server = serving(handle)
    with caplog.at_level(logging.ERROR, logger=LOGGER), gw.fail_after(30):
        survivor = gw.spawn(roundtrip, server.address, b"fine, thanks")
        assert roundtrip(server.address, b"boom") == b""
        assert survivor.get() == b"fine, thanks"
        assert roundtrip(server.address, b"more") == b"more"  # still serving
    [record] = [r for r in caplog.records if r.name == LOGGER]
    assert record.levelno == logging.ERROR
    assert record.exc_info is not None and isinstance(record.exc_info[1], ValueError)
    assert "the handler broke" in caplog.text and "Traceback" in caplog.text


# ------------------------------------------------------- accept failures


class FlakyListener(gs.socket):
    """A listening green socket whose accept() fails as scripted before working."""

    def __init__(self, failures: list[BaseException], clock: VirtualClock) -> None:
        super().__init__(gs.AF_INET, gs.SOCK_STREAM)
        self.bind(("127.0.0.1", 0))
        self.listen()
        self.failures = failures
        self.calls: list[float] = []
        self.clock = clock

    def accept(self) -> tuple[gs.socket, Any]:
        self.calls.append(self.clock.now())
        if self.failures:
            raise self.failures.pop(0)
        return super().accept()


def test_emfile_backs_off_and_retries(
    clock: VirtualClock, caplog: pytest.LogCaptureFixture
) -> None:
    emfile = [OSError(errno.EMFILE, "Too many open files") for _ in range(4)]
    listener = FlakyListener(list(emfile), clock)
    server = StreamServer(listener, echo)
    with caplog.at_level(logging.WARNING, logger=LOGGER), gw.fail_after(60), server:
        assert roundtrip(server.address, b"after the storm") == b"after the storm"
    # Waits of 0.01, 0.02, 0.04, 0.08 between the failed attempts, then a real accept.
    assert listener.calls[:5] == pytest.approx([0, 0.01, 0.03, 0.07, 0.15])
    warnings = [r for r in caplog.records if r.name == LOGGER]
    assert len(warnings) == 4
    assert all(r.levelno == logging.WARNING for r in warnings)
    assert "retrying in 0.08 s" in warnings[-1].getMessage()


def test_backoff_delay_grows_to_max_and_resets_after_success(
    clock: VirtualClock, caplog: pytest.LogCaptureFixture
) -> None:
    failures: list[BaseException] = [OSError(errno.ENFILE, "table full") for _ in range(9)]
    listener = FlakyListener(failures, clock)
    server = StreamServer(listener, echo)
    server.max_delay = 0.5
    with caplog.at_level(logging.WARNING, logger=LOGGER), gw.fail_after(60), server:
        assert roundtrip(server.address, b"1") == b"1"
        # The loop is already waiting in its next accept(); the one after that fails.
        listener.failures.append(OSError(errno.EMFILE, "again"))
        assert roundtrip(server.address, b"2") == b"2"
        assert roundtrip(server.address, b"3") == b"3"
    gaps = [b - a for a, b in zip(listener.calls, listener.calls[1:10], strict=False)]
    assert gaps == pytest.approx([0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.5, 0.5, 0.5])
    delays = [r.getMessage().rpartition("retrying in ")[2] for r in caplog.records]
    # After a successful accept, the next failure waits the minimum again.
    assert delays == ["0.01 s", "0.02 s", "0.04 s", "0.08 s", "0.16 s", "0.32 s"] + [
        "0.5 s"
    ] * 3 + ["0.01 s"]


def test_per_connection_accept_errors_retry_at_once(
    clock: VirtualClock, caplog: pytest.LogCaptureFixture
) -> None:
    failures: list[BaseException] = [
        OSError(errno.ECONNABORTED, "Software caused connection abort"),
        OSError(errno.EPROTO, "Protocol error"),
    ]
    listener = FlakyListener(failures, clock)
    server = StreamServer(listener, echo)
    with caplog.at_level(logging.DEBUG, logger=LOGGER), gw.fail_after(60), server:
        assert roundtrip(server.address, b"ok") == b"ok"
    assert listener.calls[:3] == [0, 0, 0]
    levels = [r.levelno for r in caplog.records if r.name == LOGGER]
    assert levels == [logging.DEBUG, logging.DEBUG]


def test_unexpected_accept_error_is_logged_with_traceback(
    clock: VirtualClock, caplog: pytest.LogCaptureFixture
) -> None:
    listener = FlakyListener([RuntimeError("accept exploded")], clock)
    server = StreamServer(listener, echo)
    with caplog.at_level(logging.WARNING, logger=LOGGER), gw.fail_after(60), server:
        assert roundtrip(server.address, b"ok") == b"ok"
    [record] = [r for r in caplog.records if r.name == LOGGER]
    assert record.levelno == logging.ERROR
    assert record.exc_info is not None and isinstance(record.exc_info[1], RuntimeError)
    assert listener.calls[1] == pytest.approx(0.01)


EMFILE_SCRIPT = """
import logging, os, resource
import greenwire as gw
from greenwire.green import socket as gs
from greenwire.server import StreamServer

refused = gw.Event()

class Watch(logging.Handler):
    def emit(self, record):
        message = record.getMessage()
        if "accept failed" in message and "Too many open files" in message:
            refused.set()

log = logging.getLogger("greenwire.server")
log.addHandler(Watch())
log.setLevel(logging.WARNING)

def handle(sock, address):
    sock.sendall(b"hi")

listener = gs.create_server(("127.0.0.1", 0), backlog=16)
clients = [gs.create_connection(listener.getsockname()) for _ in range(5)]
open_fds = {int(fd) for fd in os.listdir("/proc/self/fd")}
lowest_free = min(set(range(len(open_fds) + 2)) - open_fds)
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (lowest_free, hard))  # no fd can be opened
server = StreamServer(listener, handle)
server.start()
with gw.fail_after(20):
    refused.wait()
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    # No new connection arrives: the back-off retry alone must pick up the queued ones.
    replies = [c.recv(2) for c in clients]
server.stop()
for c in clients:
    c.close()
print(replies)
"""


@pytest.mark.realtime
def test_real_emfile_is_survived_in_a_subprocess() -> None:
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(EMFILE_SCRIPT)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str([b"hi"] * 5)


# ------------------------------------------------ addresses and listeners


@pytest.mark.skipif(
    not has_ipv6_loopback(std.SOCK_STREAM), reason="this machine has no IPv6 loopback (::1)"
)
@pytest.mark.parametrize("listener", [("::1", 0), "[::1]:0"])
def test_ipv6(serving: Callable[..., StreamServer], listener: Any) -> None:
    families: list[int] = []

    def handle(sock: Any, address: Any) -> None:
        families.append(sock.family)
        echo(sock, address)

    server = serving(handle, listener)
    assert server.address[0] == "::1"
    with gw.fail_after(30):
        assert roundtrip(server.address, b"six") == b"six"
    assert families == [gs.AF_INET6]


@pytest.mark.parametrize("listener", ["127.0.0.1:0", ("localhost", 0)])
def test_string_and_host_name_addresses(
    serving: Callable[..., StreamServer], listener: Any
) -> None:
    server = serving(echo, listener)
    assert server.server_port
    with gw.fail_after(30):
        assert roundtrip(server.address, b"named") == b"named"


@pytest.mark.parametrize(
    ("listener", "error", "match"),
    [
        (("127.0.0.1", 70000), ValueError, "port"),
        (("127.0.0.1", "80"), ValueError, "port"),
        ("::1:80", ValueError, "brackets"),
        ("127.0.0.1:http", ValueError, "host:port"),
        (["127.0.0.1", 80], TypeError, "address tuple"),
        ((b"127.0.0.1", 80), TypeError, "host"),
    ],
)
def test_bad_addresses_are_rejected(listener: Any, error: type[Exception], match: str) -> None:
    server = StreamServer(listener, echo)
    with pytest.raises(error, match=match):
        server.start()
    server.stop()


def test_reuse_port_lets_two_servers_share_a_port(
    serving: Callable[..., StreamServer],
) -> None:
    def tagged(tag: bytes) -> Callable[[Any, Any], None]:
        def handle(sock: Any, address: Any) -> None:
            sock.sendall(tag)

        return handle

    first = serving(tagged(b"A"), reuse_port=True)
    port = first.server_port
    second = serving(tagged(b"B"), ("127.0.0.1", port), reuse_port=True)
    assert second.server_port == port
    with gw.fail_after(30):
        tags = {roundtrip(first.address, b"") for _ in range(20)}
        assert tags <= {b"A", b"B"} and tags
        first.stop()
        assert {roundtrip(second.address, b"") for _ in range(5)} == {b"B"}


def test_binding_a_used_port_without_reuse_port_fails_clearly(
    serving: Callable[..., StreamServer],
) -> None:
    first = serving(echo)
    other = StreamServer(first.address, echo)
    with pytest.raises(OSError, match="while binding a server to") as info:
        other.start()
    assert info.value.errno == errno.EADDRINUSE
    other.stop()


def test_adopts_a_plain_listening_socket(serving: Callable[..., StreamServer]) -> None:
    plain = std.socket()
    plain.bind(("127.0.0.1", 0))
    plain.listen()
    address = plain.getsockname()
    server = serving(echo, plain)
    assert plain.fileno() == -1  # detached: the server owns the fd now
    assert isinstance(server.socket, gs.socket)
    assert server.address == address
    with gw.fail_after(30):
        assert roundtrip(address, b"adopted") == b"adopted"


def test_uses_a_green_listening_socket_as_it_is(serving: Callable[..., StreamServer]) -> None:
    green = gs.create_server(("127.0.0.1", 0))
    green.settimeout(0.5)
    server = serving(echo, green)
    assert server.socket is green and green.gettimeout() is None
    with gw.fail_after(30):
        assert roundtrip(server.address, b"green") == b"green"


def test_serves_a_unix_socket(serving: Callable[..., StreamServer], tmp_path: Any) -> None:
    path = str(tmp_path / "s")
    unix = gs.socket(gs.AF_UNIX, gs.SOCK_STREAM)
    unix.bind(path)
    unix.listen()
    server = serving(echo, unix)
    assert server.server_port is None
    with gw.fail_after(30), gs.socket(gs.AF_UNIX, gs.SOCK_STREAM) as c:
        c.connect(path)
        c.sendall(b"local")
        c.shutdown(gs.SHUT_WR)
        assert read_all(c) == b"local"


def test_rejects_sockets_it_cannot_serve() -> None:
    with gs.socket() as not_listening, pytest.raises(ValueError, match="listen"):
        StreamServer(not_listening, echo)
    with gs.socket(gs.AF_INET, gs.SOCK_DGRAM) as udp, pytest.raises(ValueError, match="stream"):
        udp.bind(("127.0.0.1", 0))
        StreamServer(udp, echo)
    closed = gs.socket()
    closed.close()
    with pytest.raises(ValueError, match="closed"):
        StreamServer(closed, echo)


def test_bad_arguments_are_rejected() -> None:
    with pytest.raises(TypeError, match="handle"):
        StreamServer(("127.0.0.1", 0))
    with pytest.raises(TypeError, match="callable"):
        StreamServer(("127.0.0.1", 0), "echo")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="SSLContext"):
        StreamServer(("127.0.0.1", 0), echo, ssl_context=object())
    with pytest.raises(ValueError, match="backlog"):
        StreamServer(("127.0.0.1", 0), echo, backlog=-1)
    with pytest.raises(ValueError, match="stop_timeout"):
        StreamServer(("127.0.0.1", 0), echo, stop_timeout=-1)


def test_accepts_in_batches_and_yields_between_them(
    serving: Callable[..., StreamServer],
) -> None:
    server = StreamServer(("127.0.0.1", 0), echo)
    server.max_batch = 2
    with server, gw.fail_after(30):
        clients = [gw.spawn(roundtrip, server.address, b"%d" % i) for i in range(9)]
        assert [c.get() for c in clients] == [b"%d" % i for i in range(9)]


# ------------------------------------------------------------------- TLS


@pytest.fixture(scope="module")
def tls_contexts() -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """A server context (plain stdlib) with a certificate for localhost, and a client one."""
    ca = trustme.CA()
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert("localhost", "127.0.0.1").configure_cert(server_ctx)
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)
    return server_ctx, client_ctx


def tls_roundtrip(address: Any, client_ctx: ssl.SSLContext, payload: bytes) -> bytes:
    from greenwire.green.ssl import wrap_socket_with

    with wrap_socket_with(
        client_ctx, gs.create_connection(address), server_hostname="localhost"
    ) as c:
        c.sendall(payload)
        return read_all(c)


def test_tls_echo(
    serving: Callable[..., StreamServer], tls_contexts: tuple[ssl.SSLContext, ssl.SSLContext]
) -> None:
    server_ctx, client_ctx = tls_contexts
    seen: list[str] = []

    def handle(sock: Any, address: Any) -> None:
        seen.append(type(sock).__module__)
        data = b""
        while not data.endswith(b"."):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
        sock.sendall(data.upper())

    server = serving(handle, ssl_context=server_ctx)
    with gw.fail_after(30):
        clients = [
            gw.spawn(tls_roundtrip, server.address, client_ctx, b"secret %d." % i)
            for i in range(10)
        ]
        assert [c.get() for c in clients] == [b"SECRET %d." % i for i in range(10)]
    assert all(module.startswith("greenwire.green") for module in seen)


def test_tls_failed_handshake_is_logged_and_never_reaches_the_handler(
    serving: Callable[..., StreamServer],
    tls_contexts: tuple[ssl.SSLContext, ssl.SSLContext],
    caplog: pytest.LogCaptureFixture,
) -> None:
    server_ctx, client_ctx = tls_contexts
    calls: list[Any] = []

    def handle(sock: Any, address: Any) -> None:
        calls.append(address)
        sock.sendall(b"tls ok.")

    server = serving(handle, ssl_context=server_ctx)
    with caplog.at_level(logging.INFO, logger=LOGGER), gw.fail_after(30):
        assert roundtrip(server.address, b"GET / HTTP/1.0\r\n\r\n") == b""
        assert tls_roundtrip(server.address, client_ctx, b"") == b"tls ok."
    assert len(calls) == 1
    [record] = [r for r in caplog.records if r.name == LOGGER]
    assert record.levelno == logging.INFO and "TLS handshake" in record.getMessage()


def test_tls_handshake_timeout(
    clock: VirtualClock,
    tls_contexts: tuple[ssl.SSLContext, ssl.SSLContext],
    caplog: pytest.LogCaptureFixture,
) -> None:
    server_ctx, _ = tls_contexts
    calls: list[Any] = []
    server = StreamServer(
        ("127.0.0.1", 0),
        lambda s, a: calls.append(a),
        ssl_context=server_ctx,
        ssl_handshake_timeout=7,
    )
    with caplog.at_level(logging.INFO, logger=LOGGER), gw.fail_after(60), server:
        start = clock.now()
        with gs.create_connection(server.address) as silent:
            assert read_all(silent) == b""  # the server gave up on the handshake
        assert clock.now() - start == pytest.approx(7, abs=0.1)
    assert calls == []
    assert "TLS handshake" in caplog.text


def test_tls_server_rejects_unknown_context_type() -> None:
    with pytest.raises(TypeError, match="SSLContext"):
        StreamServer(("127.0.0.1", 0), echo, ssl_context="cert.pem")
