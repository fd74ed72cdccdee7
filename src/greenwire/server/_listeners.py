"""Listening sockets for the servers: bound from an address, or adopted from the caller.

A server's ``listener`` is either an address or a socket that is already set up:

* an address tuple, ``("127.0.0.1", 8080)``, ``("::1", 0)``, ``("", 8080)`` (every IPv4
  interface) or a 4-tuple IPv6 address; a string ``"host:port"``, ``":port"`` or
  ``"[::1]:port"``; or a bare port number (every IPv4 interface). Literal addresses pick
  their family; a host name is resolved cooperatively and its first address is used.
* a socket: a green one is used as it is, a plain stdlib one is *adopted* (its fd moves
  into a green socket and the original object is left detached). A stream socket must
  already listen, a datagram socket must be bound.

Either way the server owns the socket from then on and closes it when it stops.
"""

from __future__ import annotations

import errno
from typing import Any

from greenwire.green import original
from greenwire.green import socket as gsocket

__all__ = [
    "ListenerSpec",
    "adopt_listener",
    "bind_listener",
    "close_quietly",
    "is_inet",
    "is_socket",
    "listener_address",
]

#: What a server accepts as its ``listener`` argument.
ListenerSpec = Any

_StdlibSocket: type[Any] = original("socket", "socket")
_AF_INET = gsocket.AF_INET
_AF_INET6 = gsocket.AF_INET6
_SOCK_STREAM = gsocket.SOCK_STREAM
_SOL_SOCKET = gsocket.SOL_SOCKET
_SO_REUSEPORT: int | None = getattr(gsocket, "SO_REUSEPORT", None)
_KIND_NAMES = {gsocket.SOCK_STREAM: "stream (SOCK_STREAM)", gsocket.SOCK_DGRAM: "datagram"}


def _check_port(port: object, spec: object) -> int:
    if type(port) is not int or not 0 <= port <= 65535:
        raise ValueError(f"invalid port in server address {spec!r}: want an int in 0..65535")
    return port


def _split_address_string(spec: str) -> tuple[str, int]:
    """``"host:port"``, ``":port"``, ``"[v6]:port"`` or ``"port"`` as ``(host, port)``."""
    host, colon, port_text = spec.rpartition(":")
    if not colon:
        host, port_text = "", spec
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise ValueError(f"put an IPv6 address in brackets: '[{host}]:{port_text}'")
    try:
        port = int(port_text)
    except ValueError:
        raise ValueError(f"invalid server address {spec!r}: want 'host:port'") from None
    return host, _check_port(port, spec)


def _is_ipv4_literal(host: str) -> bool:
    try:
        gsocket.inet_pton(_AF_INET, host)
    except OSError:
        return False
    return True


def listener_address(spec: ListenerSpec, kind: int) -> tuple[int, tuple[Any, ...]]:
    """The socket family and the address to bind for the address form of ``listener``.

    Raises:
        TypeError: ``spec`` is not an address.
        ValueError: it is malformed (bad port, unbracketed IPv6 in a string ...).
        OSError: a host name could not be resolved.
    """
    if isinstance(spec, str):
        spec = _split_address_string(spec)
    elif type(spec) is int:
        spec = ("", _check_port(spec, spec))
    if not isinstance(spec, tuple) or len(spec) not in (2, 4):
        raise TypeError(
            "a server listens on an address tuple such as ('127.0.0.1', 8080), a"
            f" 'host:port' string or a socket, not {spec!r}"
        )
    host, port = spec[0], _check_port(spec[1], spec)
    if not isinstance(host, str):
        raise TypeError(f"the host of a server address is a str, not {host!r}")
    if len(spec) == 4:
        return _AF_INET6, (host, port, *spec[2:])
    if host == "" or _is_ipv4_literal(host):
        return _AF_INET, (host, port)
    if ":" in host:
        return _AF_INET6, (host, port)
    # A name: resolved in the thread pool, never by the C layer inside bind().
    infos = gsocket.getaddrinfo(host, port, 0, kind, 0, gsocket.AI_PASSIVE)
    if not infos:  # pragma: no cover - getaddrinfo raises instead
        raise OSError(errno.ENOENT, f"{host!r} has no address")
    family, _, _, _, sockaddr = infos[0]
    return int(family), tuple(sockaddr)


def bind_listener(
    spec: ListenerSpec, kind: int, *, backlog: int, reuse_port: bool
) -> gsocket.socket:
    """A new green socket of type ``kind`` bound to ``spec`` (and listening, for streams).

    Stream sockets get ``SO_REUSEADDR``, so a restarted server can bind its port while old
    connections linger in TIME_WAIT; datagram sockets do not (on Linux it would let two
    UDP sockets share a port without ``reuse_port``).

    Raises:
        OSError: binding failed; the message names the address.
    """
    family, sockaddr = listener_address(spec, kind)
    if reuse_port and _SO_REUSEPORT is None:  # pragma: no cover - Linux has it
        raise ValueError("reuse_port is not supported on this platform")
    sock = gsocket.socket(family, kind)
    try:
        if kind == _SOCK_STREAM:
            sock.setsockopt(_SOL_SOCKET, gsocket.SO_REUSEADDR, 1)
        if reuse_port and _SO_REUSEPORT is not None:
            sock.setsockopt(_SOL_SOCKET, _SO_REUSEPORT, 1)
        try:
            sock.bind(sockaddr)
        except OSError as exc:
            code = exc.errno or 0
            raise OSError(
                code, f"{exc.strerror or exc} (while binding a server to {sockaddr!r})"
            ) from None
        if kind == _SOCK_STREAM:
            sock.listen(backlog)
    except BaseException:
        sock.close()
        raise
    return sock


def adopt_listener(sock: Any, kind: int) -> gsocket.socket:
    """``sock`` as the green socket a server listens on (see the module docstring).

    Raises:
        TypeError: ``sock`` is not a socket.
        ValueError: it is closed, of the wrong type, not listening or not bound.
    """
    if not isinstance(sock, _StdlibSocket):
        raise TypeError(f"expected a socket, got {sock!r}")
    if sock.fileno() < 0:
        raise ValueError("the server's socket is closed")
    if sock.type != kind:
        want = _KIND_NAMES.get(kind, str(kind))
        raise ValueError(f"the server needs a {want} socket, got {sock!r}")
    if kind == _SOCK_STREAM:
        if not sock.getsockopt(_SOL_SOCKET, gsocket.SO_ACCEPTCONN):
            raise ValueError("the server's socket must already listen (call listen() first)")
    elif sock.family in (_AF_INET, _AF_INET6) and sock.getsockname()[1] == 0:
        raise ValueError("the server's datagram socket must already be bound")
    if isinstance(sock, gsocket.socket):
        green = sock
    else:
        green = gsocket.socket(sock.family, sock.type, sock.proto, sock.detach())
    # The server waits in its own loop: a timeout or non-blocking mode would only turn
    # that wait into errors.
    green.settimeout(None)
    return green


def close_quietly(sock: Any) -> None:
    """Close ``sock``, ignoring the errors a close can raise (ECONNRESET, EBADF)."""
    try:
        sock.close()
    except OSError as exc:
        if exc.errno not in (errno.EBADF, errno.ECONNRESET, errno.ENOTCONN, None):
            raise


def is_socket(obj: object) -> bool:
    """True if ``obj`` is a socket (stdlib or green), as opposed to an address."""
    return isinstance(obj, _StdlibSocket)


def is_inet(sock: Any) -> bool:
    """True if ``sock`` is an IPv4 or IPv6 socket."""
    return bool(sock.family in (_AF_INET, _AF_INET6))
