"""The article's second server: ``ThreadingMixIn`` + ``SimpleXMLRPCServer``.

    python examples/xmlrpc_server_threaded.py [--port 8080] [--duration SECONDS]

Every request gets its own OS thread, so a handler that waits does not hold up the others;
but threads are expensive to start, share one GIL, and a thousand of them spend much of
their time handing it over. xmlrpc_server_greenwire.py runs this very file after
``greenwire.monkey.patch_all()``: the same code, with every "thread" a greenlet.
Stop it with Ctrl-C, or give ``--duration``. ``--port 0`` lets the OS choose the port.
"""

from __future__ import annotations

import argparse
import itertools
import threading
import time
from socketserver import TCPServer, ThreadingMixIn
from xmlrpc.server import SimpleXMLRPCRequestHandler, SimpleXMLRPCServer

# The article sets this for the single-threaded server only; a thousand clients connecting
# at once need it here too, or the kernel drops connections the server has not accepted yet.
TCPServer.request_queue_size = 10000

calls = itertools.count(1)
os_threads = set()  # the OS threads that ran a handler


class TXMLRPCServer(ThreadingMixIn, SimpleXMLRPCServer):
    pass


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

    # logRequests=False: the article's version logged every request to stderr.
    server = TXMLRPCServer(("127.0.0.1", args.port), SimpleXMLRPCRequestHandler, False)
    server.register_function(add, "add")
    server.register_function(gen, "gen")

    print(
        f"threaded XML-RPC server on http://127.0.0.1:{server.server_address[1]}/",
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
