"""The cooperative os: pipe I/O and waiting for children park the greenlet; fork is sane."""

from __future__ import annotations

import errno
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator

import pytest

import greenwire
from _green_patching import check_patched
from greenwire._core import ClosedResourceError, children
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
    names = {"read", "write", "close", "fork", "forkpty", "waitpid", "wait", "wait3", "wait4"}
    assert set(green_os.__implements__) <= names
    assert {"read", "write", "close"} <= set(green_os.__implements__)
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
                greenwire.get_hub().park_one_turn()  # the parked writer sees the room
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


# ------------------------------------------------------------ read, write, close


@pytest.fixture
def pipe() -> Iterator[tuple[int, int]]:
    """A blocking pipe ``(read end, write end)``; whatever the test left open is closed."""
    r, w = os.pipe()
    yield r, w
    for fd in (r, w):
        try:
            green_os.close(fd)
        except OSError:
            pass  # the test closed it


def _fill(fd: int) -> int:
    """Fill the blocking pipe ``fd`` to the brim (briefly non-blocking); return the bytes."""
    os.set_blocking(fd, False)
    total = 0
    try:
        while True:
            total += os.write(fd, b"x" * 65536)
    except BlockingIOError:
        pass
    # The last pages take smaller writes.
    try:
        while True:
            total += os.write(fd, b"x")
    except BlockingIOError:
        return total
    finally:
        os.set_blocking(fd, True)


def test_read_parks_only_the_greenlet_until_the_pipe_has_data(
    pipe: tuple[int, int],
) -> None:
    r, w = pipe
    steps: list[str] = []
    reader = greenwire.spawn(green_os.read, r, 100)
    greenwire.sleep(0)  # the reader starts and parks
    assert not reader.ready()
    assert os.get_blocking(r)  # the fd's mode is left alone

    def other() -> None:
        steps.append("other greenlet ran")
        assert green_os.write(w, b"hello") == 5

    greenwire.spawn(other).get()
    assert reader.get(timeout=5) == b"hello"
    assert steps == ["other greenlet ran"]
    assert greenwire.get_hub().statistics().io_waiters == 0


def test_two_readers_of_one_pipe_share_it(pipe: tuple[int, int]) -> None:
    r, w = pipe
    first = greenwire.spawn(green_os.read, r, 1)
    second = greenwire.spawn(green_os.read, r, 1)
    greenwire.sleep(0)
    assert not first.ready() and not second.ready()
    green_os.write(w, b"a")
    done = greenwire.wait([first, second], count=1, timeout=5)
    assert [g.get() for g in done] == [b"a"]
    green_os.write(w, b"b")
    assert sorted([first.get(timeout=5), second.get(timeout=5)]) == [b"a", b"b"]


def test_read_returns_end_of_file_when_the_writer_closes(pipe: tuple[int, int]) -> None:
    r, w = pipe
    reader = greenwire.spawn(green_os.read, r, 100)
    greenwire.sleep(0)
    green_os.close(w)
    assert reader.get(timeout=5) == b""


def test_regular_files_and_directories_are_read_directly(tmp_path: object) -> None:
    path = os.path.join(str(tmp_path), "data")
    fd = os.open(path, os.O_RDWR | os.O_CREAT)
    try:
        assert green_os.write(fd, b"on disk" * 1000) == 7000  # larger than PIPE_BUF
        os.lseek(fd, 0, os.SEEK_SET)
        assert green_os.read(fd, 7) == b"on disk"
        os.lseek(fd, 0, os.SEEK_END)
        assert green_os.read(fd, 7) == b""
    finally:
        green_os.close(fd)
    directory = os.open(str(tmp_path), os.O_RDONLY)
    try:
        with pytest.raises(IsADirectoryError):
            green_os.read(directory, 10)
    finally:
        green_os.close(directory)


