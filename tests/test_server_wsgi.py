"""The WSGI server: the per-connection handler over socket pairs, and WSGIServer on loopback."""

from __future__ import annotations

import http.client
import io
import logging
import os
import re
import tempfile
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import pytest

import greenwire
from _server_helpers import Responses, Served, hello, served_pairs
from greenwire import VirtualClock
from greenwire.green import socket as gsocket
from greenwire.server.wsgi import FileWrapper, WSGIHandler, WSGIServer

Environ = dict[str, Any]
App = Callable[[Environ, Any], Iterable[bytes]]


@pytest.fixture
def serve() -> Iterator[Callable[..., Served]]:
    yield from served_pairs()


def capture(into: list[Environ], body: bytes = b"ok") -> App:
    def app(environ: Environ, start_response: Any) -> list[bytes]:
        into.append(dict(environ))
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [body]

    return app


# ------------------------------------------------------------------ environ


def test_environ_has_what_pep3333_requires(serve: Callable[..., Served]) -> None:
    seen: list[Environ] = []
    s = serve(capture(seen), server_name="example.org", server_port=8080)
    s.send(
        b"POST /a%20b/c?x=1&y=%20 HTTP/1.1\r\nHost: example.org\r\n"
        b"Content-Type: text/plain\r\nContent-Length: 0\r\nX-Custom: yes\r\n\r\n"
    )
    status, _, body = s.response()
    assert (status, body) == (200, b"ok")
    env = seen[0]
    assert env["REQUEST_METHOD"] == "POST"
    assert env["SCRIPT_NAME"] == ""
    assert env["PATH_INFO"] == "/a b/c"
    assert env["QUERY_STRING"] == "x=1&y=%20"
    assert env["RAW_URI"] == "/a%20b/c?x=1&y=%20"
    assert env["SERVER_NAME"] == "example.org" and env["SERVER_PORT"] == "8080"
    assert env["SERVER_PROTOCOL"] == "HTTP/1.1"
    assert env["REMOTE_ADDR"] == "10.1.2.3" and env["REMOTE_PORT"] == "5555"
    assert env["CONTENT_TYPE"] == "text/plain" and env["CONTENT_LENGTH"] == "0"
    assert "HTTP_CONTENT_TYPE" not in env and "HTTP_CONTENT_LENGTH" not in env
    assert env["HTTP_HOST"] == "example.org" and env["HTTP_X_CUSTOM"] == "yes"
    assert env["wsgi.version"] == (1, 0)
    assert env["wsgi.url_scheme"] == "http"
    assert env["wsgi.multithread"] is True
    assert env["wsgi.multiprocess"] is False
    assert env["wsgi.run_once"] is False
    assert env["wsgi.input_terminated"] is True
    assert env["wsgi.file_wrapper"] is FileWrapper
    assert hasattr(env["wsgi.errors"], "write") and hasattr(env["wsgi.input"], "read")
    assert all(type(v) is str for k, v in env.items() if k.isupper())
    s.finish()


def test_path_info_is_percent_decoded_bytes_as_latin1(serve: Callable[..., Served]) -> None:
    seen: list[Environ] = []
    s = serve(capture(seen))
    s.send(b"GET /caf%C3%A9/%2F HTTP/1.1\r\n\r\n")
    s.response()
    assert seen[0]["PATH_INFO"] == "/caf\xc3\xa9//"
    assert seen[0]["PATH_INFO"].encode("latin-1").decode("utf-8") == "/café//"
    s.finish()


def test_repeated_headers_are_joined_and_underscored_names_dropped(
    serve: Callable[..., Served],
) -> None:
    seen: list[Environ] = []
    s = serve(capture(seen))
    s.send(
        b"GET / HTTP/1.1\r\nAccept: a\r\nX-Forwarded-For: 1.1.1.1\r\naccept: b\r\n"
        b"X_Forwarded_For: 6.6.6.6\r\n\r\n"
    )
    s.response()
    assert seen[0]["HTTP_ACCEPT"] == "a, b"
    assert seen[0]["HTTP_X_FORWARDED_FOR"] == "1.1.1.1"
    s.finish()


