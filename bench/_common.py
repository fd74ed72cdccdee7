"""Shared machinery for the benchmark scripts.

Every measurement runs in a fresh process: the orchestrator (a bench script run normally,
or ``run_all.py``) starts ``python bench_x.py --worker IMPL PARAMS_JSON`` once per
implementation per repetition, and the worker prints one JSON object of numbers as the
last line of its stdout. Repetitions are interleaved (greenwire, gevent, eventlet,
greenwire, ...) so that a burst of noise from the other core hits every implementation
alike, and each table reports the median of the runs.

Ratios are always "how many times better than gevent": ``gevent / impl`` for a cost
(lower is better), ``impl / gevent`` for a rate (higher is better). So a ratio above 1
means that implementation beat gevent, whatever the metric.

A table may name its own implementations and baseline (the HTTP servers compare five
servers against ``gevent-nodelay``). An implementation is called ``library`` or
``library-variant``; ``--impls gevent`` selects every gevent variant of a table.
"""

from __future__ import annotations

import argparse
import json
import os
import selectors
import signal
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

IMPLS = ("greenwire", "gevent", "eventlet")
#: Libraries ``--impls`` may name: IMPLS, plus servers only some tables run.
LIBRARIES = (*IMPLS, "gunicorn")
BASELINE = "gevent"
DEFAULT_RUNS = 5
#: Rounds per worker process for the CPU micro-benchmarks (best one kept); 1 in --quick.
INNER_ROUNDS = 3
WORKER_TIMEOUT = 600.0
#: Set to a file path to make workers run under cProfile and dump their stats there.
PROFILE_ENV = "GREENWIRE_BENCH_PROFILE"

Numbers = dict[str, float]
WorkerFn = Callable[[dict[str, Any]], Numbers]


@dataclass(frozen=True)
class Options:
    """What the user asked for on the command line."""

    runs: int = DEFAULT_RUNS
    quick: bool = False
    impls: tuple[str, ...] = LIBRARIES


@dataclass(frozen=True)
class Metric:
    """One number a worker reports, and how to show it."""

    key: str
    label: str
    higher_is_better: bool
    digits: int = 2
    #: False for a number shown for information only (no "better", no ratio).
    compare: bool = True

    @property
    def better(self) -> str:
        if not self.compare:
            return "(info)"
        return "higher" if self.higher_is_better else "lower"


def library_of(impl: str) -> str:
    """The library of an implementation name: ``gevent-nodelay`` -> ``gevent``."""
    return impl.split("-", 1)[0]


def is_selected(impl: str, wanted: Sequence[str]) -> bool:
    """Whether ``impl`` is asked for, by its own name or by its library's."""
    return impl in wanted or library_of(impl) in wanted