def test_bad_arguments_get_the_real_errors(pipe: tuple[int, int]) -> None:
    r, w = pipe
    with pytest.raises(OSError) as info:
        green_os.read(r, -1)
    assert info.value.errno == errno.EINVAL
    with pytest.raises(TypeError):
        green_os.read("3", 1)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        green_os.read(r, 1.5)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        green_os.write(w, "text")
    with pytest.raises(OSError) as info:
        green_os.read(-1, 5)
    assert info.value.errno == errno.EBADF
    assert green_os.read(r, 0) == b""  # never waits
    assert green_os.write(w, b"") == 0

    class Index:
        def __init__(self, value: int) -> None:
            self.value = value

        def __index__(self) -> int:
            return self.value

    reader = greenwire.spawn(green_os.read, Index(r), Index(5))
    greenwire.sleep(0)
    assert not reader.ready()  # parked like any other read
    assert green_os.write(Index(w), b"index") == 5  # type: ignore[arg-type]
    assert reader.get(timeout=5) == b"index"


def test_a_nonblocking_pipe_still_raises_blocking_io_error(pipe: tuple[int, int]) -> None:
    r, w = pipe
    os.set_blocking(r, False)
    with pytest.raises(BlockingIOError):
        green_os.read(r, 10)
    _fill(w)
    os.set_blocking(w, False)
    with pytest.raises(BlockingIOError):
        green_os.write(w, b"more")
    with pytest.raises(BlockingIOError):
        green_os.write(w, b"y" * 100_000)


def test_the_wrong_end_of_a_pipe_fails_at_once_with_ebadf(pipe: tuple[int, int]) -> None:
    # The read end never polls writable (nor the write end readable): waiting for that
    # would be forever, where the real call fails at once.
    r, w = pipe
    with pytest.raises(OSError) as wrote:
        green_os.write(r, b"x")
    assert wrote.value.errno == errno.EBADF
    with pytest.raises(OSError) as read:
        green_os.read(w, 10)
    assert read.value.errno == errno.EBADF


@pytest.mark.parametrize("direction", ["read", "write"])
def test_close_wakes_the_waiting_greenlet_with_ebadf(pipe: tuple[int, int], direction: str) -> None:
    r, w = pipe
    waiter: greenwire.Greenlet[object]
    if direction == "read":
        waiter = greenwire.spawn(green_os.read, r, 10)
        fd = r
    else:
        _fill(w)
        waiter = greenwire.spawn(green_os.write, w, b"tail")
        fd = w
    greenwire.sleep(0)
    assert not waiter.ready()
    green_os.close(fd)
    with pytest.raises(ClosedResourceError) as info:
        waiter.get(timeout=5)
    assert info.value.errno == errno.EBADF
    assert greenwire.get_hub().statistics().io_waiters == 0


def test_write_to_a_full_pipe_parks_until_a_greenlet_reads(pipe: tuple[int, int]) -> None:
    r, w = pipe
    filled = _fill(w)
    writer = greenwire.spawn(green_os.write, w, b"tail")
    greenwire.sleep(0)
    assert not writer.ready()
    drained = b""
    while not writer.ready():
        drained += green_os.read(r, 65536)  # never blocks: data is there
        greenwire.sleep(0)
    assert writer.get() == 4
    while len(drained) < filled + 4:
        drained += green_os.read(r, 65536)
    assert drained == b"x" * filled + b"tail"


def test_large_write_to_a_pipe_is_all_written_while_a_greenlet_reads(
    pipe: tuple[int, int],
) -> None:
    r, w = pipe
    payload = bytes(range(256)) * 4096  # 1 MiB, 16 times a Linux pipe's capacity

    def read_all() -> bytes:
        chunks = []
        while chunk := green_os.read(r, 65536):
            chunks.append(chunk)
        return b"".join(chunks)

    reader = greenwire.spawn(read_all)
    assert green_os.write(w, memoryview(payload)) == len(payload)
    green_os.close(w)
    assert reader.get(timeout=30) == payload


