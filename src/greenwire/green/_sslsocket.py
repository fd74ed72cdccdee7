"""The cooperative SSL socket class behind :mod:`greenwire.green.ssl`.

Theory of operation
-------------------
CPython's ``ssl.SSLSocket`` is a ``socket.socket`` subclass whose TLS work is done by an
``_ssl._SSLSocket`` object (``self._sslobj``) created by ``SSLContext._wrap_socket``. That
C object does its own I/O on the fd: it never calls the Python socket's methods. What it
does read from the Python socket is the C-level timeout, before every call: with a timeout
of 0.0 the OpenSSL BIO is non-blocking, and an operation that would block raises
``SSLWantReadError`` or ``SSLWantWriteError`` instead of waiting in ``poll()``.

The green socket keeps its C-level timeout at 0.0 always and emulates the user's timeout
in Python, so a green SSL socket is simply both classes at once::

    SSLSocket -> ssl.SSLSocket -> green socket -> socket.socket -> _socket.socket

``ssl.SSLSocket``'s own code (``_create``, ``connect``, ``sendall``, ``recv``,
``recv_into``, ``makefile``, ``sendfile``'s send() fallback, the clear-text path after
``unwrap()``) runs unchanged on top of the green socket. The few methods that call
``self._sslobj`` directly -- ``do_handshake``, ``read``, ``write``, ``send`` and
``unwrap`` -- are overridden to retry the call while OpenSSL wants I/O, parking the
greenlet on the hub until the fd is readable or writable. Which direction to wait for is
OpenSSL's answer, not the caller's: a read may need to write (a renegotiation, TLS 1.3
key update) and a write may need to read.

As in the C module, one timeout bounds the whole call, whatever the number of waits, and
its expiry raises ``TimeoutError`` (``socket.timeout``) with the C module's message; a
socket in non-blocking mode (timeout 0.0) gets the ``SSLWant*Error`` itself, exactly as
with the stdlib. Closing the socket from another greenlet wakes a waiter with
:class:`~greenwire.ClosedResourceError` (the green socket's ``_real_close`` tells the hub
before the fd goes).

``accept()`` wraps the new connection through :func:`wrap_socket_with`, so a listening
green SSL socket makes green SSL sockets even if its context is a plain stdlib one.
"""

from __future__ import annotations

import _socket
import socket as _stdlib_socket
from collections.abc import Callable
from ssl import SSL_ERROR_EOF, SSLError, SSLWantReadError, SSLWantWriteError
from typing import TYPE_CHECKING, Any, TypeVar

from greenwire.green import socket as _green_socket
from greenwire.green._registry import original

if TYPE_CHECKING:
    from ssl import SSLContext as _BaseSSLContext
    from ssl import SSLSession
    from ssl import SSLSocket as _BaseSSLSocket

    from _typeshed import ReadableBuffer, WriteableBuffer
    from typing_extensions import Self
else:
    _BaseSSLSocket = original("ssl", "SSLSocket")
    _BaseSSLContext = original("ssl", "SSLContext")

__all__ = ["SSLSocket", "wrap_socket_with"]

_T = TypeVar("_T")
_GreenSocket = _green_socket.socket
_c_setblocking = _socket.socket.setblocking


