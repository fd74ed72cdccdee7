"""The cooperative ssl module: TLS between greenlets over real loopback sockets.

Timeouts run on a virtual clock that lets real loopback I/O settle (up to 50 ms) before it
jumps. Everything that patches the stdlib runs in a fresh interpreter.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import socket
import ssl as std
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

import greenwire as gw
from _tls_helpers import client_context, server_cert_pem, server_context, write_pem_files
from greenwire import ClosedResourceError
from greenwire._core import Hub, VirtualClock
from greenwire.green import socket as gs
from greenwire.green import ssl as gssl

PATTERN = bytes(range(256)) * 8192  # 2 MiB
SUBPROCESS_TIMEOUT = 60


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


def connect_pair(
    listener: gs.socket, client_ctx: std.SSLContext | None = None, **client_options: object
) -> tuple[gssl.SSLSocket, gssl.SSLSocket]:
    """Handshake a green TLS client with a green TLS server, both in this hub."""
    server_ctx = server_context()  # a plain stdlib context: wrap_socket_with makes it green

    def serve() -> gssl.SSLSocket:
        return gssl.wrap_socket_with(server_ctx, listener.accept()[0], server_side=True)

    accepting = gw.spawn(serve)
    ctx = client_ctx or client_context(gssl.SSLContext)
    options = {"server_hostname": "localhost", **client_options}
    client = ctx.wrap_socket(gs.create_connection(listener.getsockname()), **options)  # type: ignore[arg-type]
    return client, accepting.get()  # type: ignore[return-value]


@pytest.fixture
def pair(listener: gs.socket) -> Iterator[tuple[gssl.SSLSocket, gssl.SSLSocket]]:
    client, server = connect_pair(listener)
    yield client, server
    client.close()
    server.close()


def read_exactly(sock: gssl.SSLSocket, size: int) -> bytes:
    data = bytearray()
    while len(data) < size:
        chunk = sock.recv(65536)
        assert chunk, f"EOF after {len(data)} of {size} bytes"
        data += chunk
    return bytes(data)


# ------------------------------------------------------------------ the module


def test_module_is_a_drop_in_for_ssl() -> None:
    assert gssl.__target__ == "ssl"
    assert gssl.SSLObject is std.SSLObject and gssl.MemoryBIO is std.MemoryBIO
    assert gssl.SSLError is std.SSLError and gssl.CERT_REQUIRED == std.CERT_REQUIRED
    assert issubclass(gssl.SSLContext, std.SSLContext)
    assert issubclass(gssl.SSLSocket, std.SSLSocket) and issubclass(gssl.SSLSocket, gs.socket)
    assert gssl.SSLContext.sslsocket_class is gssl.SSLSocket
    assert std.SSLContext.sslsocket_class is std.SSLSocket  # importing patches nothing
    for name in ("SSLContext", "SSLObject", "MemoryBIO", "wrap_socket_with", "CERT_NONE"):
        assert name in gssl.__all__
    context = gssl.create_default_context()
    assert type(context) is gssl.SSLContext and context.verify_mode == std.CERT_REQUIRED


def test_memory_bio_tls_needs_no_sockets() -> None:
    client_ctx, server_ctx = client_context(gssl.SSLContext), server_context()
    c_in, c_out, s_in, s_out = (gssl.MemoryBIO() for _ in range(4))
    client = client_ctx.wrap_bio(c_in, c_out, server_hostname="localhost")
    server = server_ctx.wrap_bio(s_in, s_out, server_side=True)
    for _ in range(10):
        for obj in (client, server):
            try:
                obj.do_handshake()
            except std.SSLWantReadError:
                pass
        s_in.write(c_out.read())
        c_in.write(s_out.read())
    client.write(b"over memory")
    s_in.write(c_out.read())
    assert server.read(100) == b"over memory"


def test_wrap_socket_with_rejects_what_is_not_a_context(listener: gs.socket) -> None:
    with pytest.raises(TypeError, match="SSLContext"):
        gssl.wrap_socket_with(object(), listener)  # type: ignore[arg-type]


# ---------------------------------------------------------- handshake and data


def test_handshake_and_echo_both_directions_in_one_hub(
    pair: tuple[gssl.SSLSocket, gssl.SSLSocket],
) -> None:
    client, server = pair
    assert type(client) is gssl.SSLSocket and type(server) is gssl.SSLSocket
    assert client.version() == server.version() is not None
    names = set(client.getpeercert()["subjectAltName"])  # type: ignore[index]
    assert names == {("DNS", "localhost"), ("IP Address", "127.0.0.1")}

    def echo() -> int:
        total = 0
        while total < len(PATTERN):
            data = server.recv(65536)
            server.sendall(data)
            total += len(data)
        return total

    echoing = gw.spawn(echo)
    reading = gw.spawn(read_exactly, client, len(PATTERN))
    client.sendall(PATTERN)  # large: both sides must interleave through the hub
    assert reading.get() == PATTERN
    assert echoing.get() == len(PATTERN)


def test_accept_on_a_wrapped_listener_makes_green_server_sockets(listener: gs.socket) -> None:
    # A plain stdlib context: only wrap_socket_with and the listener's accept() make
    # the sockets green.
    wrapped = gssl.wrap_socket_with(server_context(), listener, server_side=True)
    assert listener.fileno() == -1  # detached into the wrapper; the fixture's close is a no-op
    with wrapped:
        accepting = gw.spawn(wrapped.accept)
        with gssl.wrap_socket_with(
            client_context(),
            gs.create_connection(wrapped.getsockname()),
            server_hostname="localhost",
        ) as sock:
            conn, address = accepting.get()
            with conn:
                assert type(conn) is gssl.SSLSocket and conn.server_side
                assert address == sock.getsockname()
                sock.sendall(b"ping")
                assert conn.recv(10) == b"ping"


def test_connect_on_an_unconnected_wrapped_socket(listener: gs.socket) -> None:
    accepting = gw.spawn(
        lambda: gssl.wrap_socket_with(server_context(), listener.accept()[0], server_side=True)
    )
    with client_context(gssl.SSLContext).wrap_socket(
        gs.socket(), server_hostname="localhost"
    ) as client:
        client.connect(listener.getsockname())  # connects, then handshakes
        with accepting.get() as server:
            assert client.version() is not None
            server.sendall(b"hello")
            assert client.recv(10) == b"hello"


def test_do_handshake_on_connect_false(listener: gs.socket) -> None:
    accepting = gw.spawn(
        lambda: gssl.wrap_socket_with(server_context(), listener.accept()[0], server_side=True)
    )
    client, server = (
        gssl.wrap_socket_with(
            client_context(),
            gs.create_connection(listener.getsockname()),
            server_hostname="localhost",
            do_handshake_on_connect=False,
        ),
        accepting,
    )
    with client:
        assert client.version() is None  # nothing happened yet
        client.do_handshake()
        assert client.version() is not None
        with server.get() as conn:
            client.sendall(b"x")
            assert conn.recv(1) == b"x"


def test_pending_read_into_a_buffer_and_recv_into(
    pair: tuple[gssl.SSLSocket, gssl.SSLSocket],
) -> None:
    client, server = pair
    server.sendall(b"0123456789" * 10)  # one record
    assert client.read(10) == b"0123456789"
    assert client.pending() == 90
    buffer = bytearray(20)
    assert client.read(20, buffer) == 20 and buffer == b"0123456789" * 2
    view = memoryview(bytearray(100))
    assert client.recv_into(view, 70) == 70
    assert client.pending() == 0


def test_makefile_lines_both_ways(pair: tuple[gssl.SSLSocket, gssl.SSLSocket]) -> None:
    client, server = pair
    with client.makefile("rb") as reader, server.makefile("wb") as writer:
        writer.write(b"one\ntwo\nthree\n")
        writer.flush()
        assert [reader.readline() for _ in range(3)] == [b"one\n", b"two\n", b"three\n"]
        server.close()  # the file keeps the fd open
        writer.close()  # now it closes, without close_notify: a ragged EOF, suppressed
        assert reader.readline() == b""


def test_without_suppress_ragged_eofs_an_abrupt_close_raises(listener: gs.socket) -> None:
    client, server = connect_pair(listener, suppress_ragged_eofs=False)
    with client:
        server.close()  # no close_notify
        with pytest.raises(std.SSLEOFError):
            client.recv(10)


def test_a_peer_close_notify_is_a_clean_end(pair: tuple[gssl.SSLSocket, gssl.SSLSocket]) -> None:
    client, server = pair
    unwrapping = gw.spawn(server.unwrap)
    assert client.recv(10) == b""  # close_notify received
    client.unwrap()
    assert unwrapping.get() is server


def test_unwrap_then_clear_text_and_sendfile(
    tmp_path: Path, pair: tuple[gssl.SSLSocket, gssl.SSLSocket]
) -> None:
    client, server = pair
    client.sendall(b"secret")
    assert server.recv(10) == b"secret"
    unwrapping = gw.spawn(server.unwrap)
    assert client.unwrap() is client
    assert unwrapping.get() is server
    assert client.pending() == 0 and client.version() is None
    path = tmp_path / "clear.bin"
    path.write_bytes(PATTERN[:300_000])
    reading = gw.spawn(read_exactly, server, 300_000)
    with path.open("rb") as f:
        assert client.sendfile(f) == 300_000  # clear text: os.sendfile is allowed again
    assert reading.get() == PATTERN[:300_000]


def test_sendfile_over_tls_falls_back_to_send(
    tmp_path: Path, pair: tuple[gssl.SSLSocket, gssl.SSLSocket]
) -> None:
    client, server = pair
    path = tmp_path / "data.bin"
    path.write_bytes(PATTERN[:500_000])
    reading = gw.spawn(read_exactly, server, 400_000)
    with path.open("rb") as f:
        assert client.sendfile(f, offset=100_000) == 400_000
        assert f.tell() == 500_000
    assert reading.get() == PATTERN[100_000:500_000]


def test_get_server_certificate(tmp_path: Path, listener: gs.socket) -> None:
    files = write_pem_files(tmp_path)
    server_ctx = server_context()

    def serve(count: int) -> None:
        for _ in range(count):
            with gssl.wrap_socket_with(server_ctx, listener.accept()[0], server_side=True) as s:
                s.recv(1)  # until the client closes

    serving = gw.spawn(serve, 2)
    address = listener.getsockname()
    assert gssl.get_server_certificate(address) == server_cert_pem()
    assert gssl.get_server_certificate(address, ca_certs=str(files.ca), timeout=10) == (
        server_cert_pem()
    )
    serving.get()


@pytest.mark.skipif(not hasattr(std, "wrap_socket"), reason="removed in Python 3.12")
def test_the_deprecated_module_wrap_socket_is_green(tmp_path: Path, listener: gs.socket) -> None:
    files = write_pem_files(tmp_path)
    accepting = gw.spawn(listener.accept)
    sock = gs.create_connection(listener.getsockname())
    conn = accepting.get()[0]
    with pytest.warns(DeprecationWarning):
        serving = gw.spawn(gssl.wrap_socket, conn, certfile=str(files.server), server_side=True)
        client = gssl.wrap_socket(sock, ca_certs=str(files.ca), cert_reqs=std.CERT_REQUIRED)
    with client, serving.get() as server:
        assert type(client) is type(server) is gssl.SSLSocket
        client.sendall(b"old api")
        assert server.recv(10) == b"old api"
    with pytest.raises(ValueError, match="certfile"), pytest.warns(DeprecationWarning):
        gssl.wrap_socket(listener, server_side=True)


# -------------------------------------------------------------------- timeouts


def test_the_socket_timeout_is_kept_by_wrapping(listener: gs.socket) -> None:
    sock = gs.create_connection(listener.getsockname(), timeout=7.5)
    with gssl.wrap_socket_with(
        client_context(), sock, server_hostname="localhost", do_handshake_on_connect=False
    ) as wrapped:
        assert wrapped.gettimeout() == 7.5 and sock.fileno() == -1
        wrapped.settimeout(None)
        assert wrapped.gettimeout() is None and not os.get_blocking(wrapped.fileno())


def test_handshake_timeout(clock: VirtualClock, listener: gs.socket) -> None:
    sock = gs.create_connection(listener.getsockname(), timeout=5.0)  # nobody answers TLS
    with pytest.raises(TimeoutError, match="The handshake operation timed out") as exc:
        client_context(gssl.SSLContext).wrap_socket(sock, server_hostname="localhost")
    assert isinstance(exc.value, socket.timeout)
    assert clock.now() == 5.0
    assert sock.fileno() == -1  # the stdlib closes the new socket on failure


def test_read_timeout_then_the_socket_still_works(
    clock: VirtualClock, pair: tuple[gssl.SSLSocket, gssl.SSLSocket]
) -> None:
    client, server = pair
    client.settimeout(3.0)
    start = clock.now()
    with pytest.raises(TimeoutError, match="The read operation timed out"):
        client.recv(10)
    assert clock.now() == start + 3.0
    server.sendall(b"late")
    assert client.recv(10) == b"late"


def test_write_timeout(clock: VirtualClock, pair: tuple[gssl.SSLSocket, gssl.SSLSocket]) -> None:
    client, _ = pair  # the server never reads: the buffers fill up
    client.settimeout(2.0)
    start = clock.now()
    with pytest.raises(TimeoutError, match="The write operation timed out"):
        client.sendall(bytes(64 * 1024 * 1024))
    assert clock.now() == start + 2.0


def test_close_wakes_a_waiting_reader(
    clock: VirtualClock, pair: tuple[gssl.SSLSocket, gssl.SSLSocket]
) -> None:
    client, _ = pair
    reader = gw.spawn(client.recv, 10)
    gw.sleep(0)
    client.close()
    with pytest.raises(OSError) as exc:
        reader.get()
    assert exc.value.errno == errno.EBADF and isinstance(exc.value, ClosedResourceError)
    assert clock.now() == 0.0  # promptly: no timer was involved


# ------------------------------------------------------------ non-blocking mode


def test_non_blocking_reads_and_writes_raise_want_errors(
    pair: tuple[gssl.SSLSocket, gssl.SSLSocket],
) -> None:
    client, server = pair
    client.setblocking(False)
    with pytest.raises(std.SSLWantReadError):
        client.recv(10)
    chunk = bytes(1024 * 1024)
    with pytest.raises(std.SSLWantWriteError):
        for _ in range(256):  # far more than loopback buffers hold
            client.send(chunk)
    server.sendall(b"now")
    gw.wait_readable(client.fileno())
    assert client.recv(10) == b"now"


def test_non_blocking_handshake(listener: gs.socket) -> None:
    sock = gs.create_connection(listener.getsockname())
    sock.setblocking(False)
    with pytest.raises(ValueError, match="non-blocking"):  # as the stdlib says
        client_context().wrap_socket(sock, server_hostname="localhost")
    sock = gs.create_connection(listener.getsockname())
    sock.setblocking(False)
    client = gssl.wrap_socket_with(
        client_context(), sock, server_hostname="localhost", do_handshake_on_connect=False
    )
    with client:
        with pytest.raises(std.SSLWantReadError):
            client.do_handshake()  # the server has not even accepted
        listener.accept()[0].close()  # the first connection
        accepting = gw.spawn(
            lambda: gssl.wrap_socket_with(server_context(), listener.accept()[0], server_side=True)
        )
        client.do_handshake(block=True)
        assert client.gettimeout() == 0.0 and client.version() is not None
        accepting.get().close()


# ----------------------------------------------------------- patched programs


def run_program(source: str, *args: str) -> dict[str, object]:
    """Run ``source`` in a fresh interpreter; return the JSON object it prints last.

    A program still running at the time limit is sent SIGABRT first, so that
    ``faulthandler`` shows where it was stuck.
    """
    command = [sys.executable, "-X", "faulthandler", "-c", textwrap.dedent(source), *args]
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as proc:
        try:
            out, err = proc.communicate(timeout=SUBPROCESS_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGABRT)
            out, err = proc.communicate()
            pytest.fail(f"still running after {SUBPROCESS_TIMEOUT} s\n{out}\n{err}")
    assert proc.returncode == 0, f"exit {proc.returncode}\n{out}\n{err}"
    assert "Traceback" not in err, err
    result: dict[str, object] = json.loads(out.strip().splitlines()[-1])
    return result


# Fifty threads (greenlets once patched) each make a TLS connection to a ThreadingMixIn
# server and exchange a few lines; every wait must go through the hub, or the program
# (one OS thread) would deadlock and hit the time limit.
ECHO_PROGRAM = """
import sys
{before}
from greenwire import monkey
monkey.patch_all()
import json, socket, socketserver, ssl, threading, time
{after}
ca_file, server_file, clients, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3]), 3