def test_large_write_to_a_blocking_socket_leaves_it_blocking() -> None:
    # multiprocessing.Pipe() is a socketpair whose fds are read and written with os.*.
    a, b = socket.socketpair()
    left, right = a.detach(), b.detach()
    try:
        assert os.get_blocking(left) and os.get_blocking(right)
        payload = b"z" * (4 * 1024 * 1024)  # more than the socket buffers hold

        def read_exactly(n: int) -> bytes:
            data = b""
            while len(data) < n:
                data += green_os.read(right, 1 << 20)
            return data

        reader = greenwire.spawn(read_exactly, len(payload))
        assert green_os.write(left, payload) == len(payload)
        assert reader.get(timeout=30) == payload
        assert os.get_blocking(left)
    finally:
        green_os.close(left)
        green_os.close(right)


_ECHO_AFTER_TRIGGER = """
import os, signal, sys
sys.stdin.buffer.read(1)
os.kill(os.getppid(), signal.SIGUSR1)
os.write(1, b"from the child")
"""


def test_main_greenlet_alone_waits_for_another_process(pipe: tuple[int, int]) -> None:
    # No other greenlet: the hub must wait for the pipe, not raise LoopExit. A signal
    # (EINTR under the hub's poll) arrives during the wait and the read goes on.
    r, w = pipe
    proc = subprocess.Popen(
        [sys.executable, "-c", _ECHO_AFTER_TRIGGER], stdin=subprocess.PIPE, stdout=w
    )
    handled: list[int] = []
    previous = signal.signal(signal.SIGUSR1, lambda signum, frame: handled.append(signum))
    try:
        assert proc.stdin is not None
        trigger = proc.stdin
        # The child is told to write only once this greenlet has parked in read().
        greenwire.get_hub().call_later(0, lambda: (trigger.write(b"!"), trigger.flush()))
        assert green_os.read(r, 100) == b"from the child"
        assert handled == [signal.SIGUSR1]
    finally:
        signal.signal(signal.SIGUSR1, previous)
        proc.stdin.close()  # type: ignore[union-attr]
        assert proc.wait(timeout=30) == 0


def test_without_a_hub_or_inside_it_the_real_call_is_made(pipe: tuple[int, int]) -> None:
    r, w = pipe
    green_os.write(w, b"ab")
    hub = greenwire.get_hub()
    seen: list[bytes] = []
    hub.run_callback(lambda: seen.append(green_os.read(r, 1)))
    greenwire.sleep(0)
    assert seen == [b"a"]
    hub.destroy()  # no hub in this thread now: read() must not make one
    assert green_os.read(r, 1) == b"b"
    from greenwire._core import existing_hub

    assert existing_hub() is None


_MP_QUEUE_SCRIPT = """
from greenwire import monkey
monkey.patch_all()

import logging
import logging.handlers
import multiprocessing
import threading

ctx = multiprocessing.get_context("fork")

# A consumer thread (a greenlet) reads a multiprocessing queue fed by another process.
q = ctx.Queue()
got = []

def consume():
    while (item := q.get()) is not None:
        got.append(item)

def produce(q):
    for i in range(200):
        q.put(i)
    q.put(None)

consumer = threading.Thread(target=consume)
consumer.start()
producer = ctx.Process(target=produce, args=(q,))
producer.start()
consumer.join()
producer.join()
print(got == list(range(200)), producer.exitcode)
q.close()
q.join_thread()

# The QueueListener case: listener and feeder are green threads of this process.
handled = []

class Collect(logging.Handler):
    def emit(self, record):
        handled.append(record.getMessage())

for round in range(5):
    log_queue = ctx.Queue()
    listener = logging.handlers.QueueListener(log_queue, Collect())
    listener.start()
    logger = logging.getLogger("round%d" % round)
    logger.setLevel(logging.INFO)
    handler = logging.handlers.QueueHandler(log_queue)
    logger.addHandler(handler)
    for word in ("one", "two", "three"):
        logger.info(word)
    listener.stop()
    logger.removeHandler(handler)
    log_queue.close()
    log_queue.join_thread()
print(handled == ["one", "two", "three"] * 5)
"""


def test_multiprocessing_queue_between_a_green_thread_and_a_process() -> None:
    # patch_all() itself, in a fresh interpreter, as a program would do it.
    result = subprocess.run(
        [sys.executable, "-c", _MP_QUEUE_SCRIPT],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["True", "0", "True"]


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
