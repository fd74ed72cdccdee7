"""The cooperative os: waiting for children parks the greenlet; fork gives a fresh hub."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator

import pytest

import greenwire
from _green_patching import check_patched
from greenwire._core import children
from greenwire.green import os as green_os

# A child that lives until its stdin reaches end of file: the test decides when it exits.
_UNTIL_EOF = [sys.executable, "-c", "import sys; sys.stdin.buffer.read()"]


@pytest.fixture
def child() -> Iterator[subprocess.Popen[bytes]]:
    """A child process that exits when its stdin is closed (reaped afterwards if needed)."""
    proc = subprocess.Popen(_UNTIL_EOF, stdin=subprocess.PIPE)
    yield proc
    if proc.stdin is not None and not proc.stdin.closed:
        proc.stdin.close()
    proc.wait()  # 0 if a test reaped it (ECHILD)


@pytest.fixture(params=["pidfd", "sigchld"])
def wait_mechanism(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> Iterator[str]:
    """Run a test with pidfds, and again with only SIGCHLD (and its re-check timer)."""
    if request.param == "sigchld":
        monkeypatch.setattr(children, "_pidfd_open", None)
    elif children._pidfd_open is None:
        pytest.skip("this kernel or platform has no pidfd_open")
    yield str(request.param)
    children.uninstall_sigchld_handler()


def test_implements_only_existing_names() -> None:
    assert set(green_os.__implements__) <= {"fork", "forkpty", "waitpid", "wait", "wait3", "wait4"}
    for name in green_os.__implements__:
        assert hasattr(os, name)
    assert green_os.getpid is os.getpid  # the rest of os is reachable


@pytest.mark.parametrize("target", ["pid", "any"])
def test_waitpid_parks_only_the_greenlet(
    child: subprocess.Popen[bytes], wait_mechanism: str, target: str
) -> None:
    pid = child.pid if target == "pid" else -1
    waiter = greenwire.spawn(green_os.waitpid, pid, 0)
    greenwire.sleep(0)  # the waiter starts and parks
    assert not waiter.ready()
    if wait_mechanism == "sigchld":
        assert children.sigchld_handler_installed()
    progressed = greenwire.spawn(lambda: "other greenlets run").get()
    assert progressed == "other greenlets run"
    assert not waiter.ready()
    assert child.stdin is not None
    child.stdin.close()  # the child exits
    reaped, status = waiter.get(timeout=30)
    assert reaped == child.pid
    assert os.waitstatus_to_exitcode(status) == 0


def test_wnohang_passes_straight_through(child: subprocess.Popen[bytes]) -> None:
    assert green_os.waitpid(child.pid, os.WNOHANG) == (0, 0)
    assert green_os.waitpid(-1, os.WNOHANG) == (0, 0)
    pid, status, usage = green_os.wait4(child.pid, os.WNOHANG)
    assert (pid, status) == (0, 0)


def test_wait_wait3_wait4_return_exit_status(wait_mechanism: str) -> None:
    code = "import sys; sys.exit(7)"
    first = subprocess.Popen([sys.executable, "-c", code])
    pid, status = green_os.wait()
    assert pid == first.pid and os.waitstatus_to_exitcode(status) == 7
    second = subprocess.Popen([sys.executable, "-c", code])
    pid, status, usage = green_os.wait3(0)
    assert pid == second.pid and os.waitstatus_to_exitcode(status) == 7
    assert usage.ru_utime >= 0
    third = subprocess.Popen([sys.executable, "-c", code])
    pid, status, usage = green_os.wait4(third.pid, 0)
    assert pid == third.pid and os.waitstatus_to_exitcode(status) == 7
    for proc in (first, second, third):
        proc.returncode = 7  # reaped above


def test_no_child_raises_child_process_error(wait_mechanism: str) -> None:
    with pytest.raises(ChildProcessError):
        green_os.waitpid(-1, 0)
    with pytest.raises(ChildProcessError):
        green_os.wait()


def test_wait_exit_honours_its_deadline(
    child: subprocess.Popen[bytes], wait_mechanism: str
) -> None:
    hub = greenwire.get_hub()
    assert children.wait_exit(child.pid, hub.now() + 0.01) is False
    assert child.poll() is None  # not reaped


def test_nb_read_and_nb_write_wait_on_a_nonblocking_pipe() -> None:
    r, w = os.pipe()
    try:
        assert green_os.make_nonblocking(r) is True
        assert green_os.make_nonblocking(r) is False
        green_os.make_nonblocking(w)
        reader = greenwire.spawn(green_os.nb_read, r, 100)
        greenwire.sleep(0)
        assert not reader.ready()
        assert green_os.nb_write(w, b"hello") == 5
        assert reader.get(timeout=5) == b"hello"
        # Fill the pipe: the writer parks until a reader makes room.
        chunk = b"x" * 65536
        while True:
            try:
                os.write(w, chunk)
            except BlockingIOError:
                break
        writer = greenwire.spawn(green_os.nb_write, w, b"tail")
        greenwire.sleep(0)
        assert not writer.ready()
        drained = 0
        while not writer.ready():
            try:
                drained += len(os.read(r, 65536))
            except BlockingIOError:
                greenwire.sleep(0)
        assert writer.get() == 4
        assert drained > 0
    finally:
        for fd in (r, w):
            greenwire.get_hub().notify_closing(fd)
            os.close(fd)


def test_tp_read_and_tp_write_use_the_thread_pool(tmp_path: object) -> None:
    path = os.path.join(str(tmp_path), "data")
    fd = os.open(path, os.O_RDWR | os.O_CREAT)
    try:
        assert green_os.tp_write(fd, b"on disk") == 7
        os.lseek(fd, 0, os.SEEK_SET)
        assert green_os.tp_read(fd, 100) == b"on disk"
    finally:
        os.close(fd)


_FORK_SCRIPT = """
import os, sys
import greenwire
from greenwire._core import get_hub
from greenwire.threadpool import run_in_thread

parent_hub = get_hub()
other_ran = []

def forker():
    pid = os.fork()
    if pid == 0:
        hub = get_hub()
        ok = hub is not parent_hub
        ok = ok and greenwire.spawn(lambda: 5).get() == 5
        greenwire.sleep(0.01)
        ok = ok and run_in_thread(lambda: 6) == 6
        ok = ok and not other_ran  # the parent's other greenlets do not run here
        sys.exit(0 if ok else 3)   # reaches the child's main greenlet
    ticks_before = len(other_ran)
    reaped, status = os.waitpid(pid, 0)
    return reaped == pid, os.waitstatus_to_exitcode(status), ticks_before

def ticker():
    for _ in range(3):
        other_ran.append(1)
        greenwire.sleep(0)

forking = greenwire.spawn(forker)
ticking = greenwire.spawn(ticker)
same_pid, code, ticks_before = forking.get()
ticking.join()
print(same_pid, code, ticks_before, len(other_ran))

pid, master = os.forkpty()
if pid == 0:
    ok = get_hub() is not parent_hub and greenwire.spawn(lambda: 1).get() == 1
    os._exit(0 if ok else 3)
reaped, status = os.waitpid(pid, 0)
os.close(master)
print(os.waitstatus_to_exitcode(status))
"""


def test_fork_and_forkpty_give_the_child_a_fresh_hub() -> None:
    # In a fresh interpreter: forking a pytest process full of fixtures is asking for it.
    out = check_patched(_FORK_SCRIPT, modules=("os",))
    assert out.split() == ["True", "0", "0", "3", "0"]
