"""Helpers shared by the server tests: loopback servers, WSGI over socket pairs."""

from __future__ import annotations

import socket as std
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

import httptools

import greenwire
from greenwire._core import Hub, VirtualClock
from greenwire.green import socket as gsocket
from greenwire.server._base import BaseServer
from greenwire.server.wsgi import WSGIHandler

S = TypeVar("S", bound=BaseServer)

Environ = dict[str, Any]
App = Callable[[Environ, Any], Iterable[bytes]]


# ------------------------------------------------------------------ loopback servers


def settling_clock(hub: Hub) -> VirtualClock:
    """Install virtual time that lets real loopback I/O settle (up to 50 ms) before it
    jumps, since the kernel may finish a handshake a moment after the call causing it."""
    clock = VirtualClock(autojump_threshold=0.05)
    hub.set_clock(clock)
    return clock


def has_ipv6_loopback(kind: int) -> bool:
    """True if a socket of ``kind`` can bind ``::1`` on this machine."""
    try:
        with std.socket(std.AF_INET6, kind) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True


def started_servers(server_class: type[S]) -> Iterator[Callable[..., S]]:
    """The body of a ``serving`` fixture: ``serving(handle, listener=("127.0.0.1", 0),
    **kwargs)`` starts a server of ``server_class``; each one is stopped at teardown."""
    servers: list[S] = []

    def start(handle: Any, listener: Any = ("127.0.0.1", 0), **kwargs: Any) -> S:
        server = server_class(listener, handle, **kwargs)
        servers.append(server)
        server.start()
        return server

    yield start
    for server in servers:
        server.stop(timeout=0)


# ------------------------------------------------------------------ WSGI over socket pairs


def hello(environ: Environ, start_response: Any) -> list[bytes]:
    """The smallest WSGI application: 200 and ``Hello, world!``."""
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"Hello, world!"]


class CountingSocket:
    """A green socket that counts the sendall() calls made on it."""

    def __init__(self, sock: gsocket.socket) -> None:
        self._sock = sock
        self.sends: list[bytes] = []

    def sendall(self, data: bytes) -> None:
        self.sends.append(bytes(data))
        self._sock.sendall(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


class Responses:
    """Reads HTTP responses off a client socket with httptools."""

    def __init__(self, sock: gsocket.socket) -> None:
        self.sock = sock
        self.parser = httptools.HttpResponseParser(self)
        self.done: list[tuple[int, dict[str, str], bytes]] = []
        self._headers: dict[str, str] = {}
        self._body = b""

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers[name.decode().lower()] = value.decode()

    def on_body(self, body: bytes) -> None:
        self._body += body

    def on_message_complete(self) -> None:
        self.done.append((self.parser.get_status_code(), self._headers, self._body))
        self._headers, self._body = {}, b""

    def next(self) -> tuple[int, dict[str, str], bytes]:
        for _ in range(1000):
            if self.done:
                return self.done.pop(0)
            data = self.sock.recv(65536)
            assert data, "connection closed before a complete response"
            self.parser.feed_data(data)
        raise AssertionError("no response")


class Served:
    """A handler serving one end of a socket pair in a greenlet; the test has the other."""

    def __init__(self, app: App, counting: bool = False, **options: Any) -> None:
        self.handler = WSGIHandler(app, **options)
        server, self.client = gsocket.socketpair()
        self.server_sock = server
        self.sock: Any = CountingSocket(server) if counting else server
        self.greenlet = greenwire.spawn(self._run)
        self.responses = Responses(self.client)

    def _run(self) -> None:
        try:
            self.handler(self.sock, ("10.1.2.3", 5555))
        finally:
            self.server_sock.close()

    def send(self, data: bytes) -> None:
        self.client.sendall(data)

    def response(self) -> tuple[int, dict[str, str], bytes]:
        return self.responses.next()

    def read_to_eof(self) -> bytes:
        data = b""
        for _ in range(10000):
            chunk = self.client.recv(65536)
            if not chunk:
                return data
            data += chunk
        raise AssertionError("no end of file")

    def finish(self) -> None:
        """Close the client side and wait for the handler to end."""
        self.client.close()
        self.greenlet.get(timeout=30)


def served_pairs() -> Iterator[Callable[..., Served]]:
    """The body of a ``serve`` fixture: ``serve(app, **options)`` makes a :class:`Served`;
    every client is closed and every handler joined at teardown."""
    made: list[Served] = []

    def make(app: App, **options: Any) -> Served:
        s = Served(app, **options)
        made.append(s)
        return s

    yield make
    for s in made:
        if s.client.fileno() >= 0:
            s.client.close()
        s.greenlet.join(timeout=30)