@dataclass
class Table:
    """The samples of one benchmark: per implementation, one dict of numbers per run."""

    id: str
    title: str
    metrics: list[Metric]
    note: str = ""
    samples: dict[str, list[Numbers]] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    #: The implementations this table measures, in the order of its columns.
    impls: tuple[str, ...] = IMPLS
    #: The implementation the ratios compare against.
    baseline: str = BASELINE

    def median(self, impl: str, key: str) -> float | None:
        values = [run[key] for run in self.samples.get(impl, []) if key in run]
        return statistics.median(values) if values else None

    def spread(self, impl: str, key: str) -> float | None:
        """Half the min-max range relative to the median (a rough noise figure)."""
        values = [run[key] for run in self.samples.get(impl, []) if key in run]
        mid = statistics.median(values) if values else 0.0
        if len(values) < 2 or mid == 0:
            return None
        return (max(values) - min(values)) / 2 / abs(mid)

    def ratio(self, impl: str, metric: Metric) -> float | None:
        """How many times better than the baseline ``impl`` is on ``metric`` (>1: better).

        Repetitions are interleaved, so run ``i`` of every implementation saw about the
        same machine: the ratio is the median of the per-repetition ratios, which cancels
        slow changes of the background load. It falls back to the ratio of the medians
        when the runs do not pair up (a failed run).
        """
        if not metric.compare:
            return None
        key = metric.key
        mine = [run.get(key, 0.0) for run in self.samples.get(impl, [])]
        base = [run.get(key, 0.0) for run in self.samples.get(self.baseline, [])]
        if mine and len(mine) == len(base) and min(mine) > 0 and min(base) > 0:
            pairs = list(zip(mine, base, strict=True))
            if metric.higher_is_better:
                return statistics.median([m / b for m, b in pairs])
            return statistics.median([b / m for m, b in pairs])
        m_med, b_med = self.median(impl, key), self.median(self.baseline, key)
        if m_med is None or b_med is None or m_med <= 0 or b_med <= 0:
            return None
        return m_med / b_med if metric.higher_is_better else b_med / m_med

    def render(self) -> str:
        """A Markdown table: one row per metric, medians then ratios to the baseline."""
        base = self.baseline
        impls = [i for i in self.impls if i in self.samples or i in self.errors]
        others = [i for i in impls if i != base]
        header = ["metric", "better", *impls, *(f"{i} vs {base}" for i in others)]
        rows = [header, ["---"] * len(header)]
        for m in self.metrics:
            row = [m.label, m.better]
            for impl in impls:
                row.append(self._cell(impl, m))
            for impl in others:
                r = self.ratio(impl, m)
                row.append("-" if not m.compare else "n/a" if r is None else f"{r:.2f}x")
            rows.append(row)
        runs = max((len(v) for v in self.samples.values()), default=0)
        lines = [f"### {self.title}", ""]
        lines += ["| " + " | ".join(r) + " |" for r in rows]
        lines += [
            "",
            f'Medians of {runs} run(s), ± half the min-max range. "vs {base}" > 1 means'
            f" better than {base}: the median over interleaved repetitions of"
            f" {base} ÷ impl for a cost, impl ÷ {base} for a rate.",
        ]
        if self.note:
            lines.append(self.note)
        for impl, err in self.errors.items():
            lines.append(f"**{impl} failed:** `{err}`")
        return "\n".join(lines)

    def _cell(self, impl: str, m: Metric) -> str:
        value = self.median(impl, m.key)
        if value is None:
            return "failed" if impl in self.errors else "n/a"
        spread = self.spread(impl, m.key)
        text = f"{value:,.{m.digits}f}"
        return text if spread is None else f"{text} ±{spread * 100:.0f}%"

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Table:
        """Rebuild a table saved by :meth:`to_json`."""
        return cls(
            data["id"],
            data["title"],
            [Metric(**m) for m in data["metrics"]],
            note=data["note"],
            samples=data["samples"],
            errors=data["errors"],
            impls=tuple(data.get("impls", IMPLS)),
            baseline=data.get("baseline", BASELINE),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "title": self.title,
            "note": self.note,
            "impls": list(self.impls),
            "baseline": self.baseline,
            "metrics": [vars(m) for m in self.metrics],
            "medians": {
                impl: {m.key: self.median(impl, m.key) for m in self.metrics}
                for impl in self.samples
            },
            "samples": self.samples,
            "errors": self.errors,
        }


Check = Callable[[Table], tuple[bool | None, str]]


@dataclass(frozen=True)
class Target:
    """A goal the project set itself against gevent, checked on one table."""

    table_id: str
    label: str
    check: Check

    def evaluate(self, tables: Sequence[Table]) -> tuple[bool | None, str]:
        for table in tables:
            if table.id == self.table_id:
                return self.check(table)
        return None, "not run"


def at_least(metric: Metric, min_ratio: float, impl: str = "greenwire") -> Check:
    """A check: ``impl`` is at least ``min_ratio`` times better than gevent on ``metric``."""

    def check(table: Table) -> tuple[bool | None, str]:
        r = table.ratio(impl, metric)
        if r is None:
            return None, "no data"
        return r >= min_ratio, f"{r:.2f}x gevent (target >= {min_ratio:.2f}x)"

    return check


def cost_at_most(metric: Metric, max_fraction: float, impl: str = "greenwire") -> Check:
    """A check: ``impl``'s cost on ``metric`` is at most ``max_fraction`` of gevent's."""

    def check(table: Table) -> tuple[bool | None, str]:
        r = table.ratio(impl, metric)
        if r is None or metric.higher_is_better:
            return None, "no data"
        frac = 1 / r
        return frac <= max_fraction, f"{frac:.2f}x gevent's (target <= {max_fraction:.2f}x)"

    return check


