"""A line-based chat server: every connection is a greenlet, every line goes to everyone.

Run:  python examples/chat_server.py [--port 8008]
Try:  nc 127.0.0.1 8008   (in several terminals)

The first line a client sends is its name. After that, each line is broadcast to the
others as ``name: line``; ``/who`` lists who is here and ``/quit`` leaves.

Each client has an outbox (a bounded ``greenwire.Queue``) and a writer greenlet that
drains it, so one slow reader never holds up the others: when its outbox is full, that
client is dropped instead.
"""

from __future__ import annotations

import argparse
import logging
import sys

import greenwire
from greenwire.green.socket import socket
from greenwire.server import StreamServer

OUTBOX_SIZE = 256
log = logging.getLogger("chat")


class Client:
    """One connected person: a name, an outbox and the greenlet writing it out."""

    def __init__(self, name: str, sock: socket) -> None:
        self.name = name
        self.outbox: greenwire.Queue[bytes | None] = greenwire.Queue(OUTBOX_SIZE)
        self.writer = greenwire.spawn(self._write_out, sock)

    def _write_out(self, sock: socket) -> None:
        try:
            while (line := self.outbox.get()) is not None:
                sock.sendall(line)
        except OSError:
            pass  # the client went away; its reader notices too

    def tell(self, text: str) -> bool:
        """Queue a line for this client; False if it is too far behind to keep."""
        try:
            self.outbox.put_nowait(text.encode() + b"\n")
        except greenwire.Full:
            return False
        return True


class ChatRoom:
    """Who is connected, and the broadcast."""

    def __init__(self) -> None:
        self.clients: dict[str, Client] = {}

    def broadcast(self, text: str, sender: Client | None = None) -> None:
        for client in list(self.clients.values()):
            if client is not sender and not client.tell(text):
                log.info("dropping %s: not reading", client.name)
                self.leave(client)

    def join(self, name: str, sock: socket) -> Client:
        client = Client(name, sock)
        self.clients[name] = client
        self.broadcast(f"* {name} joined", sender=client)
        return client

    def leave(self, client: Client) -> None:
        if self.clients.get(client.name) is client:
            del self.clients[client.name]
            try:
                client.outbox.put_nowait(None)  # its writer sends what is queued, then stops
            except greenwire.Full:
                client.writer.kill(block=False)
            self.broadcast(f"* {client.name} left")

    def handle(self, sock: socket, address: tuple[str, int]) -> None:
        reader = sock.makefile("rb")
        sock.sendall(b"name? ")
        name = reader.readline().decode(errors="replace").strip()
        if not name or name in self.clients:
            sock.sendall(b"that name is taken or empty, bye\n")
            return
        client = self.join(name, sock)
        client.tell(f"welcome, {name}; here: {', '.join(sorted(self.clients))}")
        try:
            for raw in reader:
                line = raw.decode(errors="replace").rstrip("\r\n")
                if line == "/quit":
                    break
                if line == "/who":
                    client.tell("here: " + ", ".join(sorted(self.clients)))
                elif line:
                    self.broadcast(f"{name}: {line}", sender=client)
        except ConnectionError:
            pass
        finally:
            self.leave(client)
            client.writer.join(timeout=1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8008, help="0 picks a free port")
    parser.add_argument("--serve-for", type=float, default=None, help="seconds, then stop")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")

    room = ChatRoom()
    server = StreamServer((args.host, args.port), room.handle)
    server.start()
    print(f"chat server on {server.server_host}:{server.server_port}", flush=True)
    if args.serve_for is not None:
        greenwire.spawn_later(args.serve_for, server.stop)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        server.stop(timeout=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
