"""The article's scripts in examples/ run as written: each server answers the client.

Each server example runs in its own process on a free port; the client example calls it
for a moment, then the server is stopped with SIGINT (Ctrl-C) and reports what it served.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def _default_sigint() -> None:
    # A test run started in the background inherits SIGINT ignored; the servers need Ctrl-C.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _client(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(EXAMPLES / "xmlrpc_client.py"), *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize(
    ("server", "client_mode", "os_threads"),
    [("single", "--green", "1"), ("threaded", "", "many"), ("greenwire", "--green", "1")],
)
def test_server_example_answers_the_client_example(
    server: str, client_mode: str, os_threads: str
) -> None:
    proc = subprocess.Popen(
        [
            sys.executable,
            str(EXAMPLES / f"xmlrpc_server_{server}.py"),
            "--port",
            "0",
            "--duration",
            "120",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_default_sigint,
    )
    try:
        assert proc.stdout is not None
        banner = proc.stdout.readline()
        assert "XML-RPC server on http://127.0.0.1:" in banner, banner + proc.stderr.read()
        port = banner.rsplit(":", 1)[1].strip().rstrip("/")
        args = ["--port", port, "--clients", "3", "--duration", "0.3"]
        client = _client(*args, *([client_mode] if client_mode else []))
        assert client.returncode == 0, client.stdout + client.stderr
        assert "8 = add(3, 5)" in client.stdout
        kind = "greenlets" if client_mode else "threads"
        assert f"3 clients ({kind})" in client.stdout and " 0 errors" in client.stdout
        assert "latency p50" in client.stdout
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, out + err
    served, threads = out.split("served ")[1].split(" calls")[0], out.split(" on ")[-1]
    calls = int(client.stdout.split(" s: ")[1].split(" calls")[0])
    assert int(served) == calls + 1  # every gen() the client counted, and its add()
    if os_threads == "1":
        assert threads.startswith("1 OS thread(s)")
    else:
        assert int(threads.split()[0]) > 1


def test_client_example_reports_an_unreachable_server() -> None:
    with socket.socket() as probe:  # a port nobody listens on (bound, never listening)
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
        client = _client("--port", str(port), "--duration", "0.1")
    assert client.returncode == 1
    assert f"cannot reach the server at http://127.0.0.1:{port}" in client.stderr


def test_client_example_refuses_bad_arguments() -> None:
    client = _client("--clients", "0")
    assert client.returncode == 2 and "--clients must be at least 1" in client.stderr
