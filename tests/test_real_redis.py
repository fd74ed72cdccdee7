"""Unchanged redis-py code runs patched against a real ``redis-server`` on loopback.

The test starts its own ``redis-server`` (no persistence, on a free 127.0.0.1 port) and
stops it afterwards. A missing ``redis-server`` fails the test, because CI installs it;
set ``GREENWIRE_ALLOW_NO_REDIS=1`` to skip instead on a machine without it.
"""

from __future__ import annotations

import os
import select
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from _real_programs import run_program

_READY = b"Ready to accept connections"


def _redis_server_binary() -> str:
    found = shutil.which("redis-server")
    if found is not None:
        return found
    if os.environ.get("GREENWIRE_ALLOW_NO_REDIS"):
        pytest.skip("redis-server is not installed and GREENWIRE_ALLOW_NO_REDIS is set")
    pytest.fail(
        "redis-server is not installed: the real-program tests start one "
        "(Debian: apt-get install redis-server); set GREENWIRE_ALLOW_NO_REDIS=1 to skip them",
        pytrace=False,
    )


def _free_loopback_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _wait_until_ready(server: subprocess.Popen[bytes], timeout: float) -> tuple[bool, str]:
    """Read the server's log until it accepts connections, exits, or time runs out."""
    assert server.stdout is not None
    fd = server.stdout.fileno()  # read unbuffered: select() knows nothing of a buffer
    log = b""
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        readable, _, _ = select.select([fd], [], [], left)
        if not readable:
            break
        chunk = os.read(fd, 65536)
        if not chunk:  # exited, e.g. the port was taken meanwhile
            break
        log += chunk
        if _READY in log:
            return True, log.decode(errors="replace")
    return False, log.decode(errors="replace")


@pytest.fixture
def redis_port(tmp_path: Path) -> Iterator[int]:
    """A private redis-server on loopback, stopped (and reaped) after the test."""
    binary = _redis_server_binary()
    attempts = []
    for _ in range(3):  # the free port can be taken between probing and binding
        port = _free_loopback_port()
        server = subprocess.Popen(
            [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(tmp_path), "--daemonize", "no"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        with server:
            ready, log = _wait_until_ready(server, timeout=15)
            if ready:
                try:
                    yield port
                finally:
                    server.terminate()
                    try:
                        server.wait(timeout=10)
                    except subprocess.TimeoutExpired:
                        server.kill()
                        server.wait()
                return
            server.kill()
            server.wait()
            attempts.append(log)
    pytest.fail("redis-server did not start:\n" + "\n---\n".join(attempts), pytrace=False)


BLPOP_CONSUMERS = """
import json
import sys
import threading
import time

import redis

CONSUMERS, VALUES = 100, 2000
client = redis.Redis(
    host="127.0.0.1", port=int(sys.argv[1]), socket_timeout=30, max_connections=CONSUMERS + 10
)
client.delete("jobs")
received = {}
errors = []
blocked_before_push = []


def consume(i):
    got = []
    try:
        while True:
            item = client.blpop(["jobs"], timeout=20)
            if item is None:
                errors.append("consumer %d timed out" % i)
                break
            if item[1] == b"stop":
                break
            got.append(int(item[1]))
    except Exception as e:
        errors.append(repr(e))
    received[i] = got


def push():
    try:
        # Order by what the server sees: every consumer parked in BLPOP.
        deadline = time.monotonic() + 20
        while client.info("clients")["blocked_clients"] < CONSUMERS:
            if time.monotonic() > deadline:
                errors.append("consumers never all blocked")
                break
            time.sleep(0.005)
        blocked_before_push.append(client.info("clients")["blocked_clients"])
        values = list(range(VALUES))
        for start in range(0, VALUES // 2, 50):
            client.rpush("jobs", *values[start:start + 50])
        with client.pipeline(transaction=False) as pipe:
            for value in values[VALUES // 2:]:
                pipe.rpush("jobs", value)
            pipe.execute()
        client.rpush("jobs", *["stop"] * CONSUMERS)
    except Exception as e:
        errors.append(repr(e))


consumers = [threading.Thread(target=consume, args=(i,)) for i in range(CONSUMERS)]
pusher = threading.Thread(target=push)
for t in consumers:
    t.start()
pusher.start()
for t in [*consumers, pusher]:
    t.join()
values = sorted(v for got in received.values() for v in got)
print(json.dumps({
    "errors": errors,
    "exactly_once": values == list(range(VALUES)),
    "received": len(values),
    "consumers_done": len(received),
    "consumers_with_values": sum(1 for got in received.values() if got),
    "blocked_before_push": blocked_before_push,
    "left_in_list": client.llen("jobs"),
}))
client.close()
"""


def test_100_threads_blocked_in_blpop_each_value_delivered_once(
    tmp_path: Path, redis_port: int
) -> None:
    report = run_program(tmp_path / "program", BLPOP_CONSUMERS, str(redis_port), timeout=45)
    assert report["errors"] == []
    assert report["consumers_done"] == 100
    assert report["received"] == 2000
    assert report["exactly_once"]
    assert report["left_in_list"] == 0
    # All 100 were parked in BLPOP on the server at once; redis then hands the first
    # 100 values to 100 different waiting clients.
    assert report["blocked_before_push"] == [100]
    assert report["consumers_with_values"] == 100
