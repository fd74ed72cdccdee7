"""The compatibility gate: CPython's own test modules, run under a library's patching.

Usage::

    python stdlib_tests/run.py [--impl greenwire|gevent|none[,...]] [--jobs 2]
                               [--timeout 300] [--heavy-timeout 600] [--fast]
                               [--json out.json] [--logdir DIR] [--python PATH]
                               [--problems] [--strict] [test_module ...]

A module is named as in CPython's ``test`` package (``test_socket``); a dotted name
(``package.test_x``) is imported as it is.

Each module runs in a fresh interpreter (``child.py``) that patches first (greenwire's
or gevent's ``patch_all()``, or nothing for the ``none`` baseline), applies the reviewed
skip list (``skips.py``) and runs the module's tests with unittest. This process only
schedules, enforces the per-module timeout (the child's whole process group is killed
and the module is reported as hung, with the test that was running), notices crashes
(the child exited before saying it was done) and prints a table per implementation, plus
a side-by-side comparison when several are given.

The exit status is 1 if any module hung or crashed (with ``--strict``: also if any test
failed), 0 otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
CHILD = os.path.join(HERE, "child.py")

#: The gate's modules, in the order of the issue that asked for them.
MODULES = [
    "test_socket",
    "test_socketserver",
    "test_select",
    "test_selectors",
    "test_poll",
    "test_epoll",
    "test_threading",
    "test_thread",
    "test_threading_local",
    "test_queue",
    "test_time",
    "test_signal",
    "test_subprocess",
    "test_ssl",
    "test_os",
    "test_httplib",
    "test_httpservers",
    "test_urllib2_localnet",
    "test_urllib",
    "test_urllib2",
    "test_xmlrpc",
    "test_smtplib",
    "test_ftplib",
    "test_poplib",
    "test_imaplib",
    "test_telnetlib",
    "test_wsgiref",
    "test_asyncore",
    "test_asynchat",
    "test_smtpd",
    "test_logging",
    "test_context",
    "test_contextlib",
    "test_fork1",
    "test_wait3",
    "test_wait4",
    "test_threadsignals",
    "test_sched",
]

#: The fast subset run by the default test command (tests/test_stdlib_gate.py).
FAST_MODULES = [
    "test_select",
    "test_poll",
    "test_epoll",
    "test_selectors",
    "test_threading_local",
    "test_queue",
    "test_sched",
    "test_context",
    "test_contextlib",
]

#: Modules that take minutes on a busy machine: they get --heavy-timeout.
HEAVY_MODULES = {
    "test_socket",
    "test_ssl",
    "test_subprocess",
    "test_os",
    "test_signal",
    "test_threading",
    "test_logging",
    "test_httpservers",
}

IMPLS = ("greenwire", "gevent", "none")
COUNTS = ("run", "passed", "failed", "errors", "skipped", "hung")
#: Children running now, killed if this process is interrupted.
_running: set[subprocess.Popen[bytes]] = set()
#: Seconds between the child's stack dump (into its log) and the kill of a stalled test.
DUMP_MARGIN = 5.0
#: Seconds between looks at a running child's progress.
POLL_INTERVAL = 0.5


@dataclass
class Outcome:
    """What one module did under one implementation."""

    module: str
    impl: str
    status: str = "ok"  # ok, failed, hung, crashed, absent, skipped
    run: int = 0
    passed: int = 0
    failed: int = 0
    errors: int = 0
    skipped: int = 0
    listed: int = 0
    hung: int = 0
    seconds: float = 0.0
    python: str = ""
    detail: str = ""
    log: str = ""
    problems: list[dict[str, str]] = field(default_factory=list)
    patch_warnings: list[str] = field(default_factory=list)


def _read_result(path: str) -> dict[str, Any] | None:
    try:
        with open(path) as f:
            data: dict[str, Any] = json.load(f)
            return data
    except (OSError, ValueError):
        return None


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


@dataclass
class _Attempt:
    """One child process's part of a module run."""

    returncode: int | None  # None: killed (a test or the module ran out of time)
    data: dict[str, Any]
    hung_test: str | None  # the test that was running when it was killed


def _attempt(
    command: list[str],
    scratch: str,
    env: dict[str, str],
    log_path: str,
    result_file: str,
    test_timeout: float,
    deadline: float,
) -> _Attempt:
    """Start the child and watch it until it exits, a test stalls or the deadline passes."""
    if os.path.exists(result_file):
        os.unlink(result_file)
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            command,
            cwd=scratch,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: a kill reaches grandchildren
        )
        _running.add(proc)
        returncode: int | None = None
        data: dict[str, Any] = {}
        try:
            while True:
                try:
                    returncode = proc.wait(min(POLL_INTERVAL, max(deadline - time.time(), 0)))
                    break
                except subprocess.TimeoutExpired:
                    pass
                data = _read_result(result_file) or data
                since = data.get("current_since")
                stalled = since is not None and time.time() - since > test_timeout
                if stalled or time.time() >= deadline:
                    break
        finally:
            # Whatever the child left running (servers, subprocesses) goes with it.
            _kill_group(proc)
            _running.discard(proc)
    data = _read_result(result_file) or data
    if returncode is not None:
        return _Attempt(returncode, data, None)
    state = data.get("state")
    if data.get("current"):
        hung = data["current"]
    elif state == "running":
        hung = f"<between tests, after {data.get('last') or 'none'}>"
    else:
        hung = {"done": "<interpreter exit>"}.get(str(state), "<loading>")
    return _Attempt(None, data, hung)