class Handler(socketserver.StreamRequestHandler):
    def setup(self):
        self.request = server_ctx.wrap_socket(self.request, server_side=True)
        super().setup()
    def handle(self):
        for line in self.rfile:
            self.wfile.write(b"echo " + line)
    def finish(self):
        super().finish()
        self.request.close()  # socketserver closes the socket it accepted, now detached

class Server(socketserver.ThreadingMixIn, socketserver.TCPServer):
    daemon_threads = True
    block_on_close = True

results, kinds = [], set()
def client(n):
    raw = socket.create_connection(server.server_address, timeout=30)
    with client_ctx.wrap_socket(raw, server_hostname="localhost") as s:
        kinds.add(type(s).__module__)
        f = s.makefile("rwb")
        for r in range(rounds):
            f.write(b"%d:%d\\n" % (n, r)); f.flush()
            results.append(f.readline() == b"echo %d:%d\\n" % (n, r))
        f.close()

start = time.monotonic()
with Server(("127.0.0.1", 0), Handler) as server:
    serving = threading.Thread(target=server.serve_forever, kwargs={{"poll_interval": 0.05}})
    serving.start()
    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    for t in threads: t.start()
    for t in threads: t.join()
    server.shutdown(); serving.join()
print(json.dumps({{"ok": results.count(True), "bad": results.count(False),
    "kinds": sorted(kinds), "seconds": time.monotonic() - start,
    "context_class": type(client_ctx).__name__}}))
