"""No Nagle stall on keep-alive: the WSGI server sends each small response in one segment.

A server that writes a response head and its body in two sends, with Nagle's algorithm
on, makes a keep-alive client wait: the kernel holds the body back until the head is
acknowledged, and the client (in delayed-ACK mode once it is in a request/response
rhythm) acknowledges up to 40 ms later. That is how stock ``gevent.pywsgi`` serves
hello-world at ~25 requests/s per connection.

Asserted without timing: a plain blocking client in an OS thread, on real loopback TCP,
makes 50 sequential requests on one connection and must get every response, head and
body, from a single ``recv()``. A body held back by Nagle cannot be in that read; a
response written in one send always is (loopback delivers it as one segment). The
accepted socket must also have ``TCP_NODELAY`` set, for responses that do take several
sends (streamed bodies).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import pytest

import greenwire
from greenwire.server.wsgi import WSGIServer

REQUESTS = 50
SMALL = b"Hello, world!\n"
LARGER = bytes(range(256)) * 16  # 4 KiB

App = Callable[[dict[str, Any], Any], Iterable[bytes]]


def list_app(body: bytes) -> App:
    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [body]

    return app


def generator_app(body: bytes) -> App:
    """One block from a generator, with the Content-Length given by the application."""

    def app(environ: dict[str, Any], start_response: Any) -> Iterator[bytes]:
        start_response("200 OK", [("Content-Length", str(len(body)))])
        yield body

    return app


def _content_length(head: bytes) -> int:
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    raise AssertionError(f"no Content-Length in {head!r}")


def first_reads(address: tuple[str, int], count: int) -> list[bytes]:
    """What the first recv() returns after each of ``count`` keep-alive requests."""
    firsts = []
    with socket.create_connection(address, timeout=30) as sock:
        for _ in range(count):
            sock.sendall(b"GET / HTTP/1.1\r\nHost: test\r\n\r\n")
            first = sock.recv(1 << 20)
            firsts.append(first)
            data = first
            for _ in range(1000):  # read the rest, if any, so the next request starts clean
                end = data.find(b"\r\n\r\n")
                if end >= 0 and len(data) >= end + 4 + _content_length(data[:end]):
                    break
                more = sock.recv(1 << 20)
                assert more, "connection closed mid-response"
                data += more
    return firsts


@pytest.fixture
def serve() -> Iterator[Callable[[App], tuple[str, int]]]:
    servers: list[WSGIServer] = []

    def start(app: App) -> tuple[str, int]:
        server = WSGIServer(("127.0.0.1", 0), app, access_log=None)
        servers.append(server)
        server.start()
        host, port = server.address
        return host, port

    yield start
    for server in servers:
        server.stop(timeout=5)


@pytest.mark.parametrize("body", [SMALL, LARGER], ids=["14B", "4KiB"])
@pytest.mark.parametrize("make_app", [list_app, generator_app], ids=["list", "generator"])
def test_each_keep_alive_response_arrives_in_one_read(
    serve: Callable[[App], tuple[str, int]], make_app: Callable[[bytes], App], body: bytes
) -> None:
    address = serve(make_app(body))
    firsts = greenwire.run_in_thread(first_reads, address, REQUESTS)
    split = [i for i, data in enumerate(firsts) if not data.endswith(b"\r\n\r\n" + body)]
    assert not split, f"responses {split} did not arrive whole, e.g. {firsts[split[0]]!r}"
    assert all(data.startswith(b"HTTP/1.1 200 OK\r\n") for data in firsts)


def _server_end(client: socket.socket) -> socket.socket:
    """A duplicate of this process's socket at the other end of ``client``."""
    wanted = (client.getpeername(), client.getsockname())
    for name in os.listdir("/proc/self/fd"):
        try:
            if not os.readlink(f"/proc/self/fd/{name}").startswith("socket:"):
                continue
            sock = socket.fromfd(int(name), socket.AF_INET, socket.SOCK_STREAM)
        except OSError:  # closed meanwhile (the listing's own fd)
            continue
        try:
            if (sock.getsockname(), sock.getpeername()) == wanted:
                return sock
        except OSError:
            pass
        sock.close()
    raise AssertionError("the server's end of the connection is not in this process")


def test_accepted_connections_have_tcp_nodelay(serve: Callable[[App], tuple[str, int]]) -> None:
    address = serve(list_app(SMALL))
    client = greenwire.run_in_thread(socket.create_connection, address, 30)
    try:
        # One exchange first: the connection has surely been accepted and handed over.
        assert greenwire.run_in_thread(_exchange, client).endswith(SMALL)
        server_end = _server_end(client)
        with server_end:
            assert server_end.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
    finally:
        client.close()


def _exchange(sock: socket.socket) -> bytes:
    sock.sendall(b"GET / HTTP/1.1\r\nHost: test\r\n\r\n")
    return sock.recv(65536)
