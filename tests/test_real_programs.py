"""Unchanged threaded programs run patched: name resolution and a producer/consumer queue.

The programs use only ``socket``, ``threading`` and ``queue`` (the resolver one also asks
``greenwire.monkey.get_original`` for the unpatched ``getaddrinfo`` to compare with). See
``test_real_http_clients.py``, ``test_real_stdlib_clients.py`` and ``test_real_redis.py``
for programs talking to real servers.
"""

from __future__ import annotations

from pathlib import Path

from _real_programs import run_program

GETADDRINFO = """
import json
import socket
import threading

from greenwire import monkey

original_getaddrinfo = monkey.get_original("socket", "getaddrinfo")
LOOKERS = 100


def families_in_etc_hosts():
    # Each name in /etc/hosts -> the address families it has there.
    families = {}
    try:
        with open("/etc/hosts") as hosts:
            for line in hosts:
                fields = line.split("#", 1)[0].split()
                family = socket.AF_INET6 if fields and ":" in fields[0] else socket.AF_INET
                for name in fields[1:]:
                    families.setdefault(name, set()).add(family)
    except OSError:
        pass
    return families


# Only what /etc/hosts answers: asking for a family a name lacks there would go to DNS,
# off this machine.
in_hosts = families_in_etc_hosts()
hosts_names = [n for n in in_hosts if not n.startswith("localhost")][:3]
calls = []
for literal in ["127.0.0.1", "::1"]:
    family = socket.AF_INET6 if ":" in literal else socket.AF_INET
    calls += [
        (literal, 80),
        (literal, None, 0, socket.SOCK_STREAM),
        (literal, 8080, family, socket.SOCK_DGRAM),
        (literal, 443, family, socket.SOCK_STREAM, 0, socket.AI_CANONNAME),
    ]
# Errors that need no name service.
calls += [
    ("localhost", 80, 0, 0, 0, socket.AI_NUMERICHOST),
    ("127.0.0.1", "no-such-service-here"),
]
for name in ["localhost", *hosts_names]:
    calls += [(name, 80), (name, None, 0, socket.SOCK_STREAM)]
    for family in sorted(in_hosts.get(name, {socket.AF_INET})):
        calls += [
            (name, 8080, family, socket.SOCK_DGRAM),
            (name, 443, family, socket.SOCK_STREAM, 0, socket.AI_CANONNAME),
        ]


def outcome(getaddrinfo, call):
    try:
        return ("ok", getaddrinfo(*call))
    except OSError as e:
        return ("error", type(e).__name__, e.args)


expected = [outcome(original_getaddrinfo, call) for call in calls]
lock = threading.Lock()
in_flight = 0
peak = 0
wrong = []
everyone_started = threading.Barrier(LOOKERS)


def counted_getaddrinfo(*call):
    global in_flight, peak
    with lock:
        in_flight += 1
        peak = max(peak, in_flight)
    try:
        return socket.getaddrinfo(*call)
    finally:
        with lock:
            in_flight -= 1


def look_up(i):
    everyone_started.wait(timeout=20)
    # Each thread starts at a different call, so different lookups run at the same time.
    for k in range(len(calls)):
        n = (i + k) % len(calls)
        got = outcome(counted_getaddrinfo, calls[n])
        if got != expected[n]:
            wrong.append([i, repr(calls[n]), repr(got), repr(expected[n])])


threads = [threading.Thread(target=look_up, args=(i,)) for i in range(LOOKERS)]
for t in threads:
    t.start()
for t in threads:
    t.join()
print(json.dumps({
    "hosts_names": hosts_names, "calls": len(calls), "wrong": wrong[:10],
    "errors": [repr(c) for c, e in zip(calls, expected) if e[0] == "error"], "peak_in_flight": peak,
}))
"""


def test_getaddrinfo_from_100_threads_matches_the_original(tmp_path: Path) -> None:
    report = run_program(tmp_path, GETADDRINFO)
    assert report["wrong"] == []
    # localhost, 127.0.0.1 and ::1 (plus any /etc/hosts names), four ways each at least.
    assert report["calls"] >= 4 * (3 + len(report["hosts_names"]))
    assert len(report["errors"]) == 2, report["errors"]
    # Lookups that consult /etc/hosts run off the hub: other threads' lookups overlap.
    assert report["peak_in_flight"] > 1


PRODUCER_CONSUMER = """
import json
import queue
import threading

PRODUCERS, CONSUMERS, ITEMS = 4, 6, 10_000
jobs = queue.Queue(maxsize=64)
received = {c: [] for c in range(CONSUMERS)}
found_full = [0] * PRODUCERS
found_empty = [0] * CONSUMERS
errors = []


def produce(p):
    try:
        for n in range(p, ITEMS, PRODUCERS):
            if jobs.full():
                found_full[p] += 1
            # Half the producers wait with a timeout, half without.
            jobs.put(n, timeout=20) if p % 2 else jobs.put(n)
    except Exception as e:
        errors.append(repr(e))


def consume(c):
    try:
        while True:
            if jobs.empty():
                found_empty[c] += 1
            item = jobs.get(timeout=20) if c % 2 else jobs.get()
            jobs.task_done()
            if item is None:
                return
            received[c].append(item)
    except Exception as e:
        errors.append(repr(e))


producers = [threading.Thread(target=produce, args=(p,)) for p in range(PRODUCERS)]
consumers = [threading.Thread(target=consume, args=(c,)) for c in range(CONSUMERS)]
for t in consumers + producers:
    t.start()
for t in producers:
    t.join()
for _ in consumers:
    jobs.put(None)
jobs.join()
for t in consumers:
    t.join()
everything = sorted(item for items in received.values() for item in items)
print(json.dumps({
    "errors": errors,
    "exactly_once": everything == list(range(ITEMS)),
    "received": len(everything),
    "producers_found_full": sum(found_full),
    "consumers_found_empty": sum(found_empty),
    "alive": [t.name for t in producers + consumers if t.is_alive()],
    "unfinished": jobs.unfinished_tasks,
}))
"""


def test_thread_queue_producers_and_consumers_deliver_10000_items_once(tmp_path: Path) -> None:
    report = run_program(tmp_path, PRODUCER_CONSUMER)
    assert report["errors"] == []
    assert report["received"] == 10_000
    assert report["exactly_once"]
    assert report["alive"] == []
    assert report["unfinished"] == 0
    # Both sides blocked on the bounded queue and were woken by the other side.
    assert report["producers_found_full"] > 0
    assert report["consumers_found_empty"] > 0
