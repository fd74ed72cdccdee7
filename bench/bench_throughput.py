"""Bulk transfer over loopback TCP: sendall and recv on large buffers.

One process per implementation: a sender greenlet pushes ``total`` bytes through one
loopback TCP connection with ``sendall`` of ``chunk`` bytes, and a receiver greenlet in
the same process reads them with ``recv_into`` (or ``recv``) into a buffer of ``chunk``
bytes, counting them. Both ends are each library's cooperative socket: greenwire's
``greenwire.green.socket`` (the class patching installs), ``gevent.socket`` and
``eventlet.green.socket``. Plain threads with blocking sockets run the same workload as
a reference: there the kernel does the waiting and no hub is involved.

Two workloads: large buffers (1 MiB sendall, 1 MiB recv_into), where the cost is the
kernel's copying and the library must stay out of the way (few syscalls, no copies of
the data in Python); and 16 KiB buffers with ``recv``, where the library's per-call
overhead shows. Reported: CPU time per MiB moved (both ends, ``time.process_time``) and
MiB/s of wall time, best of three rounds per process after a warm-up.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any

from _common import (
    INNER_ROUNDS,
    Metric,
    Numbers,
    Options,
    Table,
    Target,
    collect,
    run_worker,
    scaled,
    script_main,
    worker_entry,
)

NAME = "throughput"
MIB = 1 << 20

LARGE_CPU = Metric("large_cpu_us_per_mib", "1 MiB buffers: CPU µs per MiB", False, 1)
LARGE_RATE = Metric("large_mib_s", "1 MiB buffers: MiB/s (wall)", True, 0)
SMALL_CPU = Metric("small_cpu_us_per_mib", "16 KiB recv(): CPU µs per MiB", False, 1)
SMALL_RATE = Metric("small_mib_s", "16 KiB recv(): MiB/s (wall)", True, 0)


def _transfer(
    sock_mod: Any,
    spawn: Callable[..., Any],
    join: Callable[[Any], Any],
    total: int,
    chunk: int,
    use_recv: bool,
) -> tuple[float, float]:
    """Move ``total`` bytes once; return (wall seconds, CPU seconds)."""
    listener = sock_mod.socket(sock_mod.AF_INET, sock_mod.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    client = sock_mod.create_connection(listener.getsockname())
    server, _ = listener.accept()
    listener.close()
    payload = memoryview(b"\x5a" * chunk)

    def send() -> None:
        left = total
        while left > 0:
            n = min(chunk, left)
            client.sendall(payload[:n])
            left -= n
        client.shutdown(sock_mod.SHUT_WR)

    def receive() -> int:
        got = 0
        if use_recv:
            while data := server.recv(chunk):
                got += len(data)
        else:
            buf = bytearray(chunk)
            while n := server.recv_into(buf):
                got += n
        return got

    t0, c0 = time.perf_counter(), time.process_time()
    sender = spawn(send)
    received = receive()
    join(sender)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    client.close()
    server.close()
    if received != total:
        raise RuntimeError(f"received {received} of {total} bytes")
    return wall, cpu


def _measure(
    sock_mod: Any, spawn: Callable[..., Any], join: Callable[[Any], Any], p: Any
) -> Numbers:
    numbers: Numbers = {}
    for prefix, chunk, use_recv in (("large", MIB, False), ("small", 16 * 1024, True)):
        total = p["mib"] * MIB
        _transfer(sock_mod, spawn, join, total // 8, chunk, use_recv)  # warm-up
        best = min(
            (_transfer(sock_mod, spawn, join, total, chunk, use_recv) for _ in range(p["rounds"])),
            key=lambda r: r[1],
        )
        numbers[f"{prefix}_cpu_us_per_mib"] = best[1] / p["mib"] * 1e6
        numbers[f"{prefix}_mib_s"] = p["mib"] / best[0]
    return numbers


def _greenwire(params: dict[str, Any]) -> Numbers:
    import greenwire as gw
    from greenwire.green import socket as gsocket

    return _measure(gsocket, gw.spawn, lambda g: g.get(), params)


def _gevent(params: dict[str, Any]) -> Numbers:
    import gevent
    from gevent import socket as gsocket

    return _measure(gsocket, gevent.spawn, lambda g: g.get(), params)


def _eventlet(params: dict[str, Any]) -> Numbers:
    import eventlet
    from eventlet.green import socket as esocket

    return _measure(esocket, eventlet.spawn, lambda g: g.wait(), params)


def _threads(params: dict[str, Any]) -> Numbers:
    import socket
    import threading

    def spawn(fn: Callable[[], None]) -> threading.Thread:
        errors: list[BaseException] = []

        def guarded() -> None:
            try:
                fn()
            except BaseException as e:
                errors.append(e)

        t = threading.Thread(target=guarded)
        t.errors = errors  # type: ignore[attr-defined]
        t.start()
        return t

    def join(t: threading.Thread) -> None:
        t.join()
        if t.errors:  # type: ignore[attr-defined]
            raise t.errors[0]  # type: ignore[attr-defined]

    return _measure(socket, spawn, join, params)


TARGETS: list[Target] = []

WORKERS = {"greenwire": _greenwire, "gevent": _gevent, "eventlet": _eventlet}
REFERENCE = {"threads": _threads}


def run(opts: Options) -> list[Table]:
    params = {"mib": scaled(opts.quick, 512, 64), "rounds": scaled(opts.quick, INNER_ROUNDS, 1)}
    table = Table(
        NAME,
        f"Loopback TCP bulk transfer of {params['mib']} MiB, sender and receiver greenlets"
        " in one process",
        [LARGE_CPU, LARGE_RATE, SMALL_CPU, SMALL_RATE],
        note=(
            "CPU time of the whole process per MiB moved (both ends), best of"
            f" {params['rounds']} rounds after a warm-up. For reference, plain threads with"
            " blocking sockets: run `bench_throughput.py --worker threads '{...}'`."
        ),
    )
    return [collect(table, opts, lambda impl: run_worker(__file__, impl, params))]


if __name__ == "__main__":
    if not worker_entry({**WORKERS, **REFERENCE}):
        sys.exit(script_main(__doc__.splitlines()[0], run, TARGETS))
