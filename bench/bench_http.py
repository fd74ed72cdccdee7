"""HTTP servers under wrk: requests/s, latency percentiles and server CPU per request.

The same hello-world WSGI application (14-byte body with a Content-Length) on:

* ``greenwire``: ``greenwire.wsgi.WSGIServer``;
* ``gevent``: ``gevent.pywsgi.WSGIServer`` as shipped. It writes the response head and
  body in two sends and leaves Nagle's algorithm on, so on a keep-alive connection the
  body can wait for the client's delayed ACK of the head (up to 40 ms on Linux);
* ``gevent-nodelay``: the same server with ``TCP_NODELAY`` set on each accepted socket
  (a handler subclass), the fair baseline and the table's reference column;
* ``eventlet``: ``eventlet.wsgi.server``;
* ``gunicorn-sync``: ``gunicorn -w 1 -k sync``, for scale: the sync worker serves one
  connection at a time and closes it after each response (no keep-alive), so wrk
  reconnects for every request.

Each server runs alone in a fresh process, one worker on one core, access logs off
(greenwire ``access_log=None``, pywsgi ``log=None``, eventlet ``log_output=False``,
gunicorn's default of no access log). Each run: a 1 s warm-up with wrk, then
``wrk -t1 -c100 -d<duration>s --latency`` (the reported req/s, p50 and p99), then the
same with 1 connection (one request at a time: a Nagle stall shows up there as a ~40 ms
p50). The server's CPU time is read from ``/proc/<pid>`` (its whole process tree, for
gunicorn's master and worker) around the 100-connection load and divided by the requests
wrk completed. wrk and the server share the machine's cores, so req/s depends on how
much CPU wrk leaves; the CPU per request does not.
"""

from __future__ import annotations

import json
import os
import re
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterable
from typing import Any

from _common import (
    Metric,
    Numbers,
    Options,
    Table,
    Target,
    collect,
    process_cpu_seconds,
    read_line,
    rss_bytes,
    script_main,
    stderr_tail,
    stop_process,
    worker_entry,
)

NAME = "http"
HTTP_IMPLS = ("greenwire", "gevent", "gevent-nodelay", "eventlet", "gunicorn-sync")
HTTP_BASELINE = "gevent-nodelay"
#: The servers greenwire has to beat: the faster of these two, run by run.
RIVALS = ("gevent-nodelay", "eventlet")
CONNECTIONS = 100
BACKLOG = 4096
STARTUP_TIMEOUT = 30.0
WRK = "/usr/bin/wrk"

BODY = b"Hello, world!\n"
_LENGTH = str(len(BODY))

RATE = Metric("rps", "requests / s, 100 connections", True, 0)
P50 = Metric("p50_ms", "p50 latency, ms", False, 2)
P99 = Metric("p99_ms", "p99 latency, ms", False, 2)
SERVER_CPU = Metric("server_us_per_request", "server CPU µs per request", False, 1)
ERRORS = Metric("errors", "wrk socket errors + non-2xx", False, 0, compare=False)
RATE_1 = Metric("rps_1conn", "requests / s, 1 connection", True, 0)
P99_1 = Metric("p99_1conn_ms", "p99 latency, 1 connection, ms", False, 3)


def hello_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    """The benchmarked WSGI application."""
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", _LENGTH)])
    return [BODY]


# ------------------------------------------------------------------ target


def _per_run(table: Table, impl: str, key: str) -> list[float]:
    return [run[key] for run in table.samples.get(impl, []) if key in run]


def beats_best_rival(min_ratio: float) -> Callable[[Table], tuple[bool | None, str]]:
    """A check: greenwire's req/s >= ``min_ratio`` x the faster rival's, with a lower p99.

    The faster rival is taken run by run (the runs are interleaved) and the ratio is the
    median of those per-run ratios; the p99 must be below the median p99 of every rival.
    """

    def check(table: Table) -> tuple[bool | None, str]:
        mine = _per_run(table, "greenwire", RATE.key)
        rivals = [_per_run(table, r, RATE.key) for r in RIVALS]
        if not mine or any(len(r) != len(mine) for r in rivals):
            return None, "no data (a server failed)"
        ratio = statistics.median(m / max(rs) for m, *rs in zip(mine, *rivals, strict=True))
        my_p99 = table.median("greenwire", P99.key)
        rival_p99 = [table.median(r, P99.key) for r in RIVALS]
        if my_p99 is None or None in rival_p99:
            return None, "no latency data"
        best_p99 = min(p for p in rival_p99 if p is not None)
        met = ratio >= min_ratio and my_p99 < best_p99
        return met, (
            f"{ratio:.2f}x the faster of {' and '.join(RIVALS)} (target >= {min_ratio:.2f}x);"
            f" p99 {my_p99:.2f} ms vs their best {best_p99:.2f} ms (target: lower)"
        )

    return check


