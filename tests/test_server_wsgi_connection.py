"""One WSGI connection: stopping around a first request, the per-request hook, per-line
limits, what each connection adds to the environ, and the receive buffer its thread's
connections share."""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import pytest

import greenwire
from _server_helpers import Responses, Served, hello, served_pairs
from greenwire import VirtualClock
from greenwire.green import socket as gsocket
from greenwire.server._wsgi_connection import IDLE, receive_buffer
from greenwire.server.wsgi import WSGIHandler, WSGIServer

Environ = dict[str, Any]
Done = tuple[Environ, str, list[tuple[str, str]], int, float]


@pytest.fixture
def serve() -> Iterator[Callable[..., Served]]:
    yield from served_pairs()


def until(condition: Callable[[], bool]) -> None:
    """Let other greenlets run until ``condition`` holds (bounded)."""
    for _ in range(1000):
        if condition():
            return
        greenwire.sleep(0)
    raise AssertionError("condition never became true")


# ------------------------------------------------------------------ stopping


def test_connection_started_after_closing_still_serves_its_first_request(
    serve: Callable[..., Served],
) -> None:
    s = serve(hello)
    s.handler.close_idle()  # before the connection's greenlet has even run
    s.send(b"GET / HTTP/1.1\r\n\r\n")
    status, headers, body = s.response()
    assert (status, body) == (200, b"Hello, world!")
    assert headers["connection"] == "close"
    assert s.read_to_eof() == b""
    s.finish()


def test_close_idle_spares_a_connection_waiting_for_its_first_request(
    serve: Callable[..., Served],
) -> None:
    s = serve(hello)
    until(lambda: s.handler.connection_count == 1)  # parked, reading its first request
    s.handler.close_idle()
    s.send(b"GET / HTTP/1.1\r\n\r\n")
    status, headers, _ = s.response()
    assert status == 200 and headers["connection"] == "close"
    assert s.read_to_eof() == b""
    s.finish()


def test_keep_alive_connection_that_served_a_request_is_closed_by_close_idle(
    serve: Callable[..., Served],
) -> None:
    s = serve(hello)
    s.send(b"GET / HTTP/1.1\r\n\r\n")
    assert s.response()[2] == b"Hello, world!"
    until(lambda: s.handler.connection_count == 1)
    greenwire.sleep(0)  # the handler parks for the next request
    s.handler.close_idle()
    assert s.read_to_eof() == b""
    s.finish()


def test_first_request_after_closing_is_bounded_by_the_header_timeout(
    serve: Callable[..., Served], vclock: VirtualClock
) -> None:
    s = serve(hello, keepalive_timeout=100.0, header_timeout=5.0)
    until(lambda: s.handler.connection_count == 1)
    start = vclock.now()
    s.handler.close_idle()
    assert s.read_to_eof() == b""  # the client never sent anything
    assert 5.0 <= vclock.now() - start <= 7.0
    s.finish()


def test_server_stop_answers_a_connection_accepted_just_before() -> None:
    server = WSGIServer(("127.0.0.1", 0), hello, access_log=None)
    server.start()
    idle = gsocket.create_connection(server.address, timeout=30)
    fresh = gsocket.create_connection(server.address, timeout=30)
    stopper: greenwire.Greenlet[None] | None = None
    try:
        idle.sendall(b"GET / HTTP/1.1\r\n\r\n")
        Responses(idle).next()
        until(lambda: server.handler.connection_count == 2)
        stopper = greenwire.spawn(server.stop, 30)
        until(lambda: server.handler.closing)
        assert idle.recv(100) == b""  # served one already: closed at once
        fresh.sendall(b"GET / HTTP/1.1\r\n\r\n")
        status, headers, body = Responses(fresh).next()
        assert (status, body) == (200, b"Hello, world!")
        assert headers["connection"] == "close"
        assert fresh.recv(100) == b""
        stopper.get(timeout=30)
    finally:
        idle.close()
        fresh.close()
        server.stop()
        if stopper is not None:
            stopper.join(timeout=30)


# ------------------------------------------------------------------ on_request_done


def recorder() -> tuple[list[Done], Callable[..., None]]:
    calls: list[Done] = []

    def done(
        environ: Environ, status: str, headers: list[tuple[str, str]], sent: int, seconds: float
    ) -> None:
        calls.append((environ, status, headers, sent, seconds))

    return calls, done