class SSLSocket(_BaseSSLSocket, _GreenSocket):
    """A stdlib ``ssl.SSLSocket`` whose handshake, reads and writes park only the greenlet.

    Made by ``SSLContext.wrap_socket`` of a green context (of any context once
    :mod:`ssl` is patched) or by :func:`wrap_socket_with`; see the module docstring.
    """

    # Set by the stdlib's ``_create``; typeshed does not declare them.
    _sslobj: Any
    do_handshake_on_connect: bool
    suppress_ragged_eofs: bool
    _connected: bool

    @classmethod
    def _create(
        cls,
        sock: _stdlib_socket.socket,
        server_side: bool = False,
        do_handshake_on_connect: bool = True,
        suppress_ragged_eofs: bool = True,
        server_hostname: str | bytes | None = None,
        context: _BaseSSLContext | None = None,
        session: SSLSession | None = None,
    ) -> Self:
        """The stdlib's constructor, then the handshake on a non-blocking fd.

        The stdlib builds the new socket on ``sock``'s fd and then detaches ``sock``; a
        green socket hands its fd over in blocking mode (see its ``detach``), so the fd
        is made non-blocking again here, before any TLS I/O happens on it.
        """
        self: Self = super()._create(  # type: ignore[misc]  # not in typeshed
            sock,
            server_side=server_side,
            do_handshake_on_connect=False,
            suppress_ragged_eofs=suppress_ragged_eofs,
            server_hostname=server_hostname,
            context=context,
            session=session,
        )
        self.do_handshake_on_connect = do_handshake_on_connect
        try:
            _c_setblocking(self, False)
            if do_handshake_on_connect and self._connected:
                if self._timeout == 0.0:
                    raise ValueError(
                        "do_handshake_on_connect should not be specified for non-blocking sockets"
                    )
                self.do_handshake()
        except (OSError, ValueError):
            self.close()
            raise
        return self

    def _ssl_io(self, what: str | None, op: Callable[..., _T], *args: Any) -> _T:
        """``op(*args)``, an ``_sslobj`` call, retried on the hub while OpenSSL wants I/O.

        Args:
            what: ``"handshake"``, ``"read"`` or ``"write"``, for the timeout message;
                None names the direction of the last wait (as the C ``shutdown()`` does).

        Raises:
            SSLWantReadError, SSLWantWriteError: the socket is in non-blocking mode.
            TimeoutError: the socket's timeout passed before the call could finish.
            ClosedResourceError: the socket was closed while waiting.
        """
        timeout: float | None = self._timeout
        deadline: float | None = None
        hub = state = None
        while True:
            try:
                return op(*args)
            except SSLWantReadError:
                if timeout == 0.0:
                    raise
                writing = False
            except SSLWantWriteError:
                if timeout == 0.0:
                    raise
                writing = True
            if hub is None or state is None:
                hub, state = self._wait_state()
                if timeout is not None:
                    deadline = hub.now() + timeout
            try:
                if deadline is not None:
                    timeout = deadline - hub.now()
                    if timeout <= 0.0:
                        raise TimeoutError
                if writing:
                    hub.wait_state_writable(state, timeout)
                else:
                    hub.wait_state_readable(state, timeout)
            except TimeoutError:
                step = what or ("write" if writing else "read")
                raise TimeoutError(f"The {step} operation timed out") from None

    def do_handshake(self, block: bool = False) -> None:
        """Perform the TLS handshake; ``block=True`` waits even in non-blocking mode."""
        self._check_connected()  # type: ignore[attr-defined]
        sslobj = self._sslobj
        if block and self._timeout == 0.0:
            self._timeout = None
            try:
                self._ssl_io("handshake", sslobj.do_handshake)
            finally:
                self._timeout = 0.0
        else:
            self._ssl_io("handshake", sslobj.do_handshake)

    def read(self, len: int = 1024, buffer: WriteableBuffer | None = None) -> Any:
        """Read up to ``len`` bytes (into ``buffer`` if given); b"" or 0 at the end."""
        self._checkClosed()  # type: ignore[attr-defined]
        sslobj = self._sslobj
        if sslobj is None:
            raise ValueError("Read on closed or unwrapped SSL socket.")
        try:
            if buffer is not None:
                return self._ssl_io("read", sslobj.read, len, buffer)
            return self._ssl_io("read", sslobj.read, len)
        except SSLError as x:
            if x.args[0] == SSL_ERROR_EOF and self.suppress_ragged_eofs:
                return 0 if buffer is not None else b""
            raise

    def write(self, data: ReadableBuffer) -> int:
        """Write all of ``data`` to the TLS channel; return its length."""
        self._checkClosed()  # type: ignore[attr-defined]
        sslobj = self._sslobj
        if sslobj is None:
            raise ValueError("Write on closed or unwrapped SSL socket.")
        result: int = self._ssl_io("write", sslobj.write, data)
        return result

    def send(self, data: ReadableBuffer, flags: int = 0) -> int:
        self._checkClosed()  # type: ignore[attr-defined]
        sslobj = self._sslobj
        if sslobj is None:
            return _GreenSocket.send(self, data, flags)
        if flags != 0:
            raise ValueError(f"non-zero flags not allowed in calls to send() on {type(self)}")
        result: int = self._ssl_io("write", sslobj.write, data)
        return result

    def unwrap(self) -> _GreenSocket:
        """Shut TLS down (close_notify both ways); return the socket for clear text.

        As with the stdlib, the returned object is this very socket.
        """
        sslobj = self._sslobj
        if not sslobj:
            raise ValueError("No SSL wrapper around " + str(self))
        result: _GreenSocket = self._ssl_io(None, sslobj.shutdown)
        self._sslobj = None
        return result

    def accept(self) -> tuple[SSLSocket, Any]:
        """Accept a connection and wrap it server-side with this socket's context."""
        sock, address = _GreenSocket.accept(self)
        try:
            wrapped = wrap_socket_with(
                self.context,
                sock,
                server_side=True,
                do_handshake_on_connect=self.do_handshake_on_connect,
                suppress_ragged_eofs=self.suppress_ragged_eofs,
            )
        except BaseException:
            sock.close()  # no-op once the SSL socket took the fd over (and closed it)
            raise
        return wrapped, address


def wrap_socket_with(
    context: _BaseSSLContext,
    sock: _stdlib_socket.socket,
    *,
    server_side: bool = False,
    do_handshake_on_connect: bool = True,
    suppress_ragged_eofs: bool = True,
    server_hostname: str | bytes | None = None,
    session: SSLSession | None = None,
) -> SSLSocket:
    """``context.wrap_socket(sock, ...)`` returning a green SSL socket, whatever ``context``.

    ``context`` may be any ``ssl.SSLContext``, including a plain stdlib one made before or
    without patching: servers that are handed a user's context use this. ``sock`` (a
    connected or listening stream socket, green or not) is detached, as by the stdlib. If
    the context's ``sslsocket_class`` is a subclass of the green :class:`SSLSocket`, that
    class is used.

    Raises:
        TypeError: ``context`` is not an ``ssl.SSLContext``.
        ValueError, OSError, SSLError: as ``SSLContext.wrap_socket``.
    """
    if not isinstance(context, _BaseSSLContext):
        raise TypeError(f"context must be an ssl.SSLContext, not {type(context).__name__}")
    cls: Any = context.sslsocket_class
    if not (isinstance(cls, type) and issubclass(cls, SSLSocket)):
        cls = SSLSocket
    wrapped: SSLSocket = cls._create(
        sock=sock,
        server_side=server_side,
        do_handshake_on_connect=do_handshake_on_connect,
        suppress_ragged_eofs=suppress_ragged_eofs,
        server_hostname=server_hostname,
        context=context,
        session=session,
    )
    return wrapped
