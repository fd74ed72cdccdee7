"""TCP echo server: server CPU per request and requests per second.

Each run starts a fresh server process (one implementation) on 127.0.0.1 with an
ephemeral port and a separate client process: plain Python with blocking sockets and a
``selectors`` (epoll) loop, the same client for every server. The client opens 100
connections, makes a few warm-up round trips on each, then says "ready"; the orchestrator
reads the server's CPU time from ``/proc/<pid>`` and lets the client go. Each connection
then makes a fixed number of 1 KiB request/response round trips, one outstanding at a
time. When the client reports, the orchestrator reads the server's CPU time again:

* server CPU µs per request = CPU used by the server during the load / requests (lower
  is better). This is the figure that matters on a loaded machine.
* k requests/s = requests / wall time of the load, as seen by the client (higher is
  better). On 2 cores the client competes for CPU, so this is bounded by the client too.

Two tables, two ways to write the server:

* ``echo``: what a user of each library would write against its own API: greenwire with
  its lowest-level readiness waits (try the non-blocking call, ``hub.wait_readable`` /
  ``wait_writable`` on ``BlockingIOError``, ``notify_closing`` before ``close``), gevent
  with ``gevent.socket``, eventlet with ``eventlet.green.socket``.
* ``echo-stdlib``: one plain blocking-socket server (``socket`` module, ``recv_into`` and
  ``sendall``), unchanged, after each library's ``patch_all()``: the path that patched
  programs take through greenwire's green ``socket`` module.
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
    cost_at_most,
    parse_worker_output,
    process_cpu_seconds,
    read_line,
    scaled,
    script_main,
    stderr_tail,
    stop_process,
    worker_entry,
)

NAME = "echo"
MESSAGE_SIZE = 1024
RECV_BUFFER = 65536
BACKLOG = 1024
STARTUP_TIMEOUT = 30.0

SERVER_CPU = Metric("server_us_per_request", "server CPU µs per request", False, 2)
RATE = Metric("krps", "k requests / s (wall clock)", True, 1)
CLIENT_CPU = Metric("client_us_per_request", "client CPU µs per request", False, 2, compare=False)

STDLIB_NAME = "echo-stdlib"

TARGETS = [
    Target(NAME, "echo server CPU per request <= 0.7x gevent's", cost_at_most(SERVER_CPU, 0.7)),
    Target(
        STDLIB_NAME,
        "echo through the patched socket module: server CPU <= 0.7x gevent's",
        cost_at_most(SERVER_CPU, 0.7),
    ),
]


def _listen() -> socket.socket:
    """A plain listening socket on an ephemeral loopback port."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(BACKLOG)
    return listener


def _announce(listener: Any) -> None:
    sys.stdout.write(json.dumps({"port": listener.getsockname()[1]}) + "\n")
    sys.stdout.flush()


# ------------------------------------------------------------------------ servers


def _echo_blocking(conn: Any) -> None:
    """Serve one connection with blocking-style calls (the library makes them cooperate)."""
    buf = bytearray(RECV_BUFFER)
    view = memoryview(buf)
    with conn:
        try:
            while True:
                n = conn.recv_into(buf)
                if not n:
                    break
                conn.sendall(view[:n])
        except ConnectionError:
            pass


def _stdlib_server() -> Numbers:
    """The same blocking-socket echo server for every library, run after its patch."""
    import threading

    listener = _listen()
    _announce(listener)
    while True:
        conn, _ = listener.accept()
        threading.Thread(target=_echo_blocking, args=(conn,), daemon=True).start()


def _patched(patch: Any) -> Numbers:
    """Patch first, then import ``socket`` afresh in the server (as a program would)."""
    patch()
    import socket as patched_socket

    globals()["socket"] = patched_socket
    return _stdlib_server()


