"""What the stream and datagram servers share: the listener, the pool and the lifecycle.

A server owns one listening socket and one *loop greenlet* that takes work off it
(connections, datagrams) and spawns a handler greenlet for each piece in the server's
pool. The lifecycle:

``start()``
    binds the listener if it was given as an address and spawns the loop greenlet.
``serve_forever()``
    starts if needed, then blocks until :meth:`BaseServer.stop` has finished.
``stop(timeout)``
    closes the listener (the loop greenlet wakes with an error and ends), waits up to
    ``timeout`` seconds for the handlers to finish, kills the rest with ``GreenletExit``
    and waits for them to unwind. A stopped server cannot be started again.

Errors in the loop never end it. The loop is told *what kind* of error it met:

* per-connection failures (``ECONNABORTED``: the client gave up while queued; ``EPROTO``,
  ``EPERM`` from a firewall, network-down errors Linux passes on from the new socket) are
  logged at DEBUG and the loop tries again at once;
* resource exhaustion (``EMFILE``, ``ENFILE``, ``ENOBUFS``, ``ENOMEM``) and anything
  unexpected are logged (WARNING / ERROR with the traceback) and the loop waits before
  trying again, ``min_delay`` at first, doubling up to ``max_delay``, back to
  ``min_delay`` after the next success. Waiting matters: the connection that could not
  be accepted is still queued, so the listener stays readable and an immediate retry
  would spin at 100% CPU until a descriptor frees up.
"""

from __future__ import annotations

import errno
import logging
from collections.abc import Callable
from types import TracebackType
from typing import Any, ClassVar

from greenlet import getcurrent

from greenwire._core import get_hub
from greenwire.event import Event
from greenwire.green import socket as gsocket
from greenwire.greenlet import Greenlet, sleep
from greenwire.pool import Group, Pool
from greenwire.server._listeners import (
    ListenerSpec,
    adopt_listener,
    bind_listener,
    close_quietly,
    is_inet,
    is_socket,
)

__all__ = ["BaseServer", "PoolSpec", "logger"]

#: The logger of every server: loop errors, handler failures, failed TLS handshakes.
logger = logging.getLogger("greenwire.server")

#: What a server accepts as its ``pool`` argument.
PoolSpec = Group | int | None

_RESOURCE_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
# accept(2) on Linux passes on errors of the new connection; the man page says to treat
# them like EAGAIN and retry. ECONNREFUSED / ECONNRESET reach a UDP socket from ICMP.
_PER_CONNECTION_ERRNOS = frozenset(
    getattr(errno, name)
    for name in (
        "ECONNABORTED",
        "EPROTO",
        "EPERM",
        "ENETDOWN",
        "ENOPROTOOPT",
        "EHOSTDOWN",
        "ENONET",
        "EHOSTUNREACH",
        "EOPNOTSUPP",
        "ENETUNREACH",
        "ECONNREFUSED",
        "ECONNRESET",
        "EINTR",
    )
    if hasattr(errno, name)
)


def make_pool(pool: PoolSpec) -> Group:
    """The Group a server spawns its handlers in, from its ``pool`` argument."""
    if pool is None:
        return Group()
    if isinstance(pool, Group):
        return pool
    if type(pool) is int:
        return Pool(pool)
    raise TypeError(f"pool must be None, a positive int or a Group/Pool, not {pool!r}")


