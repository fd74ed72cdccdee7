"""Handoffs between two greenlets through an Event and through a Queue.

* Event ping-pong: greenlet A sets B's event and waits on its own; B waits on its event,
  clears it and sets A's. One round is two handoffs (A to B, B to A), each a trip through
  the hub. Eventlet's Event has different semantics (``send`` once, ``reset`` before the
  next ``send``), so its loop uses those names for the same protocol.
* Queue ping-pong: the same protocol as the Event one through two unbounded queues: A
  puts into B's queue and gets from its own. Every item is a handoff.
* Queue(maxsize=1): a producer puts integers, a consumer gets them; every item is a
  handoff (the producer blocks until the consumer has taken the previous one).
* Queue() streaming: the same producer/consumer with an unbounded queue. The producer
  never blocks, so this row measures plain put/get, not handoffs; it has no target.

All numbers are per CPU second of the worker (``time.process_time()``), the best of three
rounds in each process: higher is better.
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

NAME = "handoff"

EVENT = Metric("event_khandoffs", "Event ping-pong, k handoffs / CPU s", True, 1)
QPING = Metric("queue_ping_khandoffs", "Queue ping-pong, k handoffs / CPU s", True, 1)
QUEUE1 = Metric("queue1_kitems", "Queue(maxsize=1), k items / CPU s", True, 1)
QUEUE = Metric("queue_kitems", "Queue() streaming (no handoff), k items / CPU s", True, 1)

TARGETS = [
    Target(NAME, "Event handoffs >= 1.5x gevent", at_least(EVENT, 1.5)),
    Target(NAME, "Queue ping-pong handoffs >= 1.5x gevent", at_least(QPING, 1.5)),
    Target(NAME, "Queue (maxsize=1) handoffs >= 1.5x gevent", at_least(QUEUE1, 1.5)),
]

Spawn = Callable[..., Any]
JoinAll = Callable[[Sequence[Any]], Any]


def _timed(spawn: Spawn, joinall: JoinAll, *functions: Callable[[], None]) -> float:
    """CPU seconds to run ``functions`` as greenlets until all of them finish."""
    gc.collect()
    t0 = time.process_time()
    joinall([spawn(fn) for fn in functions])
    return time.process_time() - t0


def _event_ping_pong(event_cls: Any, spawn: Spawn, joinall: JoinAll, rounds: int) -> float:
    """gevent-style Event (set / clear / wait); returns CPU seconds."""
    a_turn, b_turn = event_cls(), event_cls()

    def side_a() -> None:
        for _ in range(rounds):
            b_turn.set()
            a_turn.wait()
            a_turn.clear()

    def side_b() -> None:
        for _ in range(rounds):
            b_turn.wait()
            b_turn.clear()
            a_turn.set()

    return _timed(spawn, joinall, side_a, side_b)


def _queue_handoff(queue: Any, spawn: Spawn, joinall: JoinAll, items: int) -> float:
    """Producer/consumer over ``queue`` (put / get); returns CPU seconds."""

    def producer() -> None:
        put = queue.put
        for i in range(items):
            put(i)

    def consumer() -> None:
        get = queue.get
        for _ in range(items):
            get()

    return _timed(spawn, joinall, producer, consumer)


def _queue_ping_pong(queue_cls: Any, spawn: Spawn, joinall: JoinAll, rounds: int) -> float:
    """Two greenlets bounce an item through two queues; returns CPU seconds."""
    to_a, to_b = queue_cls(), queue_cls()

    def side_a() -> None:
        for i in range(rounds):
            to_b.put(i)
            to_a.get()

    def side_b() -> None:
        for _ in range(rounds):
            to_a.put(to_b.get())

    return _timed(spawn, joinall, side_a, side_b)


def _measure(
    event_ping_pong: Callable[[int], float],
    queue_cls: Callable[..., Any],
    spawn: Spawn,
    joinall: JoinAll,
    params: dict[str, Any],
) -> Numbers:
    rounds, items, best = params["rounds"], params["items"], params["best_of"]
    event_ping_pong(max(1, rounds // 10))  # warm-up
    event_cpu = best_of(best, lambda: event_ping_pong(rounds))
    qping_cpu = best_of(best, lambda: _queue_ping_pong(queue_cls, spawn, joinall, rounds))
    queue1_cpu = best_of(best, lambda: _queue_handoff(queue_cls(maxsize=1), spawn, joinall, items))
    queue_cpu = best_of(best, lambda: _queue_handoff(queue_cls(), spawn, joinall, items))
    return {
        "event_khandoffs": 2 * rounds / event_cpu / 1e3,
        "queue_ping_khandoffs": 2 * rounds / qping_cpu / 1e3,
        "queue_kitems": items / queue_cpu / 1e3,
        "queue1_kitems": items / queue1_cpu / 1e3,
    }


def _greenwire(params: dict[str, Any]) -> Numbers:
    import greenwire as gw
    from greenwire.event import Event
    from greenwire.queue import Queue

    def ping_pong(rounds: int) -> float:
        return _event_ping_pong(Event, gw.spawn, gw.joinall, rounds)

    return _measure(ping_pong, Queue, gw.spawn, gw.joinall, params)


def _gevent(params: dict[str, Any]) -> Numbers:
    import gevent
    from gevent.event import Event
    from gevent.queue import Queue

    def ping_pong(rounds: int) -> float:
        return _event_ping_pong(Event, gevent.spawn, gevent.joinall, rounds)

    return _measure(ping_pong, Queue, gevent.spawn, gevent.joinall, params)


def _eventlet(params: dict[str, Any]) -> Numbers:
    import eventlet
    from eventlet.event import Event
    from eventlet.queue import Queue

    def joinall(threads: Sequence[Any]) -> None:
        for thread in threads:
            thread.wait()

    def ping_pong(rounds: int) -> float:
        a_turn, b_turn = Event(), Event()

        def side_a() -> None:
            for _ in range(rounds):
                b_turn.send()
                a_turn.wait()
                a_turn.reset()

        def side_b() -> None:
            for _ in range(rounds):
                b_turn.wait()
                b_turn.reset()
                a_turn.send()

        return _timed(eventlet.spawn, joinall, side_a, side_b)

    return _measure(ping_pong, Queue, eventlet.spawn, joinall, params)


WORKERS = {"greenwire": _greenwire, "gevent": _gevent, "eventlet": _eventlet}


def run(opts: Options) -> list[Table]:
    params = {
        "rounds": scaled(opts.quick, 100_000, 10_000),
        "items": scaled(opts.quick, 100_000, 10_000),
        "best_of": scaled(opts.quick, INNER_ROUNDS, 1),
    }
    table = Table(
        NAME,
        f"Handoffs between two greenlets ({params['rounds']:,} Event rounds,"
        f" {params['items']:,} Queue items)",
        [EVENT, QPING, QUEUE1, QUEUE],
        note=(
            "Rates per CPU second of the worker process (time.process_time): best of"
            f" {params['best_of']} rounds per process, after a warm-up round."
        ),
    )
    return [collect(table, opts, lambda impl: run_worker(__file__, impl, params))]


if __name__ == "__main__":
    if not worker_entry(WORKERS):
        sys.exit(script_main(__doc__.splitlines()[0], run, TARGETS))
