"""The server side of an HTTP/1.1 connection as a state machine: bytes in, events out.

:class:`ServerConnection` does no I/O. The caller feeds it what it received
(:meth:`~ServerConnection.receive_data`), takes events from it
(:meth:`~ServerConnection.next_event`), and asks it for the bytes of a response
(:meth:`~ServerConnection.start_response`, :meth:`~ServerConnection.send_data`,
:meth:`~ServerConnection.end_response`), which it sends however it likes.

Theory of operation
-------------------
Parsing is done by httptools (llhttp, the parser of Node.js), which calls back for each
part of a request. It cannot be paused: one ``feed_data`` parses everything it is given,
including further pipelined requests. So the callbacks only queue events, and
:meth:`~ServerConnection.next_event` hands them out in order; the caller never receives
more than it asks for before it has answered the request in front of it, and since it
only receives more bytes when the queue is empty (``NEED_DATA``), the queue holds at most
one read's worth of requests. The queue is a list kept newest first (reversed after each
feed, so taking the next event is a ``pop()``): a deque would cost each idle connection
over 600 bytes. Nothing of a request is kept once its events are out (the head's parts
are handed over, not copied), so an idle connection holds only the parser.

An error is queued behind the events that came before it: a good pipelined request is
still served before the bad one after it is answered with a 400. Once a request asks for
the connection to close (``Connection: close``, HTTP/1.0 without keep-alive) or to switch
protocols, the rest of what the client sends is not HTTP/1.1 to us and is ignored.

llhttp sets no limit on the size of a request head, so this layer keeps count: the
request line and headers delivered so far, plus everything fed while a head is still
incomplete (llhttp keeps a partial header line to itself until it is whole). The count
over ``max_header_size`` gives 431 (414 if the request target alone is over it).

Single lines have limits of their own. The request line (``METHOD target HTTP/1.1``,
without its CRLF) over ``max_request_line`` gives 414: the target arrives piece by piece
through ``on_url``, so a long one is refused while it is still coming in (the method is
looked up only once the target is long enough for it to matter). A header field, counted
as ``name: value`` plus CRLF, over ``max_field_size`` gives 431 when llhttp delivers it.
A field that is still incomplete is invisible to us, and httptools grows its value by
concatenation, which is quadratic in the number of pieces: so whenever a read leaves a
head incomplete, the bytes since the last line break of the head are counted too, and a
partial line over the limit is refused before it is whole. Until the first header has
arrived that partial line may still be the request line, so it is held to the larger of
the two limits then.

Responses: the framing is chosen from the request and the headers given: no body after
HEAD, 1xx, 204 and 304; the application's ``Content-Length`` if it set one; the length of
the whole body when the caller knows it (``content_length=``); chunked for HTTP/1.1
otherwise; and for an HTTP/1.0 client, a body delimited by closing the connection.
``Date``, ``Server`` and the ``Connection`` header the decision needs are added unless
the caller gave them. The head is built with a single join and encoded once; header
values are checked for line breaks (response splitting) on the joined text, by counting
them, rather than one by one.
"""

from __future__ import annotations

from collections.abc import Callable
from email.utils import formatdate
from time import time
from types import SimpleNamespace
from typing import Final

from httptools import HttpParserError, HttpParserUpgrade, HttpRequestParser

from greenwire.server.http.errors import LocalProtocolError, RemoteProtocolError
from greenwire.server.http.events import (
    CONNECTION_CLOSED,
    NEED_DATA,
    Data,
    EndOfMessage,
    Event,
    Headers,
    Request,
)

#: Response framings (see :attr:`ServerConnection.framing`).
NO_BODY: Final = "no-body"
LENGTH: Final = "content-length"
CHUNKED: Final = "chunked"
UNTIL_CLOSE: Final = "until-close"

DEFAULT_MAX_HEADER_SIZE: Final = 64 * 1024
DEFAULT_MAX_HEADERS: Final = 100
DEFAULT_MAX_REQUEST_LINE: Final = 8190
DEFAULT_MAX_FIELD_SIZE: Final = 8190
#: What a request line holds besides its target, at most: the longest method llhttp
#: knows is under 20 bytes, plus two spaces and ``HTTP/1.1``.
_LINE_OVERHEAD_MAX = 32
_UNLIMITED = 1 << 62

