"""HTTP servers holding 10 000 idle keep-alive connections: memory per connection, and
requests served on other connections meanwhile.

Each run starts one server of ``bench_http.py`` (greenwire's ``WSGIServer``, gevent's
``pywsgi`` with ``TCP_NODELAY``, ``eventlet.wsgi``; access logs off) in a fresh process
and warms it up with a 1 s wrk load. Then a separate plain-Python client (non-blocking
sockets on an epoll ``selectors`` loop, at most 256 connections being set up at a time)
opens 10 000 connections and makes one keep-alive request on each, and leaves them open.

* RSS per idle connection = (server RSS with the connections open - RSS after the
  warm-up) / connections, in KiB: the user-space memory (greenlet stack, socket object,
  buffers, parser) an idle keep-alive client costs. Kernel socket buffers are not in it.
* server CPU while idle: what the server burns per second doing nothing but holding them
  (timeout bookkeeping, for example), over 2 s.
* Then ``wrk -t1 -c100 --latency`` on 100 other connections: req/s, p99 and the server
  CPU per request, with the 10 000 idle connections still open.
* Last, the client makes a second request on every idle connection: how many are still
  served (all of them, unless the server dropped some).

RLIMIT_NOFILE is raised to its hard limit in the server and the client.
"""

from __future__ import annotations

import json
import selectors
import socket
import subprocess
import sys
import tempfile
import time
from typing import Any

from _common import (
    Metric,
    Numbers,
    Options,
    Table,
    Target,
    collect,
    read_line,
    scaled,
    script_main,
    stderr_tail,
)
from bench_http import CONNECTIONS, HTTP_BASELINE, ServerProcess, raise_fd_limit, run_wrk

NAME = "http-idle"
IDLE_IMPLS = ("greenwire", "gevent-nodelay", "eventlet")
IDLE_CONNECTIONS = 10_000
MAX_IN_FLIGHT = 256
REQUEST = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
IDLE_CPU_SECONDS = 2.0
CLIENT_TIMEOUT = 180.0

RSS_PER_CONN = Metric("rss_kib_per_conn", "server RSS per idle connection, KiB", False, 2)
IDLE_CPU = Metric("idle_cpu_ms_per_s", "server CPU while idle, ms / s", False, 2, compare=False)
RATE = Metric("rps", "requests / s on 100 other connections", True, 0)
P99 = Metric("p99_ms", "p99 latency on them, ms", False, 2)
SERVER_CPU = Metric("server_us_per_request", "server CPU µs per request", False, 1)
HELD = Metric("idle_served", "idle connections answering a 2nd request", True, 0, compare=False)


def holds_all_idle(table: Table) -> tuple[bool | None, str]:
    """A check: every run kept every idle connection open and served its second request."""
    runs = table.samples.get("greenwire", [])
    if not runs:
        return None, "no data"
    wanted = [run["connections"] for run in runs]
    served = [run[HELD.key] for run in runs]
    met = all(s == w for s, w in zip(served, wanted, strict=True))
    return met, f"served {min(served):,.0f} of {min(wanted):,.0f} in the worst run"


TARGETS = [
    Target(
        NAME,
        "WSGI server holds 10 000 idle keep-alive connections and still serves them",
        holds_all_idle,
    )
]


# ------------------------------------------------------------------ the idle client


class _Conn:
    """One client connection and the response it is reading."""

    __slots__ = ("sock", "data", "need")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.data = b""
        self.need = -1  # bytes of the whole response, once the head is in

    def feed(self, chunk: bytes) -> bool:
        """Add received bytes; True once a whole response is in."""
        self.data += chunk
        if self.need < 0:
            end = self.data.find(b"\r\n\r\n")
            if end < 0:
                return False
            length = 0
            for line in self.data[:end].split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            self.need = end + 4 + length
        if len(self.data) < self.need:
            return False
        self.data, self.need = b"", -1
        return True


def _requests(
    conns: list[_Conn], sel: selectors.BaseSelector, port: int | None, deadline: float
) -> int:
    """One request and response on each connection (connecting each to ``port`` first
    unless None), at most MAX_IN_FLIGHT at a time; returns how many got their response."""
    pending = list(reversed(conns))
    in_flight = 0
    ok = 0

    def start(conn: _Conn) -> None:
        if port is not None:
            conn.sock.connect_ex(("127.0.0.1", port))
            sel.register(conn.sock, selectors.EVENT_WRITE, conn)
        else:
            conn.sock.send(REQUEST)
            sel.register(conn.sock, selectors.EVENT_READ, conn)

    while pending or in_flight:
        while pending and in_flight < MAX_IN_FLIGHT:
            conn = pending.pop()
            try:
                start(conn)
                in_flight += 1
            except OSError:
                pass
        if time.monotonic() > deadline:
            raise TimeoutError("idle client ran out of time")
        for key, events in sel.select(timeout=1.0):
            conn = key.data
            try:
                if events & selectors.EVENT_WRITE:
                    err = conn.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                    if err:
                        raise OSError(err, "connect failed")
                    conn.sock.send(REQUEST)
                    sel.modify(conn.sock, selectors.EVENT_READ, conn)
                    continue
                chunk = conn.sock.recv(65536)
                if not chunk:
                    raise ConnectionError("closed by the server")
                if not conn.feed(chunk):
                    continue
                ok += 1
            except OSError:
                pass
            sel.unregister(conn.sock)
            in_flight -= 1
    return ok


