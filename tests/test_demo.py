"""The main job, `python -m greenwire.demo`, runs and reports its figures."""

from __future__ import annotations

import subprocess
import sys

import pytest


def test_demo_runs_small() -> None:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "greenwire.demo",
            "--clients",
            "30",
            "--rounds",
            "3",
            "--sleepers",
            "200",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    assert "90 round trips" in out
    assert "peak concurrent server greenlets: 30" in out
    assert "OS threads: 1" in out
    assert "lateness p50" in out
    assert "parked greenlets cost" in out


def test_demo_in_process(capsys: pytest.CaptureFixture[str]) -> None:
    from greenwire import demo

    demo.main(["--clients", "10", "--rounds", "2", "--sleepers", "50", "--size", "100"])
    out = capsys.readouterr().out
    assert "20 round trips" in out and "on the epoll backend" in out
