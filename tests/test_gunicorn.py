"""greenwire.gunicorn: the worker class under a real gunicorn master and real workers.

Each test starts ``python -m gunicorn -k greenwire.gunicorn.Worker`` on 127.0.0.1 with
a port the kernel picks, and a small application written to ``tmp_path``. Steps are
ordered by what the master and the workers log (read line by line from their shared
output) and by a *gate*: a listening socket of the test's that the application connects
to and then waits on until the test sends a byte, which holds a request in flight for
as long as the test needs. The master's process group is killed in every teardown.
"""

from __future__ import annotations

import http.client
import json
import os
import queue
import re
import signal
import socket
import ssl
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("gunicorn", reason="the gunicorn worker needs gunicorn installed")

pytestmark = pytest.mark.realtime

#: Seconds any single wait may take (generous: the machine may be busy).
WAIT = 30.0

APP = """
import json
import os
import socket
import threading

from greenwire import monkey

arrived = 0
all_here = threading.Event()  # green: the worker patched threading before this import


def hold(gate_port):
    # Tell the test's gate that this request is in flight, then wait for its release.
    with socket.create_connection(("127.0.0.1", gate_port), timeout=60) as gate:
        gate.sendall(b"%d\\n" % os.getpid())
        gate.recv(1)


def barrier(count):
    global arrived
    arrived += 1
    if arrived >= count:
        all_here.set()
    if not all_here.wait(30):
        raise RuntimeError("barrier timed out: requests are not served concurrently")


def app(environ, start_response):
    path, query = environ["PATH_INFO"], environ["QUERY_STRING"]
    if path == "/hold":
        hold(int(query))
    elif path == "/barrier":
        barrier(int(query))
    elif path == "/block":
        monkey.get_original("time", "sleep")(60)  # blocks the whole hub
    elif path == "/stream":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return (b"x" * 1000 for _ in range(int(query)))
    body = json.dumps({
        "pid": os.getpid(),
        "software": environ["SERVER_SOFTWARE"],
        "multithread": environ["wsgi.multithread"],
        "multiprocess": environ["wsgi.multiprocess"],
        "scheme": environ["wsgi.url_scheme"],
        "patched": monkey.is_module_patched("socket"),
        "socket": environ["gunicorn.socket"].getsockname()[0],
    }).encode()
    start_response("200 OK", [("Content-Type", "application/json")])
    return [body]
"""

HOOKS = """
def post_worker_init(worker):
    worker.log.info("READY %d", worker.pid)


def post_request(worker, req, environ, resp):
    worker.log.info("POST_REQUEST %s %s %s %s", req.method, req.path, resp.status, resp.sent)
"""

_READY = re.compile(r"READY (\d+)")
_EXITING = re.compile(r"Worker exiting \(pid: (\d+)\)")


class Master:
    """A gunicorn master running the test application; its output read line by line."""

    def __init__(self, directory: Path, *options: str) -> None:
        (directory / "app.py").write_text(textwrap.dedent(APP))
        (directory / "hooks.py").write_text(textwrap.dedent(HOOKS))
        command = [
            sys.executable,
            "-m",
            "gunicorn",
            "--bind",
            "127.0.0.1:0",
            "--worker-class",
            "greenwire.gunicorn.Worker",
            "--no-control-socket",
            "--chdir",
            str(directory),
            "--config",
            str(directory / "hooks.py"),
            *options,
            "app:app",
        ]
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.process = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            env=env,
            start_new_session=True,  # its own process group, killed whole in close()
        )
        self.output: list[str] = []
        self.ready: list[int] = []
        self.exited: list[int] = []
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        try:
            self.port = int(self.wait_for(r"Listening at: https?://127\.0\.0\.1:(\d+)").group(1))
        except BaseException:
            self.close()
            raise

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._lines.put(line)
        self._lines.put(None)

    def _pull(self, deadline: float, waiting_for: str) -> None:
        """Read one more line of output; fail, showing the output, at EOF or deadline."""
        remaining = deadline - _now()
        try:
            line = self._lines.get(timeout=remaining) if remaining > 0 else None
        except queue.Empty:
            line = None
        if line is None:
            raise AssertionError(f"no {waiting_for} in time; output:\n" + "".join(self.output))
        self.output.append(line)
        for regex, found in ((_READY, self.ready), (_EXITING, self.exited)):
            seen = regex.search(line)
            if seen:
                found.append(int(seen.group(1)))

    def wait_for(self, pattern: str, timeout: float = WAIT) -> re.Match[str]:
        """The first line of the output (read so far or still to come) matching ``pattern``."""
        regex = re.compile(pattern)
        deadline = _now() + timeout
        index = 0
        while True:
            while index < len(self.output):
                match = regex.search(self.output[index])
                index += 1
                if match:
                    return match
            self._pull(deadline, repr(pattern))

    def wait_ready(self, count: int) -> list[int]:
        """Wait until ``count`` workers in all are ready to serve; return their pids."""
        deadline = _now() + WAIT
        while len(self.ready) < count:
            self._pull(deadline, f"{count} ready workers")
        return self.ready[:count]

    def signal(self, signum: int) -> None:
        os.kill(self.process.pid, signum)

    def wait_exit(self, timeout: float = WAIT) -> int:
        """Wait for the master to exit (reading its output meanwhile); its exit status."""
        self._reader.join(timeout)
        while True:
            try:
                line = self._lines.get_nowait()
            except queue.Empty:
                break
            if line is not None:
                self.output.append(line)
        return self.process.wait(timeout)

    def close(self) -> None:
        try:  # the whole group: workers outlive a master that was killed
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.process.wait(WAIT)
        self._reader.join(WAIT)
        assert self.process.stdout is not None
        self.process.stdout.close()


