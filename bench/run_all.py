"""Run every benchmark and print all tables, then whether greenwire meets its targets.

Usage (from the repository root, in the bench environment)::

    .venv-bench/bin/python bench/run_all.py [--runs N] [--quick] [--impls a,b]
                                            [--only spawn,echo] [--json PATH]
    .venv-bench/bin/python bench/run_all.py --from-json PATH   # print saved results
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shlex
import subprocess
import sys
from importlib import metadata
from types import ModuleType
from typing import Any

import bench_echo
import bench_handoff
import bench_http
import bench_idle_http
import bench_memory
import bench_sleep
import bench_spawn
import bench_throughput
import bench_timers
from _common import Options, Table, Target, add_options, options_from, print_targets

MODULES: list[ModuleType] = [
    bench_spawn,
    bench_handoff,
    bench_sleep,
    bench_timers,
    bench_memory,
    bench_echo,
    bench_throughput,
    bench_http,
    bench_idle_http,
]

_LOOP_PROBES = {
    "gevent loop": "import gevent; print(type(gevent.get_hub().loop).__module__)",
    "eventlet hub": "import eventlet.hubs; print(type(eventlet.hubs.get_hub()).__module__)",
    "greenwire backend": "import greenwire; print(greenwire.get_hub().backend_name)",
}


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _probe(code: str) -> str:
    try:
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"unknown ({type(e).__name__})"
    return out.stdout.strip() or "unknown"


def machine_info() -> dict[str, Any]:
    """What the results depend on: interpreter, library versions, cores, load."""
    versions = {}
    for dist in ("greenwire", "greenlet", "gevent", "eventlet", "gunicorn"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = "not installed"
    return {
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "platform": platform.platform(),
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "versions": versions,
        **{name: _probe(code) for name, code in _LOOP_PROBES.items()},
    }


def _describe(info: dict[str, Any]) -> str:
    versions = ", ".join(f"{k} {v}" for k, v in info["versions"].items())
    return "\n".join(
        [
            f"- Python: {info['python']} on {info['platform']}",
            f"- CPU: {info['cpu']}, {info['cores']} cores,"
            f" load average at start {info['load_average']}",
            f"- Versions: {versions}",
            f"- Loops: gevent {info['gevent loop']}, eventlet {info['eventlet hub']},"
            f" greenwire {info['greenwire backend']}",
        ]
    )


def _print_header(command: str, started: str, info: dict[str, Any], opts: Options) -> None:
    print(f"## greenwire benchmarks, {started}\n")
    print(f"Command: `{command}`\n")
    print(_describe(info))
    print(f"- Runs per implementation: {opts.runs}{' (quick mode)' if opts.quick else ''}\n")


def _replay(path: str, selected: list[ModuleType]) -> int:
    """Print the tables and target checks of a report saved with ``--json``."""
    with open(path) as f:
        report = json.load(f)
    o = report["options"]
    opts = Options(runs=o["runs"], quick=o["quick"], impls=tuple(o["impls"]))
    _print_header(report["command"], report["date"], report["machine"], opts)
    tables = [Table.from_json(t) for t in report["tables"]]
    for table in tables:
        print(table.render())
        print()
    print_targets([t for m in selected for t in getattr(m, "TARGETS", [])], tables)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_options(parser)
    names = [m.NAME for m in MODULES]
    parser.add_argument("--only", default="", help=f"comma-separated subset of: {names}")
    parser.add_argument("--json", metavar="PATH", help="also save all results as JSON")
    parser.add_argument(
        "--from-json", metavar="PATH", help="run nothing: print the results saved in PATH"
    )
    args = parser.parse_args()
    opts = options_from(args)
    only = [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = set(only) - set(names)
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(sorted(unknown))}")
    selected = [m for m in MODULES if not only or m.NAME in only]
    if args.from_json:
        return _replay(args.from_json, selected)

    command = shlex.join([os.path.relpath(sys.executable), *sys.argv])
    started = datetime.datetime.now().astimezone()
    info = machine_info()
    _print_header(command, f"{started:%Y-%m-%d %H:%M %Z}", info, opts)

    tables: list[Table] = []
    targets: list[Target] = []
    for module in selected:
        module_tables: list[Table] = module.run(opts)
        for table in module_tables:
            print(table.render())
            print(flush=True)
        tables += module_tables
        targets += getattr(module, "TARGETS", [])  # a benchmark may have no target
    verdicts = print_targets(targets, tables)
    info["load_average_end"] = [round(x, 2) for x in os.getloadavg()]

    if args.json:
        report = {
            "command": command,
            "date": started.isoformat(timespec="seconds"),
            "options": {"runs": opts.runs, "quick": opts.quick, "impls": list(opts.impls)},
            "machine": info,
            "tables": [t.to_json() for t in tables],
            "targets": verdicts,
        }
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)
        print(f"Results saved to {args.json}")
    return 1 if any(t.errors for t in tables) else 0


if __name__ == "__main__":
    sys.exit(main())