def test_script_name_is_split_off(serve: Callable[..., Served]) -> None:
    seen: list[Environ] = []
    s = serve(capture(seen), script_name="/app/")
    s.send(b"GET /app/x/y HTTP/1.1\r\n\r\nGET /app HTTP/1.1\r\n\r\nGET /apple HTTP/1.1\r\n\r\n")
    for _ in range(3):
        s.response()
    assert [(e["SCRIPT_NAME"], e["PATH_INFO"]) for e in seen] == [
        ("/app", "/x/y"),
        ("/app", ""),
        ("/app", "/apple"),
    ]
    s.finish()


def test_absolute_form_target_and_extra_environ(serve: Callable[..., Served]) -> None:
    seen: list[Environ] = []
    s = serve(capture(seen), environ={"custom.key": 1}, url_scheme="https")
    s.send(b"GET http://example.org/p?q HTTP/1.1\r\n\r\n")
    s.response()
    assert seen[0]["PATH_INFO"] == "/p" and seen[0]["QUERY_STRING"] == "q"
    assert seen[0]["custom.key"] == 1 and seen[0]["wsgi.url_scheme"] == "https"
    s.finish()


def test_environ_is_fresh_for_each_request(serve: Callable[..., Served]) -> None:
    seen: list[Environ] = []

    def app(environ: Environ, start_response: Any) -> list[bytes]:
        seen.append(environ)
        environ["mutated"] = True
        start_response("200 OK", [])
        return [b""]

    s = serve(app)
    s.send(b"GET /1 HTTP/1.1\r\nX-A: 1\r\n\r\nGET /2 HTTP/1.1\r\n\r\n")
    s.response()
    s.response()
    assert seen[0] is not seen[1]
    assert "mutated" not in seen[1] or seen[1] is not seen[0]
    assert "HTTP_X_A" not in seen[1]
    s.finish()


# ------------------------------------------------------------------ keep-alive


def test_keep_alive_response_is_one_send(serve: Callable[..., Served]) -> None:
    s = serve(hello, counting=True)
    for _ in range(3):
        s.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        status, headers, body = s.response()
        assert (status, body) == (200, b"Hello, world!")
        assert headers["content-length"] == "13"
        assert "connection" not in headers
        assert "date" in headers and headers["server"] == "greenwire"
    assert len(s.sock.sends) == 3
    assert all(b.endswith(b"\r\n\r\nHello, world!") for b in s.sock.sends)
    s.finish()


def test_pipelined_requests_are_answered_in_order(serve: Callable[..., Served]) -> None:
    def app(environ: Environ, start_response: Any) -> list[bytes]:
        start_response("200 OK", [])
        return [environ["PATH_INFO"].encode(), environ["wsgi.input"].read()]

    s = serve(app)
    s.send(
        b"GET /1 HTTP/1.1\r\n\r\n"
        b"POST /2 HTTP/1.1\r\nContent-Length: 4\r\n\r\nbody"
        b"GET /3 HTTP/1.1\r\n\r\n"
    )
    assert [s.response()[2] for _ in range(3)] == [b"/1", b"/2body", b"/3"]
    s.finish()


def test_client_connection_close_ends_after_the_response(serve: Callable[..., Served]) -> None:
    s = serve(hello)
    s.send(b"GET / HTTP/1.1\r\nConnection: close\r\n\r\nGET /ignored HTTP/1.1\r\n\r\n")
    data = s.read_to_eof()
    assert data.count(b"HTTP/1.1 200") == 1
    assert b"Connection: close\r\n" in data
    s.finish()


def test_http10_closes_by_default(serve: Callable[..., Served]) -> None:
    def streaming(environ: Environ, start_response: Any) -> Iterator[bytes]:
        start_response("200 OK", [])
        yield b"part1-"
        yield b"part2"

    s = serve(streaming)
    s.send(b"GET / HTTP/1.0\r\n\r\n")
    data = s.read_to_eof()
    head, body = data.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 200 OK")
    assert b"Connection: close" in head and b"chunked" not in head
    assert body == b"part1-part2"
    s.finish()


