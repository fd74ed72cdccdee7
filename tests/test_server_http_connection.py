"""The sans-IO HTTP/1.1 server connection: parsing, limits, keep-alive and framing."""

from __future__ import annotations

import gc
import re

import pytest

from greenwire.server.http import (
    CHUNKED,
    CONNECTION_CLOSED,
    LENGTH,
    NEED_DATA,
    NO_BODY,
    UNTIL_CLOSE,
    Data,
    EndOfMessage,
    Event,
    LocalProtocolError,
    RemoteProtocolError,
    Request,
    ServerConnection,
)


def events_of(conn: ServerConnection) -> list[Event]:
    """Every event available now, up to and including NEED_DATA / CONNECTION_CLOSED."""
    out: list[Event] = []
    for _ in range(1000):
        event = conn.next_event()
        out.append(event)
        if event is NEED_DATA or event is CONNECTION_CLOSED:
            return out
    raise AssertionError("no end to the events")


def error_of(conn: ServerConnection) -> RemoteProtocolError:
    """The error the connection raises after handing out what came before it."""
    with pytest.raises(RemoteProtocolError) as info:
        events_of(conn)
    return info.value


def request(method: bytes = b"GET", version: str = "1.1", keep_alive: bool = True) -> Request:
    return Request(method, b"/", version, [], keep_alive)


# ------------------------------------------------------------------ parsing


def test_simple_get_gives_request_then_end_of_message() -> None:
    conn = ServerConnection()
    conn.receive_data(b"GET /a/b?x=1 HTTP/1.1\r\nHost: example\r\nAccept: */*\r\n\r\n")
    req, end, need = events_of(conn)
    assert isinstance(req, Request)
    assert req.method == b"GET"
    assert req.target == b"/a/b?x=1"
    assert req.http_version == "1.1"
    assert req.headers == [(b"Host", b"example"), (b"Accept", b"*/*")]
    assert req.keep_alive and not req.expect_continue and not req.has_body
    assert isinstance(end, EndOfMessage) and list(end.trailers) == []
    assert need is NEED_DATA


def test_request_split_across_many_reads_byte_by_byte() -> None:
    conn = ServerConnection()
    raw = b"POST /upload HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello"
    body = b""
    seen: list[Event] = []
    for i in range(len(raw)):
        conn.receive_data(raw[i : i + 1])
        for event in events_of(conn)[:-1]:
            seen.append(event)
            if isinstance(event, Data):
                body += event.data
    assert isinstance(seen[0], Request)
    assert seen[0].content_length == 5 and seen[0].has_body
    assert isinstance(seen[-1], EndOfMessage)
    assert body == b"hello"


def test_buffer_may_be_reused_after_receive_data() -> None:
    conn = ServerConnection()
    buffer = bytearray(b"POST / HTTP/1.1\r\nContent-Length: 3\r\n\r\nab")
    conn.receive_data(memoryview(buffer))
    buffer[:] = b"X" * len(buffer)
    conn.receive_data(b"c")
    events = events_of(conn)
    assert b"".join(e.data for e in events if isinstance(e, Data)) == b"abc"


def test_chunked_body_and_trailers() -> None:
    conn = ServerConnection()
    conn.receive_data(
        b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"3\r\nabc\r\n2\r\nde\r\n0\r\nX-Checksum: 42\r\n\r\n"
    )
    req, *middle, end, need = events_of(conn)
    assert isinstance(req, Request) and req.chunked and req.content_length is None
    assert b"".join(e.data for e in middle if isinstance(e, Data)) == b"abcde"
    assert isinstance(end, EndOfMessage)
    assert list(end.trailers) == [(b"X-Checksum", b"42")]
    assert need is NEED_DATA


def test_pipelined_requests_come_out_in_order() -> None:
    conn = ServerConnection()
    conn.receive_data(
        b"GET /1 HTTP/1.1\r\n\r\n"
        b"POST /2 HTTP/1.1\r\nContent-Length: 2\r\n\r\nok"
        b"GET /3 HTTP/1.1\r\n\r\n"
    )
    events = events_of(conn)
    targets = [e.target for e in events if isinstance(e, Request)]
    assert targets == [b"/1", b"/2", b"/3"]
    assert sum(isinstance(e, EndOfMessage) for e in events) == 3


