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

Placement
---------
Left to itself, the kernel shares the CPUs among runnable *threads*: on a busy machine a
server process with a hundred OS threads (or a resolver pool) gets more CPU than one with a
single thread, and the clients take whatever the server leaves. Calls/s then compares CPU
shares, not servers. :func:`plan_placement` therefore gives the server its own CPU (the
first one this process may use) and the clients and the backend the others, and
:class:`Child` pins a child with ``os.sched_setaffinity`` right after starting it, before
it announces itself. Every variant, whatever its number of threads, runs on exactly one
CPU. Each child also starts a session of its own: where the kernel groups processes by
session for scheduling (``sched_autogroup``, on by default in most distributions), the
server is then one scheduling entity on its CPU however many threads it has, instead of
a part of the orchestrator's group. Other work on the machine can still run on that CPU;
:func:`run_queue_wait_seconds` measures how long the server waited for it.
"""

from __future__ import annotations

import os
import resource
import select
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

#: Seconds a child may take to start and announce itself.
STARTUP_TIMEOUT = 60.0
_TICKS_PER_SECOND = os.sysconf("SC_CLK_TCK")


def raise_fd_limit(wanted: int) -> int:
    """Raise this process's soft RLIMIT_NOFILE to ``wanted`` (or the hard limit); return it.

    Never lowers it.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < wanted and (hard == resource.RLIM_INFINITY or hard > soft):
        new = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
        soft = new
    return soft


class ChildError(RuntimeError):
    """A child process failed to start, answer in time, or exited early."""


class Child:
    """One child process with a pipe to its stdin and one from its stdout."""

    def __init__(self, argv: list[str], what: str, cpus: Sequence[int] | None = None) -> None:
        self.what = what
        # Lives as long as the child; closed by stop().
        self._log = tempfile.TemporaryFile("w+b")  # noqa: SIM115
        self._buffer = b""
        self._eof = False
        self.proc = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            start_new_session=True,
        )
        if cpus:
            try:
                os.sched_setaffinity(self.proc.pid, cpus)
            except OSError as exc:
                self.stop()
                raise ChildError(f"{self.what}: cannot pin to CPUs {list(cpus)}: {exc}") from exc

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


@dataclass(frozen=True)
class Placement:
    """Which CPUs the server and everything else (clients, backend) may run on."""

    pinned: bool
    server_cpus: tuple[int, ...]
    other_cpus: tuple[int, ...]
    why: str

    def describe(self) -> str:
        """One line for the report."""
        if not self.pinned:
            return f"not pinned ({self.why})"
        return (
            f"server pinned to CPU {_cpu_list(self.server_cpus)}, clients and backend to"
            f" CPU {_cpu_list(self.other_cpus)}"
        )


def _cpu_list(cpus: Sequence[int]) -> str:
    return ",".join(map(str, cpus))


def plan_placement(pin: bool) -> Placement:
    """The server on the first CPU this process may use, the rest for everything else.

    Not pinned when asked not to, when the OS has no ``sched_setaffinity``, or when fewer
    than two CPUs are available.
    """
    if not pin:
        return Placement(False, (), (), "--no-pin")
    if not hasattr(os, "sched_getaffinity"):
        return Placement(False, (), (), "no sched_setaffinity on this OS")
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return Placement(False, (), (), f"only {len(cpus)} CPU available")
    return Placement(True, (cpus[0],), tuple(cpus[1:]), "")


def script_argv(script: str, *args: str) -> list[str]:
    """The command line running one of this package's scripts by path, with this Python."""
    return [sys.executable, str(Path(__file__).with_name(script)), *args]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` (all its threads), in seconds."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    # The command name (field 2) may contain spaces and parentheses: split after the last ")".
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS_PER_SECOND


def run_queue_wait_seconds(pid: int) -> float:
    """Time the main thread of ``pid`` spent ready to run but waiting for a CPU, in seconds.

    From ``/proc/<pid>/schedstat`` (running ns, waiting ns, timeslices); 0.0 where the
    kernel does not keep scheduler statistics. Only the main thread: the threads of a
    threaded server come and go, and a green server does all its work in its main thread.
    """
    try:
        fields = Path(f"/proc/{pid}/schedstat").read_text().split()
    except OSError:
        return 0.0
    return int(fields[1]) / 1e9 if len(fields) >= 2 else 0.0


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