def test_http10_keep_alive_is_honoured(serve: Callable[..., Served]) -> None:
    s = serve(hello)
    for _ in range(2):
        s.send(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        status, headers, _ = s.response()
        assert status == 200 and headers["connection"] == "keep-alive"
    s.finish()


def test_application_connection_close_ends_the_connection(serve: Callable[..., Served]) -> None:
    def app(environ: Environ, start_response: Any) -> list[bytes]:
        start_response("200 OK", [("Connection", "close")])
        return [b"bye"]

    s = serve(app)
    s.send(b"GET / HTTP/1.1\r\n\r\n")
    assert s.read_to_eof().endswith(b"\r\n\r\nbye")
    s.finish()


# ------------------------------------------------------------------ bodies


def test_chunked_request_body_is_streamed_to_the_app(serve: Callable[..., Served]) -> None:
    got: list[bytes] = []
    started = greenwire.Event()

    def app(environ: Environ, start_response: Any) -> list[bytes]:
        stream = environ["wsgi.input"]
        got.append(stream.read(3))
        started.set()
        got.append(stream.readline())
        got.append(stream.read())
        start_response("200 OK", [])
        return [b"done"]

    s = serve(app)
    s.send(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nabcde\r\n")
    started.wait()
    s.send(b"6\r\nf\nghij\r\n0\r\n\r\n")
    assert s.response()[2] == b"done"
    assert got == [b"abc", b"def\n", b"ghij"]
    s.finish()


def test_generator_response_is_chunked_and_sent_as_produced(
    serve: Callable[..., Served],
) -> None:
    step = greenwire.Event()

    def app(environ: Environ, start_response: Any) -> Iterator[bytes]:
        start_response("200 OK", [])
        yield b""
        yield b"first"
        step.wait()
        yield b"second"

    s = serve(app)
    s.send(b"GET / HTTP/1.1\r\n\r\n")
    data = b""
    while not data.endswith(b"5\r\nfirst\r\n"):  # arrives before the app goes on
        chunk = s.client.recv(65536)
        assert chunk
        data += chunk
    assert b"Transfer-Encoding: chunked" in data
    step.set()
    while not data.endswith(b"0\r\n\r\n"):
        chunk = s.client.recv(65536)
        assert chunk
        data += chunk
    assert data.endswith(b"5\r\nfirst\r\n6\r\nsecond\r\n0\r\n\r\n")
    s.finish()


def test_large_body_is_sent_in_full(serve: Callable[..., Served]) -> None:
    big = os.urandom(300_000)

    def app(environ: Environ, start_response: Any) -> list[bytes]:
        start_response("200 OK", [])
        return [big]

    s = serve(app)
    s.send(b"GET / HTTP/1.1\r\n\r\n")
    status, headers, body = s.response()
    assert headers["content-length"] == str(len(big)) and body == big
    s.finish()


def test_write_callable(serve: Callable[..., Served]) -> None:
    def app(environ: Environ, start_response: Any) -> list[bytes]:
        write = start_response("200 OK", [("Content-Length", "11")])
        write(b"hello ")
        write(bytearray(b"wor"))
        return [b"ld"]

    s = serve(app)
    s.send(b"GET / HTTP/1.1\r\n\r\n")
    assert s.response()[2] == b"hello world"
    s.finish()


def test_head_has_no_body_but_the_get_length(serve: Callable[..., Served]) -> None:
    s = serve(hello)
    s.send(b"HEAD / HTTP/1.1\r\n\r\nGET / HTTP/1.1\r\nConnection: close\r\n\r\n")
    data = s.read_to_eof()
    head_response, get_response = data.split(b"HTTP/1.1 200 OK", 2)[1:]
    assert head_response.endswith(b"\r\n\r\n")
    assert b"Content-Length: 13\r\n" in head_response
    assert get_response.endswith(b"Hello, world!")
    s.finish()


@pytest.mark.parametrize("status", ["204 No Content", "304 Not Modified"])
def test_no_body_for_204_and_304(serve: Callable[..., Served], status: str) -> None:
    def app(environ: Environ, start_response: Any) -> list[bytes]:
        start_response(status, [])
        return [b"must not be sent"]

    s = serve(app)
    s.send(b"GET / HTTP/1.1\r\n\r\nGET / HTTP/1.1\r\nConnection: close\r\n\r\n")
    data = s.read_to_eof()
    assert b"must not be sent" not in data
    assert data.count(status.encode()) == 2
    assert b"Content-Length" not in data and b"chunked" not in data
    s.finish()


def test_expect_continue_is_answered_when_the_app_reads(serve: Callable[..., Served]) -> None:
    def app(environ: Environ, start_response: Any) -> list[bytes]:
        body = environ["wsgi.input"].read()
        start_response("200 OK", [])
        return [body.upper()]

    s = serve(app)
    s.send(b"PUT / HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n")
    interim = s.client.recv(100)
    assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
    s.send(b"hello")
    status, headers, body = s.response()
    assert (status, body) == (200, b"HELLO") and "connection" not in headers
    s.finish()


def test_expect_continue_unread_body_closes(serve: Callable[..., Served]) -> None:
    def app(environ: Environ, start_response: Any) -> list[bytes]:
        start_response("401 Unauthorized", [])
        return [b"no"]

    s = serve(app)
    s.send(b"PUT / HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n")
    data = s.read_to_eof()
    assert data.startswith(b"HTTP/1.1 401") and b"100 Continue" not in data
    assert b"Connection: close" in data
    s.finish()


def test_small_unread_body_is_discarded_and_connection_kept(serve: Callable[..., Served]) -> None:
    s = serve(hello)
    s.send(b"POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\nhelloGET / HTTP/1.1\r\n\r\n")
    assert s.response()[0] == 200
    assert s.response()[0] == 200
    s.finish()


def test_large_unread_body_closes(serve: Callable[..., Served]) -> None:
    s = serve(hello)
    s.send(b"POST / HTTP/1.1\r\nContent-Length: 10000000\r\n\r\nabc")
    status, headers, _ = s.response()
    assert status == 200 and headers["connection"] == "close"
    s.finish()


def test_input_stops_at_content_length(serve: Callable[..., Served]) -> None:
    got: list[bytes] = []

    def app(environ: Environ, start_response: Any) -> list[bytes]:
        stream = environ["wsgi.input"]
        got.extend([stream.read(100), stream.read(), stream.readline()])
        start_response("200 OK", [])
        return [b""]

    s = serve(app)
    s.send(b"POST / HTTP/1.1\r\nContent-Length: 3\r\n\r\nabcGET / HTTP/1.1\r\n\r\n")
    s.response()
    s.response()
    assert got[:3] == [b"abc", b"", b""]
    s.finish()


def test_file_wrapper_with_a_real_file_uses_sendfile(serve: Callable[..., Served]) -> None:
    content = os.urandom(200_000)
    with tempfile.TemporaryFile() as f:
        f.write(content)
        f.seek(100)

        def app(environ: Environ, start_response: Any) -> Any:
            start_response("200 OK", [])
            return environ["wsgi.file_wrapper"](f)

        s = serve(app, counting=True)
        s.send(b"GET / HTTP/1.1\r\n\r\n")
        status, headers, body = s.response()
        assert headers["content-length"] == str(len(content) - 100)
        assert body == content[100:]
        assert len(s.sock.sends) == 1  # only the head: the body went by sendfile
        assert f.closed  # the wrapper's close() closed the file
        s.finish()


def test_file_wrapper_without_fileno_is_iterated(serve: Callable[..., Served]) -> None:
    def app(environ: Environ, start_response: Any) -> Any:
        start_response("200 OK", [])
        return environ["wsgi.file_wrapper"](io.BytesIO(b"x" * 10), 4)

    s = serve(app)
    s.send(b"GET / HTTP/1.1\r\n\r\n")
    status, headers, body = s.response()
    assert body == b"x" * 10 and headers["transfer-encoding"] == "chunked"
    s.finish()


def test_excess_body_beyond_content_length_is_dropped(
    serve: Callable[..., Served], caplog: pytest.LogCaptureFixture
) -> None:
    def app(environ: Environ, start_response: Any) -> Iterator[bytes]:
        start_response("200 OK", [("Content-Length", "3")])
        yield b"abcdef"

    s = serve(app)
    with caplog.at_level(logging.WARNING, "greenwire.wsgi"):
        s.send(b"GET / HTTP/1.1\r\n\r\nGET / HTTP/1.1\r\n\r\n")
        assert s.response()[2] == b"abc"
        assert s.response()[2] == b"abc"
    assert "beyond its Content-Length" in caplog.text
    s.finish()


def test_short_body_closes_the_connection(serve: Callable[..., Served]) -> None:
    def app(environ: Environ, start_response: Any) -> list[bytes]:
        start_response("200 OK", [("Content-Length", "10")])
        return [b"abc"]

    s = serve(app)
    s.send(b"GET / HTTP/1.1\r\n\r\n")
    assert s.read_to_eof().endswith(b"\r\n\r\nabc")
    s.finish()


# ------------------------------------------------------------------ application errors


def test_app_exception_gives_500_and_a_logged_traceback(
    serve: Callable[..., Served], caplog: pytest.LogCaptureFixture
) -> None:
    def app(environ: Environ, start_response: Any) -> list[bytes]:
        raise ZeroDivisionError("boom")

    s = serve(app)
    with caplog.at_level(logging.ERROR, "greenwire.wsgi"):
        s.send(b"GET /x HTTP/1.1\r\n\r\n")
        status, headers, body = s.response()
    assert status == 500 and body == b"500 Internal Server Error\n"
    assert headers["connection"] == "close"
    record = next(r for r in caplog.records if r.exc_info)
    assert "GET /x HTTP/1.1" in record.getMessage()
    assert record.exc_info is not None and record.exc_info[0] is ZeroDivisionError
    s.finish()


def test_close_is_always_called(serve: Callable[..., Served]) -> None:
    closed: list[str] = []

    class Body:
        def __init__(self, name: str, fail: bool) -> None:
            self.name, self.fail = name, fail

        def __iter__(self) -> Iterator[bytes]:
            yield b"a"
            if self.fail:
                raise RuntimeError("iteration failed")
            yield b"b"

        def close(self) -> None:
            closed.append(self.name)

    def app(environ: Environ, start_response: Any) -> Body:
        start_response("200 OK", [])
        return Body(environ["PATH_INFO"], environ["PATH_INFO"] == "/fail")

    s = serve(app)
    s.send(b"GET /ok HTTP/1.1\r\n\r\n")
    assert s.response()[2] == b"ab"
    s.send(b"GET /fail HTTP/1.1\r\n\r\n")
    data = s.read_to_eof()  # the head went out: the connection is cut short
    assert b"1\r\na\r\n" in data and not data.endswith(b"0\r\n\r\n")
    s.finish()
    assert closed == ["/ok", "/fail"]


def test_close_is_called_when_the_client_goes_away(serve: Callable[..., Served]) -> None:
    closed = greenwire.Event()
    gone = greenwire.Event()

    class Body:
        def __iter__(self) -> Iterator[bytes]:
            yield b"x" * 100_000
            gone.wait()
            for _ in range(100):
                yield b"y" * 100_000

        def close(self) -> None:
            closed.set()

    def app(environ: Environ, start_response: Any) -> Body:
        start_response("200 OK", [])
        return Body()

    s = serve(app)
    s.send(b"GET / HTTP/1.1\r\n\r\n")
    s.client.recv(10)
    s.client.close()
    gone.set()
    assert closed.wait(timeout=30)
    s.greenlet.get(timeout=30)


def test_start_response_twice_without_exc_info_is_an_error(
    serve: Callable[..., Served], caplog: pytest.LogCaptureFixture
) -> None:
    def app(environ: Environ, start_response: Any) -> list[bytes]:
        start_response("200 OK", [])
        start_response("404 Not Found", [])
        return [b""]

    s = serve(app)
    with caplog.at_level(logging.ERROR, "greenwire.wsgi"):
        s.send(b"GET / HTTP/1.1\r\n\r\n")
        assert s.response()[0] == 500
    assert "called again" in caplog.text
    s.finish()


def test_exc_info_before_the_head_replaces_the_response(serve: Callable[..., Served]) -> None:
    def app(environ: Environ, start_response: Any) -> list[bytes]:
        start_response("200 OK", [("X-First", "1")])
        try:
            raise ValueError("late failure")
        except ValueError as exc:
            start_response("502 Bad Gateway", [("X-Second", "1")], (ValueError, exc, None))
        return [b"replaced"]

    s = serve(app)
    s.send(b"GET / HTTP/1.1\r\n\r\n")
    status, headers, body = s.response()
    assert (status, body) == (502, b"replaced")
    assert "x-second" in headers and "x-first" not in headers
    s.finish()


def test_exc_info_after_the_head_reraises(serve: Callable[..., Served]) -> None:
    raised: list[BaseException] = []

    def app(environ: Environ, start_response: Any) -> Iterator[bytes]:
        start_response("200 OK", [])
        yield b"sent"
        try:
            raise KeyError("after head")
        except KeyError as exc:
            try:
                start_response("500 Oops", [], (KeyError, exc, exc.__traceback__))
            except KeyError as again:
                raised.append(again)
                raise

    s = serve(app)
    s.send(b"GET / HTTP/1.1\r\n\r\n")
    assert b"4\r\nsent\r\n" in s.read_to_eof()
    assert len(raised) == 1
    s.finish()


@pytest.mark.parametrize(
    "headers",
    [[("X-Bad", "a\r\nInjected: 1")], [("X-Bad", 1)], "not a list"],
)
def test_bad_headers_from_the_app_give_500(
    serve: Callable[..., Served], caplog: pytest.LogCaptureFixture, headers: Any
) -> None:
    def app(environ: Environ, start_response: Any) -> list[bytes]:
        start_response("200 OK", headers)
        return [b"x"]

    s = serve(app)
    with caplog.at_level(logging.ERROR, "greenwire.wsgi"):
        s.send(b"GET / HTTP/1.1\r\n\r\n")
        status, headers_seen, _ = s.response()
    assert status == 500 and "injected" not in headers_seen
    s.finish()


def test_body_before_start_response_gives_500(
    serve: Callable[..., Served], caplog: pytest.LogCaptureFixture
) -> None:
    def app(environ: Environ, start_response: Any) -> Iterator[bytes]:
        yield b"too early"

    s = serve(app)
    with caplog.at_level(logging.ERROR, "greenwire.wsgi"):
        s.send(b"GET / HTTP/1.1\r\n\r\n")
        assert s.response()[0] == 500
    s.finish()


def test_str_body_gives_500(serve: Callable[..., Served], caplog: pytest.LogCaptureFixture) -> None:
    def app(environ: Environ, start_response: Any) -> Iterator[Any]:
        start_response("200 OK", [])
        yield "text, not bytes"

    s = serve(app)
    with caplog.at_level(logging.ERROR, "greenwire.wsgi"):
        s.send(b"GET / HTTP/1.1\r\n\r\n")
        assert s.response()[0] == 500
    assert "must be bytes" in caplog.text
    s.finish()


def test_wsgi_errors_goes_to_the_log(
    serve: Callable[..., Served], caplog: pytest.LogCaptureFixture
) -> None:
    def app(environ: Environ, start_response: Any) -> list[bytes]:
        errors = environ["wsgi.errors"]
        errors.write("first line\nsecond ")
        errors.writelines(["line\n", "partial"])
        errors.flush()
        start_response("200 OK", [])
        return [b""]

    s = serve(app)
    with caplog.at_level(logging.ERROR, "greenwire.wsgi"):
        s.send(b"GET / HTTP/1.1\r\n\r\n")
        s.response()
    messages = [r.getMessage() for r in caplog.records if r.name == "greenwire.wsgi"]
    assert messages == ["first line", "second line", "partial"]
    s.finish()


# ------------------------------------------------------------------ bad clients


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        (b"BLAH\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nNo Colon Here\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\n" + b"X-Big: " + b"a" * 70_000 + b"\r\n\r\n", 431),
        (b"GET /" + b"a" * 70_000 + b" HTTP/1.1\r\n\r\n", 414),
        (b"POST / HTTP/1.1\r\nContent-Length: 2000000000\r\n\r\n", 413),
        (b"GET / HTTP/2.0\r\n\r\n", 505),
        (b"GET / HTTP/3.0\r\n\r\n", 400),
    ],
)
def test_bad_requests_get_their_status_and_a_close(
    serve: Callable[..., Served], raw: bytes, code: int
) -> None:
    calls: list[Environ] = []
    s = serve(capture(calls))
    s.send(raw)
    data = s.read_to_eof()
    assert data.startswith(b"HTTP/1.1 %d " % code)
    assert b"Connection: close" in data
    assert calls == []
    s.finish()


