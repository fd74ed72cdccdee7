"""Servers built on green sockets.

:class:`StreamServer` accepts TCP (or UNIX stream) connections, optionally over TLS, and
runs ``handle(socket, address)`` in a greenlet per connection; :class:`DatagramServer`
does the same per UDP datagram with ``handle(data, address)``. Both share one lifecycle:
``start()``, ``serve_forever()``, ``stop(timeout)``, and use as a context manager. See
``docs/servers.md``. :class:`WSGIServer` is a StreamServer serving a WSGI application
over the sans-IO HTTP/1.1 layer in :mod:`greenwire.server.http` (``docs/wsgi.md``).
"""

from greenwire.server.datagram import DatagramServer
from greenwire.server.stream import StreamServer
from greenwire.server.wsgi import WSGIHandler, WSGIServer

__all__ = ["DatagramServer", "StreamServer", "WSGIHandler", "WSGIServer"]
