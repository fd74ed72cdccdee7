"""Servers built on green sockets.

:class:`StreamServer` accepts TCP (or UNIX stream) connections, optionally over TLS, and
runs ``handle(socket, address)`` in a greenlet per connection; :class:`DatagramServer`
does the same per UDP datagram with ``handle(data, address)``. Both share one lifecycle:
``start()``, ``serve_forever()``, ``stop(timeout)``, and use as a context manager. See
``docs/servers.md``.
"""

# Stream and datagram servers.
from greenwire.server.datagram import DatagramServer
from greenwire.server.stream import StreamServer

# The WSGI server.

__all__ = [
    # Stream and datagram servers.
    "DatagramServer",
    "StreamServer",
    # The WSGI server.
]