_now = time.monotonic


@pytest.fixture
def start_master(tmp_path: Path) -> Iterator[Any]:
    """``start_master(*options)`` starts a master; every one is killed at teardown."""
    masters: list[Master] = []

    def start(*options: str) -> Master:
        master = Master(tmp_path, *options)
        masters.append(master)
        return master

    yield start
    for master in masters:
        master.close()


@pytest.fixture
def gate() -> Iterator[Gate]:
    g = Gate()
    yield g
    g.close()


class Gate:
    """Where ``/hold`` requests report in and wait to be released."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(WAIT)
        self.port: int = self.listener.getsockname()[1]
        self.held: list[socket.socket] = []

    def arrive(self, timeout: float = WAIT) -> int:
        """Wait for the next held request; return its worker's pid."""
        self.listener.settimeout(timeout)
        conn, _ = self.listener.accept()
        conn.settimeout(WAIT)
        self.held.append(conn)
        return int(conn.makefile("rb").readline())

    def release(self, count: int = 1) -> None:
        for conn in self.held[:count]:
            conn.sendall(b"x")
            conn.close()
        del self.held[:count]

    def close(self) -> None:
        for conn in self.held:
            conn.close()
        self.listener.close()


def status_of(port: int, path: str, headers: dict[str, str] | None = None) -> int:
    """The status of one request (with only ``headers`` besides Host) on a fresh connection."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=WAIT)
    try:
        conn.putrequest("GET", path, skip_accept_encoding=True)
        for name, value in (headers or {}).items():
            conn.putheader(name, value)
        conn.endheaders()
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


def get(
    port: int, path: str, *, context: ssl.SSLContext | None = None
) -> tuple[int, dict[str, str], Any]:
    """One request on a fresh connection: status, headers (lower-case names), JSON body."""
    if context is None:
        conn: http.client.HTTPConnection = http.client.HTTPConnection(
            "127.0.0.1", port, timeout=WAIT
        )
    else:
        conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=WAIT, context=context)
    try:
        conn.request("GET", path, headers={"X-Test": "probe"})
        response = conn.getresponse()
        body = response.read()
        headers = {name.lower(): value for name, value in response.getheaders()}
        return response.status, headers, json.loads(body) if body else None
    finally:
        conn.close()


# ------------------------------------------------------------------------ serving


def test_one_worker_serves_many_requests_concurrently(start_master: Any) -> None:
    master = start_master("--workers", "1")
    count = 40
    with ThreadPoolExecutor(count) as pool:
        results = list(pool.map(lambda _: get(master.port, f"/barrier?{count}"), range(count)))
    assert [status for status, _, _ in results] == [200] * count
    assert len({body["pid"] for _, _, body in results}) == 1
    body = results[0][2]
    assert body["multithread"] is True
    assert body["multiprocess"] is False
    assert body["patched"] is True
    assert body["software"].startswith("greenwire/") and "gunicorn/" in body["software"]


def test_environ_access_log_keepalive_off_and_usr1(start_master: Any) -> None:
    master = start_master(
        "--workers",
        "2",
        "--keep-alive",
        "0",
        "--access-logfile",
        "-",
        "--limit-request-fields",
        "20",
        "--limit-request-line",
        "100",
        "--limit-request-field_size",
        "60",
        "--access-logformat",
        'ACCESS %(h)s "%(r)s" %(s)s %(b)s %({x-test}i)s %({content-type}o)s %(p)s',
    )
    status, headers, body = get(master.port, "/page?q=1")
    assert status == 200
    assert body["multiprocess"] is True
    assert body["socket"] == "127.0.0.1"  # environ["gunicorn.socket"]: the client's socket
    assert headers["connection"] == "close"  # --keep-alive 0
    line = master.wait_for(r"^ACCESS .*").group(0)
    length = headers.get("content-length")
    assert line == (
        f'ACCESS 127.0.0.1 "GET /page?q=1 HTTP/1.1" 200 {length} probe application/json'
        f" <{body['pid']}>"
    )
    hook = master.wait_for(r"POST_REQUEST .*").group(0)
    assert hook == f"POST_REQUEST GET /page 200 OK {length}"
    assert status_of(master.port, "/", {f"X-H-{i}": "x" for i in range(30)}) == 431
    # --limit-request-line 100: "GET <target> HTTP/1.1" of 100 bytes passes, 101 do not
    assert status_of(master.port, "/" + "a" * 86) == 200
    assert status_of(master.port, "/" + "a" * 87) == 414
    # --limit-request-field-size 60: "name: value" and CRLF
    assert status_of(master.port, "/", {"X-Long": "v" * 50}) == 200
    assert status_of(master.port, "/", {"X-Long": "v" * 51}) == 431
    assert status_of(master.port, "/stream?3") == 200  # streamed: logged as sent
    line = master.wait_for(r'^ACCESS .*"GET /stream\?3 .*').group(0)
    assert " 200 3000 - text/plain " in line
    master.signal(signal.SIGUSR1)  # the master passes it on: workers reopen their logs
    master.wait_for(r"Handling signal: usr1")
    assert get(master.port, "/")[0] == 200


def test_tls(start_master: Any, tmp_path: Path) -> None:
    trustme = pytest.importorskip("trustme", reason="certificates for the TLS test")
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.cert_chain_pems[0].write_to_path(str(cert_file))
    cert.private_key_pem.write_to_path(str(key_file))
    master = start_master(
        "--workers", "1", "--certfile", str(cert_file), "--keyfile", str(key_file)
    )
    context = ssl.create_default_context()
    ca.configure_trust(context)
    status, _, body = get(master.port, "/", context=context)
    assert status == 200
    assert body["scheme"] == "https"


def test_worker_connections_caps_concurrency(start_master: Any, gate: Gate) -> None:
    master = start_master("--workers", "1", "--worker-connections", "3")
    with ThreadPoolExecutor(5) as pool:
        futures = [pool.submit(get, master.port, f"/hold?{gate.port}") for _ in range(5)]
        pids = {gate.arrive() for _ in range(3)}
        assert len(pids) == 1
        # The other two wait in the listen backlog, not accepted by the full worker.
        with pytest.raises(TimeoutError):
            gate.arrive(timeout=1.0)
        gate.release(1)
        gate.arrive()  # a slot freed: exactly one more comes in
        with pytest.raises(TimeoutError):
            gate.arrive(timeout=1.0)
        gate.release(3)
        gate.arrive()
        gate.release(1)
        assert [f.result(WAIT)[0] for f in futures] == [200] * 5


# ------------------------------------------------------------------------ lifecycle


def test_max_requests_replaces_workers(start_master: Any) -> None:
    master = start_master("--workers", "2", "--max-requests", "3", "--max-requests-jitter", "0")
    first = set(master.wait_ready(2))
    conn = http.client.HTTPConnection("127.0.0.1", master.port, timeout=WAIT)
    try:  # one keep-alive connection: one worker, whose third answer is its last
        said = []
        for _ in range(3):
            conn.request("GET", "/")
            response = conn.getresponse()
            response.read()
            said.append(response.getheader("Connection"))
    finally:
        conn.close()
    assert said == [None, None, "close"]
    pids = set()
    for _ in range(12):
        status, _, body = get(master.port, "/")
        assert status == 200
        pids.add(body["pid"])
    master.wait_for(r"Autorestarting worker after current request")
    assert len(pids) >= 4  # at most 3 requests per worker
    assert pids - first  # served by replacements the master started


def test_sighup_reloads_and_finishes_request_in_flight(start_master: Any, gate: Gate) -> None:
    master = start_master("--workers", "2")
    old = set(master.wait_ready(2))
    with ThreadPoolExecutor(1) as pool:
        held = pool.submit(get, master.port, f"/hold?{gate.port}")
        holder = gate.arrive()
        master.signal(signal.SIGHUP)
        new = set(master.wait_ready(4)) - old
        assert len(new) == 2
        master.wait_for(rf"Worker stopping gracefully \(pid:{holder}\): 1 connection")
        gate.release()
        status, _, body = held.result(WAIT)
    assert status == 200 and body["pid"] == holder
    master.wait_for(rf"Worker exiting \(pid: {holder}\)")
    assert get(master.port, "/")[2]["pid"] in new, "".join(master.output)


def test_sigterm_finishes_request_in_flight_then_exits(start_master: Any, gate: Gate) -> None:
    master = start_master("--workers", "2")
    with ThreadPoolExecutor(1) as pool:
        held = pool.submit(get, master.port, f"/hold?{gate.port}")
        holder = gate.arrive()
        master.signal(signal.SIGTERM)
        master.wait_for(rf"Worker stopping gracefully \(pid:{holder}\): 1 connection")
        gate.release()
        status, _, body = held.result(WAIT)
    assert status == 200 and body["pid"] == holder
    assert master.wait_exit() == 0


def test_sigquit_exits_without_waiting(start_master: Any, gate: Gate) -> None:
    master = start_master("--workers", "1", "--graceful-timeout", "60")
    with ThreadPoolExecutor(1) as pool:
        held = pool.submit(get, master.port, f"/hold?{gate.port}")
        gate.arrive()
        master.signal(signal.SIGQUIT)
        assert master.wait_exit() == 0  # long before the 60 s graceful timeout
        with pytest.raises((ConnectionError, http.client.HTTPException)):
            held.result(WAIT)


def test_timeout_kills_worker_that_blocks_the_hub(start_master: Any) -> None:
    master = start_master("--workers", "1", "--timeout", "2")
    (stuck,) = master.wait_ready(1)
    with ThreadPoolExecutor(1) as pool:
        blocked = pool.submit(get, master.port, "/block")
        master.wait_for(rf"WORKER TIMEOUT \(pid:{stuck}\)")
        with pytest.raises((ConnectionError, http.client.HTTPException)):
            blocked.result(WAIT)
    replacement = master.wait_ready(2)[1]
    assert get(master.port, "/")[2]["pid"] == replacement


def test_worker_exits_when_the_master_is_gone(start_master: Any) -> None:
    master = start_master("--workers", "1")
    (worker,) = master.wait_ready(1)
    master.signal(signal.SIGKILL)
    master.wait_for(rf"\[{worker}\] \[INFO\] Parent changed, shutting down")
    master.wait_for(rf"Worker exiting \(pid: {worker}\)")


# ------------------------------------------------------------------------ settings


@pytest.mark.parametrize(
    ("line", "field", "fields", "expected"),
    [
        (4094, 8190, 100, (4094, 8190, 100)),  # gunicorn's defaults
        (0, 0, 0, (None, 8190, 32768)),  # 0: no line limit; gunicorn's maxima
        (-1, -5, 40000, (8190, 8190, 32768)),
        (9000, 20000, 5, (8190, 20000, 5)),  # the line is capped, the field size is not
    ],
)
def test_request_limits_follow_gunicorns_rules(
    line: int, field: int, fields: int, expected: tuple[int | None, int, int]
) -> None:
    from types import SimpleNamespace

    from greenwire.server._gunicorn_worker import _request_limits

    cfg = SimpleNamespace(
        limit_request_line=line, limit_request_field_size=field, limit_request_fields=fields
    )
    max_line, max_field, max_headers, head = _request_limits(cfg)
    assert (max_line, max_field, max_headers) == expected
    assert head == (max_line or 1024 * 1024) + 2 + max_headers * (max_field + 2) + 2