def _greenwire_server(params: dict[str, Any]) -> Numbers:
    if params.get("variant") == "stdlib":
        from greenwire import monkey

        return _patched(monkey.patch_all)

    import greenwire as gw

    hub = gw.get_hub()

    def handle(conn: socket.socket) -> None:
        buf = bytearray(RECV_BUFFER)
        view = memoryview(buf)
        recv_into, send = conn.recv_into, conn.send
        # The hub's per-fd state, registered once: the lowest-level waits take it directly.
        state = hub.register_fd(conn)
        wait_readable, wait_writable = hub.wait_state_readable, hub.wait_state_writable
        try:
            while True:
                try:
                    n = recv_into(buf)
                except BlockingIOError:
                    wait_readable(state)
                    continue
                if not n:
                    break
                sent = 0
                while sent < n:
                    try:
                        sent += send(view[sent:n])
                    except BlockingIOError:
                        wait_writable(state)
                if n < RECV_BUFFER:
                    # A short read drained the stream: anything that arrives now raises a
                    # new edge, so wait for it instead of paying for a recv that would
                    # fail with EAGAIN (the hub's readiness flag keeps this safe).
                    wait_readable(state)
        except ConnectionError:
            pass
        finally:
            hub.notify_closing(conn)
            conn.close()

    listener = _listen()
    listener.setblocking(False)
    _announce(listener)
    while True:
        try:
            conn, _ = listener.accept()
        except BlockingIOError:
            hub.wait_readable(listener)
            continue
        conn.setblocking(False)
        gw.spawn(handle, conn)


