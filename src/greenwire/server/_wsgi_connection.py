"""One client connection of the WSGI server: the keep-alive loop and the WSGI calls.

Theory of operation
-------------------
Per connection, one :class:`Connection` loops: take the next event from the protocol
object; if it needs data, receive into a fixed buffer (no allocation per read) and feed
it; if it is a request, run the application and send its response; repeat while the
connection stays alive. Pipelined requests come out of the protocol one after the other
without another read, and each response is complete before the next request is looked
at, so responses stay in order.

The response to the common case (a list with one byte string) is one ``send``: the
head is framed with the body's length and sent with the body in the same call, and
``TCP_NODELAY`` is set on TCP connections so neither that write nor a chunked stream of
small writes waits for Nagle's algorithm. Iterables and ``write()`` are sent as they
come (PEP 3333 forbids holding blocks back): the head travels with the first non-empty
block, chunked for HTTP/1.1 unless the application gave a Content-Length.

Per-request state lives in the connection's slots, reset for each request, and
``start_response`` / ``write`` are bound once per connection: a request allocates its
environ, its protocol events and little else.

Memory of an idle connection
----------------------------
Most connections of a busy server are idle most of the time, parked in ``recv_into``
waiting for their next request, so what one holds while parked is what 10 000 of them
cost. Three things keep that small:

* The receive buffer (64 KiB, so that a body arrives in few reads) belongs to the OS
  thread, not the connection: all connections served by one thread read into the same
  one. That is safe because its contents live only from the moment ``recv_into``
  returns until ``receive_data`` returns, and no other greenlet can run in between:
  the green socket's ``recv_into`` parks *before* it reads, never after (the read
  that fills the buffer is the last thing it does), TLS sockets likewise retry
  OpenSSL's read after each wait and return straight from the call that succeeded,
  and the protocol layer copies what it keeps (httptools hands out ``bytes``, llhttp
  keeps no pointer into the data between calls). So a socket given to the handler
  must not let other greenlets run between writing into the buffer and returning.
  Threads, which can interleave anywhere, each get their own buffer.
* Nothing of the last request is held between requests: the request, the
  application's response headers and the protocol's copies of them are dropped once
  the response is out.
* ``WSGIServer`` calls the handler as a bound method, not as an object with
  ``__call__`` (which goes through a C-level call): a parked greenlet keeps its slice
  of the C stack on the heap, and that call would add ~750 bytes to it.

What a connection does keep is the greenlet, the parser, the protocol and connection
objects and its environ template (about 500 bytes: sharing one between connections
would cost every request three more dict stores, ~1000 instructions).

Stopping: once the handler is ``closing``, a keep-alive connection waiting for its next
request is closed at once (its client sees a clean close between requests and knows to
retry), but a connection that has not served a request yet is not dropped that way: it
was accepted moments ago and its client is sending (or about to send) its first
request, which nobody else will answer. It reads and serves that one request, bounded
by ``header_timeout``, and closes after it. The two are told apart by phase: ``NEW``
before the first request, ``IDLE`` between requests.
"""

from __future__ import annotations

import socket as _socket
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote_to_bytes

from greenwire._core import get_hub
from greenwire.green import original
from greenwire.server._wsgi_deadlines import shut_down
from greenwire.server._wsgi_input import EMPTY_INPUT, EmptyInput, WSGIInput
from greenwire.server._wsgi_response import (
    FileWrapper,
    bare_response,
    error_logger,
    error_page,
    log_access,
)
from greenwire.server.http import (
    CONNECTION_CLOSED,
    CONTINUE_RESPONSE,
    LENGTH,
    NEED_DATA,
    UNTIL_CLOSE,
    Data,
    EndOfMessage,
    ProtocolError,
    RemoteProtocolError,
    Request,
    ServerConnection,
)

if TYPE_CHECKING:
    from greenwire.server.wsgi import RequestDone, WSGIHandler

ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None]

