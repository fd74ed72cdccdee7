"""Timer punctuality: 10 000 greenlets each sleep a random 0-50 ms; how late do they wake?

Every greenlet reads the wall clock (``time.monotonic()``) just before ``sleep(d)`` and
just after it returns; lateness is ``woken - (before + d)`` in milliseconds. The delays
come from one seeded generator, so every implementation sleeps exactly the same list.
All greenlets are spawned at once, so the first timers come due while the hub is still
starting the others: a hub that runs its whole ready queue before looking at the clock
shows it here. Lower is better; a negative minimum means a greenlet woke *early*.
"""

from __future__ import annotations

import random
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

from _common import (
    BASELINE,
    Check,
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

NAME = "timers"
MAX_DELAY = 0.050
SEED = 20240601

P50 = Metric("p50_ms", "p50 lateness, ms", False, 3)
P90 = Metric("p90_ms", "p90 lateness, ms", False, 3)
P99 = Metric("p99_ms", "p99 lateness, ms", False, 3)
MAX = Metric("max_ms", "max lateness, ms", False, 3)
MIN = Metric("min_ms", "min lateness, ms (< 0: woke early)", False, 3, compare=False)

#: "No worse than gevent" allows this much slack: epoll's timeout has 1 ms resolution,
#: so differences below half of it are noise.
TOLERANCE_MS = 0.5


def _no_worse_than_gevent(metrics: Sequence[Metric], slack_ms: float) -> Check:
    def check(table: Table) -> tuple[bool | None, str]:
        parts, ok = [], True
        for m in metrics:
            mine, base = table.median("greenwire", m.key), table.median(BASELINE, m.key)
            if mine is None or base is None:
                return None, "no data"
            ok = ok and mine <= base + slack_ms
            parts.append(f"{m.key.split('_')[0]} {mine:.2f} vs {base:.2f} ms")
        return ok, ", ".join(parts) + f" (allowed slack {slack_ms} ms)"

    return check


TARGETS = [
    Target(
        NAME,
        "timer lateness (p50/p90/p99) no worse than gevent",
        _no_worse_than_gevent([P50, P90, P99], TOLERANCE_MS),
    )
]


def _percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of an already sorted sequence."""
    index = min(len(sorted_values) - 1, max(0, round(q / 100 * len(sorted_values)) - 1))
    return sorted_values[index]


def _measure(
    sleep: Callable[[float], Any],
    spawn: Callable[..., Any],
    joinall: Callable[[Sequence[Any]], Any],
    params: dict[str, Any],
) -> Numbers:
    rng = random.Random(params["seed"])
    delays = [rng.uniform(0.0, params["max_delay"]) for _ in range(params["n"])]
    lateness: list[float] = []
    record = lateness.append
    monotonic = time.monotonic

    def sleeper(delay: float) -> None:
        before = monotonic()
        sleep(delay)
        record(monotonic() - before - delay)

    joinall([spawn(sleeper, 0.001) for _ in range(100)])  # warm-up
    lateness.clear()
    joinall([spawn(sleeper, d) for d in delays])
    lateness.sort()
    return {
        "p50_ms": _percentile(lateness, 50) * 1e3,
        "p90_ms": _percentile(lateness, 90) * 1e3,
        "p99_ms": _percentile(lateness, 99) * 1e3,
        "max_ms": lateness[-1] * 1e3,
        "min_ms": lateness[0] * 1e3,
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
    params = {"n": scaled(opts.quick, 10_000, 2_000), "max_delay": MAX_DELAY, "seed": SEED}
    table = Table(
        NAME,
        f"Timer lateness: {params['n']:,} greenlets sleeping 0-{MAX_DELAY * 1e3:.0f} ms",
        [P50, P90, P99, MAX, MIN],
        note=(
            "Wall-clock lateness (time.monotonic) of each wake-up, percentiles over all"
            ' greenlets of a run. "vs gevent" ratios of lateness are only meaningful when'
            " both are clearly above zero."
        ),
    )
    return [collect(table, opts, lambda impl: run_worker(__file__, impl, params))]


if __name__ == "__main__":
    if not worker_entry(WORKERS):
        sys.exit(script_main(__doc__.splitlines()[0], run, TARGETS))
