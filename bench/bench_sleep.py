"""``sleep(0)`` loops: CPU nanoseconds per ``sleep(0)``, with 1 and with 100 greenlets.

``sleep(0)`` is the cooperative yield: the greenlet goes to the back of the ready queue,
the hub runs whatever else is ready and comes back. With one greenlet this is the bare
round trip through the hub; with 100 greenlets each yield also rotates through the others.
The clock is ``time.process_time()`` of the worker, best of three rounds in each process;
lower is better.
"""

from __future__ import annotations

import gc
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

from _common import (
    INNER_ROUNDS,
    Metric,
    Numbers,
    Options,
    Table,
    Target,
    at_least,
    best_of,
    collect,
    run_worker,
    scaled,
    script_main,
    worker_entry,
)

NAME = "sleep"

ONE = Metric("ns_one", "1 greenlet, CPU ns per sleep(0)", False, 0)
MANY = Metric("ns_many", "100 greenlets, CPU ns per sleep(0)", False, 0)

TARGETS = [
    Target(NAME, "sleep(0), 1 greenlet >= 1.2x gevent", at_least(ONE, 1.2)),
    Target(NAME, "sleep(0), 100 greenlets >= 1.2x gevent", at_least(MANY, 1.2)),
]


def _yield_loop(
    sleep: Callable[[float], Any],
    spawn: Callable[..., Any],
    joinall: Callable[[Sequence[Any]], Any],
    greenlets: int,
    total: int,
) -> float:
    """CPU ns per ``sleep(0)`` when ``greenlets`` greenlets share ``total`` yields."""
    each = total // greenlets

    def yielder() -> None:
        for _ in range(each):
            sleep(0)

    gc.collect()
    t0 = time.process_time()
    joinall([spawn(yielder) for _ in range(greenlets)])
    return (time.process_time() - t0) / (each * greenlets) * 1e9


def _measure(
    sleep: Callable[[float], Any],
    spawn: Callable[..., Any],
    joinall: Callable[[Sequence[Any]], Any],
    params: dict[str, Any],
) -> Numbers:
    total, best = params["total"], params["best_of"]
    _yield_loop(sleep, spawn, joinall, 1, max(1, total // 10))  # warm-up
    return {
        "ns_one": best_of(best, lambda: _yield_loop(sleep, spawn, joinall, 1, total)),
        "ns_many": best_of(best, lambda: _yield_loop(sleep, spawn, joinall, 100, total)),
    }


def _greenwire(params: dict[str, Any]) -> Numbers:
    import greenwire as gw

    return _measure(gw.sleep, gw.spawn, gw.joinall, params)


def _gevent(params: dict[str, Any]) -> Numbers:
    import gevent

    return _measure(gevent.sleep, gevent.spawn, gevent.joinall, params)


def _eventlet(params: dict[str, Any]) -> Numbers:
    import eventlet

    def joinall(threads: Sequence[Any]) -> None:
        for thread in threads:
            thread.wait()

    return _measure(eventlet.sleep, eventlet.spawn, joinall, params)


WORKERS = {"greenwire": _greenwire, "gevent": _gevent, "eventlet": _eventlet}


def run(opts: Options) -> list[Table]:
    total = scaled(opts.quick, 200_000, 20_000)
    params = {"total": total, "best_of": scaled(opts.quick, INNER_ROUNDS, 1)}
    table = Table(
        NAME,
        f"sleep(0) loops ({total:,} yields per measurement)",
        [ONE, MANY],
        note=(
            "CPU time of the worker process (time.process_time): best of"
            f" {params['best_of']} rounds per process, after a warm-up loop."
        ),
    )
    return [collect(table, opts, lambda impl: run_worker(__file__, impl, params))]


if __name__ == "__main__":
    if not worker_entry(WORKERS):
        sys.exit(script_main(__doc__.splitlines()[0], run, TARGETS))
