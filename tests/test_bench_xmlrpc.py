"""The XML-RPC experiment (``python -m greenwire.bench xmlrpc``): a real smoke run and its parts.

The smoke run starts every server variant, the backend and the clients as real processes
with tiny durations; it asserts that the JSON has every row and that every server answered
correctly before and after its load, never how fast anything was.
"""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from greenwire.bench import _report, _xmlrpc_client, xmlrpc_experiment
from greenwire.bench._processes import (
    Child,
    ChildError,
    cpu_seconds,
    plan_placement,
    run_queue_wait_seconds,
    script_argv,
)

SERVERS = xmlrpc_experiment.SERVERS
REGIMES = xmlrpc_experiment.REGIMES


def _installed(server: str) -> bool:
    return server not in ("gevent", "eventlet") or importlib.util.find_spec(server) is not None


@pytest.mark.realtime
def test_smoke_run_has_every_row_and_correct_answers(tmp_path: Path) -> None:
    levels = (1, 3)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "greenwire.bench",
            "xmlrpc",
            "--duration",
            "0.3",
            "--warmup",
            "0.1",
            "--concurrency",
            ",".join(map(str, levels)),
            "--out",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    [json_path] = tmp_path.glob("xmlrpc-*.json")
    result = json.loads(json_path.read_text())
    rows = result["rows"]
    assert len(rows) == len(SERVERS) * len(REGIMES) * len(levels)
    for server in SERVERS:
        for regime in REGIMES:
            for level in levels:
                row = _report.find_row(rows, server, regime, level)
                assert row is not None, (server, regime, level)
                if not _installed(server):
                    assert row["status"] == _report.NOT_INSTALLED
                    continue
                assert row["status"] == _report.OK, row
                assert row["calls"] > 0 and row["errors"] == 0 and row["unfinished"] == 0, row
                assert row["p50_ms"] <= row["p99_ms"] <= row["max_ms"]
                assert row["client_processes"] == min(level, 2)
                assert row["server_cpu_us_per_call"] > 0
                assert row["server_wait_percent"] >= 0
                assert (row["backend_cpu_us_per_call"] is None) == (regime == "cpu")
            if _installed(server):
                [check] = [
                    c for c in result["checks"] if (c["server"], c["regime"]) == (server, regime)
                ]
                assert check["before"] == "ok" and check["after"] == "ok", check
    can_pin = len(os.sched_getaffinity(0)) >= 2
    assert result["placement"]["pinned"] is can_pin
    if can_pin:
        assert result["placement"]["server_cpus"] == [min(os.sched_getaffinity(0))]
        assert "Placement: server pinned to CPU" in proc.stdout
    assert "| clients | server | calls/s |" in proc.stdout
    assert "Target (greenwire's patched server against gevent's)" in proc.stdout
    measured = sum(_installed(s) for s in SERVERS) * len(REGIMES) * len(levels)
    assert f"[{measured}/{measured}]" in proc.stdout  # the progress lines
    if importlib.util.find_spec("matplotlib") is not None:
        assert json_path.with_suffix(".png").read_bytes().startswith(b"\x89PNG")
    else:
        assert "chart skipped: matplotlib is not importable" in proc.stdout


def _result(rows: list[dict[str, Any]], servers: tuple[str, ...] = SERVERS) -> dict[str, Any]:
    opts = xmlrpc_experiment.Options(servers=servers, concurrency=(100, 1000))
    return {
        "options": {
            "servers": list(opts.servers),
            "regimes": ["cpu"],
            "concurrency": list(opts.concurrency),
        },
        "regimes": xmlrpc_experiment.regime_titles(opts),
        "machine": {"summary": "test machine"},
        "rows": rows,
        "checks": [],
    }


def _row(server: str, level: int, calls_per_s: float, p99: float, **extra: Any) -> dict[str, Any]:
    row = {
        "server": server,
        "regime": "cpu",
        "concurrency": level,
        "status": _report.OK,
        "calls_per_s": calls_per_s,
        "p50_ms": p99 / 2,
        "p99_ms": p99,
        "errors": 0,
        "unfinished": 0,
        "server_cpu_us_per_call": 300.0,
        "client_cpu_us_per_call": 350.0,
    }
    row.update(extra)
    return row


