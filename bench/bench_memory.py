"""Memory per idle greenlet: RSS growth for 10 000 greenlets blocked on one event.

The worker reads its resident set size (``/proc/self/statm``) after a warm-up, spawns
10 000 greenlets that each wait on the same event, yields until every one of them has
started and parked, reads RSS again and divides the growth by the count. So the figure
includes the greenlet object, the library's bookkeeping, the Python frames of the waiting
call chain, and the slice of C stack greenlet saves to the heap for a parked greenlet.
Then the event is set and all of them are joined. Lower is better.
"""

from __future__ import annotations

import gc
import sys
from collections.abc import Callable, Sequence
from typing import Any

from _common import (
    Metric,
    Numbers,
    Options,
    Table,
    collect,
    rss_bytes,
    run_worker,
    scaled,
    script_main,
    worker_entry,
)

NAME = "memory"

PER_GREENLET = Metric("kib_per_greenlet", "RSS per idle greenlet, KiB", False, 2)
RSS_BEFORE = Metric("rss_before_mib", "RSS before spawning, MiB", False, 1, compare=False)

TARGETS: list[Any] = []


def _park_all(
    new_event: Callable[[], Any],
    release: Callable[[Any], None],
    sleep: Callable[[float], Any],
    spawn: Callable[..., Any],
    joinall: Callable[[Sequence[Any]], Any],
    n: int,
) -> Numbers:
    event = new_event()
    parked = [0]

    def waiter() -> None:
        parked[0] += 1
        event.wait()

    gc.collect()
    before = rss_bytes()
    greenlets = [spawn(waiter) for _ in range(n)]
    while parked[0] < n:
        sleep(0)
    sleep(0)  # the last ones started have now parked too
    gc.collect()
    after = rss_bytes()
    release(event)
    joinall(greenlets)
    return {"kib_per_greenlet": (after - before) / n / 1024, "rss_before_mib": before / 2**20}


def _measure(
    new_event: Callable[[], Any],
    release: Callable[[Any], None],
    sleep: Callable[[float], Any],
    spawn: Callable[..., Any],
    joinall: Callable[[Sequence[Any]], Any],
    n: int,
) -> Numbers:
    # Warm-up: a few waiters through the whole cycle, so the hub and code paths exist.
    _park_all(new_event, release, sleep, spawn, joinall, 100)
    return _park_all(new_event, release, sleep, spawn, joinall, n)


def _greenwire(params: dict[str, Any]) -> Numbers:
    import greenwire as gw
    from greenwire.event import Event

    return _measure(Event, Event.set, gw.sleep, gw.spawn, gw.joinall, params["n"])


def _gevent(params: dict[str, Any]) -> Numbers:
    import gevent
    from gevent.event import Event

    return _measure(Event, Event.set, gevent.sleep, gevent.spawn, gevent.joinall, params["n"])


def _eventlet(params: dict[str, Any]) -> Numbers:
    import eventlet
    from eventlet.event import Event

    def joinall(threads: Sequence[Any]) -> None:
        for thread in threads:
            thread.wait()

    return _measure(Event, Event.send, eventlet.sleep, eventlet.spawn, joinall, params["n"])


WORKERS = {"greenwire": _greenwire, "gevent": _gevent, "eventlet": _eventlet}


def run(opts: Options) -> list[Table]:
    n = scaled(opts.quick, 10_000, 2_000)
    table = Table(
        NAME,
        f"Memory per idle greenlet ({n:,} greenlets blocked on one event)",
        [PER_GREENLET, RSS_BEFORE],
        note="RSS from /proc/self/statm, after gc.collect(), before and after spawning.",
    )
    return [collect(table, opts, lambda impl: run_worker(__file__, impl, {"n": n}))]


if __name__ == "__main__":
    if not worker_entry(WORKERS):
        sys.exit(script_main(__doc__.splitlines()[0], run, TARGETS))
