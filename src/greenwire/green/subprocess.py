"""A cooperative ``subprocess``: waiting for a child and talking to it park only the greenlet.

What blocks in the stdlib, and what this module does about it
------------------------------------------------------------
* ``Popen.wait()`` calls ``os.waitpid(pid, 0)``, and ``wait(timeout)`` polls with
  ``time.sleep``. :class:`Popen` overrides ``_wait``: it parks until the child exits
  (on a pidfd, or SIGCHLD where pidfds are missing; see
  :mod:`greenwire._core.children`), then reaps it with ``WNOHANG``. ``_waitpid_lock`` is
  never held while parked, only tried, so several greenlets (or threads) may wait for
  the same process.
* ``communicate()`` with two or more pipes multiplexes them with the module global
  ``_PopenSelector``; with one pipe it reads or writes the pipe's file object directly.
  The pipes of :class:`Popen` are cooperative file objects (:class:`PipeIO` under the
  usual buffered and text layers), and its ``_communicate`` is the stdlib's own code
  run with the green ``PollSelector``.
* ``run``, ``call``, ``check_call``, ``check_output``, ``getstatusoutput`` and
  ``getoutput`` are the stdlib's own code too, using this :class:`Popen`.

"The stdlib's own code" is literal: those functions are the stdlib's code objects given a
copy of the ``subprocess`` namespace in which ``Popen``, ``_PopenSelector`` and
``io.open`` are the cooperative ones. Arguments, errors, ``TimeoutExpired`` with the
output read so far, and every version difference are therefore exactly the stdlib's,
and nothing process-wide is changed by merely importing this module.

Patching replaces ``subprocess.Popen`` and ``subprocess._PopenSelector``. The stdlib
functions look both up when called, so ``run`` & co. become cooperative even when they
were imported before patching; a ``Popen`` class captured before patching still waits
cooperatively through the patched ``os.waitpid``, ``time.sleep`` and selector, though
its pipes are plain blocking files.

Pipes stay in blocking mode, because a pipe end is easily shared with another child
(``Popen(..., stdin=first.stdout)``), and a child handed a non-blocking stdin fails with
``EAGAIN``. :class:`PipeIO` therefore asks the kernel whether the pipe is ready
(``poll`` with a zero timeout) before each read or write, parks on the hub if not, and
writes at most ``PIPE_BUF`` bytes per call, which a pipe reported writable accepts
without blocking. What still blocks, briefly: starting the child (the stdlib waits for
``exec`` to succeed or fail).
"""

from __future__ import annotations

import importlib
import io
import os
import select as _select_module
import types
import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from greenwire._core import Hub, children, get_hub
from greenwire.green import os as _green_os
from greenwire.green import selectors as _green_selectors
from greenwire.green._registry import original
from greenwire.greenlet import sleep as _green_sleep

if TYPE_CHECKING:
    from subprocess import Popen as _PopenBase
else:
    _PopenBase = original("subprocess", "Popen")

__target__ = "subprocess"
__implements__ = ["Popen", "_PopenSelector"]

__all__ = [
    "PIPE",
    "STDOUT",
    "DEVNULL",
    "CalledProcessError",
    "CompletedProcess",
    "PipeIO",
    "Popen",
    "SubprocessError",
    "TimeoutExpired",
    "call",
    "check_call",
    "check_output",
    "getoutput",
    "getstatusoutput",
    "run",
]

_stdlib = importlib.import_module("subprocess")
PIPE = _stdlib.PIPE
STDOUT = _stdlib.STDOUT
DEVNULL = _stdlib.DEVNULL
SubprocessError = _stdlib.SubprocessError
CalledProcessError = _stdlib.CalledProcessError
TimeoutExpired = _stdlib.TimeoutExpired
CompletedProcess = _stdlib.CompletedProcess

_PopenSelector: type[Any] = getattr(
    _green_selectors, "PollSelector", _green_selectors.SelectSelector
)

_PIPE_BUF: int = getattr(_select_module, "PIPE_BUF", 512)
_POLLIN: int = _select_module.POLLIN
_POLLOUT: int = _select_module.POLLOUT
_READ_ALL_CHUNK = 65536