def test_chunked_body_over_the_limit_gives_413(serve: Callable[..., Served]) -> None:
    def app(environ: Environ, start_response: Any) -> list[bytes]:
        environ["wsgi.input"].read()
        start_response("200 OK", [])
        return [b"unreachable"]

    s = serve(app, max_body_size=10)
    s.send(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n")
    s.send(b"8\r\n12345678\r\n8\r\n12345678\r\n")
    status, headers, _ = s.response()
    assert status == 413 and headers["connection"] == "close"
    s.finish()


def test_reset_mid_request_is_logged_at_debug_and_harms_nobody(
    serve: Callable[..., Served], caplog: pytest.LogCaptureFixture
) -> None:
    reading = greenwire.Event()

    def app(environ: Environ, start_response: Any) -> list[bytes]:
        if environ["PATH_INFO"] == "/upload":
            reading.set()
            environ["wsgi.input"].read()
        start_response("200 OK", [])
        return [b"fine"]

    victim = serve(app)
    other = serve(app)
    with caplog.at_level(logging.DEBUG, "greenwire.wsgi"):
        victim.send(b"POST /upload HTTP/1.1\r\nContent-Length: 1000\r\n\r\npartial")
        reading.wait()
        victim.client.close()
        victim.greenlet.get(timeout=30)
        other.send(b"GET / HTTP/1.1\r\n\r\n")
        assert other.response()[2] == b"fine"
    assert all(r.levelno <= logging.DEBUG for r in caplog.records if r.name == "greenwire.wsgi")
    assert any("closed the connection" in r.getMessage() for r in caplog.records)
    other.finish()


def test_idle_connection_times_out(serve: Callable[..., Served], vclock: VirtualClock) -> None:
    s = serve(hello, keepalive_timeout=5.0)
    start = vclock.now()
    s.send(b"GET / HTTP/1.1\r\n\r\n")
    s.response()
    assert s.read_to_eof() == b""
    assert 5.0 <= vclock.now() - start <= 7.0
    s.finish()


def test_slow_request_head_gets_408(serve: Callable[..., Served], vclock: VirtualClock) -> None:
    s = serve(hello, header_timeout=10.0, keepalive_timeout=100.0)
    start = vclock.now()
    s.send(b"GET / HTTP/1.1\r\nHost: slow")
    data = s.read_to_eof()
    assert data.startswith(b"HTTP/1.1 408 Request Timeout")
    assert 10.0 <= vclock.now() - start <= 13.0
    s.finish()


def test_slow_body_times_out(serve: Callable[..., Served], vclock: VirtualClock) -> None:
    failures: list[BaseException] = []

    def app(environ: Environ, start_response: Any) -> list[bytes]:
        try:
            environ["wsgi.input"].read()
        except OSError as exc:
            failures.append(exc)
            raise
        start_response("200 OK", [])
        return [b""]

    s = serve(app, io_timeout=20.0)
    start = vclock.now()
    s.send(b"POST / HTTP/1.1\r\nContent-Length: 100\r\n\r\nonly a bit")
    assert s.read_to_eof() == b""
    assert 20.0 <= vclock.now() - start <= 23.0
    s.finish()
    assert len(failures) == 1


def test_client_that_does_not_read_the_response_times_out(
    serve: Callable[..., Served], vclock: VirtualClock
) -> None:
    def app(environ: Environ, start_response: Any) -> Iterator[bytes]:
        start_response("200 OK", [])
        for _ in range(1000):
            yield b"z" * 65536

    s = serve(app, io_timeout=30.0)
    start = vclock.now()
    s.send(b"GET / HTTP/1.1\r\n\r\n")
    s.greenlet.get(timeout=100)  # the handler gives up on the silent client
    assert 30.0 <= vclock.now() - start <= 33.0
    s.client.close()


def test_access_log_combined_format(
    serve: Callable[..., Served], caplog: pytest.LogCaptureFixture
) -> None:
    s = serve(hello)
    with caplog.at_level(logging.INFO, "greenwire.wsgi.access"):
        s.send(b"GET /page?q=1 HTTP/1.1\r\nReferer: http://ref/\r\nUser-Agent: tester/1.0\r\n\r\n")
        s.response()
        s.send(b"BAD\r\n\r\n")
        s.read_to_eof()
    lines = [r.getMessage() for r in caplog.records if r.name == "greenwire.wsgi.access"]
    assert len(lines) == 2
    pattern = (
        r"10\.1\.2\.3 - - \[\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d [+-]\d{4}\] "
        r'"GET /page\?q=1 HTTP/1\.1" 200 13 "http://ref/" "tester/1\.0"'
    )
    assert re.fullmatch(pattern, lines[0]), lines[0]
    assert '"-" 400 ' in lines[1]
    s.finish()


def test_no_access_log_when_disabled(
    serve: Callable[..., Served], caplog: pytest.LogCaptureFixture
) -> None:
    s = serve(hello, access_log=None)
    with caplog.at_level(logging.INFO, "greenwire.wsgi.access"):
        s.send(b"GET / HTTP/1.1\r\n\r\n")
        s.response()
    assert not [r for r in caplog.records if r.name == "greenwire.wsgi.access"]
    s.finish()


def test_handler_arguments_are_checked() -> None:
    with pytest.raises(TypeError, match="callable"):
        WSGIHandler("not an app")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="keepalive_timeout"):
        WSGIHandler(hello, keepalive_timeout=0)