def test_data_fed_before_the_queue_is_empty_comes_out_after_it() -> None:
    conn = ServerConnection()
    conn.receive_data(b"GET /1 HTTP/1.1\r\n\r\nPOST /2 HTTP/1.1\r\nContent-Length: 4\r\n\r\nab")
    first = conn.next_event()
    assert isinstance(first, Request) and first.target == b"/1"
    conn.receive_data(b"cdGET /3 HTTP/1.1\r\n\r\n")  # three events still queued
    conn.receive_data(b"GET /4 HTTP/1.1\r\n\r\n")
    kinds = [
        e.target if isinstance(e, Request) else e.data if isinstance(e, Data) else e
        for e in events_of(conn)
    ]
    kinds = [EndOfMessage if isinstance(k, EndOfMessage) else k for k in kinds]
    assert kinds == [
        EndOfMessage, b"/2", b"ab", b"cd", EndOfMessage, b"/3", EndOfMessage, b"/4",
        EndOfMessage, NEED_DATA,
    ]  # fmt: skip


def test_nothing_of_a_request_is_held_once_its_events_are_out() -> None:
    conn = ServerConnection()
    conn.receive_data(
        b"POST /unique-target HTTP/1.1\r\nTransfer-Encoding: chunked\r\nX-A: b\r\n\r\n"
        b"1\r\nx\r\n0\r\nX-Trailer: t\r\n\r\n"
    )
    req, _, end, need = events_of(conn)
    assert isinstance(req, Request) and isinstance(end, EndOfMessage) and need is NEED_DATA
    held = gc.get_referents(conn)
    for part in (req.target, req.headers, end.trailers):
        assert not any(obj is part for obj in held), part
    conn.receive_data(b"GET /next HTTP/1.1\r\nX-B: c\r\n\r\n")  # and the next one works
    nxt = conn.next_event()
    assert isinstance(nxt, Request) and nxt.target == b"/next" and nxt.headers == [(b"X-B", b"c")]


def test_repeated_headers_are_kept_separately() -> None:
    conn = ServerConnection()
    conn.receive_data(b"GET / HTTP/1.1\r\nAccept: a\r\nAccept: b\r\n\r\n")
    req = conn.next_event()
    assert isinstance(req, Request)
    assert req.headers == [(b"Accept", b"a"), (b"Accept", b"b")]


def test_expect_continue_is_reported() -> None:
    conn = ServerConnection()
    conn.receive_data(b"PUT / HTTP/1.1\r\nExpect: 100-Continue\r\nContent-Length: 4\r\n\r\n")
    req = conn.next_event()
    assert isinstance(req, Request) and req.expect_continue
    assert conn.next_event() is NEED_DATA


