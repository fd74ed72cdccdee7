"""The origin experiment: the article's XML-RPC servers under load, side by side.

``python -m greenwire.bench xmlrpc`` starts the backend service, then for each regime
every server variant in its own process (see ``_xmlrpc_server.py``), and drives each with
the same client processes (``_xmlrpc_client.py``) at each concurrency level for a fixed
time. It prints progress, then a table of calls/s, p50/p99 latency, errors and CPU per
call, saves everything as JSON and draws a PNG chart. docs/xmlrpc-experiment.md explains
the design and what the variants show.

Regimes:

- ``cpu``: ``gen(2048)``, the article's pure-CPU call;
- ``io``: ``fetch(2048)``, whose handler waits on the backend service over TCP (an answer
  after a few milliseconds), as handlers that call a database or another service do.

Levels are run in order and, within a level, the servers one after another (all of a
regime's servers stay up), so slow swings of the load on a shared machine hit every
variant alike. Each server is pinned to a CPU of its own and the clients and the backend
to the others (``_processes.plan_placement``; ``--no-pin`` to let the kernel place them),
so that a server with many OS threads gets no more CPU than one with a single thread.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import importlib.util
import json
import os
import platform
import statistics
import sys
import time
import xmlrpc.client
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from greenwire.bench import _report
from greenwire.bench._processes import (
    Child,
    ChildError,
    Placement,
    cpu_available,
    cpu_seconds,
    plan_placement,
    run_queue_wait_seconds,
    script_argv,
    threads_and_rss,
)

SERVERS = ("single", "threaded", "greenwire", "gevent", "eventlet")
REGIMES = ("cpu", "io")
REGIME_METHODS = {"cpu": "gen", "io": "fetch"}
CLIENT_MODES = ("green", "threads")
CLIENT_KINDS = ("raw", "proxy")
DEFAULT_OUT = os.path.join("bench", "results", "xmlrpc")
#: Per-call cost of starting the client processes and collecting their results (s).
_CELL_OVERHEAD = 0.8
#: The servers the target compares. From ``REPEAT_FROM`` clients on, their measurements are
#: repeated ``--rounds`` times, interleaved (greenwire, gevent, greenwire, gevent...), and
#: each figure reported is the median over the rounds: on a shared machine one server's
#: CPU per call moves by a third from one minute to the next, more than the gap measured.
REPEATED = ("greenwire", "gevent")
REPEAT_FROM = 100
#: Figures of a repeated measurement reported as the median of its rounds.
_MEDIAN_KEYS = (
    "calls_per_s",
    "p50_ms",
    "p99_ms",
    "max_ms",
    "server_cpu_us_per_call",
    "server_cpu_percent",
    "server_wait_percent",
    "client_cpu_us_per_call",
    "client_cpu_percent",
    "backend_cpu_us_per_call",
    "server_threads",
    "server_rss_mib",
)
#: Per-round figures kept in a repeated row, for the record and the per-round ratios.
_ROUND_KEYS = ("calls_per_s", "p50_ms", "p99_ms", "server_cpu_us_per_call", "errors")

Progress = Callable[[str], None]


@dataclass(frozen=True)
class Options:
    """What to run; the defaults take about 5 minutes on 2 cores."""

    servers: tuple[str, ...] = SERVERS
    regimes: tuple[str, ...] = REGIMES
    concurrency: tuple[int, ...] = (1, 10, 100, 1000)
    duration: float = 3.0
    warmup: float = 1.0
    size: int = 2048
    backend_delay_ms: float = 5.0
    client_procs: int = 2
    client_mode: str = "green"
    client_kind: str = "raw"
    call_timeout: float = 10.0
    backlog: int = 10000
    rounds: int = 3
    out: str = DEFAULT_OUT
    chart: bool = True
    pin: bool = True


def regime_titles(opts: Options) -> dict[str, str]:
    """A one-line description of each regime, for tables and charts."""
    return {
        "cpu": f"gen({opts.size}), pure CPU in the handler",
        "io": f"fetch({opts.size}), the handler waits {opts.backend_delay_ms:g} ms on a"
        " backend over TCP",
    }


def _check_server(port: int) -> str:
    """Call every function once; return "ok" or what went wrong."""
    transport = _TimeoutTransport(15.0)
    proxy = xmlrpc.client.ServerProxy(f"http://127.0.0.1:{port}", transport=transport)
    try:
        answers = {"add(3, 5)": (proxy.add(3, 5), 8), "gen(16)": (proxy.gen(16), "0" * 16)}
        answers["fetch(16)"] = (proxy.fetch(16), "0" * 16)
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    finally:
        proxy("close")()
    wrong = [f"{call} = {got!r}" for call, (got, want) in answers.items() if got != want]
    return "wrong answers: " + ", ".join(wrong) if wrong else "ok"


class _TimeoutTransport(xmlrpc.client.Transport):
    """The standard transport, with a socket timeout (ServerProxy has no such option)."""

    def __init__(self, timeout: float) -> None:
        super().__init__()
        self._timeout = timeout

    def make_connection(self, host: Any) -> Any:
        connection = super().make_connection(host)
        connection.timeout = self._timeout
        return connection


def _split(total: int, parts: int) -> list[int]:
    """``total`` callers spread as evenly as possible over at most ``parts`` processes."""
    parts = max(1, min(parts, total))
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


def _per_call_us(seconds: float, calls: int) -> float | None:
    return seconds / calls * 1e6 if calls else None


def run_level(
    opts: Options,
    server: Child,
    port: int,
    regime: str,
    level: int,
    backend: Child,
    placement: Placement,
) -> dict[str, Any]:
    """Drive one server with ``level`` concurrent callers; return the measured row."""
    params = {
        "url": f"http://127.0.0.1:{port}",
        "method": REGIME_METHODS[regime],
        "argument": opts.size,
        "warmup": opts.warmup,
        "duration": opts.duration,
        "grace": opts.call_timeout + 2.0,
        "call_timeout": opts.call_timeout,
        "mode": opts.client_mode,
        "kind": opts.client_kind,
    }
    clients: list[Child] = []
    try:
        for i, callers in enumerate(_split(level, opts.client_procs)):
            argv = script_argv("_xmlrpc_client.py", json.dumps({**params, "callers": callers}))
            clients.append(Child(argv, f"client {i}", placement.other_cpus))
        for client in clients:
            client.expect_ready()
        for client in clients:
            client.send("go")
        go = time.monotonic()
        time.sleep(max(0.0, go + opts.warmup - time.monotonic()))
        watched = [server.pid, backend.pid]
        before = [cpu_seconds(pid) for pid in watched]
        waited_before = run_queue_wait_seconds(server.pid)
        wall0 = time.monotonic()
        time.sleep(max(0.0, go + opts.warmup + opts.duration - time.monotonic()))
        after = [cpu_seconds(pid) for pid in watched]
        waited = run_queue_wait_seconds(server.pid) - waited_before
        wall = time.monotonic() - wall0
        threads, rss_mib = threads_and_rss(server.pid)
        reports = [
            json.loads(client.last_line(opts.call_timeout + opts.duration + 30))
            for client in clients
        ]
    finally:
        for client in clients:
            client.stop()
    latencies = sorted(x / 1000 for report in reports for x in report["latencies_us"])
    calls = len(latencies)
    kinds: dict[str, int] = {}
    for report in reports:
        for kind, count in report["errors"].items():
            kinds[kind] = kinds.get(kind, 0) + count
    server_cpu, backend_cpu = after[0] - before[0], after[1] - before[1]
    # A client samples its CPU time when its main "thread" wakes up; under load that can
    # be late, so scale each sample to the window's length.
    client_cpu = sum(
        report["cpu_s"] * opts.duration / report["window_s"]
        for report in reports
        if report["window_s"] > 0
    )
    return {
        "status": _report.OK,
        "calls": calls,
        "calls_per_s": calls / opts.duration,
        "p50_ms": _report.percentile(latencies, 0.50) if calls else None,
        "p99_ms": _report.percentile(latencies, 0.99) if calls else None,
        "max_ms": latencies[-1] if calls else None,
        "errors": sum(kinds.values()),
        "unfinished": sum(report["unfinished"] for report in reports),
        "error_kinds": kinds,
        "error_samples": [s for report in reports for s in report["error_samples"]][:5],
        "server_cpu_us_per_call": _per_call_us(server_cpu, calls),
        "server_cpu_percent": server_cpu / wall * 100,
        "server_wait_percent": waited / wall * 100,
        "client_cpu_us_per_call": _per_call_us(client_cpu, calls),
        "client_cpu_percent": client_cpu / opts.duration * 100,
        "client_processes": len(reports),
        "backend_cpu_us_per_call": _per_call_us(backend_cpu, calls) if regime == "io" else None,
        "server_threads": threads,
        "server_rss_mib": rss_mib,
    }


def _installed(server: str) -> str | None:
    """None if the variant can run here, else why not."""
    needs = {"gevent": "gevent", "eventlet": "eventlet"}.get(server)
    if needs is not None and importlib.util.find_spec(needs) is None:
        return f"No module named {needs!r} in {sys.executable}"
    return None


def _versions() -> dict[str, str]:
    found = {}
    for name in ("greenwire", "greenlet", "gevent", "eventlet"):
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = "not installed"
    return found


def _machine() -> dict[str, Any]:
    cpus = os.cpu_count() or 0
    load = os.getloadavg()
    available = cpu_available()
    return {
        "cpus": cpus,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load_at_start": load,
        "cpu_available_at_start": available,
        "summary": f"{cpus} CPUs ({available:.1f} available at start), Python"
        f" {platform.python_version()}",
    }


def _progress_line(index: int, total: int, row: dict[str, Any]) -> str:
    head = f"[{index:>{len(str(total))}}/{total}] {row['regime']:<3} {row['concurrency']:>5}"
    head += f" clients  {row['server']:<9}"
    if row["status"] != _report.OK:
        return f"{head} {row['status']}: {row.get('detail', '')}"
    p50 = "-" if row["p50_ms"] is None else f"{row['p50_ms']:.1f}"
    p99 = "-" if row["p99_ms"] is None else f"{row['p99_ms']:.1f}"
    errors = row["errors"] + row["unfinished"]
    return (
        f"{head} {row['calls_per_s']:>8,.0f} calls/s  p50 {p50:>7} ms  p99 {p99:>7} ms"
        f"  errors {errors}  server CPU {row['server_cpu_percent']:.0f}%"
        f" (waited {row.get('server_wait_percent', 0):.0f}%)"
        f"  clients CPU {row['client_cpu_percent']:.0f}%"
    )


def run(opts: Options, progress: Progress = print) -> dict[str, Any]:
    """Run the whole experiment; return the JSON-able result (rows, checks, metadata)."""
    result: dict[str, Any] = {
        "experiment": "xmlrpc",
        "started": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "options": asdict(opts),
        "regimes": regime_titles(opts),
        "machine": _machine(),
        "versions": _versions(),
        "rows": [],
        "checks": [],
    }
    placement = plan_placement(opts.pin)
    result["placement"] = {**asdict(placement), "summary": placement.describe()}
    result["machine"]["summary"] += (
        ", server on its own CPU" if placement.pinned else ", processes not pinned"
    )
    rows: list[dict[str, Any]] = result["rows"]
    runnable = [s for s in opts.servers if _installed(s) is None]
    total = len(opts.regimes) * sum(
        len(runnable) + (_rounds(opts, level) - 1) * len(_repeated(runnable, level))
        for level in opts.concurrency
    )
    per_level = opts.warmup + opts.duration + _CELL_OVERHEAD
    progress(
        f"XML-RPC experiment: {len(runnable)} servers x {len(opts.regimes)} regimes x"
        f" {len(opts.concurrency)} concurrency levels, {opts.duration:g} s measured each"
        f" after {opts.warmup:g} s of warm-up: about {total * per_level / 60:.1f} min;"
        f" {placement.describe()}"
    )
    for server in opts.servers:
        why = _installed(server)
        if why is not None:
            progress(f"{server}: not installed ({why})")
            for regime in opts.regimes:
                for level in opts.concurrency:
                    rows.append(
                        {
                            "server": server,
                            "regime": regime,
                            "concurrency": level,
                            "status": _report.NOT_INSTALLED,
                            "detail": why,
                        }
                    )
    backend = Child(
        script_argv("_backend.py", str(opts.backend_delay_ms)),
        "backend service",
        placement.other_cpus,
    )
    index = 0
    try:
        backend_port = int(backend.expect_ready()[0])
        for regime in opts.regimes:
            progress(f"regime {regime}: {result['regimes'][regime]}")
            index = _run_regime(
                opts,
                regime,
                runnable,
                (backend, backend_port),
                placement,
                result,
                (index, total),
                progress,
            )
    finally:
        backend.stop()
    result["machine"]["load_at_end"] = os.getloadavg()
    result["machine"]["cpu_available_at_end"] = cpu_available()
    result["finished"] = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
    return result


def _run_regime(
    opts: Options,
    regime: str,
    servers: list[str],
    backend_and_port: tuple[Child, int],
    placement: Placement,
    result: dict[str, Any],
    index_and_total: tuple[int, int],
    progress: Progress,
) -> int:
    """Start the regime's servers, run every level against each, stop them; new index."""
    backend, backend_port = backend_and_port
    index, total = index_and_total
    started: dict[str, tuple[Child, int]] = {}
    broken: dict[str, str] = {}
    try:
        for server in servers:
            argv = script_argv("_xmlrpc_server.py", server, str(backend_port), str(opts.backlog))
            try:
                child = Child(argv, f"{server} server", placement.server_cpus)
            except ChildError as exc:
                broken[server] = str(exc)
                result["checks"].append({"server": server, "regime": regime, "before": str(exc)})
                continue
            try:
                port = int(child.expect_ready()[0])
            except (ChildError, ValueError, IndexError) as exc:
                child.stop()
                broken[server] = f"did not start: {exc}"
                result["checks"].append({"server": server, "regime": regime, "before": str(exc)})
                continue
            started[server] = (child, port)
            check = _check_server(port)
            result["checks"].append({"server": server, "regime": regime, "before": check})
            if check != "ok":
                tail = child.stderr_tail()
                broken[server] = f"check before the load failed: {check}"
                broken[server] += f" (server stderr: {tail})" if tail else ""
        for level in opts.concurrency:
            repeated = _repeated(servers, level)
            measured: dict[str, list[dict[str, Any]]] = {server: [] for server in servers}
            for round_number in range(_rounds(opts, level)):
                for server in servers if round_number == 0 else repeated:
                    index += 1
                    row: dict[str, Any] = {
                        "server": server,
                        "regime": regime,
                        "concurrency": level,
                    }
                    if server in broken:
                        row.update(status=_report.FAILED, detail=broken[server])
                    else:
                        child, port = started[server]
                        try:
                            row.update(
                                run_level(opts, child, port, regime, level, backend, placement)
                            )
                        except (ChildError, OSError, ValueError) as exc:
                            row.update(status=_report.FAILED, detail=str(exc))
                        if not child.alive():
                            broken[server] = f"server exited: {child.stderr_tail()}"
                    measured[server].append(row)
                    progress(_progress_line(index, total, row))
            result["rows"] += [combine_rounds(measured[server]) for server in servers]
        for check in result["checks"]:
            if check["regime"] == regime and check["server"] in started:
                child, port = started[check["server"]]
                after = broken.get(check["server"]) or _check_server(port)
                if after != "ok" and check["server"] not in broken and child.stderr_tail():
                    after += f" (server stderr: {child.stderr_tail()})"
                check["after"] = after
    finally:
        for child, _ in started.values():
            child.stop()
    return index