_INF = float("inf")
_UNKNOWN = ""  # not an environ key: marks a header name not in the cache yet
#: The receive buffer, one per OS thread (see "Memory of an idle connection").
_RECV_SIZE = 64 * 1024
#: The headers slot between responses: shared, never appended to.
_NO_HEADERS: list[tuple[str, str]] = []
#: Bodies up to this size are sent in the same send() as the head (one copy).
_COALESCE_LIMIT = 64 * 1024
#: A body the application left unread is read and dropped up to this size; beyond it,
#: or if the client still waits for "100 Continue", the connection is closed instead.
_DISCARD_LIMIT = 64 * 1024
#: After refusing a request, how long and how much to read before closing (see _linger).
_LINGER_SECONDS = 2.0
_LINGER_BYTES = 256 * 1024

#: What the connection is waiting for: decides the timeout and the last words on expiry.
#: NEW: its first request; IDLE: its next request (a keep-alive connection).
NEW, IDLE, HEAD, APP, BODY, WRITE = range(6)
_TIMEOUT_408 = bare_response(408)

_METHODS = {m.encode(): m for m in ("GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH")}
_VERSIONS = {"1.1": "HTTP/1.1", "1.0": "HTTP/1.0"}


class _ClientGone(ConnectionError):
    """The client went away (reset, broken pipe, timed out) while we were sending."""


# The real thread-local (a green one, after patching, would be one per greenlet).
_per_thread: Any = original("_thread", "_local")()


def receive_buffer() -> tuple[bytearray, memoryview]:
    """This OS thread's receive buffer and a view of it, shared by its connections."""
    try:
        buffers: tuple[bytearray, memoryview] = _per_thread.buffers
    except AttributeError:
        buffer = bytearray(_RECV_SIZE)
        buffers = _per_thread.buffers = (buffer, memoryview(buffer))
    return buffers


