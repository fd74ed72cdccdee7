"""Name resolution that blocks only the calling greenlet: libc's resolver in the thread pool.

The lookups call the *original* stdlib functions in a real OS thread
(:func:`greenwire.threadpool.run_in_thread`), so results and errors are exactly libc's:
``/etc/hosts``, ``nsswitch.conf``, ``AF_UNSPEC`` ordering (``gai.conf``), the ``gaierror``
codes and messages. Only the calling greenlet waits; the hub keeps running the others, and
up to the pool's size (``GREENWIRE_THREADPOOL_SIZE``, default 10) lookups run at once.

Calls that cannot block skip the thread, because libc answers them without consulting
any name service: ``getaddrinfo`` of an IP literal (or ``None``) with a numeric port and
without ``AI_CANONNAME``, ``gethostbyname`` of an IPv4 literal (CPython parses it itself),
``getnameinfo`` with both ``NI_NUMERICHOST`` and ``NI_NUMERICSERV``, and calls whose
arguments the C code refuses before any lookup. They still call the same functions,
inline, so their answers are libc's too. ``"localhost"`` is *not* short-cut: what it
resolves to depends on ``/etc/hosts``, the NSS configuration and ``gai.conf``. Called
from a pool thread, every lookup runs inline in that thread.

This module can be used (and patched in) without :mod:`greenwire.green.socket`.
"""

from __future__ import annotations

import _socket
from collections.abc import Callable
from typing import Any

from greenwire.green._registry import original
from greenwire.threadpool import run_in_thread

__target__ = "socket"
__implements__ = [
    "getaddrinfo",
    "gethostbyname",
    "gethostbyname_ex",
    "gethostbyaddr",
    "getnameinfo",
    "getfqdn",
]
__all__ = list(__implements__)

_getaddrinfo: Callable[..., list[tuple[Any, Any, int, str, Any]]] = original(
    "socket", "getaddrinfo"
)
_gethostbyname: Callable[[str], str] = original("socket", "gethostbyname")
_gethostbyname_ex: Callable[[str], tuple[str, list[str], list[str]]] = original(
    "socket", "gethostbyname_ex"
)
_gethostbyaddr: Callable[[str], tuple[str, list[str], list[str]]] = original(
    "socket", "gethostbyaddr"
)
_getnameinfo: Callable[[Any, int], tuple[str, str]] = original("socket", "getnameinfo")
_gethostname: Callable[[], str] = original("socket", "gethostname")

_inet_pton = _socket.inet_pton
_AF_INET = _socket.AF_INET
_AF_INET6 = getattr(_socket, "AF_INET6", None)
_AI_CANONNAME = _socket.AI_CANONNAME
_NI_NUMERIC = _socket.NI_NUMERICHOST | _socket.NI_NUMERICSERV


def _is_ipv4_literal(host: object) -> bool:
    if type(host) is not str:
        return False
    try:
        _inet_pton(_AF_INET, host)
    except (OSError, ValueError):
        return False
    return True


def _is_ip_literal(host: object) -> bool:
    """True if libc will parse ``host`` as an address without any lookup."""
    if host is None or _is_ipv4_literal(host):
        return True
    # A scope id ("fe80::1%eth0") is left to libc in a thread: inet_pton refuses it anyway.
    if type(host) is not str or _AF_INET6 is None:
        return False
    try:
        _inet_pton(_AF_INET6, host)
    except (OSError, ValueError):
        return False
    return True


def _is_numeric_port(port: object) -> bool:
    if port is None or type(port) is int:
        return True
    return type(port) is str and port.isascii() and port.isdigit()


def _resolves_inline(host: object, port: object, flags: object) -> bool:
    """True if getaddrinfo answers without any name service (nothing that can block)."""
    return (
        isinstance(flags, int)
        and not flags & _AI_CANONNAME
        and _is_ip_literal(host)
        and _is_numeric_port(port)
    )


def getaddrinfo(
    host: bytes | str | None,
    port: bytes | str | int | None,
    family: int = 0,
    type: int = 0,
    proto: int = 0,
    flags: int = 0,
) -> list[tuple[Any, Any, int, str, Any]]:
    """Cooperative :func:`socket.getaddrinfo`: same arguments, results and errors.

    Raises:
        socket.gaierror: exactly as libc reports it.
    """
    if _resolves_inline(host, port, flags):
        return _getaddrinfo(host, port, family, type, proto, flags)
    return run_in_thread(_getaddrinfo, host, port, family, type, proto, flags)


def gethostbyname(hostname: str, /) -> str:
    """Cooperative :func:`socket.gethostbyname` (IPv4 only, like the original)."""
    if _is_ipv4_literal(hostname):
        return _gethostbyname(hostname)
    return run_in_thread(_gethostbyname, hostname)


def gethostbyname_ex(hostname: str, /) -> tuple[str, list[str], list[str]]:
    """Cooperative :func:`socket.gethostbyname_ex`: ``(name, aliases, addresses)``."""
    return run_in_thread(_gethostbyname_ex, hostname)


def gethostbyaddr(ip_address: str, /) -> tuple[str, list[str], list[str]]:
    """Cooperative :func:`socket.gethostbyaddr`: ``(name, aliases, addresses)``."""
    return run_in_thread(_gethostbyaddr, ip_address)


def getnameinfo(sockaddr: Any, flags: int, /) -> tuple[str, str]:
    """Cooperative :func:`socket.getnameinfo`: ``(host, port)`` of a socket address."""
    if (
        type(sockaddr) is not tuple
        or not isinstance(flags, int)
        or flags & _NI_NUMERIC == _NI_NUMERIC
    ):
        try:
            return _getnameinfo(sockaddr, flags)  # refused at once, or nothing to look up
        except BaseException:
            # The traceback keeps this frame alive while the error is handled; let it
            # not keep the caller's argument too (the C function holds no reference).
            del sockaddr
            raise
    return run_in_thread(_getnameinfo, sockaddr, flags)


def getfqdn(name: str = "") -> str:
    """Cooperative :func:`socket.getfqdn`: the fully qualified name of ``name``.

    The reverse lookup runs in the thread pool. As in the stdlib, the first of the
    primary name and its aliases that contains a dot wins, then the primary name; a
    name that cannot be looked up is returned as given, and an empty name (or
    ``0.0.0.0`` / ``::``) means this host.
    """
    name = name.strip()
    if not name or name in ("0.0.0.0", "::"):
        name = _gethostname()
    try:
        hostname, aliases, _ = gethostbyaddr(name)
    except OSError:
        return name
    for candidate in (hostname, *aliases):
        if "." in candidate:
            return candidate
    return hostname