def _rounds(opts: Options, level: int) -> int:
    """How many times the repeated servers are measured at ``level`` clients."""
    return max(1, opts.rounds) if level >= REPEAT_FROM else 1


def _repeated(servers: list[str], level: int) -> list[str]:
    """The servers measured in several rounds at ``level`` clients."""
    return [server for server in servers if server in REPEATED] if level >= REPEAT_FROM else []


def combine_rounds(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """One row for a measurement made in several rounds: each figure's median.

    Counts (calls, errors, unfinished calls) are summed over the rounds; the rounds'
    own figures are kept under ``"rounds"``. A round that failed makes the row failed.
    """
    if len(rounds) == 1:
        return rounds[0]
    failed = [row for row in rounds if row["status"] != _report.OK]
    if failed:
        return {**failed[0], "rounds": [_round_figures(row) for row in rounds]}
    row = dict(rounds[-1])
    for key in _MEDIAN_KEYS:
        values = [r[key] for r in rounds if r.get(key) is not None]
        row[key] = statistics.median(values) if values else None
    for key in ("calls", "errors", "unfinished"):
        row[key] = sum(r[key] for r in rounds)
    kinds: dict[str, int] = {}
    for r in rounds:
        for kind, count in r["error_kinds"].items():
            kinds[kind] = kinds.get(kind, 0) + count
    row["error_kinds"] = kinds
    row["error_samples"] = [s for r in rounds for s in r["error_samples"]][:5]
    row["rounds"] = [_round_figures(r) for r in rounds]
    return row


def _round_figures(row: dict[str, Any]) -> dict[str, Any]:
    return {key: row.get(key) for key in ("status", *_ROUND_KEYS)}


def _csv(kind: Callable[[str], Any], choices: tuple[str, ...] | None = None) -> Any:
    def parse(text: str) -> tuple[Any, ...]:
        items = [item.strip() for item in text.split(",") if item.strip()]
        if not items:
            raise argparse.ArgumentTypeError("give at least one value")
        values = []
        for item in items:
            if choices is not None and item not in choices:
                raise argparse.ArgumentTypeError(
                    f"unknown {item!r}; choose from {', '.join(choices)}"
                )
            try:
                values.append(kind(item))
            except ValueError:
                raise argparse.ArgumentTypeError(f"not a valid value: {item!r}") from None
        return tuple(values)

    return parse


def _positive(kind: Callable[[str], Any]) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be positive, not {text}")
        return value

    return parse


def parse_args(argv: list[str] | None) -> tuple[Options, str | None]:
    """The command line: the Options, and the ``--from-json`` path if given."""
    d = Options()
    parser = argparse.ArgumentParser(
        prog="python -m greenwire.bench xmlrpc",
        description="The article's XML-RPC servers (single, threaded, and threaded after"
        " greenwire's, gevent's and eventlet's monkey patching) under the same load.",
    )
    parser.add_argument(
        "--servers", type=_csv(str, SERVERS), default=d.servers, help="default: all"
    )
    parser.add_argument(
        "--regimes", type=_csv(str, REGIMES), default=d.regimes, help="cpu,io (default: both)"
    )
    parser.add_argument(
        "--concurrency",
        type=_csv(_positive(int)),
        default=d.concurrency,
        help="concurrent clients per measurement (default: 1,10,100,1000)",
    )
    for flag, kind, text in (
        ("--duration", _positive(float), "measured seconds per measurement"),
        ("--warmup", float, "unmeasured seconds before each"),
        ("--size", _positive(int), "n in gen(n) and fetch(n)"),
        ("--backend-delay-ms", float, "the backend's answer delay"),
        ("--client-procs", _positive(int), "client processes sharing the callers"),
        ("--call-timeout", _positive(float), "client socket timeout, s"),
        ("--backlog", _positive(int), "listen backlog of every server"),
        (
            "--rounds",
            _positive(int),
            f"measurements of {' and '.join(REPEATED)} from {REPEAT_FROM} clients on,"
            " interleaved; the medians are reported",
        ),
    ):
        default = getattr(d, flag.removeprefix("--").replace("-", "_"))
        parser.add_argument(flag, type=kind, default=default, help=f"{text} (default {default:g})")
    parser.add_argument(
        "--client-mode",
        choices=CLIENT_MODES,
        default=d.client_mode,
        help="callers as greenwire greenlets or OS threads (default green)",
    )
    parser.add_argument(
        "--client-kind",
        choices=CLIENT_KINDS,
        default=d.client_kind,
        help="raw: ServerProxy's request bytes and an exact answer check, cheap; proxy: the"
        " article's xmlrpc.client.ServerProxy (default raw)",
    )
    parser.add_argument("--out", default=d.out, help=f"results directory (default {d.out})")
    parser.add_argument(
        "--no-chart", dest="chart", action="store_false", help="do not draw the PNG chart"
    )
    parser.add_argument(
        "--no-pin",
        dest="pin",
        action="store_false",
        help="let the kernel place the processes (default: the server gets the first CPU,"
        " the clients and the backend the others)",
    )
    parser.add_argument(
        "--from-json",
        metavar="PATH",
        help="run nothing: print the table of a saved run (and redraw its chart)",
    )
    ns = parser.parse_args(argv)
    if ns.warmup < 0 or ns.backend_delay_ms < 0:
        parser.error("--warmup and --backend-delay-ms cannot be negative")
    fields = {k: v for k, v in vars(ns).items() if k != "from_json"}
    return Options(**fields), ns.from_json


def report(result: dict[str, Any], chart_path: str | None, progress: Progress = print) -> None:
    """Print the tables and target verdicts; draw the chart if asked."""
    progress("")
    machine = result["machine"]
    progress(
        f"Machine: {machine['summary']}, {machine.get('cpu_available_at_end', 0):.1f} at the"
        " end; versions: " + ", ".join(f"{k} {v}" for k, v in result["versions"].items())
    )
    placement = result.get("placement", {}).get("summary", "not recorded")
    progress(f"Placement: {placement}")
    progress("")
    progress(_report.render_table(result))
    progress("Target (greenwire's patched server against gevent's):")
    progress(_report.render_targets(result))
    bad = [c for c in result["checks"] if c.get("before") != "ok" or c.get("after") != "ok"]
    for check in bad:
        progress(f"check failed: {check}")
    if chart_path is not None:
        skipped = _report.write_chart(result, chart_path)
        progress(f"chart: {chart_path}" if skipped is None else f"chart skipped: {skipped}")


def main(argv: list[str] | None = None) -> int:
    """Run the experiment (or show a saved one); 0 if every server answered correctly."""
    opts, from_json = parse_args(argv)
    if from_json is not None:
        result = json.loads(Path(from_json).read_text())
        chart = str(Path(from_json).with_suffix(".png")) if opts.chart else None
        report(result, chart)
        return 0
    out = Path(opts.out)
    out.mkdir(parents=True, exist_ok=True)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    result = run(opts)
    json_path = out / f"xmlrpc-{stamp}.json"
    json_path.write_text(json.dumps(result, indent=1) + "\n")
    report(result, str(out / f"xmlrpc-{stamp}.png") if opts.chart else None)
    print(f"results: {json_path}")
    failed = [c for c in result["checks"] if c.get("before") != "ok" or c.get("after") != "ok"]
    return 1 if failed else 0
