"""Clocks: the real monotonic clock and the virtual clock tests install."""

from __future__ import annotations

import time

import pytest

import greenwire
from greenwire._core import Hub, MonotonicClock, VirtualClock


def test_monotonic_clock_reads_time_monotonic() -> None:
    clock = MonotonicClock()
    before = time.monotonic()
    reading = clock.now()
    assert before <= reading <= time.monotonic()
    assert not clock.virtual and "Monotonic" in repr(clock)


def test_virtual_clock_moves_only_forward() -> None:
    clock = VirtualClock(start=10)
    assert clock.now() == 10
    clock.advance(2.5)
    assert clock.now() == 12.5
    clock.jump_to(11)  # the past: ignored
    assert clock.now() == 12.5
    clock.jump_to(20)
    assert clock.now() == 20
    with pytest.raises(ValueError):
        clock.advance(-1)
    assert "20.0" in repr(clock)


def test_virtual_time_jumps_only_when_everything_blocks(vclock: VirtualClock) -> None:
    seen: list[float] = []

    def busy() -> None:
        for _ in range(100):
            seen.append(vclock.now())
            greenwire.sleep(0)

    g = greenwire.spawn(busy)
    greenwire.sleep(5)
    g.join()
    # While a greenlet was runnable the clock stood still.
    assert set(seen) == {0.0}
    assert vclock.now() == 5


def test_virtual_clock_waits_for_outside_work(fresh_hub: Hub, vclock: VirtualClock) -> None:
    # While work is held outside the hub the clock does not jump to the next timer;
    # it waits (really) for the outside work to call back or for the timer's time.
    fresh_hub.hold()
    try:
        start = time.monotonic()
        greenwire.sleep(0.05)
        assert time.monotonic() - start >= 0.04
        assert vclock.now() == pytest.approx(0.05)
    finally:
        fresh_hub.release()


def test_autojump_threshold_gives_real_io_a_chance(fresh_hub: Hub) -> None:
    clock = VirtualClock(autojump_threshold=0.01)
    fresh_hub.set_clock(clock)
    start = time.monotonic()
    greenwire.sleep(1000)
    assert clock.now() == 1000
    assert time.monotonic() - start >= 0.009