def test_on_request_done_reports_each_request_after_its_response(
    serve: Callable[..., Served], vclock: VirtualClock
) -> None:
    calls, done = recorder()

    def app(environ: Environ, start_response: Any) -> Iterable[bytes]:
        greenwire.sleep(2.0)
        assert calls == [] or environ["PATH_INFO"] != "/first"
        start_response("201 Created", [("X-A", "1")])
        return [b"abc", b"de"] if environ["PATH_INFO"] == "/first" else iter([b"xyz"])

    s = serve(app, on_request_done=done)
    s.send(b"GET /first HTTP/1.1\r\n\r\n")
    assert s.response()[2] == b"abcde"
    s.send(b"GET /second HTTP/1.1\r\n\r\n")
    assert s.response()[2] == b"xyz"
    s.finish()
    assert [(e["PATH_INFO"], st, h, n) for e, st, h, n, _ in calls] == [
        ("/first", "201 Created", [("X-A", "1")], 5),
        ("/second", "201 Created", [("X-A", "1")], 3),
    ]
    assert all(2.0 <= seconds < 3.0 for *_, seconds in calls)


def test_on_request_done_sees_the_servers_500_and_a_client_gone(
    serve: Callable[..., Served], caplog: pytest.LogCaptureFixture
) -> None:
    calls, done = recorder()
    gone = greenwire.Event()

    def app(environ: Environ, start_response: Any) -> Iterator[bytes]:
        if environ["PATH_INFO"] == "/fail":
            raise RuntimeError("boom")
        start_response("200 OK", [])
        yield b"first"
        gone.wait()
        for _ in range(100):
            yield b"x" * 65536

    failing = serve(app, on_request_done=done)
    streaming = serve(app, on_request_done=done)
    with caplog.at_level(logging.CRITICAL, "greenwire.wsgi"):
        failing.send(b"GET /fail HTTP/1.1\r\n\r\n")
        assert failing.response()[0] == 500
        failing.finish()
        streaming.send(b"GET /stream HTTP/1.1\r\n\r\n")
        assert streaming.client.recv(1) == b"H"  # the response has begun
        streaming.client.close()
        gone.set()
        streaming.greenlet.get(timeout=30)
    (_, status, headers, sent, _), (_, status2, _, sent2, _) = calls
    assert status == "500 Internal Server Error"
    assert ("Content-Type", "text/plain; charset=utf-8") in headers
    assert sent == len(b"500 Internal Server Error\n")
    assert status2 == "200 OK" and sent2 >= len(b"first")


def test_on_request_done_errors_are_logged_not_raised(
    serve: Callable[..., Served], caplog: pytest.LogCaptureFixture
) -> None:
    def done(*args: Any) -> None:
        raise ValueError("hook failed")

    s = serve(hello, on_request_done=done)
    with caplog.at_level(logging.ERROR, "greenwire.wsgi"):
        for _ in range(2):  # the connection lives on
            s.send(b"GET / HTTP/1.1\r\n\r\n")
            assert s.response()[0] == 200
    failures = [r for r in caplog.records if "on_request_done" in r.getMessage()]
    assert len(failures) == 2 and failures[0].exc_info is not None
    s.finish()


def test_on_request_done_counts_a_file_sent_with_sendfile(serve: Callable[..., Served]) -> None:
    calls, done = recorder()
    content = bytes(range(256)) * 100

    def app(environ: Environ, start_response: Any) -> Any:
        f = tempfile.TemporaryFile()  # noqa: SIM115 - closed by the server, via the wrapper
        f.write(content)
        f.seek(100)
        start_response("200 OK", [])
        return environ["wsgi.file_wrapper"](f)

    s = serve(app, on_request_done=done)
    s.send(b"GET / HTTP/1.1\r\n\r\n")
    assert s.response()[2] == content[100:]
    s.finish()
    assert [sent for _, _, _, sent, _ in calls] == [len(content) - 100]


def test_handler_hooks_are_checked() -> None:
    with pytest.raises(TypeError, match="on_request_done"):
        WSGIHandler(hello, on_request_done="nope")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_request_line"):
        WSGIHandler(hello, max_request_line=0)


# ------------------------------------------------------------------ per connection


def test_environ_has_the_socket_and_the_connection_environ(serve: Callable[..., Served]) -> None:
    seen: list[Environ] = []
    hook_calls: list[tuple[Any, Any]] = []

    def app(environ: Environ, start_response: Any) -> list[bytes]:
        seen.append(environ)
        start_response("200 OK", [])
        return [b""]

    def per_connection(sock: Any, address: Any) -> dict[str, Any]:
        hook_calls.append((sock, address))
        return {"my.socket": sock}

    s = serve(app, connection_environ=per_connection)
    s.send(b"GET / HTTP/1.1\r\n\r\nGET / HTTP/1.1\r\n\r\n")
    s.response()
    s.response()
    s.finish()
    assert hook_calls == [(s.sock, ("10.1.2.3", 5555))]
    assert [e["greenwire.socket"] for e in seen] == [s.sock, s.sock]
    assert [e["my.socket"] for e in seen] == [s.sock, s.sock]


def test_keep_alive_off_closes_after_each_response(serve: Callable[..., Served]) -> None:
    s = serve(hello, keep_alive=False)
    s.send(b"GET / HTTP/1.1\r\n\r\n")
    status, headers, _ = s.response()
    assert status == 200 and headers["connection"] == "close"
    assert s.read_to_eof() == b""
    s.finish()


