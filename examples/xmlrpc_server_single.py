"""The article's first server: the plain ``SimpleXMLRPCServer``, one request at a time.

    python examples/xmlrpc_server_single.py [--port 8080] [--duration SECONDS]

One thread runs a select loop and handles each request to the end before it accepts the
next one. With handlers that only compute, like ``gen``, that is hard to beat; a handler
that waits (on a database, another service) makes every other client wait too.
Stop it with Ctrl-C, or give ``--duration``. ``--port 0`` lets the OS choose the port.
"""

from __future__ import annotations

import argparse
import itertools
import threading
import time
from socketserver import TCPServer
from xmlrpc.server import SimpleXMLRPCRequestHandler, SimpleXMLRPCServer

# As in the article: a long accept queue, so that many clients can wait for their turn.
TCPServer.request_queue_size = 10000

calls = itertools.count(1)
os_threads = set()  # the OS threads that ran a handler


def add(a, b):
    next(calls)
    os_threads.add(threading.get_native_id())
    return a + b


def gen(n):
    next(calls)
    os_threads.add(threading.get_native_id())
    return "0" * n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8080, help="0: any free port")
    parser.add_argument("--duration", type=float, help="stop after this many seconds")
    args = parser.parse_args()

    server = SimpleXMLRPCServer(("127.0.0.1", args.port), SimpleXMLRPCRequestHandler, False)
    server.register_function(add, "add")
    server.register_function(gen, "gen")

    print(
        f"single-threaded XML-RPC server on http://127.0.0.1:{server.server_address[1]}/",
        flush=True,
    )
    if args.duration is not None:
        timer = threading.Timer(args.duration, server.shutdown)
        timer.daemon = True
        timer.start()
    started = time.perf_counter()
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    elapsed = time.perf_counter() - started
    print(f"served {next(calls) - 1} calls in {elapsed:.1f} s on {len(os_threads)} OS thread(s)")


if __name__ == "__main__":
    main()