"""

MAKE_CONTEXTS = """
server_ctx = {cls}(ssl.PROTOCOL_TLS_SERVER); server_ctx.load_cert_chain(sys.argv[2])
client_ctx = {cls}(ssl.PROTOCOL_TLS_CLIENT); client_ctx.load_verify_locations(sys.argv[1])
"""


def run_echo(tmp_path: Path, before: str, after: str, clients: int) -> dict[str, object]:
    files = write_pem_files(tmp_path)
    source = ECHO_PROGRAM.format(before=textwrap.dedent(before), after=textwrap.dedent(after))
    return run_program(source, str(files.ca), str(files.server), str(clients))


def test_fifty_concurrent_tls_clients_against_a_threading_server(tmp_path: Path) -> None:
    result = run_echo(tmp_path, "", MAKE_CONTEXTS.format(cls="ssl.SSLContext"), 50)
    assert result["ok"] == 50 * 3 and result["bad"] == 0
    assert result["kinds"] == ["greenwire.green._sslsocket"]


def test_a_context_subclass_defined_before_patching(tmp_path: Path) -> None:
    before = """
        import ssl
        class MyContext(ssl.SSLContext):
            pass
    """
    result = run_echo(tmp_path, before, MAKE_CONTEXTS.format(cls="MyContext"), 10)
    assert result["ok"] == 10 * 3 and result["kinds"] == ["greenwire.green._sslsocket"]
    assert result["context_class"] == "MyContext"


def test_ssl_imported_and_contexts_made_before_patching(tmp_path: Path) -> None:
    before = textwrap.dedent("""
        import ssl, warnings
        from ssl import SSLContext
        # Patching must not warn about ssl (warnings about other modules are not this test's).
        warnings.filterwarnings("error", message=".*ssl", category=RuntimeWarning)
    """) + MAKE_CONTEXTS.format(cls="SSLContext")
    result = run_echo(tmp_path, before, "", 10)
    assert result["ok"] == 10 * 3 and result["kinds"] == ["greenwire.green._sslsocket"]


HTTPS_PROGRAM = """
from greenwire import monkey
monkey.patch_all()
import http.client, http.server, json, ssl, sys, threading