# ------------------------------------------------------------------ per-line limits


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        (b"GET /" + b"a" * 86 + b" HTTP/1.1\r\n\r\n", 200),  # 100 bytes: at the limit
        (b"GET /" + b"a" * 87 + b" HTTP/1.1\r\n\r\n", 414),
        (b"GET / HTTP/1.1\r\nX-Field: " + b"v" * 39 + b"\r\n\r\n", 200),  # 50 bytes
        (b"GET / HTTP/1.1\r\nX-Field: " + b"v" * 40 + b"\r\n\r\n", 431),
    ],
)
def test_per_line_limits(serve: Callable[..., Served], raw: bytes, code: int) -> None:
    s = serve(hello, max_request_line=100, max_field_size=50)
    s.send(raw)
    assert s.response()[0] == code
    s.finish()


def test_turning_keep_alive_off_closes_after_the_next_response(
    serve: Callable[..., Served],
) -> None:
    s = serve(hello)
    s.send(b"GET / HTTP/1.1\r\n\r\n")
    assert "connection" not in s.response()[1]
    s.handler.keep_alive = False  # the connection waits on, then says close
    s.send(b"GET / HTTP/1.1\r\n\r\n")
    status, headers, _ = s.response()
    assert status == 200 and headers["connection"] == "close"
    assert s.read_to_eof() == b""
    s.finish()


# ------------------------------------------------------------------ the receive buffer


def echo_body(environ: Environ, start_response: Any) -> list[bytes]:
    body = environ["wsgi.input"].read()
    start_response("200 OK", [("Content-Type", "application/octet-stream")])
    return [body]


PIECE = 20_000


def test_connections_reading_in_turns_share_one_buffer_without_mixing(
    serve: Callable[..., Served],
) -> None:
    clients = [serve(echo_body) for _ in range(3)]
    bodies = [os.urandom(4 * PIECE) for _ in clients]
    for s, body in zip(clients, bodies, strict=True):
        s.send(b"POST / HTTP/1.1\r\nContent-Length: %d\r\n\r\n" % len(body))
    until(lambda: all(c.handler.connection_count == 1 for c in clients))
    (first,) = clients[0].handler._connections
    assert all(first.buffer is conn.buffer for c in clients for conn in c.handler._connections)
    for offset in range(0, 4 * PIECE, PIECE):
        for s, body in zip(clients, bodies, strict=True):
            s.send(body[offset : offset + PIECE])
        # The hub sees the pieces arrive: the handlers read them into the same buffer in turn.
        greenwire.get_hub().park_one_turn()
    for s, body in zip(clients, bodies, strict=True):
        status, _, echoed = s.response()
        assert status == 200 and echoed == body
        s.finish()


def test_tls_connections_reading_in_turns_get_their_own_bytes() -> None:
    from _tls_helpers import client_context, server_context
    from greenwire.green.ssl import wrap_socket_with

    server = WSGIServer(("127.0.0.1", 0), echo_body, ssl_context=server_context())
    server.start()
    context = client_context()

    def post(body: bytes) -> tuple[int, dict[str, str], bytes]:
        raw = gsocket.create_connection(server.address, timeout=30)
        with wrap_socket_with(context, raw, server_hostname="127.0.0.1") as tls:
            tls.sendall(b"POST / HTTP/1.1\r\nContent-Length: %d\r\n\r\n" % len(body))
            for offset in range(0, len(body), PIECE):
                tls.sendall(body[offset : offset + PIECE])
                greenwire.sleep(0)  # let the other clients send theirs
            return Responses(tls).next()

    try:
        with greenwire.fail_after(30):
            bodies = [os.urandom(4 * PIECE) for _ in range(4)]
            clients = [greenwire.spawn(post, body) for body in bodies]
            for client, body in zip(clients, bodies, strict=True):
                status, _, echoed = client.get()
                assert status == 200 and echoed == body
    finally:
        server.stop(timeout=5)


def test_each_thread_has_its_own_receive_buffer() -> None:
    buffer, view = receive_buffer()
    assert len(buffer) == 64 * 1024 and view.obj is buffer
    assert receive_buffer()[0] is buffer
    other, _ = greenwire.run_in_thread(receive_buffer)
    assert other is not buffer


def test_an_idle_connection_holds_nothing_of_its_last_request(
    serve: Callable[..., Served],
) -> None:
    def app(environ: Environ, start_response: Any) -> list[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain"), ("X-Large", "y" * 1000)])
        return [b"ok"]

    s = serve(app)
    s.send(b"GET / HTTP/1.1\r\nX-Large: " + b"x" * 1000 + b"\r\n\r\n")
    assert s.response()[0] == 200
    (connection,) = s.handler._connections
    until(lambda: connection.phase == IDLE)
    assert connection.request is None
    assert connection.headers == []
    s.finish()
