"""Spawn and join 100 000 greenlets that do nothing: CPU microseconds per greenlet.

The clock is ``time.process_time()`` in the worker, split into the spawn phase (create
the greenlets and schedule them) and the run+join phase (the hub starts each one, it
returns, the joiner collects it). A warm-up round of a tenth of the size runs first, in
the same process, so that imports, hub creation and first allocations are not counted;
then three measured rounds, of which the fastest is reported.
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
    collect,
    run_worker,
    scaled,
    script_main,
    worker_entry,
)

NAME = "spawn"

TOTAL = Metric("us_per_greenlet", "spawn + join, CPU µs per greenlet", False, 3)
SPAWN = Metric("spawn_us", "spawn phase, CPU µs per greenlet", False, 3)
JOIN = Metric("join_us", "run + join phase, CPU µs per greenlet", False, 3)

TARGETS = [Target(NAME, "spawn + join >= 1.5x gevent", at_least(TOTAL, 1.5))]


def _noop() -> None:
    pass


def _measure(
    spawn: Callable[[Callable[[], None]], Any],
    joinall: Callable[[Sequence[Any]], Any],
    params: dict[str, Any],
) -> Numbers:
    n = params["n"]
    joinall([spawn(_noop) for _ in range(max(1, n // 10))])  # warm-up
    best: tuple[float, float] | None = None
    for _ in range(params["rounds"]):
        gc.collect()
        t0 = time.process_time()
        greenlets = [spawn(_noop) for _ in range(n)]
        t1 = time.process_time()
        joinall(greenlets)
        t2 = time.process_time()
        del greenlets
        if best is None or t2 - t0 < sum(best):
            best = (t1 - t0, t2 - t1)
    assert best is not None
    spawn_s, join_s = best
    return {
        "us_per_greenlet": (spawn_s + join_s) / n * 1e6,
        "spawn_us": spawn_s / n * 1e6,
        "join_us": join_s / n * 1e6,
    }


def _greenwire(params: dict[str, Any]) -> Numbers:
    import greenwire as gw

    return _measure(gw.spawn, gw.joinall, params)


def _gevent(params: dict[str, Any]) -> Numbers:
    import gevent

    return _measure(gevent.spawn, gevent.joinall, params)


def _eventlet(params: dict[str, Any]) -> Numbers:
    import eventlet

    def joinall(threads: Sequence[Any]) -> None:
        for thread in threads:
            thread.wait()

    return _measure(eventlet.spawn, joinall, params)


WORKERS = {"greenwire": _greenwire, "gevent": _gevent, "eventlet": _eventlet}


def run(opts: Options) -> list[Table]:
    n = scaled(opts.quick, 100_000, 10_000)
    params = {"n": n, "rounds": scaled(opts.quick, INNER_ROUNDS, 1)}
    table = Table(
        NAME,
        f"Spawn + join of {n:,} greenlets doing nothing",
        [TOTAL, SPAWN, JOIN],
        note=(
            "CPU time of the worker process (time.process_time): best of"
            f" {params['rounds']} rounds per process, after a warm-up round."
        ),
    )
    return [collect(table, opts, lambda impl: run_worker(__file__, impl, params))]


if __name__ == "__main__":
    if not worker_entry(WORKERS):
        sys.exit(script_main(__doc__.splitlines()[0], run, TARGETS))