class Connection:
    """One client connection: the keep-alive loop and the WSGI calls for its requests."""

    __slots__ = (
        "handler",
        "sock",
        "proto",
        "phase",
        "deadline",
        "timed_out",
        "client",
        "base_environ",
        "buffer",
        "view",
        "now",
        "start_response",
        "write",
        "served",
        # per request
        "request",
        "input",
        "status",
        "headers",
        "head_sent",
        "continue_sent",
        "body_bytes",
        "force_close",
    )

    def __init__(self, handler: WSGIHandler, sock: Any, address: Any) -> None:
        self.handler = handler
        self.sock = sock
        self.proto = ServerConnection(
            max_header_size=handler.max_header_size,
            max_headers=handler.max_headers,
            max_request_line=handler.max_request_line,
            max_field_size=handler.max_field_size,
            max_body_size=handler.max_body_size,
            server_header=handler.server_header,
        )
        self.phase = NEW
        self.served = 0
        self.deadline = _INF
        self.timed_out = False
        self.buffer, self.view = receive_buffer()
        self.now = get_hub().now
        self.start_response = self._start_response
        self.write = self._write
        self.request: Request | None = None
        self.input: WSGIInput | EmptyInput = EMPTY_INPUT
        self.status: str | None = None
        self.headers = _NO_HEADERS
        self.head_sent = False
        self.continue_sent = False
        self.body_bytes = 0
        self.force_close = False
        environ = self.base_environ = dict(handler.base_environ)
        environ["greenwire.socket"] = sock
        family = getattr(sock, "family", None)
        if handler.set_nodelay and (family == _socket.AF_INET or family == _socket.AF_INET6):
            try:
                sock.setsockopt(_socket.IPPROTO_TCP, _socket.TCP_NODELAY, 1)
            except OSError:  # pragma: no cover - a TCP socket that already went away
                pass
        if isinstance(address, tuple) and len(address) >= 2:
            self.client = str(address[0])
            environ["REMOTE_ADDR"] = self.client
            environ["REMOTE_PORT"] = str(address[1])
        else:
            self.client = "" if not address else str(address)
            environ["REMOTE_ADDR"] = self.client
        name, port = handler.server_name, handler.server_port
        if name is None or port is None:
            try:
                local = sock.getsockname()
            except OSError:
                local = None
            if isinstance(local, tuple) and len(local) >= 2:
                name = name if name is not None else str(local[0])
                port = port if port is not None else str(local[1])
        environ["SERVER_NAME"] = name if name is not None else "localhost"
        environ["SERVER_PORT"] = port if port is not None else ""
        scheme = handler.url_scheme
        if scheme is None:
            scheme = "https" if hasattr(sock, "getpeercert") else "http"
        environ["wsgi.url_scheme"] = scheme
        if handler.connection_environ is not None:
            environ.update(handler.connection_environ(sock, address))

    # ----------------------------------------------------------- the loop

    def serve(self) -> None:
        """Serve requests until one side is done, then half-close the connection."""
        try:
            self._serve_requests()
        except OSError as exc:  # _ClientGone included
            self._client_gone(exc)
            return
        # Tell the client at once that nothing more is coming, even if whoever closes
        # the socket does so a little later.
        try:
            self.sock.shutdown(_socket.SHUT_WR)
        except OSError:
            pass

    def _serve_requests(self) -> None:
        """The keep-alive loop."""
        proto = self.proto
        next_event = proto.next_event
        handler = self.handler
        while True:
            try:
                event = next_event()
            except RemoteProtocolError as exc:
                self._reject(exc)
                return
            if event is NEED_DATA:
                if proto.in_request:
                    if self.phase != HEAD:
                        self.phase = HEAD
                        if handler.header_timeout is not None:
                            self.deadline = self.now() + handler.header_timeout
                elif self.served:
                    self.phase = IDLE
                    if handler.closing:
                        return
                    if handler.keepalive_timeout is not None:
                        self.deadline = self.now() + handler.keepalive_timeout
                else:
                    self._await_first_request()
                if not self._receive():
                    if self.timed_out:
                        what = "a request head" if self.phase == HEAD else "a request"
                        error_logger.debug("%s: timed out waiting for %s", self.client, what)
                    return
            elif type(event) is Request:
                self.phase = APP
                self.deadline = _INF
                self.served += 1
                self._handle(event)
                if not proto.keep_alive or handler.closing:
                    return
            elif event is CONNECTION_CLOSED:
                return
            # else: the EndOfMessage of a request without a body

    def _await_first_request(self) -> None:
        """Set the deadline for the first request: ``header_timeout`` once closing."""
        handler = self.handler
        self.phase = NEW
        timeout = handler.keepalive_timeout
        if handler.closing and handler.header_timeout is not None:
            timeout = (
                handler.header_timeout if timeout is None else min(timeout, handler.header_timeout)
            )
        if timeout is not None:
            self.deadline = self.now() + timeout

    def _receive(self) -> bool:
        """Receive once and feed the protocol; False if the connection is finished."""
        try:
            count = self.sock.recv_into(self.buffer)
        except OSError as exc:
            self._client_gone(exc)
            return False
        if not count:
            self.proto.receive_data(b"")
            return not self.timed_out
        self.proto.receive_data(self.view[:count])
        return True

    def expire(self) -> None:
        """The client overran its deadline: shut the socket down (runs in the hub)."""
        self.timed_out = True
        if self.phase == HEAD:
            shut_down(self.sock, _TIMEOUT_408)
        else:
            shut_down(self.sock)

    def _client_gone(self, exc: BaseException) -> None:
        if self.timed_out:
            error_logger.debug("%s: connection timed out", self.client)
        else:
            error_logger.debug("%s: connection lost: %r", self.client, exc)

    def _reject(self, exc: ProtocolError) -> None:
        """Answer a request the protocol layer refused, then end the connection."""
        error_logger.debug("%s: bad request: %s", self.client, exc)
        if self.proto.their_eof and exc.status_code == 400:
            return  # closed mid-request: nobody is listening for an answer
        status, headers, body = error_page(exc.status_code)
        self._send_all(bare_response(exc.status_code))
        self._log(None, status, len(body))
        self._linger()

    def _linger(self) -> None:
        """Read and drop what the client still sends, for a moment, before closing.

        Closing a socket with unread data makes the kernel answer with a reset, which
        can destroy our error response in the client's receive buffer before it is
        read (a client still uploading a body we refused, pipelined requests). So:
        half-close, then drain until the client closes too, a byte budget is spent,
        or the io deadline passes.
        """
        try:
            self.sock.shutdown(_socket.SHUT_WR)
        except OSError:
            return
        self.phase = BODY
        io_timeout = self.handler.io_timeout
        self.deadline = self.now() + min(io_timeout or _LINGER_SECONDS, _LINGER_SECONDS)
        budget = _LINGER_BYTES
        try:
            while budget > 0:
                count = self.sock.recv_into(self.buffer)
                if not count:
                    return
                budget -= count
        except OSError:
            return
        finally:
            self.deadline = _INF

    # ----------------------------------------------------------- one request

    def _handle(self, request: Request) -> None:
        """Run the application for ``request`` and send its response."""
        self.request = request
        self.status = None
        self.head_sent = False
        self.continue_sent = False
        self.body_bytes = 0
        handler = self.handler
        self.force_close = handler.closing or not handler.keep_alive
        done = handler.on_request_done
        began = self.now() if done is not None else 0.0
        environ = self._environ(request)
        result: Iterable[bytes] | None = None
        try:
            try:
                try:
                    result = handler.application(environ, self.start_response)
                    self._send_result(result)
                finally:
                    close = getattr(result, "close", None)
                    if close is not None:
                        close()
            except _ClientGone:
                raise
            except RemoteProtocolError as exc:  # the body turned out bad as the app read it
                if self.proto.their_eof:
                    raise _ClientGone("the client closed the connection mid-request") from exc
                error_logger.debug("%s: bad request body: %s", self.client, exc)
                self._fail(exc.status_code)
            except Exception:
                error_logger.exception(
                    "%s: error in the WSGI application serving %s",
                    self.client,
                    self._request_line(request),
                )
                self._fail(500)
            if self.input is not EMPTY_INPUT:
                self._finish_body(request)
                self.input = EMPTY_INPUT
        finally:
            if done is not None:  # also when the client went away
                self._report_done(done, environ, began)
        if handler.access_log is not None:
            self._log(request, self.status or "500", self.body_bytes)
        # Hold nothing of this request while waiting for the next one.
        self.request = None
        self.headers = _NO_HEADERS

    def _report_done(self, done: RequestDone, environ: dict[str, Any], began: float) -> None:
        """Call the handler's ``on_request_done``; log what it raises."""
        status = self.status
        try:
            done(
                environ,
                status or "500 Internal Server Error",
                self.headers if status is not None else [],
                self.body_bytes,
                self.now() - began,
            )
        except Exception:
            error_logger.exception("%s: error in on_request_done %r", self.client, done)

    def _environ(self, request: Request) -> dict[str, Any]:
        """The WSGI environ for ``request``."""
        environ = self.base_environ.copy()
        method = request.method
        environ["REQUEST_METHOD"] = _METHODS.get(method) or method.decode("latin-1")
        target = request.target
        path, _, query = target.partition(b"?")
        if path[:1] != b"/" and path != b"*":
            path = _path_of_absolute_form(path)
        environ["QUERY_STRING"] = query.decode("latin-1")
        environ["RAW_URI"] = target.decode("latin-1")
        path_info = (unquote_to_bytes(path) if b"%" in path else path).decode("latin-1")
        script_name = self.handler.script_name
        if script_name and (path_info == script_name or path_info.startswith(script_name + "/")):
            path_info = path_info[len(script_name) :]
        environ["PATH_INFO"] = path_info
        environ["SERVER_PROTOCOL"] = _VERSIONS[request.http_version]
        handler = self.handler
        known_keys = handler.header_keys
        for name, value in request.headers:
            key = known_keys.get(name, _UNKNOWN)
            if key is _UNKNOWN:
                key = handler.header_key(name)
            if key is None:
                continue
            text = value.decode("latin-1")
            if key in environ:
                environ[key] = f"{environ[key]}, {text}"
            else:
                environ[key] = text
        if request.chunked or request.content_length:  # request.has_body, inlined
            self.input = WSGIInput(self._pull_body)
        else:
            self.input = EMPTY_INPUT
        environ["wsgi.input"] = self.input
        return environ

    def _pull_body(self) -> bytes:
        """The next piece of the request body, b"" at its end (``wsgi.input``'s source)."""
        proto = self.proto
        while True:
            event = proto.next_event()
            kind = type(event)
            if kind is Data:
                return event.data  # type: ignore[union-attr]
            if kind is EndOfMessage:
                return b""
            if event is not NEED_DATA:
                raise RemoteProtocolError("request body ended unexpectedly")
            request = self.request
            if (
                request is not None
                and request.expect_continue
                and not self.continue_sent
                and not self.head_sent
            ):
                self.continue_sent = True
                self._send_all(CONTINUE_RESPONSE)
            self.phase = BODY
            io_timeout = self.handler.io_timeout
            if io_timeout is not None:
                self.deadline = self.now() + io_timeout
            try:
                if not self._receive():
                    raise _ClientGone("the client closed the connection during the body")
            finally:
                self.phase = APP
                self.deadline = _INF

    def _finish_body(self, request: Request) -> None:
        """Deal with what the application left of the body: drop it, or close."""
        proto = self.proto
        if self.input.done or not proto.keep_alive:
            return
        if request.expect_continue and not self.continue_sent:
            proto.keep_alive = False  # the client may never send it
            return
        length = request.content_length
        if length is not None and length > _DISCARD_LIMIT:
            proto.keep_alive = False
            return
        try:
            if not self.input.discard(_DISCARD_LIMIT):
                proto.keep_alive = False
        except RemoteProtocolError:
            proto.keep_alive = False

    # ----------------------------------------------------------- responding

    def _start_response(
        self,
        status: str,
        headers: list[tuple[str, str]],
        exc_info: ExcInfo | None = None,
    ) -> Callable[[bytes], None]:
        """PEP 3333 ``start_response``: record the status and headers; return ``write``."""
        if exc_info is not None:
            try:
                if self.head_sent:
                    raise exc_info[1].with_traceback(exc_info[2])
            finally:
                exc_info = None
        elif self.status is not None:
            raise RuntimeError("start_response() called again without exc_info")
        if type(status) is not str:
            raise TypeError(f"status must be a str, not {type(status).__name__}")
        if type(headers) is not list:
            raise TypeError(f"headers must be a list, not {type(headers).__name__}")
        self.status = status
        self.headers = headers
        return self.write

    def _head(self, content_length: int | None) -> bytes:
        """The response head, framed with ``content_length`` if known."""
        if self.status is None:
            raise RuntimeError("the application sent body data before calling start_response()")
        request = self.request
        assert request is not None
        close = self.force_close or self.handler.closing
        if self.input is not EMPTY_INPUT and not self.input.done:
            # The app answers without having read the whole body: if the rest cannot be
            # dropped cheaply afterwards, say now that the connection will close.
            length = request.content_length
            if (request.expect_continue and not self.continue_sent) or (
                length is not None and length > _DISCARD_LIMIT
            ):
                close = True
        head = self.proto.start_response(request, self.status, self.headers, content_length, close)
        self.head_sent = True
        return head

    def _write(self, data: bytes) -> None:
        """PEP 3333 ``write``: send ``data`` now (with the head, the first time)."""
        if type(data) is not bytes:
            if not isinstance(data, (bytes, bytearray, memoryview)):
                raise TypeError(f"WSGI body data must be bytes, not {type(data).__name__}")
            data = bytes(data)
        proto = self.proto
        if not self.head_sent:
            if not data:
                return
            head = self._head(None)
            framed = proto.send_data(data)
            if framed:
                self.body_bytes += len(data)
            if len(framed) <= _COALESCE_LIMIT:
                self._send_all(head + framed)
            else:
                self._send_all(head)
                self._send_all(framed)
            return
        if not data:
            return
        framed = proto.send_data(data)
        if framed:
            self.body_bytes += len(data)
            self._send_all(framed)

    def _send_result(self, result: Iterable[bytes]) -> None:
        """Send the application's iterable (and anything already written)."""
        proto = self.proto
        kind = type(result)
        if (kind is list or kind is tuple) and not self.head_sent:
            body = b"".join(result)  # one item: that very object, no copy
            head = self._head(len(body))
            framed = proto.send_data(body)
            proto.end_response()  # framed by Content-Length: it adds no bytes
            self.body_bytes = len(framed)
            if len(framed) <= _COALESCE_LIMIT:
                self._send_all(head + framed)
            else:
                self._send_all(head)
                self._send_all(framed)
            self._after_response()
            return
        if isinstance(result, FileWrapper) and self._send_file(result):
            self._after_response()
            return
        for chunk in result:
            if chunk:
                self._write(chunk)
        if not self.head_sent:
            self._send_all(self._head(0))
        tail = proto.end_response()
        if tail:
            self._send_all(tail)
        self._after_response()

    def _send_file(self, wrapper: FileWrapper) -> bool:
        """Send a file with sendfile(2) if the framing allows; False to iterate instead."""
        if self.head_sent or hasattr(self.sock, "getpeercert"):
            return False
        span = wrapper.fileno_and_span()
        if span is None:
            return False
        _, offset, size = span
        proto = self.proto
        head = self._head(size)
        framing = proto.framing
        if framing is not LENGTH and framing is not UNTIL_CLOSE:
            self._send_all(head)  # HEAD, 204, 304: no body
            proto.end_response()
            return True
        count = proto.remaining if framing is LENGTH else size
        self._send_all(head)
        self.phase = WRITE
        if self.handler.io_timeout is not None:
            self.deadline = self.now() + self.handler.io_timeout
        try:
            sent = self.sock.sendfile(wrapper.filelike, offset, count) if count else 0
        except OSError as exc:
            raise _ClientGone(f"sendfile failed: {exc!r}") from exc
        finally:
            self.phase = APP
            self.deadline = _INF
        self.body_bytes = sent
        proto.record_data(sent)
        proto.end_response()
        return True

    def _after_response(self) -> None:
        proto = self.proto
        if proto.truncated:
            error_logger.warning(
                "%s: the application sent %d bytes beyond its Content-Length; dropped",
                self.client,
                proto.truncated,
            )

    def _fail(self, code: int) -> None:
        """Answer with the server's own error page if the head is not out yet; else cut."""
        proto = self.proto
        proto.abort_response()
        if self.head_sent:
            return  # the client sees the connection close mid-response
        request = self.request
        assert request is not None
        status, headers, body = error_page(code)
        self.status = status
        self.headers = headers
        try:
            head = proto.start_response(request, status, headers, None, True)
        except Exception:  # pragma: no cover - our own headers are valid
            return
        framed = proto.send_data(body)
        proto.end_response()
        self.head_sent = True
        self.body_bytes = len(framed)
        self._send_all(head + framed)

    def _send_all(self, data: bytes) -> None:
        """Send ``data`` whole, bounded by ``io_timeout``; _ClientGone if that fails."""
        io_timeout = self.handler.io_timeout
        previous = self.phase
        self.phase = WRITE
        if io_timeout is not None:
            self.deadline = self.now() + io_timeout
        try:
            self.sock.sendall(data)
        except OSError as exc:
            raise _ClientGone(f"send failed: {exc!r}") from exc
        finally:
            self.phase = previous
            self.deadline = _INF

    # ----------------------------------------------------------- logging

    @staticmethod
    def _request_line(request: Request) -> str:
        return (
            f"{request.method.decode('latin-1')} {request.target.decode('latin-1')} "
            f"HTTP/{request.http_version}"
        )

    def _log(self, request: Request | None, status: str, size: int) -> None:
        """One access log line for ``request`` (None: refused before it was parsed)."""
        logger = self.handler.access_log
        if logger is None or not logger.isEnabledFor(20):  # logging.INFO
            return
        referer = user_agent = None
        request_line = "-"
        if request is not None:
            request_line = self._request_line(request)
            for name, value in request.headers:
                lname = name.lower()
                if lname == b"referer":
                    referer = value.decode("latin-1")
                elif lname == b"user-agent":
                    user_agent = value.decode("latin-1")
        log_access(logger, self.client, None, request_line, status[:3], size, referer, user_agent)


def _path_of_absolute_form(target: bytes) -> bytes:
    """The path of an absolute-form target (``http://host/path``), ``/`` if it has none."""
    scheme_end = target.find(b"://")
    if scheme_end < 0:
        return target  # an authority (CONNECT) or garbage: left as it is
    slash = target.find(b"/", scheme_end + 3)
    return target[slash:] if slash >= 0 else b"/"
