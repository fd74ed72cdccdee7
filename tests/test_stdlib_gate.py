"""The compatibility gate's runner (stdlib_tests/run.py) and its fast subset.

The fast subset runs CPython's own tests for select, poll, epoll, selectors, thread-local
storage, queues, sched and contextvars/contextlib with ``greenwire.monkey.patch_all()``
applied first, and must pass in full. The whole gate (``make stdlib-tests``) is in
docs/compat.md. The runner itself is checked on small modules written here: counts,
a hung test (killed with everything it started, the module resumed after it), a crash,
a module that does not exist.
"""

from __future__ import annotations

import json
import os
import runpy
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

RUNNER = Path(__file__).resolve().parents[1] / "stdlib_tests" / "run.py"


def run_gate(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> list[Any]:
    """Run the gate's runner; return its JSON outcomes."""
    out = tmp_path / "outcomes.json"
    logs = tmp_path / "logs"
    command = [sys.executable, str(RUNNER), "--json", str(out), "--logdir", str(logs), *args]
    completed = subprocess.run(
        command,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert out.exists(), f"exit {completed.returncode}\n{completed.stdout}\n{completed.stderr}"
    outcomes: list[Any] = json.loads(out.read_text())
    return outcomes


def summary(outcome: dict[str, Any]) -> str:
    problems = [f"{p['outcome']} {p['id']}: {p['trace'][-300:]}" for p in outcome["problems"]]
    return f"{outcome['module']}: {outcome['status']} {outcome['detail']}\n" + "\n".join(problems)


@pytest.mark.realtime
def test_the_fast_subset_passes_under_greenwire(tmp_path: Path) -> None:
    outcomes = run_gate(tmp_path, "--fast", "--impl", "greenwire", "--timeout", "300")
    fast_modules = runpy.run_path(str(RUNNER))["FAST_MODULES"]
    assert "test_queue" in fast_modules  # checked below
    assert [o["module"] for o in outcomes] == fast_modules
    for outcome in outcomes:
        assert outcome["status"] == "ok", summary(outcome)
        assert outcome["passed"] > 0, summary(outcome)
    by_module = {o["module"]: o for o in outcomes}
    # The reviewed skips (C SimpleQueue waits across threads) are applied and counted.
    assert by_module["test_queue"]["listed"] == 3


FAKE_TESTS = {
    "test_counts.py": """
        import unittest

        class Outcomes(unittest.TestCase):
            def test_pass(self):
                pass

            def test_fail(self):
                self.assertEqual(1, 2)

            def test_error(self):
                raise RuntimeError("boom")

            @unittest.skip("not today")
            def test_skip(self):
                pass

            def test_subtests(self):
                for i in range(3):
                    with self.subTest(i=i):
                        self.assertLess(i, 1)

            @unittest.expectedFailure
            def test_expected_failure(self):
                self.fail("expected")

        class BrokenFixture(unittest.TestCase):
            @classmethod
            def setUpClass(cls):
                raise OSError("no fixture")

            def test_never_runs(self):
                pass
    """,
    "test_hang.py": """
        import os, subprocess, sys, time, unittest

        class Hang(unittest.TestCase):
            def test_a_passes(self):
                pass

            def test_b_hangs(self):
                child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
                with open(os.environ["GATE_PID_FILE"], "w") as f:
                    f.write(str(child.pid))
                time.sleep(600)

            def test_c_runs_in_a_new_interpreter(self):
                pass
    """,
    "test_crash.py": """
        import os, unittest

        class Crash(unittest.TestCase):
            def test_a_passes(self):
                pass

            def test_b_crashes(self):
                os._exit(3)
    """,
}


def _process_gone(pid: int) -> bool:
    """True if ``pid`` exited (a zombie nobody reaped yet counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


def test_the_runner_counts_hangs_crashes_and_absent_modules(tmp_path: Path) -> None:
    package = tmp_path / "gatefake"
    package.mkdir()
    (package / "__init__.py").write_text("")
    for name, source in FAKE_TESTS.items():
        (package / name).write_text(textwrap.dedent(source))
    pid_file = tmp_path / "grandchild.pid"
    modules = ["gatefake.test_counts", "gatefake.test_hang", "gatefake.test_crash"]
    outcomes = run_gate(
        tmp_path,
        "--impl",
        "none",
        "--timeout",
        "120",
        "--test-timeout",
        "6",
        *modules,
        "gatefake.test_missing",
        env={"PYTHONPATH": str(tmp_path), "GATE_PID_FILE": str(pid_file)},
    )
    counts, hang, crash, missing = outcomes

    assert counts["status"] == "failed"
    got = {k: counts[k] for k in ("run", "passed", "failed", "errors", "skipped", "hung")}
    assert got == {"run": 7, "passed": 2, "failed": 2, "errors": 2, "skipped": 1, "hung": 0}
    assert sorted(p["id"].replace("gatefake.test_counts.", "") for p in counts["problems"]) == [
        "Outcomes.test_error",
        "Outcomes.test_fail",
        "Outcomes.test_subtests (i=1)",
        "Outcomes.test_subtests (i=2)",
        "setUpClass (BrokenFixture)",
    ]

    # The hung test is killed with all it started, and the module goes on after it.
    assert hang["status"] == "hung"
    assert hang["detail"] == "in gatefake.test_hang.Hang.test_b_hangs"
    assert (hang["run"], hang["passed"], hang["hung"]) == (3, 2, 1)
    assert _process_gone(int(pid_file.read_text()))  # the whole process group was killed

    assert crash["status"] == "crashed"
    assert crash["detail"] == "exit 3 in gatefake.test_crash.Crash.test_b_crashes"
    assert crash["passed"] == 1

    assert missing["status"] == "absent" and missing["run"] == 0
