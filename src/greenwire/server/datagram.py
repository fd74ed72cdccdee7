"""DatagramServer: receive datagrams and run ``handle(data, address)`` in a greenlet each.

One loop greenlet reads the socket until it would block (then parks until the next
readiness edge), spawning a handler per datagram in the server's pool; with a bounded
pool it waits for a free slot before reading, so excess datagrams queue in the kernel's
receive buffer and, once that is full, are dropped there, as UDP does.

Replies go through :meth:`DatagramServer.sendto`. Sending a datagram almost never has to
wait, but when the socket's send buffer is full it does, and only one greenlet at a time
may wait to write an fd: concurrent handlers that all find the buffer full queue on a lock
instead of failing.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, ClassVar

from greenwire.green import socket as gsocket
from greenwire.lock import Lock
from greenwire.server._base import BaseServer, PoolSpec
from greenwire.server._listeners import ListenerSpec

__all__ = ["DatagramServer"]

_MSG_DONTWAIT: int = getattr(gsocket, "MSG_DONTWAIT", 0)

#: A handler: called with the datagram's bytes and the sender's address.
DatagramHandler = Callable[[bytes, Any], object]


class DatagramServer(BaseServer):
    """A UDP (or UNIX datagram) server running a handler greenlet per datagram.

    Args:
        listener: an address (``("127.0.0.1", 9999)``, ``("::1", 0)``, ``"host:port"``)
            or a bound datagram socket, green or plain (adopted).
        handle: ``handle(data, address)``, called in a new greenlet per datagram; a
            subclass may define a ``handle`` method instead. Reply with :meth:`sendto`.
        pool: None (no cap), a maximum number of concurrent handlers, or a
            :class:`~greenwire.Pool` / :class:`~greenwire.Group` to spawn them in.
        max_datagram_size: the receive buffer per datagram; longer ones are truncated.
        reuse_port: set ``SO_REUSEPORT`` so several servers can share the port.
        stop_timeout: the default ``timeout`` of :meth:`stop`, in seconds.
    """

    socket_kind: ClassVar[int] = gsocket.SOCK_DGRAM
    loop_operation: ClassVar[str] = "recvfrom"
    handler_signature: ClassVar[str] = "handle(data, address)"
    handler_subject: ClassVar[str] = "a datagram"

    def __init__(
        self,
        listener: ListenerSpec,
        handle: DatagramHandler | None = None,
        *,
        pool: PoolSpec = None,
        max_datagram_size: int = 65536,
        reuse_port: bool = False,
        stop_timeout: float = 1.0,
    ) -> None:
        if type(max_datagram_size) is not int or max_datagram_size < 1:
            raise ValueError(f"max_datagram_size must be a positive int, not {max_datagram_size!r}")
        self.max_datagram_size = max_datagram_size
        self._send_lock = Lock()
        super().__init__(
            listener, handle, pool=pool, reuse_port=reuse_port, stop_timeout=stop_timeout
        )

    def sendto(self, data: bytes, address: Any) -> int:
        """Send ``data`` to ``address`` from the server's socket; return the bytes sent.

        Raises:
            RuntimeError: the server has no socket yet (not started).
            OSError: the send failed (the socket is closed once the server stopped).
        """
        sock = self.socket
        if sock is None:
            raise RuntimeError(f"{self!r} is not started")
        try:
            return sock.sendto(data, _MSG_DONTWAIT, address)
        except BlockingIOError:
            pass
        with self._send_lock:
            return sock.sendto(data, address)

    # -------------------------------------------------------------- the loop

    def _receiver(self, sock: gsocket.socket) -> Callable[[], tuple[bytes, Any]]:
        return functools.partial(sock.recvfrom, self.max_datagram_size)  # no Python frame

    def _starter(self, sock: gsocket.socket) -> Callable[[tuple[bytes, Any]], bool]:
        spawn = self.pool.spawn
        serve = self._serve_datagram

        def start(datagram: tuple[bytes, Any]) -> bool:
            try:
                spawn(serve, *datagram)
            except Exception as exc:
                self._spawn_failed(exc)
                return False
            return True

        return start

    def _serve_datagram(self, data: bytes, address: Any) -> None:
        """Run the handler on one datagram and log its failure."""
        try:
            self._handle(data, address)
        except Exception:
            self._handler_failed(address)