TARGETS = [
    Target(
        NAME,
        "HTTP req/s >= 1.3x the faster of pywsgi-with-TCP_NODELAY and eventlet.wsgi,"
        " with a lower p99",
        beats_best_rival(1.3),
    )
]


# ------------------------------------------------------------------ servers


def raise_fd_limit() -> int:
    """Raise this process's RLIMIT_NOFILE soft limit to the hard limit; return it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        return target
    return soft


def _announce(port: int) -> None:
    sys.stdout.write(json.dumps({"port": port}) + "\n")
    sys.stdout.flush()


def _plain_listener(params: dict[str, Any]) -> socket.socket:
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(params.get("backlog", BACKLOG))
    return listener


def _greenwire_server(params: dict[str, Any]) -> Numbers:
    from greenwire.wsgi import WSGIServer

    raise_fd_limit()
    listener = _plain_listener(params)
    port = listener.getsockname()[1]
    server = WSGIServer(listener, hello_app, access_log=None)  # adopts (detaches) listener
    _announce(port)
    server.serve_forever()
    return {}


def _gevent_server(params: dict[str, Any]) -> Numbers:
    from gevent import pywsgi
    from gevent import socket as gsocket

    raise_fd_limit()
    handler_class: Any = pywsgi.WSGIHandler
    if params.get("nodelay"):

        class NoDelayHandler(pywsgi.WSGIHandler):  # type: ignore[misc]
            """pywsgi's handler with Nagle's algorithm off on its connection."""

            def handle(self) -> None:
                self.socket.setsockopt(gsocket.IPPROTO_TCP, gsocket.TCP_NODELAY, 1)
                super().handle()

        handler_class = NoDelayHandler
    listener = gsocket.socket(gsocket.AF_INET, gsocket.SOCK_STREAM)
    listener.setsockopt(gsocket.SOL_SOCKET, gsocket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(params.get("backlog", BACKLOG))
    server = pywsgi.WSGIServer(listener, hello_app, log=None, handler_class=handler_class)
    _announce(listener.getsockname()[1])
    server.serve_forever()
    return {}


def _eventlet_server(params: dict[str, Any]) -> Numbers:
    import eventlet
    import eventlet.wsgi

    limit = raise_fd_limit()
    listener = eventlet.listen(("127.0.0.1", 0), backlog=params.get("backlog", BACKLOG))
    _announce(listener.getsockname()[1])
    # max_size caps concurrent connections (default 1024): let it hold every open fd.
    eventlet.wsgi.server(listener, hello_app, log_output=False, debug=False, max_size=limit)
    return {}


def _gunicorn_server(params: dict[str, Any]) -> Numbers:
    """Bind here, announce the port, then become ``gunicorn`` serving that socket."""
    raise_fd_limit()
    listener = _plain_listener(params)
    fd = listener.fileno()
    os.set_inheritable(fd, True)
    _announce(listener.getsockname()[1])
    bench_dir = os.path.dirname(os.path.abspath(__file__))
    argv = [sys.executable, "-m", "gunicorn", "--workers", "1", "--worker-class", "sync"]
    argv += ["--bind", f"fd://{fd}", "--pythonpath", bench_dir, "--log-level", "warning"]
    os.execv(sys.executable, [*argv, "bench_http:hello_app"])


WORKERS = {
    "greenwire": _greenwire_server,
    "gevent": _gevent_server,
    "gevent-nodelay": lambda params: _gevent_server({**params, "nodelay": True}),
    "eventlet": _eventlet_server,
    "gunicorn-sync": _gunicorn_server,
}


# ------------------------------------------------------------------ server processes


class ServerProcess:
    """A server worker of this script in its own process: ``with ServerProcess(...) as s``."""

    def __init__(self, impl: str, params: dict[str, Any] | None = None) -> None:
        self.log = tempfile.TemporaryFile("w+")  # noqa: SIM115 - closed by close()
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--worker", impl, json.dumps(params or {})],
            stdout=subprocess.PIPE,
            stderr=self.log,
            text=True,
        )
        assert self.proc.stdout is not None
        try:
            line = read_line(self.proc.stdout, STARTUP_TIMEOUT, "port")
        except (TimeoutError, RuntimeError) as e:
            tail = stderr_tail(self.log)
            self.close()
            raise RuntimeError(f"server: {e}: {tail}") from None
        self.port: int = json.loads(line)["port"]
        self.url = f"http://127.0.0.1:{self.port}/"

    def pids(self) -> list[int]:
        """The server process and its descendants (gunicorn's worker)."""
        children: dict[int, list[int]] = {}
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            children.setdefault(ppid, []).append(int(entry))
        found, todo = [], [self.proc.pid]
        while todo:
            pid = todo.pop()
            found.append(pid)
            todo += children.get(pid, [])
        return found

    def cpu_seconds(self) -> float:
        total = 0.0
        for pid in self.pids():
            try:
                total += process_cpu_seconds(pid)
            except (OSError, ValueError):
                pass
        return total

    def rss_bytes(self) -> int:
        """Resident memory of the server process (VmRSS)."""
        return rss_bytes(self.proc.pid)

    def check_alive(self) -> None:
        if self.proc.poll() is not None:
            raise RuntimeError(f"server exited ({self.proc.returncode}): {stderr_tail(self.log)}")

    def close(self) -> None:
        stop_process(self.proc)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self.log.close()

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ------------------------------------------------------------------ wrk


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}


