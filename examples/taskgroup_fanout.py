"""Fan out to several slow services at once, with a deadline, using a TaskGroup.

Each "service" is a function that waits (here: ``greenwire.sleep``, standing in for a
network call). The TaskGroup runs them side by side; leaving the ``with`` block waits for
all of them, and the first failure cancels the rest. ``move_on_after`` bounds the whole
fan-out: whatever has not answered by the deadline is cancelled.

Run:  python examples/taskgroup_fanout.py [--deadline SECONDS] [--fail]
"""

from __future__ import annotations

import argparse
import random
import time

import greenwire
from greenwire import GreenletExit, TaskGroup, TaskGroupError, move_on_after


def service(name: str, delay: float, fail: bool = False) -> str:
    """Answer after ``delay`` seconds (or fail), like a call to a remote service."""
    greenwire.sleep(delay)
    if fail:
        raise ConnectionError(f"{name} is down")
    return f"{name}: ok after {delay * 1000:.0f} ms"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deadline", type=float, default=0.25, help="seconds (default 0.25)")
    parser.add_argument("--services", type=int, default=8, help="how many (default 8)")
    parser.add_argument("--fail", action="store_true", help="make one service fail")
    args = parser.parse_args()

    rng = random.Random(7)
    delays = [rng.uniform(0.02, 0.4) for _ in range(args.services)]
    started = time.monotonic()
    children = []
    try:
        with move_on_after(args.deadline) as scope, TaskGroup() as tg:
            for i, delay in enumerate(delays):
                failing = args.fail and i == 0
                children.append(tg.spawn(service, f"service-{i}", delay, failing))
    except TaskGroupError as group:
        for exc in group.exceptions:
            print(f"failed: {exc!r} (the other services were cancelled)")
        return 1
    elapsed = time.monotonic() - started

    # A cancelled child ends quietly, holding the GreenletExit that stopped it.
    answered = [
        g.value for g in children if g.successful() and not isinstance(g.value, GreenletExit)
    ]
    for line in answered:
        print(line)
    late = len(children) - len(answered)
    print(
        f"{len(answered)} answered, {late} cancelled at the deadline"
        f" ({'hit' if scope.cancelled_caught else 'not hit'}); {elapsed * 1000:.0f} ms in all,"
        f" not the {sum(delays) * 1000:.0f} ms one after another would take"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
