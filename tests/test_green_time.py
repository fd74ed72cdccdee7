"""The cooperative ``time.sleep``."""

from __future__ import annotations

import decimal
import fractions
import time as stdlib_time

import pytest

import greenwire
from _green_wait_helpers import FloatSub, Index
from greenwire import HubBlockingError, Timeout
from greenwire._core import Hub, VirtualClock
from greenwire.green import time as green_time


def test_declarations() -> None:
    assert green_time.__target__ == "time"
    assert green_time.__implements__ == ["sleep"]
    # The rest of the module is the stdlib's.
    assert green_time.monotonic is stdlib_time.monotonic
    with pytest.raises(AttributeError):
        green_time.no_such_thing  # noqa: B018


def test_sleepers_overlap_instead_of_queueing(vclock: VirtualClock) -> None:
    sleepers = [greenwire.spawn(green_time.sleep, 5) for _ in range(3)]
    greenwire.joinall(sleepers, raise_error=True)
    assert vclock.now() == pytest.approx(5)


def test_others_make_progress_while_one_sleeps(vclock: VirtualClock) -> None:
    progress: list[int] = []

    def worker() -> None:
        for i in range(3):
            progress.append(i)
            greenwire.sleep(0)

    sleeper = greenwire.spawn(green_time.sleep, 60)
    w = greenwire.spawn(worker)
    w.join()
    assert progress == [0, 1, 2]
    assert not sleeper.ready()
    assert vclock.now() == 0
    sleeper.join()
    assert vclock.now() == pytest.approx(60)


def test_sleep_zero_yields(fresh_hub: Hub) -> None:
    ran: list[str] = []
    greenwire.spawn(ran.append, "other")
    green_time.sleep(0)
    assert ran == ["other"]
    green_time.sleep(-0.0)  # negative zero is zero


@pytest.mark.parametrize(
    "value, expected",
    [(2, 2.0), (1.5, 1.5), (True, 1.0), (FloatSub(0.25), 0.25), (Index(3), 3.0), (1e-9, 1e-9)],
)
def test_accepts_what_the_stdlib_accepts(
    vclock: VirtualClock, value: object, expected: float
) -> None:
    green_time.sleep(value)  # type: ignore[arg-type]
    assert vclock.now() == pytest.approx(expected)


@pytest.mark.parametrize(
    "value",
    [
        -1,
        -1e-300,
        float("nan"),
        float("inf"),
        1e300,
        2**64,
        -(2**64),
        "1",
        None,
        decimal.Decimal("0.1"),
        fractions.Fraction(1, 2),
        Index(-1),
    ],
)
def test_rejects_like_the_stdlib(value: object) -> None:
    with pytest.raises(Exception) as real:
        stdlib_time.sleep(value)  # type: ignore[arg-type]
    with pytest.raises(type(real.value)) as green:
        green_time.sleep(value)  # type: ignore[arg-type]
    assert str(green.value) == str(real.value)


def test_timeout_interrupts_a_sleep(vclock: VirtualClock) -> None:
    with pytest.raises(Timeout), Timeout(1):
        green_time.sleep(10)
    assert vclock.now() == pytest.approx(1)
    assert len(greenwire.get_hub()._timers) == 0


def test_kill_interrupts_a_sleep(vclock: VirtualClock) -> None:
    g = greenwire.spawn(green_time.sleep, 100)
    greenwire.sleep(0)
    g.kill()
    assert isinstance(g.value, greenwire.GreenletExit)
    assert vclock.now() == 0


def test_sleeping_inside_the_hub_is_refused(fresh_hub: Hub, hub_errors: list) -> None:
    fresh_hub.run_callback(green_time.sleep, 1)
    greenwire.sleep(0)
    assert [type(e) for _, e in hub_errors] == [HubBlockingError]