def _ms(text: str) -> float:
    """A wrk duration (``812.00us``, ``7.00ms``, ``1.20s``) in milliseconds."""
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", text)
    if not m:
        raise ValueError(f"not a wrk duration: {text!r}")
    return float(m.group(1)) * _UNITS[m.group(2)]


def parse_wrk(output: str) -> dict[str, float]:
    """Requests/s, requests, latency percentiles (ms) and errors from ``wrk --latency``."""
    result: dict[str, float] = {}
    m = re.search(r"^Requests/sec:\s+([\d.]+)", output, re.M)
    if not m:
        raise ValueError(f"no Requests/sec in wrk output: {output[-300:]!r}")
    result["rps"] = float(m.group(1))
    m = re.search(r"^\s*(\d+) requests in ([\d.]+\w+)", output, re.M)
    if not m:
        raise ValueError("no request count in wrk output")
    result["requests"] = float(m.group(1))
    result["seconds"] = _ms(m.group(2)) / 1e3
    for pct in ("50", "75", "90", "99"):
        m = re.search(rf"^\s*{pct}(?:\.0+)?%\s+([\d.]+\w+)", output, re.M)
        if m:
            result[f"p{pct}_ms"] = _ms(m.group(1))
    errors = 0
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    if m:
        errors += sum(int(g) for g in m.groups())
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    if m:
        errors += int(m.group(1))
    result["errors"] = float(errors)
    return result


def run_wrk(url: str, connections: int, seconds: float) -> dict[str, float]:
    """Run wrk (one thread) against ``url``; its parsed report."""
    cmd = [WRK, "-t1", f"-c{connections}", f"-d{seconds:g}s", "--latency", url]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60)
    if proc.returncode != 0:
        raise RuntimeError(f"wrk failed ({proc.returncode}): {proc.stderr.strip()[-300:]}")
    return parse_wrk(proc.stdout)


# ------------------------------------------------------------------ orchestrator


def run_once(impl: str, params: dict[str, Any]) -> Numbers:
    """One fresh server process, warmed up, then the two wrk loads."""
    with ServerProcess(impl) as server:
        run_wrk(server.url, CONNECTIONS, params["warmup_s"])
        cpu0 = server.cpu_seconds()
        load = run_wrk(server.url, CONNECTIONS, params["duration_s"])
        cpu1 = server.cpu_seconds()
        single = run_wrk(server.url, 1, params["single_s"])
        server.check_alive()
    if not load["requests"]:
        raise RuntimeError("wrk completed no requests")
    return {
        RATE.key: load["rps"],
        P50.key: load["p50_ms"],
        P99.key: load["p99_ms"],
        SERVER_CPU.key: (cpu1 - cpu0) / load["requests"] * 1e6,
        ERRORS.key: load["errors"] + single["errors"],
        RATE_1.key: single["rps"],
        P99_1.key: single["p99_ms"],
    }


def run(opts: Options) -> list[Table]:
    params = {
        "warmup_s": 1,
        "duration_s": 2 if opts.quick else 10,
        "single_s": 1 if opts.quick else 3,
    }
    note = (
        f"wrk -t1 -c{CONNECTIONS} -d{params['duration_s']}s --latency after a 1 s warm-up,"
        f" then -c1 -d{params['single_s']}s; each server alone in a fresh process, one worker,"
        " access log off. Server CPU is the server's process tree's, from /proc, over the"
        " 100-connection load. wrk shares the cores with the server. gunicorn-sync closes"
        " every connection after its response (no keep-alive)."
    )
    table = Table(
        NAME,
        f"HTTP hello world under wrk, {CONNECTIONS} keep-alive connections",
        [RATE, P50, P99, SERVER_CPU, ERRORS, RATE_1, P99_1],
        note=note,
        impls=HTTP_IMPLS,
        baseline=HTTP_BASELINE,
    )
    return [collect(table, opts, lambda impl: run_once(impl, params))]


if __name__ == "__main__":
    if not worker_entry(WORKERS):
        sys.exit(script_main(__doc__.splitlines()[0], run, TARGETS))
