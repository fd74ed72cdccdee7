"""StreamServer: accept connections and run ``handle(socket, address)`` in a greenlet each.

Theory of operation
-------------------
One loop greenlet accepts. The listener's fd is edge-triggered in the hub, so one
readiness edge may stand for many queued connections: the loop calls ``accept()`` again
and again until it would block (the green socket's ``accept`` then parks until the next
edge and tries again), spawning a handler greenlet for each connection. After
:attr:`~greenwire.server._base.BaseServer.max_batch` accepts in a row it lets the other
greenlets run once, so a deep backlog cannot starve the handlers already running.

Backpressure: with a bounded pool the loop waits for a free slot *before* accepting, so
connections beyond the cap stay in the kernel's backlog (and clients see a slow connect,
not an accepted socket nobody reads).

Nagle: every accepted TCP socket gets ``TCP_NODELAY`` (a request/response server would
otherwise stall ~40 ms on each small reply behind a delayed ACK). Linux copies the option
from the listening socket into the sockets it accepts, so it is set on the listener once
and checked on the first connection; only if that check fails (another kernel) is it set
on every connection, one more syscall each.

TLS: the handshake runs in the handler greenlet, never in the loop (a slow or malicious
client must not hold up accepting), bounded by ``ssl_handshake_timeout``. A failed
handshake is logged at INFO and closes the connection; the handler never sees it.

The handler's socket is closed when the handler returns or fails. A handler that wants to
keep the connection beyond that hands on ``sock.dup()`` or ``sock.detach()``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any, ClassVar

from greenwire.green import original
from greenwire.green import socket as gsocket
from greenwire.server._base import BaseServer, PoolSpec, is_tcp, logger
from greenwire.server._listeners import ListenerSpec, close_quietly
from greenwire.timeout import fail_after

__all__ = ["StreamServer"]

_SSLContext: type[Any] = original("ssl", "SSLContext")
_IPPROTO_TCP = gsocket.IPPROTO_TCP
_TCP_NODELAY = gsocket.TCP_NODELAY

#: A handler: called with the connection's green socket (or TLS socket) and peer address.
StreamHandler = Callable[[Any, Any], object]


def _tls_wrapper() -> Callable[..., Any]:
    """``greenwire.green.ssl.wrap_socket_with``, imported only when a TLS server starts."""
    from greenwire.green._sslsocket import wrap_socket_with

    return wrap_socket_with


class StreamServer(BaseServer):
    """A TCP (or UNIX stream) server running each connection's handler in a greenlet.

    Args:
        listener: an address (``("127.0.0.1", 8080)``, ``("::1", 0)``, ``("", 8080)``,
            ``"host:port"``) or a listening socket, green or plain (adopted).
        handle: ``handle(socket, address)``, called in a new greenlet per connection
            with a green socket (a TLS socket with ``ssl_context``); a subclass may
            define a ``handle`` method instead.
        pool: None (no cap), a maximum number of concurrent handlers, or a
            :class:`~greenwire.Pool` / :class:`~greenwire.Group` to spawn them in.
            :meth:`stop` waits for and kills every member of that pool.
        ssl_context: an :class:`ssl.SSLContext` (server side) to serve TLS.
        ssl_handshake_timeout: seconds a client gets to finish the TLS handshake
            (None: no limit).
        backlog: the listen() backlog when binding an address (default:
            ``socket.SOMAXCONN``).
        reuse_port: set ``SO_REUSEPORT`` so several servers can share the port.
        stop_timeout: the default ``timeout`` of :meth:`stop`, in seconds.

    Raises:
        TypeError, ValueError: bad arguments (no handler, a socket of the wrong type ...).
    """

    socket_kind: ClassVar[int] = gsocket.SOCK_STREAM
    loop_operation: ClassVar[str] = "accept"
    handler_signature: ClassVar[str] = "handle(socket, address)"
    handler_subject: ClassVar[str] = "the connection"

    def __init__(
        self,
        listener: ListenerSpec,
        handle: StreamHandler | None = None,
        *,
        pool: PoolSpec = None,
        ssl_context: Any = None,
        ssl_handshake_timeout: float | None = 10.0,
        backlog: int | None = None,
        reuse_port: bool = False,
        stop_timeout: float = 1.0,
    ) -> None:
        if ssl_context is not None and not isinstance(ssl_context, _SSLContext):
            raise TypeError(f"ssl_context must be an ssl.SSLContext, not {ssl_context!r}")
        if ssl_handshake_timeout is not None and not ssl_handshake_timeout > 0:
            raise ValueError(
                f"ssl_handshake_timeout must be positive or None, not {ssl_handshake_timeout!r}"
            )
        if backlog is not None and (type(backlog) is not int or backlog < 0):
            raise ValueError(f"backlog must be a non-negative int, not {backlog!r}")
        self.ssl_context = ssl_context
        self.ssl_handshake_timeout = ssl_handshake_timeout
        self.backlog = gsocket.SOMAXCONN if backlog is None else backlog
        self._wrap_tls: Callable[..., Any] | None = None
        super().__init__(
            listener, handle, pool=pool, reuse_port=reuse_port, stop_timeout=stop_timeout
        )

    def _backlog(self) -> int:
        return self.backlog

    def _prepare(self, sock: gsocket.socket) -> None:
        if self.ssl_context is not None:
            self._wrap_tls = _tls_wrapper()
        if is_tcp(sock):
            try:
                sock.setsockopt(_IPPROTO_TCP, _TCP_NODELAY, 1)
            except OSError:  # pragma: no cover - TCP sockets accept it
                pass

    # ----------------------------------------------------------- accept loop

    def _receiver(self, sock: gsocket.socket) -> Callable[[], tuple[gsocket.socket, Any]]:
        return sock.accept

    def _starter(self, sock: gsocket.socket) -> Callable[[tuple[gsocket.socket, Any]], bool]:
        spawn = self.pool.spawn
        serve = self._serve_tls if self.ssl_context is not None else self._serve_connection
        # See the module docstring (Nagle): checked on the first connection only.
        check_nodelay = is_tcp(sock)
        set_nodelay = False

        def start(accepted: tuple[gsocket.socket, Any]) -> bool:
            nonlocal check_nodelay, set_nodelay
            conn, address = accepted
            try:
                if set_nodelay:
                    conn.setsockopt(_IPPROTO_TCP, _TCP_NODELAY, 1)
                elif check_nodelay:
                    check_nodelay = False
                    if not conn.getsockopt(_IPPROTO_TCP, _TCP_NODELAY):
                        set_nodelay = True
                        conn.setsockopt(_IPPROTO_TCP, _TCP_NODELAY, 1)
                spawn(serve, conn, address)
            except BaseException as exc:
                # The connection died before its handler started (reset during the
                # setsockopt, a kill while waiting for a pool slot ...): ours to close.
                close_quietly(conn)
                if not isinstance(exc, Exception):
                    raise
                self._spawn_failed(exc)
                return False
            return True

        return start

    # ---------------------------------------------------------------- handlers

    def _serve_connection(self, sock: gsocket.socket, address: Any) -> None:
        """Run the handler on one plain connection; log its failure; close the socket."""
        try:
            self._handle(sock, address)
        except Exception:
            self._handler_failed(address)
        finally:
            close_quietly(sock)

    def _serve_tls(self, sock: gsocket.socket, address: Any) -> None:
        """Shake hands (with a deadline), then run the handler on the TLS socket."""
        tls: Any = None
        try:
            try:
                tls = self._handshake(sock)
            except Exception as exc:
                logger.info("%r: TLS handshake with %r failed: %r", self, address, exc)
                return
            self._handle(tls, address)
        except Exception:
            self._handler_failed(address)
        finally:
            if tls is not None:
                close_quietly(tls)
            close_quietly(sock)

    def _handshake(self, sock: gsocket.socket) -> Any:
        wrap = self._wrap_tls
        assert wrap is not None
        timeout = self.ssl_handshake_timeout
        scope = contextlib.nullcontext() if timeout is None else fail_after(timeout)
        tls = wrap(self.ssl_context, sock, server_side=True, do_handshake_on_connect=False)
        try:
            with scope:
                tls.do_handshake()
        except BaseException:
            close_quietly(tls)
            raise
        return tls
