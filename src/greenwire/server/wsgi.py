"""A WSGI (PEP 3333) server over the sans-IO HTTP layer in :mod:`greenwire.server.http`.

:class:`WSGIHandler` serves an application on any connected green socket: call it as
``handler(sock, address)``, one greenlet per connection. :class:`WSGIServer` is a
:class:`~greenwire.server.stream.StreamServer` that runs one for every connection it
accepts.

How a connection is served is explained in :mod:`greenwire.server._wsgi_connection`.

Bad clients are answered and dropped without touching anything else: a protocol error
gets its status (400, 413, 414, 431, 505) and a closed connection; a reset or a broken
pipe is logged at DEBUG; waits on the client are bounded by ``keepalive_timeout``
(between requests), ``header_timeout`` (the rest of a request head once it has begun)
and ``io_timeout`` (each body read and the sending of each response), enforced by
:mod:`greenwire.server._wsgi_deadlines`. An exception in the application gets a 500 if
the head has not been sent (the connection is closed if it has) and a logged traceback.

After each request the application saw, ``on_request_done`` (if given) is called with
what was sent and how long it took: the hook for metrics and for servers built on this
one (the gunicorn worker counts requests and writes gunicorn's access log with it).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from greenwire.green import socket as gsocket
from greenwire.server._listeners import ListenerSpec
from greenwire.server._wsgi_connection import IDLE, NEW, Connection
from greenwire.server._wsgi_deadlines import DeadlineWatch, shut_down
from greenwire.server._wsgi_response import ErrorStream, FileWrapper, access_logger
from greenwire.server.http.connection import (
    DEFAULT_MAX_FIELD_SIZE,
    DEFAULT_MAX_HEADER_SIZE,
    DEFAULT_MAX_HEADERS,
    DEFAULT_MAX_REQUEST_LINE,
    check_limits,
)
from greenwire.server.stream import StreamServer

__all__ = ["FileWrapper", "RequestDone", "WSGIApplication", "WSGIHandler", "WSGIServer"]

StartResponse = Callable[..., Callable[[bytes], None]]
WSGIApplication = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]
#: ``on_request_done(environ, status, headers, body_bytes, seconds)``.
RequestDone = Callable[[dict[str, Any], str, list[tuple[str, str]], int, float], object]
#: ``connection_environ(sock, address)``: extra environ keys for one connection.
ConnectionEnviron = Callable[[Any, Any], Mapping[str, Any]]

_HEADER_KEY_CACHE_SIZE = 1024


def _environ_key(name: bytes) -> str | None:
    """The environ key of a request header, None for names with ``_`` (ambiguous)."""
    text = name.decode("latin-1").upper()
    if "_" in text:
        # "X_Forwarded_For" would land on the same key as "X-Forwarded-For": dropped,
        # as nginx and gunicorn do, so a client cannot smuggle a proxy's header in.
        return None
    key = text.replace("-", "_")
    if key == "CONTENT_TYPE" or key == "CONTENT_LENGTH":
        return key
    return "HTTP_" + key


class WSGIHandler:
    """Serve a WSGI application on connected sockets: ``handler(sock, address)``.

    Works with any green (or TLS over green) stream socket; returns when the client is
    done, the connection timed out or broke. The socket is left open for the caller to
    close.

    Args:
        application: the WSGI application.
        server_name: ``SERVER_NAME``; default: the socket's local address.
        server_port: ``SERVER_PORT``; default: the socket's local port.
        url_scheme: ``wsgi.url_scheme``; default ``"https"`` on a TLS socket, else ``"http"``.
        script_name: the ``SCRIPT_NAME`` the application is mounted at; a path that
            starts with it has it moved from ``PATH_INFO`` to ``SCRIPT_NAME``.
        environ: extra keys for every request's environ. Every environ also has the
            connection's socket under ``"greenwire.socket"``.
        connection_environ: ``connection_environ(sock, address)``, called once per
            connection; the mapping it returns is added to that connection's environs.
        keep_alive: False to close every connection after its first response (also
            when changed while serving: each later response then closes its connection).
        keepalive_timeout: seconds a connection may wait idle for its next request.
        header_timeout: seconds for the rest of a request head once it has begun (and
            for a new connection's first request once the handler is closing).
        io_timeout: seconds for each read of the body and each send of the response.
        max_header_size: bytes of request line and headers (431 beyond).
        max_headers: number of request headers (431 beyond).
        max_request_line: bytes of the request line without its CRLF (414 beyond);
            None for no limit but ``max_header_size``.
        max_field_size: bytes of one header line, ``name: value`` and CRLF (431
            beyond); None for no limit but ``max_header_size``.
        max_body_size: bytes of request body (413 beyond); None for no limit.
        server_header: the ``Server`` response header; None to send none.
        access_log: the logger of the access log (INFO, combined format); None for none.
        multiprocess: ``wsgi.multiprocess`` (true when several processes serve the app).
        on_request_done: ``on_request_done(environ, status, headers, body_bytes,
            seconds)``, called after each request the application was called for, once
            its response is sent (or abandoned: the client went away). ``status`` and
            ``headers`` are what the application gave (or the server's own 500),
            ``body_bytes`` the body bytes sent, ``seconds`` the time since the request
            head arrived. An exception in it is logged, never raised.
    """

    def __init__(
        self,
        application: WSGIApplication,
        *,
        server_name: str | None = None,
        server_port: int | str | None = None,
        url_scheme: str | None = None,
        script_name: str = "",
        environ: dict[str, Any] | None = None,
        connection_environ: ConnectionEnviron | None = None,
        keep_alive: bool = True,
        keepalive_timeout: float | None = 60.0,
        header_timeout: float | None = 30.0,
        io_timeout: float | None = 60.0,
        max_header_size: int = DEFAULT_MAX_HEADER_SIZE,
        max_headers: int = DEFAULT_MAX_HEADERS,
        max_request_line: int | None = DEFAULT_MAX_REQUEST_LINE,
        max_field_size: int | None = DEFAULT_MAX_FIELD_SIZE,
        max_body_size: int | None = 1024**3,
        server_header: str | None = "greenwire",
        access_log: Any = access_logger,
        multiprocess: bool = False,
        on_request_done: RequestDone | None = None,
    ) -> None:
        if not callable(application):
            raise TypeError(f"application must be callable, not {application!r}")
        for name, hook in (
            ("connection_environ", connection_environ),
            ("on_request_done", on_request_done),
        ):
            if hook is not None and not callable(hook):
                raise TypeError(f"{name} must be callable or None, not {hook!r}")
        check_limits(
            max_header_size=max_header_size,
            max_headers=max_headers,
            max_request_line=max_request_line,
            max_field_size=max_field_size,
        )
        for name, value in (
            ("keepalive_timeout", keepalive_timeout),
            ("header_timeout", header_timeout),
            ("io_timeout", io_timeout),
        ):
            if value is not None and not value > 0:
                raise ValueError(f"{name} must be a positive number or None, not {value!r}")
        if script_name.endswith("/"):
            script_name = script_name.rstrip("/")
        self.application = application
        self.server_name = server_name
        self.server_port = None if server_port is None else str(server_port)
        self.url_scheme = url_scheme
        self.script_name = script_name
        self.keepalive_timeout = keepalive_timeout
        self.header_timeout = header_timeout
        self.io_timeout = io_timeout
        self.connection_environ = connection_environ
        self.keep_alive = keep_alive
        self.max_header_size = max_header_size
        self.max_headers = max_headers
        self.max_request_line = max_request_line
        self.max_field_size = max_field_size
        self.max_body_size = max_body_size
        self.server_header = server_header
        self.access_log = access_log
        self.on_request_done = on_request_done
        #: True while stopping: each connection closes after its current request (a new
        #: one after its first), and idle ones are closed (see :meth:`close_idle`).
        self.closing = False
        #: Set TCP_NODELAY on each connection (a server that sets it on the listener
        #: turns this off).
        self.set_nodelay = True
        self._connections: set[Connection] = set()
        timeouts = [t for t in (keepalive_timeout, header_timeout, io_timeout) if t is not None]
        self._watch = DeadlineWatch(min(timeouts)) if timeouts else None
        #: Header name -> environ key (None: dropped), filled by :meth:`header_key`.
        self.header_keys: dict[bytes, str | None] = {}
        self.base_environ: dict[str, Any] = {
            "SCRIPT_NAME": script_name,
            "SERVER_SOFTWARE": server_header or "greenwire",
            "wsgi.version": (1, 0),
            "wsgi.errors": ErrorStream(),
            "wsgi.multithread": True,  # requests run concurrently, as greenlets
            "wsgi.multiprocess": multiprocess,
            "wsgi.run_once": False,
            "wsgi.input_terminated": True,
            "wsgi.file_wrapper": FileWrapper,
        }
        if environ:
            self.base_environ.update(environ)

    def __call__(self, sock: Any, address: Any) -> None:
        """Serve HTTP on the connected ``sock`` until the client is done."""
        connection = Connection(self, sock, address)
        connections = self._connections
        watch = self._watch
        connections.add(connection)
        if watch is not None:
            watch.add(connection)
        try:
            connection.serve()
        finally:
            connections.discard(connection)
            if watch is not None:
                watch.discard(connection)

    def close_idle(self) -> None:
        """Start shutting down: close keep-alive connections waiting for their next
        request, and the rest after their current request.

        A connection that has not served a request yet is not idle: its client has
        just connected and is sending its first request, which is still read (for up
        to ``header_timeout``) and answered with ``Connection: close``.
        """
        self.closing = True
        timeout = self.header_timeout
        for connection in list(self._connections):
            phase = connection.phase
            if phase == IDLE:
                shut_down(connection.sock)
            elif phase == NEW and timeout is not None:
                connection.deadline = min(connection.deadline, connection.now() + timeout)

    @property
    def connection_count(self) -> int:
        """Connections being served now."""
        return len(self._connections)

    def header_key(self, name: bytes) -> str | None:
        """The environ key for header ``name`` (cached)."""
        keys = self.header_keys
        try:
            return keys[name]
        except KeyError:
            key = _environ_key(name)
            if len(keys) < _HEADER_KEY_CACHE_SIZE:
                keys[name] = key
            return key


class WSGIServer(StreamServer):
    """A WSGI server: a :class:`~greenwire.server.stream.StreamServer` whose connections
    are served by a :class:`WSGIHandler`.

    Example::

        from greenwire.wsgi import WSGIServer

        def app(environ, start_response):
            start_response("200 OK", [("Content-Type", "text/plain")])
            return [b"Hello, world!\\n"]

        WSGIServer(("127.0.0.1", 8080), app).serve_forever()

    Args:
        listener: an address or a listening socket (see ``StreamServer``).
        application: the WSGI application.
        **options: the keyword arguments of ``StreamServer`` (``pool``,
            ``ssl_context``, ``ssl_handshake_timeout``, ``backlog``, ``reuse_port``,
            ``stop_timeout``; with ``ssl_context``, ``wsgi.url_scheme`` is https) and
            those of :class:`WSGIHandler` (timeouts, limits, hooks, ``script_name``,
            ``environ``, ``access_log`` ...).

    Raises:
        TypeError: an unknown option.
    """

    def __init__(
        self, listener: ListenerSpec, application: WSGIApplication, **options: Any
    ) -> None:
        server_options = {name: options.pop(name) for name in _SERVER_OPTIONS & options.keys()}
        if server_options.get("ssl_context") is not None:
            options.setdefault("url_scheme", "https")
        #: The handler serving each connection (its settings can be changed before start).
        self.handler = WSGIHandler(application, **options)
        self.handler.set_nodelay = False  # StreamServer sets TCP_NODELAY on the listener
        # The bound method, not the handler object: calling an object's __call__ costs
        # a C-level call, and so ~750 bytes more of greenlet stack per idle connection.
        super().__init__(listener, self.handler.__call__, **server_options)

    @property
    def application(self) -> WSGIApplication:
        """The WSGI application the connections call (the handler's; may be replaced)."""
        return self.handler.application

    @application.setter
    def application(self, application: WSGIApplication) -> None:
        self.handler.application = application

    def _prepare(self, sock: gsocket.socket) -> None:
        super()._prepare(sock)
        handler = self.handler
        local = sock.getsockname()
        if isinstance(local, tuple) and len(local) >= 2:
            # Known once here instead of a getsockname() per connection.
            if handler.server_name is None:
                handler.server_name = _server_name(str(local[0]))
            if handler.server_port is None:
                handler.server_port = str(local[1])

    def stop(self, timeout: float | None = None) -> None:
        """Stop accepting, close idle keep-alive connections, let requests under way
        finish for up to ``timeout`` seconds, then kill the rest."""
        self.handler.close_idle()
        super().stop(timeout)


#: The options of WSGIServer that go to StreamServer (the rest go to WSGIHandler).
_SERVER_OPTIONS = frozenset(
    name
    for name, parameter in inspect.signature(StreamServer.__init__).parameters.items()
    if parameter.kind is inspect.Parameter.KEYWORD_ONLY
)


def _server_name(host: str) -> str:
    """``SERVER_NAME`` for a listening address: the wildcard ones have no better name."""
    if host in ("", "0.0.0.0", "::"):
        name: str = gsocket.gethostname()
        return name
    return host
