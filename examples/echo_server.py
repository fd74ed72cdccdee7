"""An echo server: one greenlet per connection, plain blocking code on green sockets.

Run:  python examples/echo_server.py [--port 8007] [--max-connections 10000]
Try:  printf 'hello\\n' | nc 127.0.0.1 8007

The server prints its address, serves until Ctrl-C (or ``--serve-for SECONDS``), then
stops gracefully: it stops accepting, gives the open connections a moment to finish, and
prints how many it served.
"""

from __future__ import annotations

import argparse
import logging
import sys

import greenwire
from greenwire.green.socket import socket
from greenwire.server import StreamServer


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8007, help="0 picks a free port")
    parser.add_argument("--max-connections", type=int, default=10_000)
    parser.add_argument("--serve-for", type=float, default=None, help="seconds, then stop")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")

    served = 0

    def echo(sock: socket, address: tuple[str, int]) -> None:
        nonlocal served
        served += 1
        while data := sock.recv(65536):
            sock.sendall(data)

    server = StreamServer((args.host, args.port), echo, pool=args.max_connections)
    server.start()
    print(f"echo server on {server.server_host}:{server.server_port}", flush=True)
    if args.serve_for is not None:
        greenwire.spawn_later(args.serve_for, server.stop)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        server.stop(timeout=2)
    print(f"served {served} connections", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
