"""Cooperative :mod:`ssl`: TLS sockets whose handshake, reads and writes park the greenlet.

``from greenwire.green import ssl`` is a drop-in for ``import ssl``: every name of the
stdlib module is here, with :class:`SSLContext` (a subclass of the stdlib's) making green
:class:`SSLSocket` objects, and ``create_default_context``, ``wrap_socket`` and
``get_server_certificate`` using them. ``SSLObject`` and ``MemoryBIO`` work on memory only
and are the stdlib's own. How the socket class works is explained in
:mod:`greenwire.green._sslsocket`.

Patching
--------
The stdlib's ``SSLContext.wrap_socket`` makes its sockets with ``self.sslsocket_class``,
a class attribute. Replacing ``ssl.SSLContext`` by a subclass would leave out every
context made, and every ``SSLContext`` subclass defined, before patching (and would break
``isinstance`` checks on them). So patching does not replace the context class; it sets
the stdlib ``SSLContext.sslsocket_class`` to the green :class:`SSLSocket` (the
:func:`__patch__` hook), and every context -- old, new, subclassed earlier or later, from a
module that did ``from ssl import SSLContext`` first -- makes green sockets. The names
replaced in the module are ``get_server_certificate``, and ``create_connection``, which
``ssl`` imported from :mod:`socket` and which its ``get_server_certificate`` uses.

``ssl.SSLSocket`` itself stays the stdlib class: its ``_create`` calls
``super(SSLSocket, self)`` through the module global, which must keep naming the stdlib
class. The green class is a subclass of it, so ``isinstance`` checks hold. A context
subclass that sets its own ``sslsocket_class`` to a subclass of the stdlib ``SSLSocket``
keeps it and stays blocking; :func:`wrap_socket_with` wraps with any context and always
returns a green socket.
"""

from __future__ import annotations

import ssl as _stdlib
import warnings
from types import ModuleType
from typing import TYPE_CHECKING, Any

from greenwire.green import socket as _green_socket
from greenwire.green._registry import original
from greenwire.green._sslsocket import SSLSocket as SSLSocket
from greenwire.green._sslsocket import wrap_socket_with as wrap_socket_with

if TYPE_CHECKING:
    from ssl import SSLContext as _BaseSSLContext

    # The stdlib names copied in below are invisible to the type checker.
    def __getattr__(name: str) -> Any: ...

else:
    _BaseSSLContext = original("ssl", "SSLContext")


def _copy_stdlib_names() -> list[str]:
    """Put the unpatched stdlib ``ssl`` names in this module; return the public ones.

    Names this module already has (the green class imported above) are kept.
    """
    namespace = globals()
    public = []
    for name, value in vars(_stdlib).items():
        if name.startswith("__") or isinstance(value, ModuleType):
            continue
        namespace.setdefault(name, original("ssl", name))
        if not name.startswith("_"):
            public.append(name)
    return public


__all__ = _copy_stdlib_names()
__all__ += [name for name in ("wrap_socket_with",) if name not in __all__]
__target__ = "ssl"
__implements__ = ["get_server_certificate", "create_connection"]

_GLOBAL_DEFAULT_TIMEOUT: object = original("socket", "_GLOBAL_DEFAULT_TIMEOUT")
_stdlib_create_default_context: Any = original("ssl", "create_default_context")
_stdlib_create_unverified_context: Any = original("ssl", "_create_unverified_context")
_DER_cert_to_PEM_cert: Any = original("ssl", "DER_cert_to_PEM_cert")
_CERT_NONE = _stdlib.CERT_NONE
_CERT_REQUIRED = _stdlib.CERT_REQUIRED
_PROTOCOL_TLS_CLIENT = _stdlib.PROTOCOL_TLS_CLIENT

socket = _green_socket.socket
create_connection = _green_socket.create_connection


class SSLContext(_BaseSSLContext):
    """The stdlib ``ssl.SSLContext`` making green :class:`SSLSocket` objects."""

    sslsocket_class = SSLSocket