def run_module(
    module: str,
    impl: str,
    python: str,
    timeout: float,
    test_timeout: float,
    logdir: str,
    src: str | None,
) -> Outcome:
    """Run ``module`` under ``impl`` in fresh interpreters; never raises for its sake.

    A test that runs longer than ``test_timeout`` is recorded as hung and the module goes
    on in a new interpreter from the test after it, until ``timeout`` for the module.
    """
    outcome = Outcome(module, impl)
    scratch = tempfile.mkdtemp(prefix=f"{impl}-{module}-")
    result_file = os.path.join(logdir, f"{impl}-{module}.json")
    outcome.log = os.path.join(logdir, f"{impl}-{module}.log")
    if os.path.exists(outcome.log):
        os.unlink(outcome.log)
    env = dict(os.environ)
    if src is not None:
        env["PYTHONPATH"] = os.pathsep.join(p for p in (src, env.get("PYTHONPATH")) if p)
    env.pop("PYTHONWARNINGS", None)
    dump_after = max(test_timeout - DUMP_MARGIN, test_timeout / 2)
    started = time.monotonic()
    deadline = time.time() + timeout
    hung_tests: list[str] = []
    start_after = ""
    while True:
        command = [python, CHILD, impl, module, result_file, str(dump_after), start_after]
        attempt = _attempt(command, scratch, env, outcome.log, result_file, test_timeout, deadline)
        data = attempt.data
        for name in ("run", "passed", "failed", "errors", "skipped", "listed"):
            setattr(outcome, name, getattr(outcome, name) + int(data.get(name, 0)))
        outcome.problems += list(data.get("problems", []))
        outcome.python = outcome.python or str(data.get("python", ""))
        outcome.patch_warnings = outcome.patch_warnings or list(data.get("patch_warnings", []))
        if attempt.hung_test is None:
            break
        hung_tests.append(attempt.hung_test)
        outcome.problems.append({"id": attempt.hung_test, "outcome": "hung", "trace": ""})
        outcome.run += 1
        if not data.get("current") or time.time() >= deadline:
            break  # hung outside a test (nothing to resume after), or out of time
        start_after = attempt.hung_test
    outcome.seconds = round(time.monotonic() - started, 1)
    shutil.rmtree(scratch, ignore_errors=True)
    outcome.hung = len(hung_tests)
    state = data.get("state")
    if hung_tests:
        outcome.status = "hung"
        outcome.detail = f"in {hung_tests[0]}" + (
            f" and {len(hung_tests) - 1} more" if len(hung_tests) > 1 else ""
        )
    elif state == "absent":
        outcome.status = "absent"
    elif state == "module skipped":
        outcome.status = "skipped"
        outcome.detail = str(data.get("reason", ""))
    elif state != "done" or attempt.returncode != 0:
        outcome.status = "crashed"
        reason = data.get("reason") or (f"in {data['current']}" if data.get("current") else "")
        outcome.detail = f"exit {attempt.returncode} {reason}".strip()
    elif outcome.failed or outcome.errors:
        outcome.status = "failed"
    return outcome


def format_table(outcomes: list[Outcome]) -> str:
    """One implementation's results: a row per module and a total."""
    width = max([len("module")] + [len(o.module) for o in outcomes])
    header = f"{'module':<{width}}  {'status':<8}" + "".join(f"{c:>8}" for c in COUNTS)
    lines = [header + f"{'listed':>8}{'secs':>8}", "-" * (len(header) + 16)]
    totals = dict.fromkeys((*COUNTS, "listed"), 0)
    for o in outcomes:
        row = f"{o.module:<{width}}  {o.status:<8}"
        row += "".join(f"{getattr(o, c):>8}" for c in COUNTS)
        row += f"{o.listed:>8}{o.seconds:>8.0f}"
        if o.detail:
            row += f"  {o.detail}"
        lines.append(row)
        for c in totals:
            totals[c] += getattr(o, c)
    lines.append("-" * (len(header) + 16))
    total = f"{'total':<{width}}  {'':<8}" + "".join(f"{totals[c]:>8}" for c in COUNTS)
    lines.append(total + f"{totals['listed']:>8}")
    return "\n".join(lines)


