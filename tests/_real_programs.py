"""Run an unchanged program under ``python -m greenwire.monkey`` and read its JSON report.

Each program is plain threaded standard-library code (a ``ThreadingMixIn`` server,
``requests``, ``redis-py``, ``smtplib`` ...) written to a temporary directory together
with any helper modules it imports, and started in a fresh interpreter through the
monkey-patching command line, so ``patch_all()`` runs before the program's first import.
The program prints one JSON object as the last line of its standard output. Next to
every program stands ``threaded.py`` (``THREADED`` below): the thread plumbing the
programs share, itself plain ``threading`` code, so that each program shows only what it
does with its library.

The run fails the test, showing everything the program printed, when:

* it does not finish within the time limit (it is first sent ``SIGABRT`` so that
  ``faulthandler`` dumps where it was stuck, then killed);
* it exits with a non-zero status;
* a thread died with a traceback, even if the program itself exited cleanly
  (``threading.excepthook`` and ``socketserver``'s ``handle_error`` print to stderr);
* one of the areas the program relies on was not patched (read from ``--verbose``).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pytest

#: Modules whose patching every real-program test relies on (targets in ``--verbose``).
REQUIRED_PATCHES = ("_thread", "threading", "time", "select", "selectors", "socket", "queue")

_PATCHED_PREFIX = "greenwire.monkey: patched "

#: Written next to every program as ``threaded.py``.
THREADED = '''
"""Run many client threads, and serve a ``socketserver`` server in a thread."""

import contextlib
import socketserver
import threading


def run_clients(client, count):
    """Run ``client(i)`` for each i below ``count``, all at once; return their errors."""
    errors = []

    def run(i):
        try:
            client(i)
        except Exception as e:
            errors.append(repr(e))

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return errors


def serve(server):
    """Start ``server.serve_forever()`` in a thread; return the server."""
    server.thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    server.thread.start()
    return server


def stop(server):
    """Stop a server started by ``serve``, close it and wait for its thread."""
    server.shutdown()
    server.server_close()
    server.thread.join()


class SessionServer(socketserver.ThreadingMixIn, socketserver.TCPServer):
    """A threaded TCP server on 127.0.0.1 that counts the sessions open at once."""

    daemon_threads = True
    request_queue_size = 256

    def __init__(self, handler):
        super().__init__(("127.0.0.1", 0), handler)
        self.lock = threading.Lock()
        self.sessions = 0
        self.peak = 0

    @contextlib.contextmanager
    def session(self):
        """Count one open session (``peak`` is the most at once) while the block runs."""
        with self.lock:
            self.sessions += 1
            self.peak = max(self.peak, self.sessions)
        try:
            yield
        finally:
            with self.lock:
                self.sessions -= 1
'''


def patched_targets(stderr: str) -> set[str]:
    """The stdlib modules that ``--verbose`` reported as patched."""
    return {
        line[len(_PATCHED_PREFIX) :].split(" ", 1)[0]
        for line in stderr.splitlines()
        if line.startswith(_PATCHED_PREFIX)
    }


def run_program(
    directory: Path,
    source: str,
    *args: str,
    modules: Mapping[str, str] | None = None,
    timeout: float = 30.0,
    env: Mapping[str, str] | None = None,
    require: Iterable[str] = REQUIRED_PATCHES,
) -> Any:
    """Run ``source`` patched, in a new interpreter, and return its last stdout line as JSON.

    Args:
        directory: where to write the program (``program.py``) and its ``modules``.
        source: the program's text; it is dedented.
        args: the program's command-line arguments.
        modules: extra modules the program imports, name -> source (``{"srv": "..."}``
            is written as ``srv.py`` next to the program); ``threaded`` is always there.
        timeout: seconds before the program is considered hung.
        env: extra environment variables.
        require: stdlib modules that must have been patched.
    """
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in {"threaded": THREADED, **(modules or {})}.items():
        (directory / f"{name}.py").write_text(textwrap.dedent(text))
    program = directory / "program.py"
    program.write_text(textwrap.dedent(source))
    command = [sys.executable, "-X", "faulthandler", "-m", "greenwire.monkey", "--verbose"]
    command += [str(program), *args]
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    with subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=full_env,
        cwd=directory,
    ) as process:
        try:
            stdout, stderr = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGABRT)
            try:
                stdout, stderr = process.communicate(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                stdout, stderr = process.communicate()
            pytest.fail(
                f"program hung for {timeout} s\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
                pytrace=False,
            )
    shown = f"exit {process.returncode}\n--- stdout\n{stdout}\n--- stderr\n{stderr}"
    assert process.returncode == 0, shown
    assert "Traceback (most recent call last)" not in stderr, shown
    missing = set(require) - patched_targets(stderr)
    assert not missing, f"not patched: {sorted(missing)}\n{shown}"
    lines = stdout.strip().splitlines()
    assert lines, f"the program printed no report\n{shown}"
    try:
        return json.loads(lines[-1])
    except json.JSONDecodeError:
        pytest.fail(f"the last line is not JSON\n{shown}", pytrace=False)
