"""Each example in ``examples/`` runs as written (briefly) and does what it says."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def run_example(name: str, *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(EXAMPLES / name), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_taskgroup_fanout_cancels_the_late_services_at_the_deadline() -> None:
    done = run_example("taskgroup_fanout.py", "--deadline", "0.25")
    assert done.returncode == 0, done.stderr
    last = done.stdout.splitlines()[-1]
    # The seeded delays put exactly one of the eight services past 250 ms.
    assert last.startswith("7 answered, 1 cancelled at the deadline (hit)"), done.stdout


def test_taskgroup_fanout_failure_cancels_the_group() -> None:
    done = run_example("taskgroup_fanout.py", "--fail")
    assert done.returncode == 1
    assert "ConnectionError('service-0 is down')" in done.stdout


def test_crawler_fetches_every_page_of_the_local_site() -> None:
    done = run_example("crawler.py", "--workers", "20", "--max-pages", "60", "--delay", "0.01")
    assert done.returncode == 0, done.stderr
    assert "crawled 60 pages (60 OK) with 20 workers" in done.stdout, done.stdout