CONTINUE_RESPONSE: Final = b"HTTP/1.1 100 Continue\r\n\r\n"
#: The headers slot outside a request head: shared, never appended to.
_NO_HEADERS: Final[Headers] = []
_LAST_CHUNK = b"0\r\n\r\n"


class PerSecond:
    """The current time as ``format(second)`` makes it, formatted at most once a second."""

    __slots__ = ("_format", "_second", "_text")

    def __init__(self, format: Callable[[int], str]) -> None:
        self._format = format
        self._second = -1
        self._text = ""

    def __call__(self) -> str:
        second = int(time())
        if second != self._second:
            self._text = self._format(second)
            self._second = second
        return self._text


#: The current time as an HTTP date (the ``Date`` header).
http_date = PerSecond(lambda second: formatdate(second, usegmt=True))


def check_limits(**limits: int | None) -> None:
    """Raise ValueError for a limit that is neither None nor a positive int."""
    for name, limit in limits.items():
        if limit is not None and (type(limit) is not int or limit < 1):
            raise ValueError(f"{name} must be a positive int, not {limit!r}")


class ServerConnection:
    """One HTTP/1.1 server connection: parses requests and frames responses, no I/O.

    Args:
        max_header_size: bytes allowed in a request line plus headers (431 / 414 beyond).
        max_headers: header lines allowed in a request (431 beyond).
        max_request_line: bytes allowed in the request line, without its CRLF (414
            beyond); None for no limit but ``max_header_size``.
        max_field_size: bytes allowed in one header line, CRLF included (431 beyond);
            None for no limit but ``max_header_size``.
        max_body_size: body bytes allowed in a request, None for no limit (413 beyond).
        server_header: the ``Server`` header added to responses, None for none.
    """

    __slots__ = (
        "max_header_size",
        "max_headers",
        "max_request_line",
        "max_field_size",
        "max_body_size",
        "server_header",
        "keep_alive",
        "framing",
        "truncated",
        "in_request",
        "_parser",
        "_events",
        "_error",
        "_stopped",
        "_eof",
        "_in_head",
        "_target",
        "_headers",
        "_head_size",
        "_unparsed_head",
        "_partial_line",
        "_target_limit",
        "_field_limit",
        "_partial_limits",
        "_body_size",
        "_content_length",
        "_chunked",
        "_expect_continue",
        "_trailers",
        "_remaining",
    )

    def __init__(
        self,
        *,
        max_header_size: int = DEFAULT_MAX_HEADER_SIZE,
        max_headers: int = DEFAULT_MAX_HEADERS,
        max_request_line: int | None = DEFAULT_MAX_REQUEST_LINE,
        max_field_size: int | None = DEFAULT_MAX_FIELD_SIZE,
        max_body_size: int | None = None,
        server_header: str | None = "greenwire",
    ) -> None:
        check_limits(
            max_header_size=max_header_size,
            max_headers=max_headers,
            max_request_line=max_request_line,
            max_field_size=max_field_size,
        )
        self.max_header_size = max_header_size
        self.max_headers = max_headers
        self.max_request_line = max_request_line
        self.max_field_size = max_field_size
        # The limits are read through these on the hot path (set once, here).
        line = _UNLIMITED if max_request_line is None else max_request_line
        field = _UNLIMITED if max_field_size is None else max_field_size
        self._target_limit = min(max_header_size, line - _LINE_OVERHEAD_MAX)
        self._field_limit = field
        # A partial head line: (limit before the first header, limit after it), or None.
        self._partial_limits: tuple[int, int] | None = (
            None
            if max_field_size is None and max_request_line is None
            else (max(line, field), field)
        )
        self.max_body_size = max_body_size
        self.server_header = server_header
        #: False once either side has said this is the last exchange.
        self.keep_alive = True
        #: How the current response body is delimited; None between responses.
        self.framing: str | None = None
        #: Body bytes dropped by :meth:`send_data` beyond the declared Content-Length.
        self.truncated = 0
        self._events: list[Event] = []  # newest first (see the module docstring)
        self._error: RemoteProtocolError | None = None
        self._stopped = False
        self._eof = False
        #: True between the first byte of a request and its end (an attribute, not a
        #: property: the caller reads it once per request).
        self.in_request = False
        self._in_head = False
        self._target = b""
        self._headers = _NO_HEADERS
        self._head_size = 0
        self._unparsed_head = 0
        self._partial_line = 0
        self._body_size = 0
        self._content_length: int | None = None
        self._chunked = False
        self._expect_continue = False
        self._trailers: Headers | None = None
        self._remaining = 0
        callbacks = SimpleNamespace(
            on_message_begin=self._on_message_begin,
            on_url=self._on_url,
            on_header=self._on_header,
            on_headers_complete=self._on_headers_complete,
            on_body=self._on_body,
            on_message_complete=self._on_message_complete,
        )
        self._parser = HttpRequestParser(callbacks)

    # ------------------------------------------------------------ receiving

    def receive_data(self, data: bytes | bytearray | memoryview) -> None:
        """Feed bytes received from the client; ``b""`` means it closed its side.

        The data is parsed at once and not kept: the caller may reuse its buffer.
        Errors are not raised here but by :meth:`next_event`, in order.
        """
        if self._stopped or self._error is not None:
            return  # nothing after the last request or an error is HTTP to us
        if not data:
            self._eof = True
            return
        events = self._events
        if events:  # events not taken yet: back to oldest first for the callbacks
            events.reverse()
        try:
            try:
                self._parser.feed_data(data)
            except HttpParserUpgrade:
                self._stopped = True
            except HttpParserError as exc:
                if not self._stopped:  # else: bytes after "Connection: close", ignored
                    self._fail(exc)
                return
            except RemoteProtocolError as exc:  # pragma: no cover - httptools wraps these
                self._error = exc
                return
            if self._in_head:
                self._unparsed_head += len(data)
                if self._unparsed_head > self.max_header_size:
                    self._error = RemoteProtocolError("request header fields too large", 431)
                elif self._partial_limits is not None:
                    self._check_partial_line(data, self._partial_limits)
        finally:
            events.reverse()  # newest first: next_event() pops the oldest

    def _check_partial_line(
        self, data: bytes | bytearray | memoryview, limits: tuple[int, int]
    ) -> None:
        """Refuse an incomplete head line already over its limit (see the module doc)."""
        limit = limits[1] if self._headers else limits[0]
        tail = data[-limit - 1 :]  # a line break further back cannot save the line
        newline = (bytes(tail) if type(tail) is memoryview else tail).rfind(b"\n")
        if newline >= 0:
            self._partial_line = len(tail) - newline - 1
        else:
            self._partial_line += len(data)
        if self._partial_line > limit:
            self._error = RemoteProtocolError("request header field too large", 431)

    def _fail(self, exc: HttpParserError) -> None:
        """Record why parsing stopped: our own limit, or llhttp's complaint."""
        cause = exc.__context__
        if isinstance(cause, RemoteProtocolError):
            self._error = cause
        else:
            self._error = RemoteProtocolError(f"malformed request: {exc}", 400)

    def next_event(self) -> Event:
        """The next event: a :class:`Request`, :class:`Data`, :class:`EndOfMessage`,
        :data:`NEED_DATA`, or :data:`CONNECTION_CLOSED` (the client closed, or no more
        requests will be read on this connection).

        Raises:
            RemoteProtocolError: the client broke the protocol or a limit; its
                ``status_code`` is the answer to send (400, 413, 414, 431, 505) before
                closing the connection.
        """
        events = self._events
        if events:
            return events.pop()
        if self._error is not None:
            raise self._error
        if self._stopped:
            return CONNECTION_CLOSED
        if self._eof:
            if self.in_request:
                self._error = RemoteProtocolError("connection closed in the middle of a request")
                raise self._error
            return CONNECTION_CLOSED
        return NEED_DATA

    @property
    def their_eof(self) -> bool:
        """True once the client has closed its sending side."""
        return self._eof

    # httptools callbacks: they only queue events (see the module docstring).

    def _on_message_begin(self) -> None:
        # _target is b"" and _trailers None here: the previous request's were handed
        # over when it ended (and a request that failed half-way was the last one).
        self.in_request = True
        self._in_head = True
        self._headers = []
        self._head_size = 0
        self._unparsed_head = 0
        self._partial_line = 0
        self._body_size = 0
        self._content_length = None
        self._chunked = False
        self._expect_continue = False

    def _on_url(self, url: bytes) -> None:
        target = self._target = self._target + url
        if len(target) > self._target_limit:
            self._check_request_line(target)

    def _check_request_line(self, target: bytes) -> None:
        """Refuse a request line (or target) over its limit; the method is known by now."""
        limit = self.max_request_line
        too_long = len(target) > self.max_header_size or (
            limit is not None and len(self._parser.get_method()) + len(target) + 10 > limit
        )
        if too_long:
            raise RemoteProtocolError("request line too long", 414)

    def _on_header(self, name: bytes, value: bytes) -> None:
        if not self._in_head:  # after a chunked body: a trailer field
            if self._trailers is None:
                self._trailers = []
            self._trailers.append((name, value))
            return
        headers = self._headers
        headers.append((name, value))
        size = len(name)
        line = size + len(value) + 4  # "name: value\r\n"
        self._head_size += line
        if (
            self._head_size > self.max_header_size
            or len(headers) > self.max_headers
            or line > self._field_limit
        ):
            raise RemoteProtocolError("request header fields too large", 431)
        if size == 14:
            if name.lower() == b"content-length":
                self._content_length = int(value)  # llhttp accepts digits only
        elif size == 17:
            if name.lower() == b"transfer-encoding":
                self._chunked = True  # llhttp rejects a request TE not ending in chunked
        elif size == 6 and name.lower() == b"expect":
            self._expect_continue = value.lower() == b"100-continue"

    def _on_headers_complete(self) -> None:
        self._in_head = False
        parser = self._parser
        version = parser.get_http_version()
        if version != "1.1" and version != "1.0":
            raise RemoteProtocolError(f"HTTP/{version} is not supported", 505)
        length = self._content_length
        limit = self.max_body_size
        if limit is not None and length is not None and length > limit:
            raise RemoteProtocolError("request body too large", 413)
        if parser.should_upgrade():
            # llhttp hands over everything after the head to the new protocol: no body.
            request = Request(
                parser.get_method(), self._target, version, self._headers, False, False
            )
            request.upgrade = True
        else:
            request = Request(
                parser.get_method(),
                self._target,
                version,
                self._headers,
                parser.should_keep_alive(),
                self._expect_continue,
                length,
                self._chunked,
            )
        self._events.append(request)
        self._target = b""  # handed over to the request
        self._headers = _NO_HEADERS

    def _on_body(self, body: bytes) -> None:
        limit = self.max_body_size
        if limit is not None:
            self._body_size += len(body)
            if self._body_size > limit:
                raise RemoteProtocolError("request body too large", 413)
        self._events.append(Data(body))

    def _on_message_complete(self) -> None:
        self.in_request = False
        trailers = self._trailers
        if trailers is None:
            self._events.append(EndOfMessage())
        else:
            self._trailers = None
            self._events.append(EndOfMessage(trailers))
        if not self._parser.should_keep_alive():
            self._stopped = True

    # ------------------------------------------------------------ responding

    def start_response(
        self,
        request: Request,
        status: str,
        headers: list[tuple[str, str]],
        content_length: int | None = None,
        close: bool = False,
    ) -> bytes:
        """Choose the framing for the response to ``request`` and return its head.

        Args:
            request: the request being answered.
            status: status code and reason, e.g. ``"200 OK"``.
            headers: ``(name, value)`` string pairs (latin-1), as a WSGI app gives them.
                ``Transfer-Encoding`` is left out (the framing is this layer's choice);
                a ``Connection: close`` is honoured.
            content_length: the length of the whole body if the caller knows it and
                ``headers`` do not say it; framing by length instead of chunking.
            close: end the connection after this response.

        Raises:
            LocalProtocolError: a response is already under way.
            ValueError: a malformed status, or a line break in a header.
            TypeError: a header name or value is not a string.
            UnicodeEncodeError: a header is not latin-1.
        """
        if self.framing is not None:
            raise LocalProtocolError("a response is already under way")
        if len(status) < 4 or status[3] != " " or not status[:3].isdigit():
            raise ValueError(f"malformed status {status!r}: want '200 OK' form")
        code = int(status[:3])
        parts = ["HTTP/1.1 ", status, "\r\n"]
        declared: int | None = None
        has_date = has_server = has_connection = False
        keep_alive = self.keep_alive and request.keep_alive and not close
        for name, value in headers:
            if type(name) is not str or type(value) is not str:
                raise TypeError(f"header {name!r}: {value!r}: names and values must be str")
            lname = name.lower()
            if lname == "content-length":
                declared = _parse_length(value)
            elif lname == "date":
                has_date = True
            elif lname == "server":
                has_server = True
            elif lname == "connection":
                has_connection = True
                if "close" in value.lower():
                    keep_alive = False
            elif lname == "transfer-encoding":
                continue
            parts.append(f"{name}: {value}\r\n")
        lines = len(parts) - 2  # the status line is three parts
        if request.method == b"HEAD" or code < 200 or code == 204 or code == 304:
            framing = NO_BODY
            if declared is None and content_length is not None and request.method == b"HEAD":
                parts.append(f"Content-Length: {content_length}\r\n")
                lines += 1
        elif declared is not None:
            framing = LENGTH
            self._remaining = declared
        elif content_length is not None:
            framing = LENGTH
            self._remaining = content_length
            parts.append(f"Content-Length: {content_length}\r\n")
            lines += 1
        elif request.http_version == "1.1":
            framing = CHUNKED
            parts.append("Transfer-Encoding: chunked\r\n")
            lines += 1
        else:
            framing = UNTIL_CLOSE
            keep_alive = False
        if not has_connection:
            if not keep_alive:
                parts.append("Connection: close\r\n")
                lines += 1
            elif request.http_version == "1.0":
                parts.append("Connection: keep-alive\r\n")
                lines += 1
        if not has_date:
            parts.append(f"Date: {http_date()}\r\n")
            lines += 1
        if not has_server and self.server_header is not None:
            parts.append(f"Server: {self.server_header}\r\n")
            lines += 1
        parts.append("\r\n")
        lines += 1
        head = "".join(parts)
        if head.count("\n") != lines or head.count("\r") != lines:
            raise ValueError(f"line break in the status or a header: {_first_broken(parts)!r}")
        encoded = head.encode("latin-1")
        self.framing = framing
        self.keep_alive = keep_alive
        self.truncated = 0
        return encoded

    def send_data(self, data: bytes) -> bytes:
        """The bytes to send for ``data`` as the next part of the response body.

        Chunk framing is added; nothing is sent for a response without a body; bytes
        beyond the declared Content-Length are dropped (counted in :attr:`truncated`).
        """
        framing = self.framing
        if framing is LENGTH:
            remaining = self._remaining
            size = len(data)
            if size <= remaining:
                self._remaining = remaining - size
                return data
            self.truncated += size - remaining
            self._remaining = 0
            return data[:remaining]
        if framing is CHUNKED:
            return b"%x\r\n%b\r\n" % (len(data), data) if data else b""
        if framing is UNTIL_CLOSE:
            return data
        if framing is None:
            raise LocalProtocolError("send_data() before start_response()")
        return b""

    def record_data(self, size: int) -> None:
        """Count ``size`` body bytes the caller sent itself (with sendfile, say).

        Only for Content-Length or until-close framing, where bytes go out unchanged.
        """
        if self.framing is LENGTH:
            self._remaining = max(self._remaining - size, 0)
        elif self.framing is not UNTIL_CLOSE:
            raise LocalProtocolError(f"cannot send raw body bytes with {self.framing} framing")

    def end_response(self) -> bytes:
        """The bytes that end the response body; then the connection may be reused.

        A body shorter than its declared Content-Length ends the connection: the client
        is still waiting for the rest.
        """
        framing = self.framing
        if framing is None:
            raise LocalProtocolError("end_response() before start_response()")
        self.framing = None
        if framing is CHUNKED:
            return _LAST_CHUNK
        if framing is LENGTH and self._remaining:
            self.keep_alive = False
        return b""

    def abort_response(self) -> None:
        """Give up on the response under way: the connection cannot be reused."""
        self.framing = None
        self.keep_alive = False

    @property
    def remaining(self) -> int:
        """Body bytes still owed under Content-Length framing."""
        return self._remaining if self.framing is LENGTH else 0


def _parse_length(value: str) -> int:
    """A Content-Length header value as an int; ValueError if it is not one."""
    text = value.strip()
    if not text.isdigit() or not text.isascii():
        raise ValueError(f"bad Content-Length {value!r}")
    return int(text)


def _first_broken(parts: list[str]) -> str:
    """The piece of a response head (the status, or a header line) with a stray CR/LF."""
    for index, part in enumerate(parts):
        text = part if index == 1 else part[:-2]  # parts[1] is the status
        if "\r" in text or "\n" in text:
            return part
    return "".join(parts)  # pragma: no cover - the counts said there is one
