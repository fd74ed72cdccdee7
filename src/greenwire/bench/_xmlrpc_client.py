"""The load generator: N concurrent ``xmlrpc.client.ServerProxy`` callers in one process.

``python _xmlrpc_client.py PARAMS_JSON``. The orchestrator starts K of these per
measurement, waits for each to print ``READY``, then writes ``go`` to all of them at once.
Each caller is a "thread" with its own ``ServerProxy`` (the article's client) calling one
method in a loop: for ``warmup`` seconds unmeasured, then for ``duration`` seconds
measured, then it stops starting calls. Calls still running are given ``grace`` seconds to
finish; those that do not are reported as unfinished. The last line of stdout is one JSON
object: the latencies (µs) of the calls that finished inside the measured window, errors
by kind over the whole run, and the process's CPU time inside the window.

In ``green`` mode (the default) the process first calls ``greenwire.monkey.patch_all()``,
so the callers are greenlets: 500 callers cost one OS thread and no GIL contention, which
keeps the client's CPU per call low and the same whatever the server does. ``threads``
mode runs the same code on plain OS threads, to check that the choice of client does not
change the ranking (see docs/xmlrpc-experiment.md).

Two kinds of caller, both checking every answer (``gen(n)`` and ``fetch(n)`` must return
``"0" * n``; a wrong answer counts as an error of kind ``WrongAnswer``):

- ``proxy``: the article's client, ``xmlrpc.client.ServerProxy``. It costs about as much
  CPU per call as the server (``http.client`` parses the headers with the ``email``
  package, expat parses the XML), so with the clients confined to one CPU it, not the
  server, would set the pace at 1000 clients.
- ``raw`` (the default): the same bytes on the wire, for a fraction of the CPU. The
  request ServerProxy would send (same method, headers, ``Accept-Encoding: gzip``) is
  built once; each call opens a connection, sends it, reads the response until the server
  closes (the server speaks HTTP/1.0), checks the status line, gunzips the body if the
  server compressed it, and compares it with the exact ``methodResponse`` the server must
  send. A body that differs is decoded with ``xmlrpc.client.loads`` to report a fault or
  the wrong value.
"""

from __future__ import annotations

import json
import sys
from typing import Any

#: Pause after a failed call, so a dead server does not turn the client into a busy loop.
ERROR_PAUSE = 0.01
#: Distinct error messages kept as examples.
ERROR_SAMPLES = 3


class _RawCaller:
    """One XML-RPC call as raw HTTP: ServerProxy's request bytes, an exact answer check."""

    def __init__(self, url: str, method_name: str, argument: int) -> None:
        import urllib.parse
        import xmlrpc.client

        parts = urllib.parse.urlsplit(url)
        if parts.scheme != "http" or parts.hostname is None or parts.port is None:
            raise SystemExit(f"raw client needs http://HOST:PORT, not {url!r}")
        self.address = (parts.hostname, parts.port)
        body = xmlrpc.client.dumps((argument,), method_name).encode("utf-8")
        headers = [
            f"POST {parts.path or '/RPC2'} HTTP/1.1",
            f"Host: {parts.netloc}",
            "Accept-Encoding: gzip",
            "Content-Type: text/xml",
            f"User-Agent: {xmlrpc.client.Transport.user_agent}",
            f"Content-Length: {len(body)}",
        ]
        self.request = ("\r\n".join(headers) + "\r\n\r\n").encode("ascii") + body
        answer = "0" * argument
        self.expected = xmlrpc.client.dumps((answer,), methodresponse=True).encode("utf-8")
        self.answer = answer

    def __call__(self) -> tuple[str, str] | None:
        """Make one call; None if the answer is right, else (error kind, what was wrong)."""
        import gzip
        import socket
        import xmlrpc.client

        with socket.create_connection(self.address) as conn:
            conn.sendall(self.request)
            chunks = []
            while True:
                data = conn.recv(65536)
                if not data:
                    break
                chunks.append(data)
        response = b"".join(chunks)
        head, separator, body = response.partition(b"\r\n\r\n")
        status = head.split(b"\r\n", 1)[0]
        if not separator or status.split(b" ", 2)[1:2] != [b"200"]:
            return ("BadResponse", f"bad HTTP response {response[:80]!r}")
        if b"\r\ncontent-encoding: gzip" in head.lower():
            body = gzip.decompress(body)
        if body == self.expected:
            return None
        try:
            (value,), _ = xmlrpc.client.loads(body)
        except xmlrpc.client.Fault as fault:
            return ("Fault", f"<Fault {fault.faultCode}: {fault.faultString[:60]!r}>")
        except Exception as exc:  # a malformed body is a wrong answer, reported
            return ("WrongAnswer", f"unreadable answer ({type(exc).__name__}: {exc})")
        return _checked(value, self.answer)