# ------------------------------------------------------------------ WSGIServer


def test_server_end_to_end_with_http_client() -> None:
    server = WSGIServer(("127.0.0.1", 0), hello, access_log=None)
    server.start()
    host, port = server.address

    def client() -> list[tuple[int, bytes, str | None]]:
        conn = http.client.HTTPConnection(host, port, timeout=30)
        out = []
        try:
            for _ in range(3):
                conn.request("GET", "/")
                resp = conn.getresponse()
                out.append((resp.status, resp.read(), resp.getheader("Content-Length")))
            conn.request("POST", "/", body=b"x" * 1000)
            resp = conn.getresponse()
            out.append((resp.status, resp.read(), None))
        finally:
            conn.close()
        return out

    try:
        results = greenwire.run_in_thread(client)
    finally:
        server.stop(timeout=5)
    assert results[:3] == [(200, b"Hello, world!", "13")] * 3
    assert results[3][:2] == (200, b"Hello, world!")


def test_server_environ_and_many_concurrent_clients() -> None:
    seen: list[Environ] = []
    server = WSGIServer(("127.0.0.1", 0), capture(seen, b"pong"), access_log=None)
    server.start()
    host, port = server.address

    def one(i: int) -> bytes:
        sock = gsocket.create_connection((host, port), timeout=30)
        try:
            sock.sendall(b"GET /%d HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n" % i)
            data = b""
            for _ in range(100):
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
            return data
        finally:
            sock.close()

    try:
        clients = [greenwire.spawn(one, i) for i in range(20)]
        replies = [g.get(timeout=30) for g in clients]
    finally:
        server.stop(timeout=5)
    assert all(r.endswith(b"\r\n\r\npong") for r in replies)
    assert sorted(e["PATH_INFO"] for e in seen) == sorted(f"/{i}" for i in range(20))
    assert seen[0]["SERVER_NAME"] == "127.0.0.1" and seen[0]["SERVER_PORT"] == str(port)
    assert seen[0]["REMOTE_ADDR"] == "127.0.0.1"
    assert seen[0]["wsgi.url_scheme"] == "http"


