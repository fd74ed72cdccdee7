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
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from greenwire.green import socket as gsocket
from greenwire.server._base import PoolSpec
from greenwire.server._listeners import ListenerSpec
from greenwire.server._wsgi_connection import IDLE, Connection
from greenwire.server._wsgi_deadlines import DeadlineWatch, shut_down
from greenwire.server._wsgi_response import ErrorStream, FileWrapper, access_logger
from greenwire.server.http.connection import DEFAULT_MAX_HEADER_SIZE, DEFAULT_MAX_HEADERS
from greenwire.server.stream import StreamServer

__all__ = ["FileWrapper", "WSGIApplication", "WSGIHandler", "WSGIServer"]

StartResponse = Callable[..., Callable[[bytes], None]]
WSGIApplication = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]

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
        environ: extra keys for every request's environ.
        keepalive_timeout: seconds a connection may wait idle for its next request.
        header_timeout: seconds for the rest of a request head once it has begun.
        io_timeout: seconds for each read of the body and each send of the response.
        max_header_size: bytes of request line and headers (431 beyond).
        max_headers: number of request headers (431 beyond).
        max_body_size: bytes of request body (413 beyond); None for no limit.
        server_header: the ``Server`` response header; None to send none.
        access_log: the logger of the access log (INFO, combined format); None for none.
        multiprocess: ``wsgi.multiprocess`` (true when several processes serve the app).
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
        keepalive_timeout: float | None = 60.0,
        header_timeout: float | None = 30.0,
        io_timeout: float | None = 60.0,
        max_header_size: int = DEFAULT_MAX_HEADER_SIZE,
        max_headers: int = DEFAULT_MAX_HEADERS,
        max_body_size: int | None = 1024**3,
        server_header: str | None = "greenwire",
        access_log: Any = access_logger,
        multiprocess: bool = False,
    ) -> None:
        if not callable(application):
            raise TypeError(f"application must be callable, not {application!r}")
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
        self.max_header_size = max_header_size
        self.max_headers = max_headers
        self.max_body_size = max_body_size
        self.server_header = server_header
        self.access_log = access_log
        #: True while stopping: connections close after their current request.
        self.closing = False
        #: Set TCP_NODELAY on each connection (a server that sets it on the listener
        #: turns this off).
        self.set_nodelay = True
        self._connections: set[Connection] = set()
        timeouts = [t for t in (keepalive_timeout, header_timeout, io_timeout) if t is not None]
        self._watch = DeadlineWatch(min(timeouts)) if timeouts else None
        self._header_keys: dict[bytes, str | None] = {}
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
        """Start shutting down: close connections waiting for a request, and the rest
        after their current request."""
        self.closing = True
        for connection in list(self._connections):
            if connection.phase == IDLE:
                shut_down(connection.sock)

    @property
    def connection_count(self) -> int:
        """Connections being served now."""
        return len(self._connections)

    def header_key(self, name: bytes) -> str | None:
        """The environ key for header ``name`` (cached)."""
        keys = self._header_keys
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
        pool, ssl_context, ssl_handshake_timeout, backlog, reuse_port, stop_timeout:
            as for ``StreamServer``; with ``ssl_context``, ``wsgi.url_scheme`` is https.
        **options: the keyword arguments of :class:`WSGIHandler` (timeouts, limits,
            ``script_name``, ``environ``, ``access_log`` ...).
    """

    def __init__(
        self,
        listener: ListenerSpec,
        application: WSGIApplication,
        *,
        pool: PoolSpec = None,
        ssl_context: Any = None,
        ssl_handshake_timeout: float | None = 10.0,
        backlog: int | None = None,
        reuse_port: bool = False,
        stop_timeout: float = 1.0,
        **options: Any,
    ) -> None:
        if ssl_context is not None:
            options.setdefault("url_scheme", "https")
        self.application = application
        #: The handler serving each connection (its settings can be changed before start).
        self.handler = WSGIHandler(application, **options)
        self.handler.set_nodelay = False  # StreamServer sets TCP_NODELAY on the listener
        super().__init__(
            listener,
            self.handler,
            pool=pool,
            ssl_context=ssl_context,
            ssl_handshake_timeout=ssl_handshake_timeout,
            backlog=backlog,
            reuse_port=reuse_port,
            stop_timeout=stop_timeout,
        )

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


def _server_name(host: str) -> str:
    """``SERVER_NAME`` for a listening address: the wildcard ones have no better name."""
    if host in ("", "0.0.0.0", "::"):
        name: str = gsocket.gethostname()
        return name
    return host