class BaseServer:
    """The shared machinery of :class:`StreamServer` and :class:`DatagramServer`."""

    #: The socket type the server listens on.
    socket_kind: ClassVar[int]
    #: What the loop does to take work off the socket, for the log ("accept", "recvfrom").
    loop_operation: ClassVar[str]
    #: What a handler is called with, for error messages ("handle(socket, address)").
    handler_signature: ClassVar[str]
    #: What a handler works on, for the log ("the connection", "a datagram").
    handler_subject: ClassVar[str]
    #: How long to wait after a resource error before trying again (doubled each time).
    min_delay: float = 0.01
    #: The longest wait between retries after resource errors.
    max_delay: float = 1.0
    #: Accepts (or receives) in one go before letting other greenlets run.
    max_batch: int = 100
    #: The grace period for killed handlers to unwind at the end of :meth:`stop`.
    kill_grace: float = 1.0

    def __init__(
        self,
        listener: ListenerSpec,
        handle: Callable[..., object] | None,
        *,
        pool: PoolSpec,
        reuse_port: bool,
        stop_timeout: float,
    ) -> None:
        if handle is None:
            handle = getattr(self, "handle", None)
            if handle is None:
                raise TypeError(
                    f"{type(self).__name__} needs a {self.handler_signature} callable"
                    " (or a subclass with a handle() method)"
                )
        elif not callable(handle):
            raise TypeError(f"handle must be callable, not {handle!r}")
        self._handle: Callable[..., object] = handle
        self.pool: Group = make_pool(pool)
        self.reuse_port = bool(reuse_port)
        if stop_timeout < 0:
            raise ValueError(f"stop_timeout must be >= 0, not {stop_timeout!r}")
        self.stop_timeout = stop_timeout
        #: The listening green socket; None until :meth:`start` when given an address.
        self.socket: gsocket.socket | None = None
        self._address: ListenerSpec = None
        if is_socket(listener):
            self.socket = adopt_listener(listener, self.socket_kind)
        else:
            self._address = listener
        self._loop: Greenlet[None] | None = None
        self._closing = False
        self._stopped = Event()

    # --------------------------------------------------------------- addresses

    @property
    def address(self) -> Any:
        """The address the server listens on (the real one, port included, once bound)."""
        sock = self.socket
        if sock is not None and sock.fileno() >= 0:
            return sock.getsockname()
        return self._address

    @property
    def server_host(self) -> Any:
        """The host part of :attr:`address` (None for a UNIX socket)."""
        address = self.address
        return address[0] if isinstance(address, tuple) else None

    @property
    def server_port(self) -> int | None:
        """The port of :attr:`address` (None for a UNIX socket)."""
        address = self.address
        if isinstance(address, tuple) and len(address) >= 2:
            port: int = address[1]
            return port
        return None

    @property
    def started(self) -> bool:
        """True from :meth:`start` until :meth:`stop`."""
        return self._loop is not None and not self._closing

    @property
    def closed(self) -> bool:
        """True once :meth:`stop` has been called."""
        return self._closing

    # --------------------------------------------------------------- lifecycle

    def _bind(self) -> gsocket.socket:
        """Create the listening socket from the address given to the constructor."""
        return bind_listener(
            self._address, self.socket_kind, backlog=self._backlog(), reuse_port=self.reuse_port
        )

    def _backlog(self) -> int:
        """The listen() backlog of a socket the server binds itself."""
        return 0

    def _prepare(self, sock: gsocket.socket) -> None:
        """Set up a listener once, before the loop starts (subclasses add options)."""

    def start(self) -> None:
        """Bind (if needed) and start serving in the background; return at once.

        Raises:
            RuntimeError: the server was already started, or stopped.
            OSError: the address could not be bound.
        """
        if self._closing:
            raise RuntimeError(f"{self!r} was stopped and cannot be started again")
        if self._loop is not None:
            raise RuntimeError(f"{self!r} is already started")
        if self.socket is None:
            self.socket = self._bind()
        self._prepare(self.socket)
        self._loop = Greenlet.spawn(self._serve_loop, self.socket)

    def serve_forever(self, stop_timeout: float | None = None) -> None:
        """Start if needed and block until :meth:`stop` has finished.

        If this greenlet is interrupted instead (KeyboardInterrupt, a kill), the server is
        stopped with ``stop_timeout`` before the exception goes on.
        """
        if self._loop is None and not self._closing:
            self.start()
        try:
            self._stopped.wait()
        finally:
            if not self._stopped.is_set():
                self.stop(stop_timeout)

    def stop(self, timeout: float | None = None) -> None:
        """Stop accepting, let handlers finish for up to ``timeout`` s, then kill the rest.

        ``timeout`` defaults to :attr:`stop_timeout`. Idempotent; callable from a handler
        (which is then neither waited for nor killed). A second call from outside the
        handlers waits until the first one is done.
        """
        me = getcurrent()
        if self._closing:
            if not self._stopped.is_set() and me not in self.pool:
                self._stopped.wait()
            return
        self._closing = True
        if timeout is None:
            timeout = self.stop_timeout
        try:
            sock = self.socket
            if sock is not None:
                close_quietly(sock)  # wakes the loop greenlet with ClosedResourceError
            loop = self._loop
            if loop is not None:
                loop.kill()  # if it was not waiting on the socket (a back-off, the pool)
            self._wait_for_handlers(me, timeout)
        finally:
            self._stopped.set()

    def _wait_for_handlers(self, me: object, timeout: float) -> None:
        hub = get_hub()
        deadline = hub.now() + timeout
        for g in list(self.pool):
            if g is me:
                continue
            remaining = deadline - hub.now()
            if remaining <= 0:
                break
            g.join(remaining)
        if any(g is not me for g in self.pool):
            self.pool.kill(block=True, timeout=self.kill_grace)
            survivors = [g for g in self.pool if g is not me]
            if survivors:
                logger.warning(
                    "%r: %d handler(s) still running after being killed: %r",
                    self,
                    len(survivors),
                    survivors,
                )

    def __enter__(self) -> BaseServer:
        if self._loop is None:
            self.start()
        return self

    def __exit__(
        self,
        typ: type[BaseException] | None,
        value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # --------------------------------------------------------------- the loop

    def _serve_loop(self, sock: gsocket.socket) -> None:
        """Take work off ``sock`` and start a handler for each piece, until stopped.

        With a bounded pool, wait for a free slot *before* taking the next piece, so
        excess work waits in the kernel. After :attr:`max_batch` pieces in a row, let
        the other greenlets run once.
        """
        receive = self._receiver(sock)
        start = self._starter(sock)
        pool = self.pool
        full = pool.full if isinstance(pool, Pool) and pool.size is not None else None
        operation = self.loop_operation
        max_batch = self.max_batch
        delay = self.min_delay
        batch = 0
        while True:
            if full is not None and full():
                pool.wait_available()
            try:
                work = receive()
            except Exception as exc:
                if self._closing:
                    return
                delay = self._loop_failed(exc, delay, operation)
                continue
            if not start(work):
                continue
            delay = self.min_delay
            batch += 1
            if batch >= max_batch:
                batch = 0
                sleep(0)

    def _receiver(self, sock: gsocket.socket) -> Callable[[], Any]:
        """The loop's blocking call taking one piece of work off ``sock``."""
        raise NotImplementedError

    def _starter(self, sock: gsocket.socket) -> Callable[[Any], bool]:
        """The loop's call spawning a handler for one piece; False if it could not."""
        raise NotImplementedError

    def _handler_failed(self, address: Any) -> None:
        """Log the exception a handler raised (call from its ``except`` block)."""
        if logger.isEnabledFor(logging.ERROR):
            logger.error(
                "%r: handler %r failed on %s from %r",
                self,
                self._handle,
                self.handler_subject,
                address,
                exc_info=True,
            )

    def _loop_failed(self, exc: BaseException, delay: float, doing: str) -> float:
        """Log an error of the loop and back off if it calls for it; return the next delay.

        Args:
            exc: the error (an OSError from accept/recvfrom, or anything unexpected).
            delay: the current back-off delay.
            doing: what failed, for the log ("accept", "recvfrom").
        """
        code = exc.errno if isinstance(exc, OSError) else None
        if code in _PER_CONNECTION_ERRNOS:
            logger.debug("%r: %s failed, trying again: %s", self, doing, exc)
            return delay
        if code in _RESOURCE_ERRNOS:
            logger.warning("%r: %s failed (%s); retrying in %g s", self, doing, exc, delay)
        else:
            logger.error("%r: %s failed; retrying in %g s", self, doing, delay, exc_info=exc)
        sleep(delay)
        return min(delay * 2, self.max_delay)

    def _spawn_failed(self, exc: BaseException) -> None:
        logger.error("%r: could not start a handler", self, exc_info=exc)

    def __repr__(self) -> str:
        if self._closing:
            state = "stopped"
        elif self._loop is not None:
            state = "serving"
        else:
            state = "not started"
        try:
            address = self.address
        except OSError:
            address = None
        return (
            f"<{type(self).__name__} at {id(self):#x} address={address!r} {state}"
            f" handlers={len(self.pool)}>"
        )


def is_tcp(sock: gsocket.socket) -> bool:
    """True for an IPv4/IPv6 stream socket."""
    return is_inet(sock) and sock.type == gsocket.SOCK_STREAM
