"""The article's XML-RPC servers, one variant per process: ``python _xmlrpc_server.py VARIANT``.

Variants:

- ``single``: the plain ``SimpleXMLRPCServer``, one thread, one request at a time;
- ``threaded``: ``class TXMLRPCServer(ThreadingMixIn, SimpleXMLRPCServer)``, an OS thread
  per request;
- ``greenwire`` / ``gevent`` / ``eventlet``: the same threaded class, unchanged, after that
  library's monkey patching, so every "thread" is a greenlet.

Every server registers ``add(a, b)`` and ``gen(n)`` (the article's functions) and
``fetch(n)``, a handler that waits on I/O the way real ones do: it connects to the
backend service (``_backend.py``), asks for ``n`` bytes and returns what arrives after the
backend's delay.

The script is run by path, not as ``-m greenwire.bench...``: importing the package would
import greenwire (and ``threading``, ``select``) into the gevent and eventlet servers
before their patching. The variant is read from ``argv`` and the patch applied before any
other import that could matter.

Deviations from the article's code, the same for every variant: the listen backlog
(``TCPServer.request_queue_size``, the article sets 10000 for the single server only) is
given to all, so that no variant loses connections in the kernel's accept queue;
``logRequests=False`` everywhere (the article's threaded server logs every request to
stderr); the address is 127.0.0.1 with a port chosen by the OS, printed as
``READY <port>`` on stdout.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

VARIANTS = ("single", "threaded", "greenwire", "gevent", "eventlet")
#: The module each variant needs beyond the standard library.
REQUIRES = {"greenwire": "greenwire", "gevent": "gevent", "eventlet": "eventlet"}


def patch(variant: str) -> None:
    """Apply the variant's monkey patching (nothing for ``single`` and ``threaded``)."""
    if variant == "greenwire":
        monkey = importlib.import_module("greenwire.monkey")
        monkey.patch_all()
    elif variant == "gevent":
        importlib.import_module("gevent.monkey").patch_all()
    elif variant == "eventlet":
        importlib.import_module("eventlet").monkey_patch()
    elif variant not in VARIANTS:
        raise SystemExit(f"unknown server variant {variant!r}; choose from {', '.join(VARIANTS)}")


def serve(variant: str, backend_port: int, backlog: int) -> None:
    """Build the variant's server as the article does, announce its port, serve forever."""
    # Imported here, after patching: the article's modules, under their Python 3 names.
    import socket
    from socketserver import TCPServer, ThreadingMixIn
    from xmlrpc.server import SimpleXMLRPCRequestHandler, SimpleXMLRPCServer

    TCPServer.request_queue_size = backlog

    class TXMLRPCServer(ThreadingMixIn, SimpleXMLRPCServer):
        pass

    # Typed Any: the dispatcher hands over whatever the XML-RPC request unmarshalled to.
    def add(a: Any, b: Any) -> Any:
        return a + b

    def gen(n: Any) -> Any:
        return "0" * n

    def fetch(n: Any) -> Any:
        """Ask the backend service for ``n`` bytes; it answers after its delay."""
        with socket.create_connection(("127.0.0.1", backend_port), timeout=30) as conn:
            conn.sendall(b"%d\n" % n)
            chunks = []
            while True:
                data = conn.recv(65536)
                if not data:
                    break
                chunks.append(data)
        return b"".join(chunks).decode("ascii")

    server_class = SimpleXMLRPCServer if variant == "single" else TXMLRPCServer
    server = server_class(("127.0.0.1", 0), SimpleXMLRPCRequestHandler, logRequests=False)
    server.register_function(add, "add")
    server.register_function(gen, "gen")
    server.register_function(fetch, "fetch")
    print(f"READY {server.server_address[1]}", flush=True)
    server.serve_forever()


def main(argv: list[str]) -> None:
    """``VARIANT BACKEND_PORT BACKLOG``: patch, build, serve until killed."""
    if len(argv) != 3:
        raise SystemExit("usage: _xmlrpc_server.py VARIANT BACKEND_PORT BACKLOG")
    variant = argv[0]
    patch(variant)
    serve(variant, int(argv[1]), int(argv[2]))


if __name__ == "__main__":
    main(sys.argv[1:])