class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        body = ("you asked for " + self.path).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass

server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER); server_ctx.load_cert_chain(sys.argv[2])
client_ctx = ssl.create_default_context(cafile=sys.argv[1])
httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
httpd.socket = server_ctx.wrap_socket(httpd.socket, server_side=True)
serving = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05})
serving.start()

answers = []
def fetch(n):
    conn = http.client.HTTPSConnection("localhost", httpd.server_address[1],
                                       context=client_ctx, timeout=30)
    for r in range(3):  # on one keep-alive connection
        conn.request("GET", f"/{n}/{r}")
        response = conn.getresponse()
        got = (response.status, response.read().decode())
        answers.append(got == (200, f"you asked for /{n}/{r}"))
    conn.close()

threads = [threading.Thread(target=fetch, args=(n,)) for n in range(10)]
for t in threads: t.start()
for t in threads: t.join()
httpd.shutdown(); serving.join(); httpd.server_close()
print(json.dumps({"ok": answers.count(True), "total": len(answers)}))
"""


def test_https_connection_against_a_threading_https_server(tmp_path: Path) -> None:
    files = write_pem_files(tmp_path)
    result = run_program(HTTPS_PROGRAM, str(files.ca), str(files.server))
    assert result == {"ok": 30, "total": 30}
