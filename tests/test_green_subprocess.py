"""The cooperative subprocess: waits and pipes park the greenlet, the stdlib's semantics hold."""

from __future__ import annotations

import io
import os
import subprocess as std_subprocess
import sys

import pytest

import greenwire
from _green_patching import check_patched
from greenwire.green import subprocess
from greenwire.green.subprocess import PIPE, Popen

PY = sys.executable


def test_declarations_and_reexports() -> None:
    assert subprocess.__target__ == "subprocess"
    assert set(subprocess.__implements__) == {"Popen", "_PopenSelector"}
    assert issubclass(Popen, std_subprocess.Popen)
    assert subprocess.TimeoutExpired is std_subprocess.TimeoutExpired
    assert subprocess.list2cmdline(["a b"]) == '"a b"'  # the rest of subprocess
    assert std_subprocess.Popen is not Popen  # importing patches nothing


def test_wait_parks_only_the_greenlet() -> None:
    with Popen([PY, "-c", "import sys; sys.stdin.buffer.read()"], stdin=PIPE) as proc:
        waiter = greenwire.spawn(proc.wait)
        greenwire.sleep(0)
        assert not waiter.ready()
        progress = greenwire.spawn(lambda: "others run").get()
        assert progress == "others run" and not waiter.ready()
        assert proc.stdin is not None
        proc.stdin.close()
        assert waiter.get(timeout=30) == 0
        assert proc.returncode == 0


def test_two_greenlets_wait_for_the_same_process() -> None:
    with Popen([PY, "-c", "import sys; sys.stdin.buffer.read(); sys.exit(3)"], stdin=PIPE) as p:
        waiters = [greenwire.spawn(p.wait) for _ in range(2)]
        greenwire.sleep(0)
        assert p.stdin is not None
        p.stdin.close()
        assert [w.get(timeout=30) for w in waiters] == [3, 3]


def test_wait_timeout_raises_timeout_expired_and_can_wait_again() -> None:
    with Popen([PY, "-c", "import sys; sys.stdin.buffer.read()"], stdin=PIPE) as proc:
        with pytest.raises(subprocess.TimeoutExpired) as info:
            proc.wait(timeout=0.01)
        assert info.value.timeout == 0.01
        assert proc.returncode is None and proc.poll() is None
        assert proc.stdin is not None
        proc.stdin.close()
        assert proc.wait(timeout=30) == 0


_ECHO_BOTH = (
    "import sys\n"
    "data = sys.stdin.buffer.read()\n"
    "sys.stderr.buffer.write(data[::-1]); sys.stderr.flush()\n"
    "sys.stdout.buffer.write(data)\n"
)


def test_communicate_moves_more_than_a_pipe_buffer_both_ways() -> None:
    data = bytes(range(256)) * 8192  # 2 MiB: far beyond a 64 KiB pipe buffer
    ticks: list[int] = []

    def ticker() -> None:
        while True:  # until killed
            ticks.append(1)
            greenwire.sleep(0)

    other = greenwire.spawn(ticker)
    with Popen([PY, "-c", _ECHO_BOTH], stdin=PIPE, stdout=PIPE, stderr=PIPE) as proc:
        before = len(ticks)
        out, err = proc.communicate(data, timeout=60)
        during = len(ticks) - before
    other.kill()
    assert out == data
    assert err == data[::-1]
    assert proc.returncode == 0
    assert during > 0  # the other greenlet ran while data moved


def test_communicate_with_one_pipe_reads_through_the_cooperative_file() -> None:
    size = 1 << 20
    with Popen([PY, "-c", f"import sys; sys.stdout.write('y' * {size})"], stdout=PIPE) as p:
        assert isinstance(p.stdout.raw, subprocess.PipeIO)
        out, err = p.communicate()
    assert out == b"y" * size and err is None


def test_single_pipe_input_larger_than_the_pipe_buffer() -> None:
    data = b"z" * (1 << 20)
    script = "import sys; n = len(sys.stdin.buffer.read()); sys.exit(0 if n == %d else 1)"
    with Popen([PY, "-c", script % len(data)], stdin=PIPE) as proc:
        proc.communicate(data)
    assert proc.returncode == 0


def test_text_mode_readline_is_cooperative() -> None:
    script = "import sys\nfor line in sys.stdin: print(line.strip().upper(), flush=True)"
    with Popen([PY, "-c", script], stdin=PIPE, stdout=PIPE, text=True, bufsize=1) as proc:
        assert proc.stdin is not None and proc.stdout is not None
        reader = greenwire.spawn(proc.stdout.readline)
        greenwire.sleep(0)
        assert not reader.ready()  # parked on the pipe; the hub is free
        proc.stdin.write("hello\n")
        assert reader.get(timeout=30) == "HELLO\n"
        proc.stdin.close()
        assert proc.stdout.read() == ""
    assert proc.returncode == 0


