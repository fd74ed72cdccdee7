"""Each example in ``examples/`` runs as written (briefly) and does what it says."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def run_example(name: str, *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(EXAMPLES / name), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_taskgroup_fanout_cancels_the_late_services_at_the_deadline() -> None:
    done = run_example("taskgroup_fanout.py", "--deadline", "0.25")
    assert done.returncode == 0, done.stderr
    last = done.stdout.splitlines()[-1]
    # The seeded delays put exactly one of the eight services past 250 ms.
    assert last.startswith("7 answered, 1 cancelled at the deadline (hit)"), done.stdout


def test_taskgroup_fanout_failure_cancels_the_group() -> None:
    done = run_example("taskgroup_fanout.py", "--fail")
    assert done.returncode == 1
    assert "ConnectionError('service-0 is down')" in done.stdout


def test_crawler_fetches_every_page_of_the_local_site() -> None:
    done = run_example("crawler.py", "--workers", "20", "--max-pages", "60", "--delay", "0.01")
    assert done.returncode == 0, done.stderr
    assert "crawled 60 pages (60 OK) with 20 workers" in done.stdout, done.stdout


def _default_sigint() -> None:
    # A test run started in the background inherits SIGINT ignored; the servers need Ctrl-C.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


class RunningExample:
    """An example server started in its own process; stopped with SIGINT (Ctrl-C)."""

    def __init__(self, name: str, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(EXAMPLES / name), "--port", "0", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            preexec_fn=_default_sigint,
        )
        assert self.proc.stdout is not None
        first = self.proc.stdout.readline()  # "... server on HOST:PORT"
        assert " on 127.0.0.1:" in first, first + self.proc.stderr.read()
        self.port = int(first.rsplit(":", 1)[1])

    def connect(self) -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=10)
        return sock

    def stop(self) -> tuple[str, str]:
        self.proc.send_signal(signal.SIGINT)
        try:
            out, err = self.proc.communicate(timeout=20)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
        assert self.proc.returncode == 0, err
        return out, err


def read_until(sock: socket.socket, marker: bytes) -> bytes:
    data = b""
    while marker not in data:
        chunk = sock.recv(4096)
        assert chunk, f"connection closed; got {data!r}"
        data += chunk
    return data


def test_echo_server_echoes_and_stops_on_ctrl_c() -> None:
    server = RunningExample("echo_server.py")
    try:
        clients = [server.connect() for _ in range(20)]
        for i, sock in enumerate(clients):
            sock.sendall(f"hello {i}\n".encode())
        for i, sock in enumerate(clients):
            assert read_until(sock, b"\n") == f"hello {i}\n".encode()
            sock.close()
    finally:
        out, _ = server.stop()
    assert "served 20 connections" in out


def test_chat_server_broadcasts_between_clients() -> None:
    server = RunningExample("chat_server.py")
    try:
        alice, bob = server.connect(), server.connect()
        read_until(alice, b"name? ")
        alice.sendall(b"alice\n")
        read_until(alice, b"welcome, alice")
        read_until(bob, b"name? ")
        bob.sendall(b"bob\n")
        read_until(bob, b"here: alice, bob\n")
        read_until(alice, b"* bob joined\n")
        alice.sendall(b"hi bob\n")
        assert b"alice: hi bob\n" in read_until(bob, b"hi bob\n")
        bob.sendall(b"/who\n")
        read_until(bob, b"here: alice, bob\n")
        bob.sendall(b"/quit\n")
        read_until(alice, b"* bob left\n")
        alice.close()
        bob.close()
    finally:
        server.stop()