def client_main(params: dict[str, Any]) -> None:
    """Open the idle connections, report, hold them; on "check", request on each again."""
    raise_fd_limit()
    deadline = time.monotonic() + CLIENT_TIMEOUT
    conns = []
    for _ in range(params["connections"]):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
        conns.append(_Conn(s))
    sel = selectors.DefaultSelector()
    t0 = time.perf_counter()
    opened = _requests(conns, sel, params["port"], deadline)
    print(json.dumps({"opened": opened, "seconds": time.perf_counter() - t0}), flush=True)
    sys.stdin.readline()
    served = _requests(conns, sel, None, time.monotonic() + CLIENT_TIMEOUT)
    print(json.dumps({"served": served}), flush=True)
    sys.stdin.readline()
    for conn in conns:
        conn.sock.close()


# ------------------------------------------------------------------ orchestrator


def run_once(impl: str, params: dict[str, Any]) -> Numbers:
    """A server, warmed up; the idle connections; memory, idle CPU, a load, a last check."""
    with ServerProcess(impl) as server, tempfile.TemporaryFile("w+") as client_log:
        run_wrk(server.url, CONNECTIONS, 1)
        rss0 = server.rss_bytes()
        client = subprocess.Popen(
            [sys.executable, __file__, "--client", json.dumps({**params, "port": server.port})],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=client_log,
            text=True,
        )
        try:
            assert client.stdin is not None and client.stdout is not None
            try:
                ready = json.loads(read_line(client.stdout, CLIENT_TIMEOUT, "idle client"))
            except (TimeoutError, RuntimeError) as e:
                raise RuntimeError(f"{e}: {stderr_tail(client_log)}") from None
            opened = ready["opened"]
            if opened < params["connections"]:
                raise RuntimeError(f"only {opened} of {params['connections']} connections")
            rss1 = server.rss_bytes()
            cpu0, t0 = server.cpu_seconds(), time.perf_counter()
            time.sleep(IDLE_CPU_SECONDS)
            cpu1, t1 = server.cpu_seconds(), time.perf_counter()
            load = run_wrk(server.url, CONNECTIONS, params["duration_s"])
            cpu2 = server.cpu_seconds()
            client.stdin.write("check\n")
            client.stdin.flush()
            served = json.loads(read_line(client.stdout, CLIENT_TIMEOUT, "check"))["served"]
            client.stdin.write("bye\n")
            client.stdin.flush()
            client.wait(30)
            server.check_alive()
        finally:
            if client.poll() is None:
                client.kill()
                client.wait()
    return {
        RSS_PER_CONN.key: (rss1 - rss0) / opened / 1024,
        IDLE_CPU.key: (cpu1 - cpu0) / (t1 - t0) * 1e3,
        RATE.key: load["rps"],
        P99.key: load["p99_ms"],
        SERVER_CPU.key: (cpu2 - cpu1) / max(load["requests"], 1) * 1e6,
        HELD.key: served,
        "connections": opened,
    }


def run(opts: Options) -> list[Table]:
    params = {
        "connections": scaled(opts.quick, IDLE_CONNECTIONS, 1000),
        "duration_s": 2 if opts.quick else 10,
    }
    table = Table(
        NAME,
        f"HTTP server holding {params['connections']:,} idle keep-alive connections,"
        f" wrk on {CONNECTIONS} others",
        [RSS_PER_CONN, IDLE_CPU, RATE, P99, SERVER_CPU, HELD],
        note=(
            "RSS from /proc/<pid>/statm of the server (user-space memory only) before and"
            " after the idle connections were opened, each having made one request;"
            f" then wrk -t1 -c{CONNECTIONS} -d{params['duration_s']}s --latency on other"
            " connections; then a second request on every idle one."
        ),
        impls=IDLE_IMPLS,
        baseline=HTTP_BASELINE,
    )
    return [collect(table, opts, lambda impl: run_once(impl, params))]


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--client":
        client_main(json.loads(sys.argv[2]))
    else:
        sys.exit(script_main(__doc__.splitlines()[0], run, TARGETS))