def test_percentile_is_nearest_rank() -> None:
    values = [float(x) for x in range(1, 101)]
    assert _report.percentile(values, 0.5) == 50.0
    assert _report.percentile(values, 0.99) == 99.0
    assert _report.percentile(values, 1.0) == 100.0
    assert _report.percentile([7.0], 0.99) == 7.0
    with pytest.raises(ValueError, match="no values"):
        _report.percentile([], 0.5)
    with pytest.raises(ValueError, match="within"):
        _report.percentile(values, 1.5)


def test_targets_met_not_met_and_not_run() -> None:
    rows = [
        _row("greenwire", 100, 1300.0, 50.0),
        _row("gevent", 100, 1000.0, 60.0),
        _row("greenwire", 1000, 1300.0, 50.0, errors=2),
        _row("gevent", 1000, 1000.0, 60.0),
    ]
    verdicts = _report.evaluate_targets(_result(rows))
    assert [met for _, met, _ in verdicts] == [True, False]
    assert "1.30x" in verdicts[0][2] and "errors 2" in verdicts[1][2]
    slower = [_row("greenwire", 100, 1100.0, 50.0), _row("gevent", 100, 1000.0, 60.0)]
    assert _report.evaluate_targets(_result(slower))[0][1] is False
    worse_p99 = [_row("greenwire", 100, 1500.0, 70.0), _row("gevent", 100, 1000.0, 60.0)]
    assert _report.evaluate_targets(_result(worse_p99))[0][1] is False
    assert _report.evaluate_targets(_result([]))[0][1] is None


def test_cpu_targets_compare_server_cpu_per_call() -> None:
    rows = [
        _row("greenwire", 100, 300.0, 50.0, server_cpu_us_per_call=400.0),
        _row("gevent", 100, 1000.0, 60.0, server_cpu_us_per_call=600.0),
        _row("greenwire", 1000, 300.0, 50.0, server_cpu_us_per_call=550.0),
        _row("gevent", 1000, 1000.0, 60.0, server_cpu_us_per_call=600.0),
    ]
    verdicts = _report.evaluate_cpu_targets(_result(rows))
    assert [met for _, met, _ in verdicts] == [True, False]
    assert "1.50x; 400 vs 600 µs" in verdicts[0][2]
    text = _report.render_targets(_result(rows))
    assert "**NOT met** (0.30x" in text and "**met** (1.50x; 400 vs 600 µs)" in text


def test_table_shows_ratios_failures_and_missing_variants() -> None:
    rows = [
        _row("single", 100, 2000.0, 40.0),
        _row("greenwire", 100, 1500.0, 50.0, unfinished=3),
        _row("gevent", 100, 1000.0, 60.0, server_cpu_percent=45.0, server_wait_percent=52.4),
        {
            "server": "threaded",
            "regime": "cpu",
            "concurrency": 100,
            "status": "failed",
            "detail": "server exited: boom | bang",
        },
    ]
    rows += [
        {"server": "eventlet", "regime": "cpu", "concurrency": level, "status": "not installed"}
        for level in (100, 1000)
    ]
    table = _report.render_table(_result(rows))
    assert "| 100 | greenwire | 1,500 | 0.75x | 1.50x | 25.0 | 50.0 | 0 + 3 unfinished |" in table
    assert (
        "| 100 | gevent | 1,000 | 0.50x | 1.00x | 30.0 | 60.0 | 0 | 300 | 350 | 45 (52) |" in table
    )
    assert "| 0 + 3 unfinished | 300 | 350 | - |" in table  # no CPU share recorded
    assert "| all | eventlet | not installed |" in table
    assert "failed: server exited: boom / bang" in table
    assert table.count("eventlet") == 1