def _green_context(context: _BaseSSLContext) -> SSLContext:
    """``context``, a plain stdlib ``SSLContext`` just made, turned into a green one.

    The stdlib's factories configure a context in ways that vary between Python versions;
    rather than repeat that, they run and the result's class is switched to the green
    subclass, which adds no state (``__class__`` assignment between layout-compatible
    heap types is plain Python).
    """
    if type(context) is _BaseSSLContext:
        context.__class__ = SSLContext
    return context  # type: ignore[return-value]


def create_default_context(
    purpose: Any = _stdlib.Purpose.SERVER_AUTH,
    *,
    cafile: Any = None,
    capath: Any = None,
    cadata: Any = None,
) -> SSLContext:
    """:func:`ssl.create_default_context`, returning a green :class:`SSLContext`."""
    return _green_context(
        _stdlib_create_default_context(purpose, cafile=cafile, capath=capath, cadata=cadata)
    )


def _create_unverified_context(*args: Any, **kwargs: Any) -> SSLContext:
    """``ssl._create_unverified_context``, returning a green :class:`SSLContext`."""
    return _green_context(_stdlib_create_unverified_context(*args, **kwargs))


_create_default_https_context = create_default_context
_create_stdlib_context = _create_unverified_context


def get_server_certificate(
    addr: tuple[str, int],
    ssl_version: int = _PROTOCOL_TLS_CLIENT,
    ca_certs: str | None = None,
    timeout: Any = _GLOBAL_DEFAULT_TIMEOUT,
) -> str:
    """The PEM certificate of the TLS server at ``addr`` (see :func:`ssl.get_server_certificate`).

    The certificate is verified against ``ca_certs`` if given; ``timeout`` bounds the
    connection attempt and each step of the handshake, as in the stdlib.
    """
    host = addr[0]
    cert_reqs = _CERT_REQUIRED if ca_certs is not None else _CERT_NONE
    context = _stdlib_create_unverified_context(ssl_version, cert_reqs=cert_reqs, cafile=ca_certs)
    with (
        _green_socket.create_connection(addr, timeout=timeout) as sock,
        wrap_socket_with(context, sock, server_hostname=host) as sslsock,
    ):
        der = sslsock.getpeercert(True)
    pem: str = _DER_cert_to_PEM_cert(der)
    return pem


if hasattr(_stdlib, "wrap_socket"):  # Python < 3.12

    def wrap_socket(
        sock: Any,
        keyfile: Any = None,
        certfile: Any = None,
        server_side: bool = False,
        cert_reqs: Any = _CERT_NONE,
        ssl_version: Any = _stdlib.PROTOCOL_TLS,
        ca_certs: Any = None,
        do_handshake_on_connect: bool = True,
        suppress_ragged_eofs: bool = True,
        ciphers: str | None = None,
    ) -> SSLSocket:
        """The deprecated :func:`ssl.wrap_socket`, returning a green :class:`SSLSocket`."""
        warnings.warn(
            "ssl.wrap_socket() is deprecated, use SSLContext.wrap_socket()",
            DeprecationWarning,
            stacklevel=2,
        )
        if server_side and not certfile:
            raise ValueError("certfile must be specified for server-side operations")
        if keyfile and not certfile:
            raise ValueError("certfile must be specified")
        context = SSLContext(ssl_version)
        context.verify_mode = cert_reqs
        if ca_certs:
            context.load_verify_locations(ca_certs)
        if certfile:
            context.load_cert_chain(certfile, keyfile)
        if ciphers:
            context.set_ciphers(ciphers)
        return wrap_socket_with(
            context,
            sock,
            server_side=server_side,
            do_handshake_on_connect=do_handshake_on_connect,
            suppress_ragged_eofs=suppress_ragged_eofs,
        )


def __patch__() -> None:
    """Make every stdlib ``SSLContext`` (and subclass) create green sockets.

    Called by :mod:`greenwire.monkey` after it replaced the names in ``__implements__``.
    """
    _BaseSSLContext.sslsocket_class = SSLSocket