@pytest.mark.parametrize(
    ("head", "keep_alive"),
    [
        (b"GET / HTTP/1.1\r\n\r\n", True),
        (b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n", False),
        (b"GET / HTTP/1.0\r\n\r\n", False),
        (b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", True),
    ],
)
def test_keep_alive_follows_version_and_connection_header(head: bytes, keep_alive: bool) -> None:
    conn = ServerConnection()
    conn.receive_data(head)
    req = conn.next_event()
    assert isinstance(req, Request) and req.keep_alive is keep_alive


def test_nothing_is_parsed_after_a_closing_request() -> None:
    conn = ServerConnection()
    conn.receive_data(b"GET /1 HTTP/1.1\r\nConnection: close\r\n\r\nGET /2 HTTP/1.1\r\n\r\n")
    conn.receive_data(b"more garbage")
    events = events_of(conn)
    assert [type(e) for e in events[:2]] == [Request, EndOfMessage]
    assert events[2] is CONNECTION_CLOSED


def test_upgrade_request_has_no_body_and_ends_the_conversation() -> None:
    conn = ServerConnection()
    conn.receive_data(
        b"GET /ws HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n\x81\x00binary"
    )
    req, end, closed = events_of(conn)
    assert isinstance(req, Request) and req.upgrade and not req.keep_alive
    assert not req.has_body
    assert isinstance(end, EndOfMessage)
    assert closed is CONNECTION_CLOSED


def test_clean_eof_between_requests_is_connection_closed() -> None:
    conn = ServerConnection()
    conn.receive_data(b"GET / HTTP/1.1\r\n\r\n")
    conn.receive_data(b"")
    assert conn.their_eof
    assert [type(e) for e in events_of(conn)[:2]] == [Request, EndOfMessage]
    assert conn.next_event() is CONNECTION_CLOSED


def test_eof_in_the_middle_of_a_request_is_an_error() -> None:
    conn = ServerConnection()
    conn.receive_data(b"POST / HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc")
    assert conn.in_request
    conn.receive_data(b"")
    assert error_of(conn).status_code == 400


# ------------------------------------------------------------------ bad input


@pytest.mark.parametrize(
    "raw",
    [
        b"NOT HTTP AT ALL\r\n\r\n",
        b"GET / HTTP/1.1\r\nBad Header\r\n\r\n",
        b"GET / HTTP/1.1\r\nA: 1\r\n folded\r\n\r\n",
        b"POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabc",
        b"POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"GET / HTTP/1.1\nHost: x\n\n",
    ],
)
def test_malformed_requests_are_400(raw: bytes) -> None:
    conn = ServerConnection()
    conn.receive_data(raw)
    err = error_of(conn)
    assert err.status_code == 400
    assert "malformed" in str(err)


def test_unsupported_http_version_is_505() -> None:
    conn = ServerConnection()
    conn.receive_data(b"GET / HTTP/2.0\r\n\r\n")
    assert error_of(conn).status_code == 505


def test_good_request_is_served_before_the_bad_one_behind_it() -> None:
    conn = ServerConnection()
    conn.receive_data(b"GET /good HTTP/1.1\r\n\r\nGET /bad HTTP/1.1\r\nBad Header\r\n\r\n")
    req = conn.next_event()
    assert isinstance(req, Request) and req.target == b"/good"
    assert isinstance(conn.next_event(), EndOfMessage)
    with pytest.raises(RemoteProtocolError):
        conn.next_event()
    with pytest.raises(RemoteProtocolError):  # and it stays failed
        conn.next_event()


def test_too_many_headers_is_431() -> None:
    conn = ServerConnection(max_headers=3)
    headers = b"".join(b"H%d: v\r\n" % i for i in range(4))
    conn.receive_data(b"GET / HTTP/1.1\r\n" + headers + b"\r\n")
    assert error_of(conn).status_code == 431


def test_headers_too_large_in_complete_lines_is_431() -> None:
    conn = ServerConnection(max_header_size=100)
    conn.receive_data(b"GET / HTTP/1.1\r\nA: " + b"x" * 60 + b"\r\nB: " + b"y" * 60 + b"\r\n\r\n")
    assert error_of(conn).status_code == 431


def test_a_header_line_that_never_ends_is_431() -> None:
    conn = ServerConnection(max_header_size=1000)
    conn.receive_data(b"GET / HTTP/1.1\r\nHost: x\r\nCookie: ")
    for _ in range(20):  # llhttp keeps the partial value to itself: counted per feed
        conn.receive_data(b"c" * 100)
    assert error_of(conn).status_code == 431


def test_long_request_target_is_414() -> None:
    conn = ServerConnection(max_header_size=100)
    conn.receive_data(b"GET /" + b"a" * 200 + b" HTTP/1.1\r\n\r\n")
    assert error_of(conn).status_code == 414


@pytest.mark.parametrize("method", [b"GET", b"OPTIONS"])
def test_request_line_limit_counts_the_whole_line(method: bytes) -> None:
    line = method + b" /" + b"a" * 40 + b" HTTP/1.1"
    at_limit = ServerConnection(max_request_line=len(line))
    at_limit.receive_data(line + b"\r\n\r\n")
    assert isinstance(events_of(at_limit)[0], Request)
    over = ServerConnection(max_request_line=len(line) - 1)
    over.receive_data(line + b"\r\n\r\n")
    assert error_of(over).status_code == 414


def test_request_line_over_its_limit_is_refused_before_it_ends() -> None:
    conn = ServerConnection(max_request_line=100)
    conn.receive_data(b"GET /")
    assert events_of(conn) == [NEED_DATA]
    conn.receive_data(b"a" * 200)  # no end of line yet
    assert error_of(conn).status_code == 414


def test_header_field_limit_counts_name_value_and_crlf() -> None:
    field = b"X-Field: " + b"v" * 41  # 50 bytes, 52 with its CRLF
    at_limit = ServerConnection(max_field_size=52)
    at_limit.receive_data(b"GET / HTTP/1.1\r\n" + field + b"\r\n\r\n")
    assert isinstance(events_of(at_limit)[0], Request)
    over = ServerConnection(max_field_size=51)
    over.receive_data(b"GET / HTTP/1.1\r\n" + field + b"\r\n\r\n")
    assert error_of(over).status_code == 431


def test_partial_header_field_over_its_limit_is_refused_before_it_ends() -> None:
    conn = ServerConnection(max_field_size=1000, max_header_size=1 << 20)
    conn.receive_data(b"GET / HTTP/1.1\r\nHost: x\r\nCookie: ")
    for _ in range(9):
        conn.receive_data(memoryview(b"c" * 100))
    conn.receive_data(b"c" * 92)
    assert events_of(conn) == [NEED_DATA]  # 1000 bytes of the line so far: allowed
    conn.receive_data(b"c")
    assert error_of(conn).status_code == 431


def test_partial_line_is_counted_from_the_last_line_break() -> None:
    conn = ServerConnection(max_field_size=100, max_request_line=100)
    conn.receive_data(b"GET / HTTP/1.1\r\n" + b"A: " + b"a" * 90 + b"\r\nB: bb")
    conn.receive_data(b"b" * 80)
    conn.receive_data(b"\r\n\r\n")
    request = events_of(conn)[0]
    assert isinstance(request, Request) and len(request.headers) == 2


def test_per_line_limits_can_be_switched_off() -> None:
    conn = ServerConnection(max_request_line=None, max_field_size=None)
    long_line = b"GET /" + b"a" * 20_000 + b" HTTP/1.1\r\n"
    conn.receive_data(long_line + b"X: " + b"v" * 20_000 + b"\r\n\r\n")
    assert isinstance(events_of(conn)[0], Request)


@pytest.mark.parametrize("name", ["max_request_line", "max_field_size", "max_headers"])
def test_limits_must_be_positive_ints(name: str) -> None:
    with pytest.raises(ValueError, match=name):
        ServerConnection(**{name: 0})


def test_declared_body_over_the_limit_is_413_before_any_event() -> None:
    conn = ServerConnection(max_body_size=10)
    conn.receive_data(b"POST / HTTP/1.1\r\nContent-Length: 11\r\n\r\n")
    assert error_of(conn).status_code == 413


def test_chunked_body_over_the_limit_is_413_after_what_fit() -> None:
    conn = ServerConnection(max_body_size=10)
    conn.receive_data(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n8\r\n12345678\r\n")
    req, data, need = events_of(conn)
    assert isinstance(req, Request) and isinstance(data, Data) and need is NEED_DATA
    conn.receive_data(b"8\r\n12345678\r\n")
    assert error_of(conn).status_code == 413


def test_body_within_the_limit_is_fine() -> None:
    conn = ServerConnection(max_body_size=10)
    conn.receive_data(b"POST / HTTP/1.1\r\nContent-Length: 10\r\n\r\n0123456789")
    assert isinstance(events_of(conn)[-2], EndOfMessage)


# ------------------------------------------------------------------ responses


def head_lines(head: bytes) -> list[str]:
    assert head.endswith(b"\r\n\r\n")
    return head.decode("latin-1")[:-4].split("\r\n")


def test_response_with_known_length() -> None:
    conn = ServerConnection()
    head = conn.start_response(request(), "200 OK", [("Content-Type", "text/plain")], 5)
    lines = head_lines(head)
    assert lines[0] == "HTTP/1.1 200 OK"
    assert "Content-Type: text/plain" in lines
    assert "Content-Length: 5" in lines
    assert "Server: greenwire" in lines
    assert any(re.fullmatch(r"Date: \w{3}, \d\d \w{3} \d{4} \d\d:\d\d:\d\d GMT", x) for x in lines)
    assert conn.framing is LENGTH
    assert conn.send_data(b"hello") == b"hello"
    assert conn.end_response() == b""
    assert conn.keep_alive and conn.framing is None


def test_response_without_length_is_chunked_for_http11() -> None:
    conn = ServerConnection()
    lines = head_lines(conn.start_response(request(), "200 OK", []))
    assert "Transfer-Encoding: chunked" in lines
    assert conn.framing is CHUNKED
    assert conn.send_data(b"hello") == b"5\r\nhello\r\n"
    assert conn.send_data(b"") == b""  # an empty chunk would end the body
    assert conn.send_data(b"x" * 26) == b"1a\r\n" + b"x" * 26 + b"\r\n"
    assert conn.end_response() == b"0\r\n\r\n"
    assert conn.keep_alive


def test_response_without_length_to_http10_is_delimited_by_close() -> None:
    conn = ServerConnection()
    lines = head_lines(conn.start_response(request(version="1.0", keep_alive=True), "200 OK", []))
    assert "Connection: close" in lines
    assert not any(x.startswith("Transfer-Encoding") for x in lines)
    assert conn.framing is UNTIL_CLOSE
    assert conn.send_data(b"abc") == b"abc"
    conn.end_response()
    assert not conn.keep_alive


def test_http10_keep_alive_is_confirmed() -> None:
    conn = ServerConnection()
    lines = head_lines(conn.start_response(request(version="1.0"), "200 OK", [], 0))
    assert "Connection: keep-alive" in lines


@pytest.mark.parametrize(
    ("method", "status"), [(b"HEAD", "200 OK"), (b"GET", "204 No Content"), (b"GET", "304 X")]
)
def test_no_body_for_head_204_304(method: bytes, status: str) -> None:
    conn = ServerConnection()
    lines = head_lines(conn.start_response(request(method), status, [], None))
    assert not any(x.startswith(("Transfer-Encoding", "Content-Length")) for x in lines)
    assert conn.framing is NO_BODY
    assert conn.send_data(b"ignored") == b""
    assert conn.end_response() == b""
    assert conn.keep_alive


def test_head_response_carries_the_length_a_get_would_have() -> None:
    conn = ServerConnection()
    lines = head_lines(conn.start_response(request(b"HEAD"), "200 OK", [], 1234))
    assert "Content-Length: 1234" in lines
    assert conn.send_data(b"x" * 1234) == b""


def test_declared_content_length_wins_and_excess_is_dropped() -> None:
    conn = ServerConnection()
    head = conn.start_response(request(), "200 OK", [("content-length", "3")], 99)
    assert head_lines(head).count("content-length: 3") == 1
    assert b"Content-Length: 99" not in head
    assert conn.send_data(b"ab") == b"ab"
    assert conn.send_data(b"cdef") == b"c"
    assert conn.truncated == 3
    conn.end_response()
    assert conn.keep_alive


def test_short_body_ends_the_connection() -> None:
    conn = ServerConnection()
    conn.start_response(request(), "200 OK", [("Content-Length", "10")])
    assert conn.remaining == 10
    conn.send_data(b"abc")
    assert conn.remaining == 7
    conn.end_response()
    assert not conn.keep_alive


def test_record_data_counts_bytes_sent_directly() -> None:
    conn = ServerConnection()
    conn.start_response(request(), "200 OK", [], 10)
    conn.record_data(10)
    assert conn.remaining == 0
    conn.end_response()
    assert conn.keep_alive
    conn.start_response(request(), "200 OK", [])
    with pytest.raises(LocalProtocolError):
        conn.record_data(3)  # chunked: raw bytes would break the framing


def test_application_connection_close_is_honoured_once() -> None:
    conn = ServerConnection()
    lines = head_lines(conn.start_response(request(), "200 OK", [("Connection", "close")], 0))
    assert [x for x in lines if x.lower().startswith("connection")] == ["Connection: close"]
    conn.end_response()
    assert not conn.keep_alive


def test_closing_request_gets_connection_close() -> None:
    conn = ServerConnection()
    lines = head_lines(conn.start_response(request(keep_alive=False), "200 OK", [], 0))
    assert "Connection: close" in lines
    assert not conn.keep_alive


def test_close_argument_ends_the_connection() -> None:
    conn = ServerConnection()
    assert "Connection: close" in head_lines(
        conn.start_response(request(), "200 OK", [], 0, close=True)
    )
    assert not conn.keep_alive


def test_transfer_encoding_from_the_caller_is_dropped() -> None:
    conn = ServerConnection()
    lines = head_lines(conn.start_response(request(), "200 OK", [("Transfer-Encoding", "gzip")]))
    assert "Transfer-Encoding: gzip" not in lines
    assert lines.count("Transfer-Encoding: chunked") == 1


def test_given_date_and_server_are_kept() -> None:
    conn = ServerConnection(server_header=None)
    lines = head_lines(
        conn.start_response(request(), "200 OK", [("Date", "then"), ("server", "mine")], 0)
    )
    assert "Date: then" in lines and "server: mine" in lines
    assert len([x for x in lines if x.lower().startswith(("date", "server"))]) == 2


def test_no_server_header_when_disabled() -> None:
    conn = ServerConnection(server_header=None)
    assert b"Server:" not in conn.start_response(request(), "200 OK", [], 0)


@pytest.mark.parametrize(
    "headers",
    [
        [("X-Evil", "a\r\nSet-Cookie: stolen=1")],
        [("X-Evil", "a\nb")],
        [("X-Evil", "a\rb")],
        [("X-Evil\r\nInjected", "1")],
    ],
)
def test_line_breaks_in_headers_are_refused(headers: list[tuple[str, str]]) -> None:
    conn = ServerConnection()
    with pytest.raises(ValueError, match="line break"):
        conn.start_response(request(), "200 OK", headers)
    assert conn.framing is None  # nothing started: the caller can still send an error


def test_line_break_in_status_is_refused() -> None:
    conn = ServerConnection()
    with pytest.raises(ValueError, match="line break"):
        conn.start_response(request(), "200 OK\r\nX: y", [])


@pytest.mark.parametrize("status", ["OK", "20 OK", "200", "abc OK", "200-OK"])
def test_malformed_status_is_refused(status: str) -> None:
    with pytest.raises(ValueError, match="malformed status"):
        ServerConnection().start_response(request(), status, [])


def test_non_string_header_is_refused() -> None:
    with pytest.raises(TypeError, match="must be str"):
        ServerConnection().start_response(request(), "200 OK", [("X", 1)])  # type: ignore[list-item]
    with pytest.raises(TypeError, match="must be str"):
        ServerConnection().start_response(request(), "200 OK", [(b"X", "1")])  # type: ignore[list-item]


def test_non_latin1_header_is_refused() -> None:
    with pytest.raises(UnicodeEncodeError):
        ServerConnection().start_response(request(), "200 OK", [("X", "\u20ac")])


def test_bad_content_length_is_refused() -> None:
    with pytest.raises(ValueError, match="Content-Length"):
        ServerConnection().start_response(request(), "200 OK", [("Content-Length", "-1")])


def test_response_calls_out_of_order_are_errors() -> None:
    conn = ServerConnection()
    with pytest.raises(LocalProtocolError):
        conn.send_data(b"x")
    with pytest.raises(LocalProtocolError):
        conn.end_response()
    conn.start_response(request(), "200 OK", [])
    with pytest.raises(LocalProtocolError):
        conn.start_response(request(), "200 OK", [])


def test_abort_response_ends_the_connection() -> None:
    conn = ServerConnection()
    conn.start_response(request(), "200 OK", [])
    conn.abort_response()
    assert conn.framing is None and not conn.keep_alive