def test_chart_is_written_or_skipped_with_a_reason(tmp_path: Path) -> None:
    # In a child process: matplotlib keeps its font files open for the life of the process.
    rows = [_row(s, level, 1000.0 + level, 10.0 + level) for s in SERVERS for level in (100, 1000)]
    saved = tmp_path / "result.json"
    saved.write_text(json.dumps(_result(rows)))
    path = tmp_path / "chart.png"
    code = (
        "import json, sys\n"
        "from greenwire.bench import _report\n"
        "print(_report.write_chart(json.load(open(sys.argv[1])), sys.argv[2]))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, str(saved), str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    if importlib.util.find_spec("matplotlib") is None:
        assert "matplotlib is not importable" in proc.stdout
    else:
        assert proc.stdout.strip() == "None" and path.read_bytes().startswith(b"\x89PNG")


def test_bad_options_get_clear_errors(capsys: pytest.CaptureFixture[str]) -> None:
    for argv, message in [
        (["--servers", "single,nope"], "unknown 'nope'"),
        (["--concurrency", "10,0"], "must be positive"),
        (["--concurrency", "ten"], "not a number"),
        (["--regimes", ""], "at least one value"),
        (["--warmup", "-1"], "cannot be negative"),
    ]:
        with pytest.raises(SystemExit) as exc_info:
            xmlrpc_experiment.parse_args(argv)
        assert exc_info.value.code == 2
        assert message in capsys.readouterr().err
    with pytest.raises(SystemExit):
        xmlrpc_experiment.parse_args(["--client-kind", "fast"])
    assert "invalid choice: 'fast'" in capsys.readouterr().err
    opts, from_json = xmlrpc_experiment.parse_args(["--servers", "greenwire", "--no-chart"])
    assert opts.servers == ("greenwire",) and not opts.chart and from_json is None
    assert opts.concurrency == (1, 10, 100, 1000)
    assert opts.pin and opts.client_kind == "raw"
    opts, _ = xmlrpc_experiment.parse_args(["--no-pin", "--client-kind", "proxy"])
    assert not opts.pin and opts.client_kind == "proxy"


def test_unknown_experiment_is_refused() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "greenwire.bench", "nope"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2
    assert "unknown experiment 'nope'" in proc.stderr and "xmlrpc" in proc.stdout


def test_callers_are_split_evenly_over_processes() -> None:
    assert xmlrpc_experiment._split(1, 2) == [1]
    assert xmlrpc_experiment._split(3, 2) == [2, 1]
    assert xmlrpc_experiment._split(1000, 2) == [500, 500]
    assert xmlrpc_experiment._split(10, 4) == [3, 3, 2, 2]


def test_cpu_seconds_of_a_process() -> None:
    assert 0 < cpu_seconds(os.getpid()) < 10_000


def test_child_that_exits_early_is_a_clear_error() -> None:
    child = Child(
        [sys.executable, "-c", "import sys; sys.stderr.write('it broke\\n'); sys.exit(3)"],
        "doomed",
    )
    try:
        with pytest.raises(ChildError, match=r"doomed: exited \(status 3\): it broke"):
            child.expect_ready(timeout=60)
    finally:
        child.stop()


def test_backend_answers_after_its_delay_and_refuses_bad_requests() -> None:
    backend = Child(script_argv("_backend.py", "1"), "backend")
    try:
        port = int(backend.expect_ready(timeout=60)[0])
        for request, answer in [(b"5\n", b"00000"), (b"many\n", b"bad request\n")]:
            with socket.create_connection(("127.0.0.1", port), timeout=30) as conn:
                conn.sendall(request)
                received = b""
                for _ in range(100):
                    data = conn.recv(65536)
                    if not data:
                        break
                    received += data
            assert received == answer
    finally:
        backend.stop()


def test_placement_gives_the_server_the_first_cpu_and_the_rest_to_the_others(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {7, 2, 5})
    placement = plan_placement(True)
    assert placement.pinned and placement.server_cpus == (2,)
    assert placement.other_cpus == (5, 7)
    assert placement.describe() == ("server pinned to CPU 2, clients and backend to CPU 5,7")
    assert not plan_placement(False).pinned
    assert plan_placement(False).describe() == "not pinned (--no-pin)"
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {3})
    assert plan_placement(True).describe() == "not pinned (only 1 CPU available)"


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="pinning needs two CPUs")
def test_a_child_is_pinned_before_it_announces_itself() -> None:
    cpu = max(os.sched_getaffinity(0))
    child = Child(
        [sys.executable, "-c", "import os; print('READY', *os.sched_getaffinity(0)); input()"],
        "pinned",
        (cpu,),
    )
    try:
        assert child.expect_ready(timeout=60) == [str(cpu)]
        assert os.getsid(child.pid) == child.pid  # a session of its own
        assert run_queue_wait_seconds(child.pid) >= 0.0
    finally:
        child.stop()


def _serve(variant: str) -> tuple[Child, int]:
    server = Child(script_argv("_xmlrpc_server.py", variant, "1", "16"), f"{variant} server")
    return server, int(server.expect_ready(timeout=60)[0])


