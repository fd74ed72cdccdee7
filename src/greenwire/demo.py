"""A tour of what greenwire does, with the figures printed: ``python -m greenwire.demo``.

Thousands of greenlets in one OS thread serve and call a local TCP echo server, written
in plain blocking style over greenwire's lowest-level waits; then ten thousand sleepers
show how punctual the timers stay under load.
"""

from __future__ import annotations

import argparse
import os
import random
import socket
import statistics
import threading
import time

import greenwire
from greenwire import Pool, TaskGroup, get_hub, wait_readable, wait_writable
from greenwire.bench._processes import raise_fd_limit


def _recv_exactly(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        try:
            chunk = sock.recv(n - len(buf))
        except BlockingIOError:
            wait_readable(sock)
            continue
        if not chunk:
            raise ConnectionError("peer closed the connection")
        buf += chunk
    return bytes(buf)


def _send_all(sock: socket.socket, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            view = view[sock.send(view) :]
        except BlockingIOError:
            wait_writable(sock)


def _close(sock: socket.socket) -> None:
    get_hub().notify_closing(sock)
    sock.close()


class EchoServer:
    """A greenlet-per-connection echo server on 127.0.0.1."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0), backlog=4096)
        self.listener.setblocking(False)
        self.address = self.listener.getsockname()
        self.handlers = 0
        self.peak_handlers = 0
        self._acceptor = greenwire.spawn(self._accept_forever)

    def _accept_forever(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except BlockingIOError:
                wait_readable(self.listener)
                continue
            conn.setblocking(False)
            greenwire.spawn(self._handle, conn)

    def _handle(self, conn: socket.socket) -> None:
        self.handlers += 1
        self.peak_handlers = max(self.peak_handlers, self.handlers)
        try:
            while True:
                try:
                    data = conn.recv(65536)
                except BlockingIOError:
                    wait_readable(conn)
                    continue
                if not data:
                    return
                _send_all(conn, data)
        finally:
            self.handlers -= 1
            _close(conn)

    def close(self) -> None:
        self._acceptor.kill()
        _close(self.listener)


def _client(address: tuple[str, int], rounds: int, payload: bytes) -> list[float]:
    sock = socket.socket()
    sock.setblocking(False)
    latencies = []
    try:
        try:
            sock.connect(address)
        except BlockingIOError:
            wait_writable(sock)
        for _ in range(rounds):
            start = time.perf_counter()
            _send_all(sock, payload)
            if _recv_exactly(sock, len(payload)) != payload:
                raise AssertionError("echo mismatch")
            latencies.append(time.perf_counter() - start)
    finally:
        _close(sock)
    return latencies


def echo_section(clients: int, rounds: int, size: int) -> None:
    limit = raise_fd_limit(2 * clients + 64)
    if 2 * clients + 64 > limit:
        clients = max(1, (limit - 64) // 2)
        print(f"(file descriptor limit {limit}: using {clients} clients)")
    print(f"Echo: {clients:,} client greenlets x {rounds} round trips of {size} bytes")
    print("      against a greenlet-per-connection echo server, all in one OS thread")
    server = EchoServer()
    payload = os.urandom(size)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    pool = Pool(clients)
    results = pool.map(lambda _: _client(server.address, rounds, payload), range(clients))
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    server.close()
    lat = sorted(x for r in results for x in r)
    total = len(lat)
    print(f"  {total:,} round trips in {wall:.2f} s: {total / wall:,.0f} round trips/s,")
    print(f"  {cpu / total * 1e6:.1f} µs of CPU per round trip (client and server together)")
    p99 = lat[int(0.99 * (total - 1))]
    print(f"  latency p50 {statistics.median(lat) * 1e3:.2f} ms, p99 {p99 * 1e3:.2f} ms")
    print(f"  peak concurrent server greenlets: {server.peak_handlers:,}")
    print(f"  OS threads: {threading.active_count()}")


def timer_section(sleepers: int) -> None:
    print(f"Timers: {sleepers:,} greenlets each sleep a random 0-50 ms")
    rng = random.Random(7)
    lateness: list[float] = []

    def sleeper(delay: float) -> None:
        due = time.perf_counter() + delay
        greenwire.sleep(delay)
        lateness.append(time.perf_counter() - due)

    with TaskGroup() as tg:
        for _ in range(sleepers):
            tg.spawn(sleeper, rng.uniform(0, 0.05))
    lateness.sort()
    p99 = lateness[int(0.99 * (len(lateness) - 1))]
    print(f"  lateness p50 {statistics.median(lateness) * 1e3:.2f} ms, p99 {p99 * 1e3:.2f} ms")


def memory_section(count: int) -> None:
    page = os.sysconf("SC_PAGE_SIZE")

    def rss() -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * page

    event = greenwire.Event()
    before = rss()
    gs = [greenwire.spawn(event.wait) for _ in range(count)]
    greenwire.sleep(0)
    after = rss()
    event.set()
    greenwire.joinall(gs)
    print(f"Memory: {count:,} parked greenlets cost {(after - before) / count / 1024:.1f} KiB each")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m greenwire.demo", description=__doc__)
    parser.add_argument("--clients", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--sleepers", type=int, default=10_000)
    args = parser.parse_args(argv)
    print(f"greenwire {greenwire.__version__} on the {get_hub().backend_name} backend\n")
    echo_section(args.clients, args.rounds, args.size)
    print()
    timer_section(args.sleepers)
    print()
    memory_section(args.sleepers)
    get_hub().destroy()


if __name__ == "__main__":
    main()
