"""Unchanged HTTP clients (requests, urllib3, http.client, urllib.request) run patched.

Each program starts a ``ThreadingMixIn`` ``http.server`` on 127.0.0.1 in the same
patched process and drives it from many ``threading.Thread`` clients, which the patch
turns into greenlets. Every response body names the request it answers, so a mixed-up
connection or a lost response shows. Overlap is proved by the server itself: it counts
the handlers running at once, and the ``/meet/`` requests wait at a ``threading.Barrier``
that only opens when every client is inside the server at the same time.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from _real_programs import run_program

#: The server the programs import (written next to them as ``local_http.py``).
LOCAL_HTTP = '''
"""A threaded HTTP/1.1 server that echoes what it was asked, optionally after a delay."""

import http.server
import socketserver
import threading
import time

import threaded


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        self._answer(b"GET " + self.path.encode())

    def do_POST(self):
        data = self.rfile.read(int(self.headers["Content-Length"]))
        self._answer(b"POST " + self.path.encode() + b" " + data)

    def _answer(self, body):
        server = self.server
        with server.lock:
            server.active += 1
            server.peak = max(server.peak, server.active)
        try:
            if self.path.startswith("/meet/"):
                server.barrier.wait(timeout=20)
            time.sleep(server.delay)
        finally:
            with server.lock:
                server.active -= 1
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format, *args):
        pass


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    request_queue_size = 512

    def __init__(self, delay, parties):
        super().__init__(("127.0.0.1", 0), Handler)
        self.delay = delay
        self.barrier = threading.Barrier(parties)
        self.lock = threading.Lock()
        self.active = 0
        self.peak = 0


def start(delay=0.0, parties=1):
    """Serve in a thread; return the server and its base URL."""
    server = threaded.serve(Server(delay, parties))
    return server, "http://127.0.0.1:%d" % server.server_address[1]


stop = threaded.stop
'''

SLOW_SERVER_CLIENTS = """
import json
import sys
import time

import local_http
from threaded import run_clients

CLIENTS, PER_CLIENT, DELAY = 50, 4, 0.1
library = sys.argv[1]
server, url = local_http.start(delay=DELAY)
bodies = {}

if library == "requests":
    import requests

    def client(i):
        with requests.Session() as session:
            for j in range(PER_CLIENT):
                response = session.get("%s/%d/%d" % (url, i, j), timeout=10)
                response.raise_for_status()
                bodies[i, j] = response.text

else:
    import urllib3

    pool = urllib3.PoolManager(maxsize=CLIENTS, timeout=10.0, retries=False)

    def client(i):
        for j in range(PER_CLIENT):
            response = pool.request("GET", "%s/%d/%d" % (url, i, j))
            assert response.status == 200, response.status
            bodies[i, j] = response.data.decode()

started = time.monotonic()
errors = run_clients(client, CLIENTS)
elapsed = time.monotonic() - started
local_http.stop(server)
wrong = [k for k, v in bodies.items() if v != "GET /%d/%d" % k]
print(json.dumps({
    "answered": len(bodies), "wrong": wrong, "errors": errors,
    "elapsed": elapsed, "peak": server.peak,
}))
"""


@pytest.mark.realtime
@pytest.mark.parametrize("library", ["requests", "urllib3"])
def test_200_slow_requests_from_50_threads_overlap(tmp_path: Path, library: str) -> None:
    report = run_program(tmp_path, SLOW_SERVER_CLIENTS, library, modules={"local_http": LOCAL_HTTP})
    assert report["errors"] == []
    assert report["answered"] == 200
    assert report["wrong"] == []
    # Serially the 200 answers take 20 s; four rounds of 50 at once take 0.4 s.
    assert report["elapsed"] < 1.9, report
    # All 50 clients send their first request at once, each answered only after 100 ms.
    assert report["peak"] >= 25, report


HTTP_CLIENT = """
import http.client
import json

import local_http
from threaded import run_clients

CLIENTS, PER_CLIENT = 30, 5
server, url = local_http.start(parties=CLIENTS)
port = server.server_address[1]
answers = {}


def client(i):
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("GET", "/meet/%d" % i)
        answers[i, "meet"] = connection.getresponse().read().decode()
        # The same keep-alive connection, alternating methods.
        for j in range(PER_CLIENT):
            if j % 2:
                body = ("payload %d-%d " % (i, j)) * 500
                connection.request("POST", "/post/%d/%d" % (i, j), body=body.encode())
            else:
                connection.request("GET", "/get/%d/%d" % (i, j))
            response = connection.getresponse()
            assert response.status == 200, response.status
            answers[i, j] = response.read().decode()
    finally:
        connection.close()


errors = run_clients(client, CLIENTS)
local_http.stop(server)
wrong = []
for (i, j), text in answers.items():
    if j == "meet":
        expected = "GET /meet/%d" % i
    elif j % 2:
        expected = "POST /post/%d/%d " % (i, j) + ("payload %d-%d " % (i, j)) * 500
    else:
        expected = "GET /get/%d/%d" % (i, j)
    if text != expected:
        wrong.append([i, j])
print(json.dumps({"answered": len(answers), "wrong": wrong, "errors": errors,
                  "peak": server.peak}))
"""


def test_http_client_keep_alive_connections_from_30_threads(tmp_path: Path) -> None:
    report = run_program(tmp_path, HTTP_CLIENT, modules={"local_http": LOCAL_HTTP})
    assert report["errors"] == []
    assert report["answered"] == 30 * 6
    assert report["wrong"] == []
    # The /meet/ barrier only opens with all 30 requests inside the server at once.
    assert report["peak"] >= 30


URLLIB_REQUEST = """
import json
import urllib.parse
import urllib.request

import local_http
from threaded import run_clients

CLIENTS = 40
server, url = local_http.start(parties=CLIENTS)
answers = {}


def client(i):
    with urllib.request.urlopen("%s/meet/%d" % (url, i), timeout=10) as response:
        answers[i, "meet"] = response.read().decode()
    query = urllib.parse.urlencode({"who": "client %d" % i, "n": i})
    with urllib.request.urlopen("%s/get?%s" % (url, query), timeout=10) as response:
        answers[i, "get"] = response.read().decode()
    data = urllib.parse.urlencode({"value": "x" * i}).encode()
    request = urllib.request.Request("%s/post/%d" % (url, i), data=data, method="POST")
    with urllib.request.urlopen(request, timeout=10) as response:
        answers[i, "post"] = response.read().decode()


errors = run_clients(client, CLIENTS)
local_http.stop(server)
wrong = []
for (i, kind), text in answers.items():
    expected = {
        "meet": "GET /meet/%d" % i,
        "get": "GET /get?" + urllib.parse.urlencode({"who": "client %d" % i, "n": i}),
        "post": "POST /post/%d value=" % i + "x" * i,
    }[kind]
    if text != expected:
        wrong.append([i, kind, text])
print(json.dumps({"answered": len(answers), "wrong": wrong, "errors": errors,
                  "peak": server.peak}))
"""


def test_urllib_request_from_40_threads(tmp_path: Path) -> None:
    report = run_program(tmp_path, URLLIB_REQUEST, modules={"local_http": LOCAL_HTTP})
    assert report["errors"] == []
    assert report["answered"] == 40 * 3
    assert report["wrong"] == []
    assert report["peak"] >= 40