def run(params: dict[str, Any]) -> dict[str, Any]:
    """Wait for ``go`` on stdin, drive the server, return this process's figures."""
    # Imported after any patching: the callers must see the green socket and threads.
    import collections
    import socket
    import threading
    import time
    import xmlrpc.client

    url: str = params["url"]
    method_name: str = params["method"]
    argument: int = params["argument"]
    callers: int = params["callers"]
    warmup: float = params["warmup"]
    duration: float = params["duration"]
    grace: float = params["grace"]
    expected = "0" * argument
    # ServerProxy has no timeout of its own: its connections take the default one.
    socket.setdefaulttimeout(params["call_timeout"])

    raw_call = _RawCaller(url, method_name, argument) if params["kind"] == "raw" else None
    latencies: list[float] = []
    failures: list[tuple[str, str]] = []
    sys.stdout.write("READY\n")
    sys.stdout.flush()
    if sys.stdin.readline().strip() != "go":
        raise SystemExit("expected 'go' on stdin")
    start = time.perf_counter()
    window_start = start + warmup
    window_end = window_start + duration

    def call_in_a_loop() -> None:
        method = getattr(xmlrpc.client.ServerProxy(url), method_name)
        while True:
            began = time.perf_counter()
            if began >= window_end:
                return
            try:
                if raw_call is not None:
                    wrong = raw_call()
                else:
                    wrong = _checked(method(argument), expected)
            except Exception as exc:  # every failure is a data point, never fatal
                failure = (type(exc).__name__, repr(exc))
            else:
                if wrong is None:
                    finished = time.perf_counter()
                    if window_start <= finished < window_end:
                        latencies.append(finished - began)
                    continue
                failure = wrong
            # list.append is atomic, so OS-thread callers need no lock here.
            failures.append(failure)
            time.sleep(ERROR_PAUSE)

    threads = [threading.Thread(target=call_in_a_loop, daemon=True) for _ in range(callers)]
    for thread in threads:
        thread.start()
    time.sleep(max(0.0, window_start - time.perf_counter()))
    cpu0, wall0 = time.process_time(), time.perf_counter()
    time.sleep(max(0.0, window_end - time.perf_counter()))
    cpu1, wall1 = time.process_time(), time.perf_counter()
    give_up = window_end + grace
    for thread in threads:
        thread.join(max(0.0, give_up - time.perf_counter()))
    unfinished = sum(thread.is_alive() for thread in threads)
    errors = collections.Counter(kind for kind, _ in failures)
    samples = list(dict.fromkeys(message[:200] for _, message in failures))[:ERROR_SAMPLES]
    return {
        "latencies_us": [round(x * 1e6) for x in latencies],
        "errors": dict(errors),
        "error_samples": samples,
        "unfinished": unfinished,
        "cpu_s": cpu1 - cpu0,
        "window_s": wall1 - wall0,
    }


def _checked(answer: object, expected: str) -> tuple[str, str] | None:
    """None if a call returned the expected value, else (error kind, what it returned)."""
    return None if answer == expected else ("WrongAnswer", f"wrong answer {str(answer)[:60]!r}")


def main(argv: list[str]) -> None:
    """``PARAMS_JSON``: patch if asked, run, print the result as the last stdout line."""
    if len(argv) != 1:
        raise SystemExit("usage: _xmlrpc_client.py PARAMS_JSON")
    params = json.loads(argv[0])
    if params.get("mode") == "green":
        from greenwire import monkey

        monkey.patch_all()
    elif params.get("mode") != "threads":
        raise SystemExit(f"unknown client mode {params.get('mode')!r}: use green or threads")
    if params.get("kind") not in ("raw", "proxy"):
        raise SystemExit(f"unknown client kind {params.get('kind')!r}: use raw or proxy")
    from greenwire.bench._processes import raise_fd_limit

    raise_fd_limit(65536)
    result = run(params)
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()
    # Callers that never finished may still be parked; do not wait for them at exit.
    import os

    os._exit(0)


if __name__ == "__main__":
    main(sys.argv[1:])