class PipeIO(io.FileIO):
    """A blocking pipe fd read and written cooperatively (see the module doc)."""

    _hub: Hub | None = None

    def _wait(self, events: int) -> None:
        """Park until the pipe is ready for ``events`` (as the green ``os`` functions do)."""
        fd = self.fileno()
        while not _green_os._ready_now(fd, events):
            hub = self._hub = get_hub()
            _green_os._park_on(hub, fd, write=events == _POLLOUT)

    def readinto(self, buffer: Any) -> int:
        """Read into ``buffer`` once data (or end of file) is there."""
        self._checkReadable()
        self._wait(_POLLIN)
        n: int = super().readinto(buffer)
        return n

    def read(self, size: int | None = -1) -> bytes:
        """Read up to ``size`` bytes once some are there; all of it if ``size`` < 0."""
        if size is None or size < 0:
            return self.readall()
        self._checkReadable()
        self._wait(_POLLIN)
        data: bytes = super().read(size)
        return data

    def readall(self) -> bytes:
        """Read until end of file."""
        self._checkReadable()
        chunks: list[bytes] = []
        while True:
            self._wait(_POLLIN)
            data: bytes = super().read(_READ_ALL_CHUNK)
            if not data:
                return b"".join(chunks)
            chunks.append(data)

    def write(self, data: Any) -> int:
        """Write all of ``data`` (as a blocking pipe does), parking while the pipe is full."""
        self._checkWritable()
        view = memoryview(data).cast("B")
        written = 0
        while written < len(view):
            self._wait(_POLLOUT)
            written += super().write(view[written : written + _PIPE_BUF])
        return written

    def close(self) -> None:
        """Wake any greenlet waiting on the pipe, then close it."""
        hub = self._hub
        if hub is not None and not self.closed and not hub.destroyed:
            hub.notify_closing(self.fileno())
        super().close()

    def _checkReadable(self) -> None:
        if self.closed:
            raise ValueError("I/O operation on closed file")
        if not self.readable():
            raise io.UnsupportedOperation("File not open for reading")

    def _checkWritable(self) -> None:
        if self.closed:
            raise ValueError("I/O operation on closed file")
        if not self.writable():
            raise io.UnsupportedOperation("File not open for writing")


def _open_pipe(fd: int, mode: str, buffering: int = -1) -> Any:
    """``io.open`` as ``Popen.__init__`` calls it for its pipes, on :class:`PipeIO`."""
    if buffering == 1 and "b" in mode:
        # io.open's own warning, blamed on the same line: Popen's call (bufsize=1 in
        # binary mode). Text mode has already turned bufsize=1 into line_buffering.
        warnings.warn(
            "line buffering (buffering=1) isn't supported in binary mode, "
            "the default buffer size will be used",
            RuntimeWarning,
            stacklevel=2,
        )
    raw = PipeIO(fd, mode.replace("b", ""))
    if buffering == 0:
        return raw
    size = io.DEFAULT_BUFFER_SIZE if buffering in (-1, 1) else buffering
    if "r" in mode:
        return io.BufferedReader(raw, size)
    return io.BufferedWriter(raw, size)


def _io_with_pipes() -> types.ModuleType:
    shim = types.ModuleType("io")
    shim.__dict__.update(vars(io))
    shim.open = _open_pipe  # type: ignore[attr-defined]
    return shim


# The namespace the stdlib's code objects run in here (see the module doc). It is a copy
# taken at import, not the live module: patching ``subprocess`` later does not change it.
_namespace: dict[str, Any] = dict(vars(_stdlib))


def _rebind(function: Any) -> Any:
    """The stdlib function ``function`` running in :data:`_namespace`."""
    clone = types.FunctionType(
        function.__code__, _namespace, function.__name__, function.__defaults__
    )
    clone.__kwdefaults__ = function.__kwdefaults__
    clone.__doc__ = function.__doc__
    clone.__qualname__ = function.__qualname__
    clone.__module__ = __name__
    clone.__wrapped__ = function  # type: ignore[attr-defined]
    return clone


class Popen(_PopenBase):  # type: ignore[type-arg]
    """``subprocess.Popen`` whose waits and pipes park the greenlet, not the thread."""

    __init__ = _rebind(_PopenBase.__init__)
    _communicate = _rebind(_PopenBase._communicate)  # type: ignore[attr-defined]

    def _wait(self, timeout: float | None) -> int | None:
        """Wait for the child to exit, cooperatively; ``TimeoutExpired`` after ``timeout``."""
        if self.returncode is not None:
            return self.returncode
        hub = get_hub()
        deadline = None if timeout is None else hub.now() + timeout
        while self.returncode is None:
            if not children.wait_exit(self.pid, deadline):
                raise TimeoutExpired(self.args, timeout)
            if not self._waitpid_lock.acquire(False):  # type: ignore[attr-defined]
                # Another greenlet or thread is reaping right now: let it finish.
                _green_sleep(0.001)
                continue
            try:
                if self.returncode is None:
                    pid, status = self._try_wait(os.WNOHANG)  # type: ignore[attr-defined]
                    if pid == self.pid:
                        self._handle_exitstatus(status)  # type: ignore[attr-defined]
            finally:
                self._waitpid_lock.release()  # type: ignore[attr-defined]
        return self.returncode


_namespace["Popen"] = Popen
_namespace["_PopenSelector"] = _PopenSelector
_namespace["io"] = _io_with_pipes()

run: Callable[..., Any] = _rebind(_stdlib.run)
call: Callable[..., int] = _rebind(_stdlib.call)
check_call: Callable[..., int] = _rebind(_stdlib.check_call)
check_output: Callable[..., Any] = _rebind(_stdlib.check_output)
getstatusoutput: Callable[..., tuple[int, str]] = _rebind(_stdlib.getstatusoutput)
getoutput: Callable[..., str] = _rebind(_stdlib.getoutput)
for _name in ("run", "call", "check_call", "check_output", "getstatusoutput", "getoutput"):
    _namespace[_name] = globals()[_name]
del _name


def __getattr__(name: str) -> Any:
    """The rest of the stdlib ``subprocess`` module."""
    return getattr(_stdlib, name)