def print_targets(targets: Sequence[Target], tables: Sequence[Table]) -> list[dict[str, Any]]:
    """Print whether each target is met; return the verdicts for the JSON report."""
    verdicts: list[dict[str, Any]] = []
    if not targets:
        return verdicts
    print("### Targets (greenwire vs gevent)\n")
    for t in targets:
        met, detail = t.evaluate(tables)
        word = {True: "MET", False: "MISSED", None: "UNKNOWN"}[met]
        print(f"- **{word}** {t.label}: {detail}")
        verdicts.append({"target": t.label, "met": met, "detail": detail})
    print()
    return verdicts


# ------------------------------------------------------------------ running workers


def run_worker(script: str | Path, impl: str, params: Mapping[str, Any]) -> Numbers:
    """Run ``script --worker impl params`` in a fresh interpreter; return its JSON numbers.

    Raises:
        RuntimeError: the worker failed or printed no JSON (its stderr tail is included).
    """
    cmd = [sys.executable, str(script), "--worker", impl, json.dumps(dict(params))]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=WORKER_TIMEOUT)
    return parse_worker_output(proc.returncode, proc.stdout, proc.stderr)


def parse_worker_output(returncode: int | None, stdout: str, stderr: str) -> Numbers:
    """The JSON object on the last line of a worker's stdout, or a RuntimeError."""
    lines = stdout.strip().splitlines()
    if returncode != 0 or not lines:
        tail = stderr.strip().splitlines()[-1:] or ["(no stderr)"]
        raise RuntimeError(f"exit {returncode}: {tail[0]}")
    result: Numbers = json.loads(lines[-1])
    return result


def collect(
    table: Table,
    opts: Options,
    run_once: Callable[[str], Numbers],
) -> Table:
    """Fill ``table`` with ``opts.runs`` interleaved runs of ``run_once(impl)``.

    Runs the table's implementations that ``opts.impls`` selects (see :func:`is_selected`).
    An implementation whose run fails is recorded in ``table.errors`` and not retried.
    """
    impls = [impl for impl in table.impls if is_selected(impl, opts.impls)]
    for rep in range(opts.runs):
        for impl in impls:
            if impl in table.errors:
                continue
            print(f"  [{table.id}] run {rep + 1}/{opts.runs}: {impl}", file=sys.stderr)
            try:
                numbers = run_once(impl)
            except Exception as e:
                table.errors[impl] = f"{type(e).__name__}: {e}"
                continue
            table.samples.setdefault(impl, []).append(numbers)
    return table


def worker_entry(workers: Mapping[str, WorkerFn]) -> bool:
    """In worker mode (``--worker IMPL PARAMS``), run the worker and print its JSON.

    With :data:`PROFILE_ENV` set to a path, the worker runs under cProfile and the stats
    are written there when it ends, also when it ends by SIGTERM (the echo servers).

    Returns:
        False if this process is not a worker (the caller should orchestrate instead).
    """
    if len(sys.argv) < 2 or sys.argv[1] != "--worker":
        return False
    impl, params = sys.argv[2], json.loads(sys.argv[3])
    profile_path = os.environ.get(PROFILE_ENV)
    if not profile_path:
        result = workers[impl](params)
    else:
        import cProfile

        def on_sigterm(signum: int, frame: Any) -> None:
            raise SystemExit(0)

        signal.signal(signal.SIGTERM, on_sigterm)
        profiler = cProfile.Profile()
        profiler.enable()
        try:
            result = workers[impl](params)
        finally:
            profiler.disable()
            profiler.dump_stats(profile_path)
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()
    return True


def profile_greenwire(
    run: Callable[[Options], list[Table]], quick: bool, impl: str = "greenwire"
) -> None:
    """Run one ``impl`` worker of a benchmark under cProfile; print where the time goes."""
    import pstats

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "worker.prof")
        os.environ[PROFILE_ENV] = path
        try:
            tables = run(Options(runs=1, quick=quick, impls=(impl,)))
        finally:
            del os.environ[PROFILE_ENV]
        for table in tables:
            for name, err in table.errors.items():
                print(f"{name} failed: {err}")
        if not os.path.exists(path):
            print("no profile was written")
            return
        stats = pstats.Stats(path)
        stats.strip_dirs().sort_stats("tottime").print_stats(25)
        stats.sort_stats("cumulative").print_stats(25)


