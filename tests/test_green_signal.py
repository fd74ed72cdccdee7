"""The green signal: SIGCHLD is shared with greenwire's child waits, invisibly."""

from __future__ import annotations

import _thread
import signal as std_signal
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import greenwire
from _green_patching import check_patched
from greenwire._core import Hub, children
from greenwire.green import signal as green_signal
from greenwire.green import thread

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
        installed = std_signal.getsignal(std_signal.SIGUSR1)
        assert isinstance(installed, green_signal._MainThreadHandler)
        assert installed.handler is handler  # the wrapper of the module doc
        assert green_signal.getsignal(std_signal.SIGUSR1) is handler
        assert green_signal.signal(std_signal.SIGUSR1, std_signal.SIG_IGN) is handler
        assert std_signal.getsignal(std_signal.SIGUSR1) == std_signal.SIG_IGN
        with pytest.raises(TypeError):
            green_signal.signal(std_signal.SIGUSR1, None)  # type: ignore[arg-type]
    finally:
        std_signal.signal(std_signal.SIGUSR1, old)
    assert green_signal.SIGTERM is std_signal.SIGTERM  # the rest of signal is reachable
    # They present themselves as the signal module's, as the stdlib's wrappers do.
    assert green_signal.signal.__module__ == green_signal.getsignal.__module__ == "signal"


@pytest.fixture
def usr1_handler() -> Iterator[Callable[[Callable[[int, Any], Any]], None]]:
    """Install a handler for SIGUSR1 through the green module; restore the old one after."""
    before = std_signal.getsignal(std_signal.SIGUSR1)

    def install(handler: Callable[[int, Any], Any]) -> None:
        green_signal.signal(std_signal.SIGUSR1, handler)

    yield install
    std_signal.signal(std_signal.SIGUSR1, before)


def test_a_handler_run_by_another_greenlet_sees_the_main_thread(
    usr1_handler: Callable[[Callable[[int, Any], Any]], None],
) -> None:
    seen: list[int] = []
    usr1_handler(lambda signum, frame: seen.append(thread.get_ident()))

    def sender() -> int:
        std_signal.raise_signal(std_signal.SIGUSR1)  # the handler runs in this greenlet
        return thread.get_ident()

    own_ident = greenwire.spawn(sender).get()
    assert seen == [_thread.get_ident()]
    assert own_ident != _thread.get_ident()  # only while the handler ran


def test_what_a_handler_raises_in_another_greenlet_is_raised_in_the_main_one(
    usr1_handler: Callable[[Callable[[int, Any], Any]], None],
) -> None:
    def handler(signum: int, frame: object) -> None:
        raise ZeroDivisionError(signum)

    usr1_handler(handler)
    steps: list[str] = []

    def victim() -> None:
        std_signal.raise_signal(std_signal.SIGUSR1)
        steps.append("victim resumed")

    g = greenwire.spawn(victim)
    with pytest.raises(ZeroDivisionError):
        g.join()  # parked in the hub when the victim's handler raises
    steps.append("main interrupted")
    g.join()
    assert g.successful()
    assert steps == ["main interrupted", "victim resumed"]


def test_a_handler_caught_by_the_hub_runs_in_a_greenlet_that_may_block(
    fresh_hub: Hub, usr1_handler: Callable[[Callable[[int, Any], Any]], None]
) -> None:
    seen: list[object] = []

    def handler(signum: int, frame: object) -> None:
        seen.append(thread.get_ident())
        greenwire.sleep(0)  # would be a HubBlockingError inside the hub's loop
        raise KeyboardInterrupt

    usr1_handler(handler)
    installed = std_signal.getsignal(std_signal.SIGUSR1)
    # As CPython would call it while the hub polls: from inside the hub.
    fresh_hub.run_callback(installed, std_signal.SIGUSR1, None)
    with pytest.raises(KeyboardInterrupt):
        greenwire.Event().wait(timeout=30)
    assert seen == [_thread.get_ident()]
    greenwire.sleep(0)  # the handler's greenlet finishes


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
    # Python installs its SIGINT handler only if SIGINT is not ignored at start, and a test
    # run started in the background inherits it ignored: install it explicitly.
    prelude = "import signal; signal.signal(signal.SIGINT, signal.default_int_handler)"
    out = check_patched(_SIGINT_SCRIPT, modules=("os", "subprocess", "signal"), prelude=prelude)
    assert out == "main greenlet interrupted\n"


_INTERRUPT_MAIN_SCRIPT = """
import _thread, os, signal, threading
from greenwire.green import signal as green_signal

green_signal.__patch__()  # as greenwire.monkey does: wraps SIGINT's handler
assert signal.getsignal(signal.SIGINT) is signal.default_int_handler

after = []
def interrupter():
    _thread.interrupt_main()      # SIGINT's handler runs in this green thread...
    after.append("thread went on")

t = threading.Thread(target=interrupter)
try:
    t.start()
    t.join()
except KeyboardInterrupt:         # ...and raises in the main greenlet
    print("main interrupted")
t.join()
print(after)
"""


def test_interrupt_main_from_a_green_thread_interrupts_the_main_greenlet() -> None:
    # Installed before patching (and explicitly: a shell may start us with SIGINT ignored).
    prelude = "import signal; signal.signal(signal.SIGINT, signal.default_int_handler)"
    out = check_patched(
        _INTERRUPT_MAIN_SCRIPT,
        modules=("thread", "threading", "signal"),
        prelude=prelude,
    )
    assert out == "main interrupted\n['thread went on']\n"
