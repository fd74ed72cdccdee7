"""The green signal: SIGCHLD is shared with greenwire's child waits, invisibly."""

from __future__ import annotations

import signal as std_signal
from collections.abc import Iterator

import pytest

from _green_patching import check_patched
from greenwire._core import children
from greenwire.green import signal as green_signal

pytestmark = pytest.mark.skipif(
    not children.SIGCHLD_AVAILABLE, reason="SIGCHLD exists on POSIX only"
)


@pytest.fixture
def restore_sigchld() -> Iterator[None]:
    """Put the SIGCHLD disposition back as it was before the test."""
    before = std_signal.getsignal(std_signal.SIGCHLD)
    yield
    children.uninstall_sigchld_handler()
    std_signal.signal(std_signal.SIGCHLD, before)


def test_other_signals_pass_straight_through() -> None:
    def handler(signum: int, frame: object) -> None:
        pass

    old = green_signal.signal(std_signal.SIGUSR1, handler)
    try:
        assert std_signal.getsignal(std_signal.SIGUSR1) is handler
        assert green_signal.getsignal(std_signal.SIGUSR1) is handler
    finally:
        std_signal.signal(std_signal.SIGUSR1, old)
    assert green_signal.SIGTERM is std_signal.SIGTERM  # the rest of signal is reachable


def test_user_handler_is_what_getsignal_says_while_ours_is_installed(
    restore_sigchld: None,
) -> None:
    calls: list[int] = []

    def handler(signum: int, frame: object) -> None:
        calls.append(signum)

    green_signal.signal(std_signal.SIGCHLD, std_signal.SIG_DFL)
    assert children._install_handler()
    assert std_signal.getsignal(std_signal.SIGCHLD) is children._on_sigchld
    assert green_signal.getsignal(std_signal.SIGCHLD) == std_signal.SIG_DFL
    assert green_signal.signal(std_signal.SIGCHLD, handler) == std_signal.SIG_DFL
    assert green_signal.getsignal(std_signal.SIGCHLD) is handler
    assert std_signal.getsignal(std_signal.SIGCHLD) is children._on_sigchld
    children._on_sigchld(std_signal.SIGCHLD, None)  # as the kernel would
    assert calls == [std_signal.SIGCHLD]
    with pytest.raises(TypeError):
        green_signal.signal(std_signal.SIGCHLD, 42)
    assert green_signal.getsignal(std_signal.SIGCHLD) is handler


def test_sig_ign_is_installed_for_real(restore_sigchld: None) -> None:
    assert children._install_handler()
    assert green_signal.signal(std_signal.SIGCHLD, std_signal.SIG_IGN) == std_signal.SIG_DFL
    assert std_signal.getsignal(std_signal.SIGCHLD) == std_signal.SIG_IGN
    assert green_signal.getsignal(std_signal.SIGCHLD) == std_signal.SIG_IGN
    assert not children._install_handler()  # the kernel reaps: nothing to wake on


def test_setting_from_another_thread_is_refused(restore_sigchld: None) -> None:
    from greenwire.threadpool import run_in_thread

    assert children._install_handler()
    with pytest.raises(ValueError):
        run_in_thread(green_signal.signal, std_signal.SIGCHLD, std_signal.SIG_DFL)


_USER_HANDLER_SCRIPT = """
import os, signal, subprocess, sys

calls = []
def on_child(signum, frame):
    calls.append(signum)

assert signal.signal(signal.SIGCHLD, on_child) == signal.SIG_DFL
proc = subprocess.Popen([sys.executable, "-c", "pass"])
assert proc.wait() == 0                       # pidfd wait: no SIGCHLD needed
other = subprocess.Popen([sys.executable, "-c", "raise SystemExit(4)"])
pid, status = os.waitpid(-1, 0)               # any child: through SIGCHLD
assert (pid, os.waitstatus_to_exitcode(status)) == (other.pid, 4)
other.returncode = 4
assert signal.getsignal(signal.SIGCHLD) is on_child
assert calls and set(calls) == {signal.SIGCHLD}, calls

# SIG_IGN keeps its meaning: the kernel reaps, waiting says there is no child.
signal.signal(signal.SIGCHLD, signal.SIG_IGN)
ignored = subprocess.Popen([sys.executable, "-c", "pass"])
try:
    os.waitpid(ignored.pid, 0)
except ChildProcessError:
    print("reaped by the kernel")
ignored.returncode = 0
assert signal.getsignal(signal.SIGCHLD) == signal.SIG_IGN
print("ok")
"""


def test_user_sigchld_handler_is_still_called_under_the_patch() -> None:
    out = check_patched(_USER_HANDLER_SCRIPT, modules=("os", "subprocess", "signal"))
    assert out.split("\n")[:2] == ["reaped by the kernel", "ok"]


_SIGINT_SCRIPT = """
import os, signal
import greenwire

never = greenwire.Event()
greenwire.spawn_later(0.01, os.kill, os.getpid(), signal.SIGINT)
try:
    never.wait()                  # the hub is polling when SIGINT arrives
except KeyboardInterrupt:
    print("main greenlet interrupted")
"""


def test_sigint_still_reaches_the_main_greenlet() -> None:
    out = check_patched(_SIGINT_SCRIPT, modules=("os", "subprocess", "signal"))
    assert out == "main greenlet interrupted\n"