def _gevent_server(params: dict[str, Any]) -> Numbers:
    if params.get("variant") == "stdlib":
        from gevent import monkey

        return _patched(monkey.patch_all)

    import gevent
    from gevent import socket as gsocket

    listener = gsocket.socket(gsocket.AF_INET, gsocket.SOCK_STREAM)
    listener.setsockopt(gsocket.SOL_SOCKET, gsocket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(BACKLOG)
    _announce(listener)
    while True:
        conn, _ = listener.accept()
        gevent.spawn(_echo_blocking, conn)


def _eventlet_server(params: dict[str, Any]) -> Numbers:
    if params.get("variant") == "stdlib":
        import eventlet

        return _patched(eventlet.monkey_patch)

    import eventlet
    from eventlet.green import socket as esocket

    listener = esocket.socket(esocket.AF_INET, esocket.SOCK_STREAM)
    listener.setsockopt(esocket.SOL_SOCKET, esocket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(BACKLOG)
    _announce(listener)
    while True:
        conn, _ = listener.accept()
        eventlet.spawn(_echo_blocking, conn)


WORKERS = {"greenwire": _greenwire_server, "gevent": _gevent_server, "eventlet": _eventlet_server}


# ------------------------------------------------------------------------- client


def _round_trips(socks: list[socket.socket], per_conn: int, deadline: float) -> int:
    """Make ``per_conn`` echo round trips on every socket, one outstanding each."""
    if per_conn <= 0:
        return 0
    payload = b"x" * MESSAGE_SIZE
    buf = bytearray(RECV_BUFFER)
    left = [per_conn] * len(socks)
    got = [0] * len(socks)
    sel = selectors.DefaultSelector()
    for i, s in enumerate(socks):
        sel.register(s, selectors.EVENT_READ, i)
        s.sendall(payload)
    active = len(socks)
    try:
        while active:
            events = sel.select(timeout=1.0)
            if time.monotonic() > deadline:
                raise TimeoutError("client ran out of time")
            for key, _ in events:
                i = key.data
                s = socks[i]
                n = s.recv_into(buf)
                if not n:
                    raise ConnectionError("server closed the connection")
                got[i] += n
                if got[i] < MESSAGE_SIZE:
                    continue
                got[i] = 0
                left[i] -= 1
                if left[i]:
                    s.sendall(payload)
                else:
                    sel.unregister(s)
                    active -= 1
    finally:
        sel.close()
    return per_conn * len(socks)


def client_main(params: dict[str, Any]) -> None:
    """The load generator (its own process): connect, warm up, wait for "go", run."""
    deadline = time.monotonic() + params["max_seconds"]
    socks = []
    for _ in range(params["connections"]):
        s = socket.create_connection(("127.0.0.1", params["port"]))
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        socks.append(s)
    _round_trips(socks, params["warmup"], deadline)
    print("ready", flush=True)
    sys.stdin.readline()
    t0, c0 = time.perf_counter(), time.process_time()
    requests = _round_trips(socks, params["requests"], deadline)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    print(json.dumps({"requests": requests, "wall_s": wall, "client_cpu_s": cpu}), flush=True)
    sys.stdin.readline()
    for s in socks:
        s.close()


# --------------------------------------------------------------------- orchestrator


def run_once(impl: str, params: dict[str, Any]) -> Numbers:
    """One server process plus one client process; returns this run's numbers."""
    python, script = sys.executable, __file__
    with tempfile.TemporaryFile("w+") as server_log, tempfile.TemporaryFile("w+") as client_log:
        server = subprocess.Popen(
            [python, script, "--worker", impl, json.dumps({"variant": params["variant"]})],
            stdout=subprocess.PIPE,
            stderr=server_log,
            text=True,
        )
        client: subprocess.Popen[str] | None = None
        try:
            assert server.stdout is not None
            try:
                port = json.loads(read_line(server.stdout, STARTUP_TIMEOUT, "port"))["port"]
            except (TimeoutError, RuntimeError) as e:
                raise RuntimeError(f"server: {e}: {stderr_tail(server_log)}") from None
            client = subprocess.Popen(
                [python, script, "--client", json.dumps({**params, "port": port})],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=client_log,
                text=True,
            )
            assert client.stdin is not None and client.stdout is not None
            try:
                read_line(client.stdout, STARTUP_TIMEOUT, "client ready")
                cpu0 = process_cpu_seconds(server.pid)
                client.stdin.write("go\n")
                client.stdin.flush()
                report = read_line(client.stdout, params["max_seconds"] + 10, "client report")
                cpu1 = process_cpu_seconds(server.pid)
            except (TimeoutError, RuntimeError) as e:
                raise RuntimeError(f"{e}: {stderr_tail(client_log)}") from None
            client.stdin.write("bye\n")
            client.stdin.flush()
            client.wait(10)
        finally:
            if client is not None:
                stop_process(client)
            stop_process(server)
        result = parse_worker_output(0, report, "")
    requests = result["requests"]
    return {
        "server_us_per_request": (cpu1 - cpu0) / requests * 1e6,
        "krps": requests / result["wall_s"] / 1e3,
        "client_us_per_request": result["client_cpu_s"] / requests * 1e6,
    }


def run(opts: Options) -> list[Table]:
    connections = 100
    per_conn = scaled(opts.quick, 1000, 50)
    params = {
        "connections": connections,
        "requests": per_conn,
        "warmup": 10,
        "max_seconds": 120.0,
    }
    note = (
        "Server CPU from /proc/<pid> of the server process around the load; the client"
        " is a separate plain-Python selectors process, identical for every server, and"
        " shares the 2 cores with it, so requests/s depends on the client's speed too."
    )
    size = (
        f"{MESSAGE_SIZE} B messages, {connections} connections,"
        f" {connections * per_conn:,} requests per run"
    )
    native = Table(
        NAME, f"TCP echo, each library's own API, {size}", [SERVER_CPU, RATE, CLIENT_CPU], note=note
    )
    stdlib = Table(
        STDLIB_NAME,
        f"TCP echo, one blocking stdlib-socket server after each library's patch_all(), {size}",
        [SERVER_CPU, RATE, CLIENT_CPU],
        note=note,
    )
    return [
        collect(native, opts, lambda impl: run_once(impl, {**params, "variant": "native"})),
        collect(stdlib, opts, lambda impl: run_once(impl, {**params, "variant": "stdlib"})),
    ]


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--client":
        client_main(json.loads(sys.argv[2]))
    elif not worker_entry(WORKERS):
        sys.exit(script_main(__doc__.splitlines()[0], run, TARGETS))