def test_line_buffering_in_binary_mode_warns_as_the_stdlib_does() -> None:
    with pytest.warns(RuntimeWarning, match=r"line buffering \(buffering=1\)") as caught:
        proc = Popen([PY, "-c", "pass"], stdin=PIPE, stdout=PIPE, bufsize=1)
    with proc:
        assert isinstance(proc.stdout, io.BufferedReader)  # default size
        proc.communicate()
    # Two pipes, two warnings, each blamed on Popen's caller as io.open does.
    assert len(caught) == 2
    assert {w.filename for w in caught} == {std_subprocess.__file__}


def test_run_with_input_and_capture_output() -> None:
    result = subprocess.run(
        [PY, "-c", "import sys; print(sys.stdin.read()[::-1]); sys.exit(2)"],
        input="abc",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert isinstance(result, subprocess.CompletedProcess)
    assert (result.returncode, result.stdout, result.stderr) == (2, "cba\n", "")


def test_run_timeout_raises_timeout_expired_and_kills_the_child() -> None:
    script = "import os, time; print(os.getpid(), flush=True); time.sleep(60)"
    with pytest.raises(subprocess.TimeoutExpired) as info:
        subprocess.run([PY, "-c", script], capture_output=True, timeout=2)
    pid = int(info.value.stdout)  # what the child said before the timeout
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # killed and reaped


def test_check_output_and_its_error() -> None:
    assert subprocess.check_output([PY, "-c", "print('out')"]) == b"out\n"
    with pytest.raises(subprocess.CalledProcessError) as info:
        subprocess.check_output([PY, "-c", "print('partial'); raise SystemExit(5)"])
    assert (info.value.returncode, info.value.output) == (5, b"partial\n")
    assert subprocess.check_call([PY, "-c", "pass"]) == 0
    assert subprocess.call([PY, "-c", "raise SystemExit(9)"]) == 9
    assert subprocess.getstatusoutput("echo hi; exit 3") == (3, "hi")
    assert subprocess.getoutput("echo there") == "there"


def test_closing_a_pipe_wakes_its_waiter() -> None:
    with Popen([PY, "-c", "import sys; sys.stdin.buffer.read()"], stdin=PIPE, stdout=PIPE) as p:
        assert p.stdout is not None and p.stdin is not None
        reader = greenwire.spawn(p.stdout.raw.read, 10)
        greenwire.sleep(0)
        p.stdout.raw.close()
        with pytest.raises(greenwire.ClosedResourceError):
            reader.get(timeout=30)
        p.stdin.close()


# The real program: thread-based code, patched, runs its children at once.
_TWENTY_THREADS = """
import os, select, subprocess, sys, threading

N = 20
ready_r, ready_w = os.pipe()
release_r, release_w = os.pipe()
child = (
    "import os, sys; os.write(int(sys.argv[1]), b'!'); "
    "os.read(int(sys.argv[2]), 1)"  # returns at end of file: when the parent says so
)
results = []

def work():
    done = subprocess.run(
        [sys.executable, "-c", child, str(ready_w), str(release_r)],
        pass_fds=(ready_w, release_r), capture_output=True, timeout=60,
    )
    results.append(done.returncode)

threads = [threading.Thread(target=work) for _ in range(N)]
for t in threads:
    t.start()
alive = 0
while alive < N:                      # every child reports in before any may exit
    select.select([ready_r], [], [], 60)
    alive += len(os.read(ready_r, N))
os.close(release_w)                   # now they all exit
for t in threads:
    t.join()
print(alive, results == [0] * N)
"""


def test_twenty_threads_run_children_at_the_same_time_under_patch_all() -> None:
    code = "import greenwire.monkey\ngreenwire.monkey.patch_all()\n" + _TWENTY_THREADS
    done = std_subprocess.run([PY, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["20", "True"]


_EARLY_IMPORT = """
import os, select, sys
release_r, release_w = os.pipe()
ready_r, ready_w = os.pipe()
child = "import os, sys; os.write(int(sys.argv[1]), b'!'); os.read(int(sys.argv[2]), 1)"
args = [sys.executable, "-c", child, str(ready_w), str(release_r)]

import greenwire
runs = [greenwire.spawn(early_run, args, pass_fds=(ready_w, release_r)) for _ in range(2)]
alive = 0
while alive < 2:
    select.select([ready_r], [], [], 60)
    alive += len(os.read(ready_r, 2))
os.close(release_w)
print([r.get().returncode for r in runs], EarlyPopen is subprocess.Popen)
"""


def test_functions_imported_before_patching_become_cooperative() -> None:
    out = check_patched(
        _EARLY_IMPORT,
        modules=("os", "time", "select", "selectors", "subprocess", "signal"),
        prelude="import subprocess\nfrom subprocess import run as early_run, Popen as EarlyPopen",
    )
    assert out.split("\n")[0] == "[0, 0] False"
