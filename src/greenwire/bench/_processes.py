"""Child processes for the experiments: start, read their output with deadlines, stop.

The orchestrator talks to its children through pipes: a child announces itself with one
line (``READY ...``), receives ``go`` on stdin, and prints its result as the last line of
stdout. Output is read from the raw file descriptor with ``select`` and a deadline, never
with a blocking ``readline``: a child that hangs or dies must turn into a clear error, not
into an orchestrator that waits forever. Each child's stderr goes to an anonymous
temporary file, whose last lines are quoted when the child fails.

CPU time and memory of a child are read from ``/proc/<pid>``: ``stat`` fields 14 and 15
(utime, stime, in clock ticks) cover every thread of the process, which is what a
threaded server needs.
"""

from __future__ import annotations

import os
import select
import subprocess
import sys
import tempfile
import time
from pathlib import Path

#: Seconds a child may take to start and announce itself.
STARTUP_TIMEOUT = 60.0
_TICKS_PER_SECOND = os.sysconf("SC_CLK_TCK")


class ChildError(RuntimeError):
    """A child process failed to start, answer in time, or exited early."""


class Child:
    """One child process with a pipe to its stdin and one from its stdout."""

    def __init__(self, argv: list[str], what: str) -> None:
        self.what = what
        # Lives as long as the child; closed by stop().
        self._log = tempfile.TemporaryFile("w+b")  # noqa: SIM115
        self._buffer = b""
        self._eof = False
        self.proc = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def _fill(self, deadline: float) -> None:
        assert self.proc.stdout is not None
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise ChildError(f"{self.what}: no answer in time{self._tail()}")
        readable, _, _ = select.select([self.proc.stdout], [], [], remaining)
        if not readable:
            raise ChildError(f"{self.what}: no answer in time{self._tail()}")
        data = os.read(self.proc.stdout.fileno(), 65536)
        if data:
            self._buffer += data
        else:
            self._eof = True

    def readline(self, timeout: float) -> str:
        """The next line of output; ChildError on timeout or if the child exits first."""
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buffer:
            if self._eof:
                raise ChildError(f"{self.what}: {self._exit_status()}{self._tail()}")
            self._fill(deadline)
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line.decode("utf-8", "replace")

    def last_line(self, timeout: float) -> str:
        """Read until the child closes its stdout; return the last non-empty line."""
        deadline = time.monotonic() + timeout
        while not self._eof:
            self._fill(deadline)
        lines = [ln for ln in self._buffer.decode("utf-8", "replace").splitlines() if ln]
        if not lines:
            raise ChildError(f"{self.what}: printed no result{self._tail()}")
        return lines[-1]

    def _exit_status(self) -> str:
        # Its stdout is closed: it is exiting, give it a moment to be reaped.
        try:
            return f"exited (status {self.proc.wait(5)})"
        except subprocess.TimeoutExpired:
            return "closed its output but is still running"

    def expect_ready(self, timeout: float = STARTUP_TIMEOUT) -> list[str]:
        """Wait for the ``READY ...`` line; return the words after READY."""
        words = self.readline(timeout).split()
        if not words or words[0] != "READY":
            raise ChildError(f"{self.what}: expected READY, got {' '.join(words)!r}")
        return words[1:]

    def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(line.encode() + b"\n")
            self.proc.stdin.flush()
        except BrokenPipeError:
            raise ChildError(f"{self.what}: exited before {line!r}{self._tail()}") from None

    def _tail(self, lines: int = 3) -> str:
        self._log.seek(0)
        text = self._log.read().decode("utf-8", "replace").strip().splitlines()
        return (": " + " / ".join(text[-lines:])) if text else ""

    def stderr_tail(self) -> str:
        """The last lines the child wrote to stderr (empty if none)."""
        return self._tail().removeprefix(": ")

    def stop(self) -> None:
        """Terminate (then kill) the child, close its pipes and its log."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None:
                try:
                    stream.close()
                except BrokenPipeError:
                    pass
        self._log.close()


def script_argv(script: str, *args: str) -> list[str]:
    """The command line running one of this package's scripts by path, with this Python."""
    return [sys.executable, str(Path(__file__).with_name(script)), *args]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` (all its threads), in seconds."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    # The command name (field 2) may contain spaces and parentheses: split after the last ")".
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS_PER_SECOND


def threads_and_rss(pid: int) -> tuple[int, float]:
    """The number of OS threads of process ``pid`` and its resident memory in MiB."""
    threads, rss_kib = 0, 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Threads:"):
            threads = int(line.split()[1])
        elif line.startswith("VmRSS:"):
            rss_kib = int(line.split()[1])
    return threads, rss_kib / 1024


_BUSY_LOOP = """\
import sys, time
end = time.perf_counter() + float(sys.argv[1])
cpu0, wall0 = time.process_time(), time.perf_counter()
while time.perf_counter() < end:
    pass
print((time.process_time() - cpu0) / (time.perf_counter() - wall0))
"""


def cpu_available(seconds: float = 0.5) -> float:
    """How many CPUs' worth of time busy loops get right now, one per CPU, all at once.

    On a dedicated machine this is close to ``os.cpu_count()``; on a machine shared with
    other work (or a throttled container) it says how much is left for the experiment.
    """
    count = os.cpu_count() or 1
    loops = [
        subprocess.Popen(
            [sys.executable, "-c", _BUSY_LOOP, str(seconds)], stdout=subprocess.PIPE, text=True
        )
        for _ in range(count)
    ]
    total = 0.0
    for loop in loops:
        out, _ = loop.communicate(timeout=seconds + 60)
        total += float(out)
    return total