def read_line(stream: IO[str], timeout: float, what: str) -> str:
    """One line from a child's pipe within ``timeout`` seconds.

    Raises:
        TimeoutError: nothing to read in time.
        RuntimeError: the child closed the pipe (it exited) before writing a line.
    """
    sel = selectors.DefaultSelector()
    sel.register(stream, selectors.EVENT_READ)
    try:
        if not sel.select(timeout):
            raise TimeoutError(f"no {what} within {timeout:.0f} s")
    finally:
        sel.close()
    line = stream.readline()
    if not line:
        raise RuntimeError(f"{what}: process exited early")
    return line


def stderr_tail(log: IO[str]) -> str:
    """The last line a child wrote to its stderr log file, for an error message."""
    log.seek(0)
    lines = log.read().strip().splitlines()
    return lines[-1] if lines else "(no stderr)"


def stop_process(proc: subprocess.Popen[str]) -> None:
    """Terminate a child if it still runs, kill it if it ignores that for 5 s; reap it."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# ------------------------------------------------------------------ command line


def add_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--runs", type=int, default=None, help=f"repetitions per implementation ({DEFAULT_RUNS})"
    )
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: small workloads, 1 run unless --runs"
    )
    parser.add_argument(
        "--impls",
        default=",".join(LIBRARIES),
        help="comma-separated libraries (gevent) or implementations (gevent-nodelay) to run"
        " (default: all)",
    )


def options_from(args: argparse.Namespace) -> Options:
    impls = tuple(i.strip() for i in args.impls.split(",") if i.strip())
    unknown = {i for i in impls if library_of(i) not in LIBRARIES}
    if unknown:
        raise SystemExit(f"unknown implementation(s): {', '.join(sorted(unknown))}")
    runs = args.runs if args.runs is not None else (1 if args.quick else DEFAULT_RUNS)
    return Options(runs=max(1, runs), quick=args.quick, impls=impls)


def script_main(
    description: str,
    run: Callable[[Options], list[Table]],
    targets: Sequence[Target],
) -> int:
    """``main()`` of a single benchmark script: parse options, run, print tables/targets."""
    parser = argparse.ArgumentParser(description=description)
    add_options(parser)
    parser.add_argument(
        "--profile",
        action="store_true",
        help="run one greenwire worker under cProfile and print the hot spots instead",
    )
    args = parser.parse_args()
    opts = options_from(args)
    if args.profile:
        profile_greenwire(run, opts.quick)
        return 0
    tables = run(opts)
    for table in tables:
        print(table.render())
        print()
    print_targets(targets, tables)
    return 1 if any(t.errors for t in tables) else 0


def best_of(rounds: int, measure: Callable[[], float]) -> float:
    """The smallest of ``rounds`` calls of ``measure()`` (a cost, e.g. CPU seconds).

    Inside one worker process, noise from the other core only ever adds time, so the
    best of a few rounds is the steadiest estimate; the orchestrator then takes the
    median of these across fresh processes.
    """
    return min(measure() for _ in range(max(1, rounds)))


def scaled(quick: bool, full: int, quick_value: int) -> int:
    """The workload size for this mode."""
    return quick_value if quick else full


def rss_bytes(pid: int | str = "self") -> int:
    """Resident set size of process ``pid`` (default: this one), from /proc/<pid>/statm."""
    with open(f"/proc/{pid}/statm") as f:
        resident_pages = int(f.read().split()[1])
    return resident_pages * os.sysconf("SC_PAGE_SIZE")


def process_cpu_seconds(pid: int) -> float:
    """CPU time (user + system) used so far by process ``pid``, all threads.

    Uses the per-thread scheduler statistics (nanoseconds) when the kernel keeps them,
    else ``/proc/<pid>/stat`` (clock ticks, usually 10 ms).
    """
    total_ns = 0
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                total_ns += int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        total_ns = 0
    if total_ns:
        return total_ns / 1e9
    with open(f"/proc/{pid}/stat") as f:
        # The command name may contain spaces: fields after the closing paren.
        fields = f.read().rsplit(")", 1)[1].split()
    utime, stime = int(fields[11]), int(fields[12])
    return (utime + stime) / os.sysconf("SC_CLK_TCK")