def format_comparison(by_impl: dict[str, list[Outcome]]) -> str:
    """Passed (and failed+errors) per module, implementations side by side."""
    impls = list(by_impl)
    modules = [o.module for o in by_impl[impls[0]]]
    width = max(len(m) for m in modules + ["module"])
    header = f"{'module':<{width}}" + "".join(f"  {impl + ' pass/fail/hung':>28}" for impl in impls)
    lines = [header, "-" * len(header)]
    for index, module in enumerate(modules):
        row = f"{module:<{width}}"
        for impl in impls:
            o = by_impl[impl][index]
            cell = f"{o.passed}/{o.failed + o.errors}/{o.hung}"
            if o.status in ("crashed", "absent", "skipped"):
                cell += f" {o.status}"
            row += f"  {cell:>28}"
        lines.append(row)
    return "\n".join(lines)


def format_problems(outcomes: list[Outcome]) -> str:
    """The failing and erroring test ids, per module."""
    lines = []
    for o in outcomes:
        if o.problems or o.status in ("hung", "crashed"):
            lines.append(f"{o.impl} {o.module}: {o.status} {o.detail}  (log: {o.log})")
            for p in o.problems:
                last = p["trace"].strip().splitlines()[-1:] or [""]
                lines.append(f"    {p['outcome']:<7} {p['id']}: {last[0][:160]}")
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("modules", nargs="*", help="test modules (default: the whole gate)")
    parser.add_argument("--impl", default="greenwire", help="greenwire, gevent, none, or a list")
    parser.add_argument("--jobs", type=int, default=2, help="modules run at once (default 2)")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds per module")
    parser.add_argument(
        "--test-timeout",
        type=float,
        default=120.0,
        help="seconds one test may run before it counts as hung (the module goes on)",
    )
    parser.add_argument(
        "--heavy-timeout",
        type=float,
        default=600.0,
        help=f"seconds for the heavy modules ({', '.join(sorted(HEAVY_MODULES))})",
    )
    parser.add_argument("--json", dest="json_out", help="write every outcome to this file")
    parser.add_argument("--logdir", help="where the children's logs go (default: a new temp dir)")
    parser.add_argument("--python", default=sys.executable, help="the interpreter to test")
    parser.add_argument("--fast", action="store_true", help="only the fast subset")
    parser.add_argument("--problems", action="store_true", help="list failing test ids")
    parser.add_argument("--strict", action="store_true", help="exit 1 on any test failure too")
    args = parser.parse_args(argv)
    args.impls = [i.strip() for i in args.impl.split(",") if i.strip()]
    for impl in args.impls:
        if impl not in IMPLS:
            parser.error(f"unknown implementation {impl!r} (choose from {', '.join(IMPLS)})")
    if args.modules and args.fast:
        parser.error("give either module names or --fast")
    args.modules = args.modules or (FAST_MODULES if args.fast else MODULES)
    for module in args.modules:
        if not all(part.isidentifier() for part in module.split(".")):
            parser.error(f"not a module name: {module!r}")
    if args.jobs < 1 or min(args.timeout, args.heavy_timeout, args.test_timeout) <= 0:
        parser.error("--jobs and the timeouts must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logdir = args.logdir or tempfile.mkdtemp(prefix="stdlib-tests-")
    os.makedirs(logdir, exist_ok=True)
    src = os.path.join(os.path.dirname(HERE), "src")
    src = src if os.path.isdir(os.path.join(src, "greenwire")) else None
    jobs = [(impl, module) for impl in args.impls for module in args.modules]
    results: dict[tuple[str, str], Outcome] = {}

    def one(job: tuple[str, str]) -> Outcome:
        impl, module = job
        heavy = module in HEAVY_MODULES
        timeout = max(args.heavy_timeout, args.timeout) if heavy else args.timeout
        outcome = run_module(module, impl, args.python, timeout, args.test_timeout, logdir, src)
        print(
            f"[{len(results) + 1}/{len(jobs)}] {impl} {module}: {outcome.status} "
            f"{outcome.passed}/{outcome.run} passed in {outcome.seconds:.0f}s",
            flush=True,
        )
        results[job] = outcome
        return outcome

    # A SIGTERM (a timeout in a caller) must not leave children in their own sessions.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    pool = ThreadPoolExecutor(max_workers=args.jobs)
    try:
        list(pool.map(one, jobs))
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
        for proc in list(_running):
            _kill_group(proc)
    by_impl = {impl: [results[impl, m] for m in args.modules] for impl in args.impls}
    for impl, outcomes in by_impl.items():
        versions = sorted({o.python for o in outcomes if o.python})
        print(f"\n{impl} (Python {', '.join(versions) or '?'}, {args.python})")
        print(format_table(outcomes))
        warned = sorted({w for o in outcomes for w in o.patch_warnings})
        for warning in warned:
            print(f"patch warning: {warning}")
    if len(by_impl) > 1:
        print("\n" + format_comparison(by_impl))
    everything = [o for outcomes in by_impl.values() for o in outcomes]
    if args.problems:
        print("\n" + format_problems(everything))
    print(f"\nlogs: {logdir}")
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump([asdict(o) for o in everything], f, indent=1)
    broken = any(o.status in ("hung", "crashed") for o in everything)
    failing = any(o.failed or o.errors for o in everything)
    return 1 if broken or (args.strict and failing) else 0


if __name__ == "__main__":
    sys.exit(main())