def test_server_stop_closes_idle_keep_alive_connections() -> None:
    server = WSGIServer(("127.0.0.1", 0), hello, access_log=None)
    server.start()
    sock = gsocket.create_connection(server.address, timeout=30)
    try:
        sock.sendall(b"GET / HTTP/1.1\r\n\r\n")
        Responses(sock).next()
        assert server.handler.connection_count == 1
        server.stop(timeout=5)
        assert sock.recv(100) == b""  # closed by the server, not killed after the timeout
        assert server.handler.connection_count == 0
    finally:
        sock.close()
        server.stop()


def test_public_module_reexports_the_server() -> None:
    import greenwire.wsgi

    assert greenwire.wsgi.WSGIServer is WSGIServer
    assert greenwire.wsgi.WSGIHandler is WSGIHandler


def test_server_over_tls_sets_https_scheme() -> None:
    import ssl

    import trustme

    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_context)
    client_context = ssl.create_default_context()
    ca.configure_trust(client_context)
    seen: list[Environ] = []
    server = WSGIServer(
        ("127.0.0.1", 0), capture(seen, b"secret"), ssl_context=server_context, access_log=None
    )
    server.start()
    host, port = server.address

    def client() -> list[bytes]:
        conn = http.client.HTTPSConnection(host, port, timeout=30, context=client_context)
        try:
            bodies = []
            for _ in range(2):
                conn.request("GET", "/tls")
                bodies.append(conn.getresponse().read())
            return bodies
        finally:
            conn.close()

    try:
        bodies = greenwire.run_in_thread(client)
    finally:
        server.stop(timeout=5)
    assert bodies == [b"secret", b"secret"]
    assert [e["wsgi.url_scheme"] for e in seen] == ["https", "https"]