@pytest.mark.parametrize("kind", ["raw", "proxy"])
def test_client_processes_of_both_kinds_call_and_report(kind: str) -> None:
    server, port = _serve("single")
    params = {
        "url": f"http://127.0.0.1:{port}",
        "method": "gen",
        "argument": 2048,
        "warmup": 0.05,
        "duration": 0.3,
        "grace": 5.0,
        "call_timeout": 10.0,
        "mode": "green",
        "kind": kind,
        "callers": 3,
    }
    client = Child(script_argv("_xmlrpc_client.py", json.dumps(params)), "client")
    try:
        client.expect_ready(timeout=60)
        client.send("go")
        report = json.loads(client.last_line(60))
    finally:
        client.stop()
        server.stop()
    assert report["errors"] == {} and report["unfinished"] == 0
    assert report["latencies_us"] and all(x > 0 for x in report["latencies_us"])


def test_raw_caller_checks_the_exact_answer_and_reports_faults() -> None:
    server, port = _serve("single")
    url = f"http://127.0.0.1:{port}"
    try:
        assert _xmlrpc_client._RawCaller(url, "gen", 2048)() is None  # gzipped answer
        assert _xmlrpc_client._RawCaller(url, "gen", 16)() is None  # plain answer
        wrong = _xmlrpc_client._RawCaller(url, "gen", 16)
        wrong.expected = wrong.expected.replace(b"0", b"1")
        wrong.answer = "1" * 16
        assert wrong() == ("WrongAnswer", f"wrong answer {'0' * 16!r}")
        fault = _xmlrpc_client._RawCaller(url, "nope", 3)()
        assert fault is not None and fault[0] == "Fault" and "nope" in fault[1]
    finally:
        server.stop()


def test_rounds_combine_into_medians_sums_and_a_record_of_each_round() -> None:
    rounds = [
        _row("greenwire", 100, 2000.0, 60.0, calls=6000, error_kinds={}, error_samples=[]),
        _row(
            "greenwire",
            100,
            2600.0,
            50.0,
            calls=7800,
            error_kinds={"X": 1},
            errors=1,
            error_samples=["x"],
        ),
        _row(
            "greenwire",
            100,
            2400.0,
            70.0,
            calls=7200,
            error_kinds={"X": 2},
            errors=2,
            error_samples=["y"],
            server_cpu_us_per_call=400.0,
        ),
    ]
    row = xmlrpc_experiment.combine_rounds(rounds)
    assert row["calls_per_s"] == 2400.0 and row["p99_ms"] == 60.0 and row["p50_ms"] == 30.0
    assert row["server_cpu_us_per_call"] == 300.0
    assert row["calls"] == 21000 and row["errors"] == 3 and row["error_kinds"] == {"X": 3}
    assert [r["calls_per_s"] for r in row["rounds"]] == [2000.0, 2600.0, 2400.0]
    assert xmlrpc_experiment.combine_rounds(rounds[:1]) is rounds[0]
    failed = {**rounds[1], "status": _report.FAILED, "detail": "server exited"}
    combined = xmlrpc_experiment.combine_rounds([rounds[0], failed])
    assert combined["status"] == _report.FAILED and len(combined["rounds"]) == 2


def test_only_the_compared_pair_is_repeated_and_only_from_100_clients() -> None:
    opts = xmlrpc_experiment.Options(rounds=3)
    servers = list(SERVERS)
    assert xmlrpc_experiment._repeated(servers, 10) == []
    assert xmlrpc_experiment._rounds(opts, 10) == 1
    assert xmlrpc_experiment._repeated(servers, 100) == ["greenwire", "gevent"]
    assert xmlrpc_experiment._rounds(opts, 1000) == 3


def test_targets_show_the_per_round_ratios() -> None:
    def rounds(*calls: float) -> list[dict[str, Any]]:
        return [
            {"status": _report.OK, "calls_per_s": c, "server_cpu_us_per_call": 1e6 / c}
            for c in calls
        ]

    rows = [
        _row("greenwire", level, 2400.0, 50.0, rounds=rounds(2200.0, 2400.0, 2600.0))
        for level in (100, 1000)
    ] + [
        _row("gevent", level, 2000.0, 60.0, rounds=rounds(2000.0, 2000.0, 2000.0))
        for level in (100, 1000)
    ]
    text = _report.render_targets(_result(rows))
    assert "1.20x; p99 50.0 vs 60.0 ms" in text
    assert "medians of 3 rounds, per round 1.10x, 1.20x, 1.30x" in text
