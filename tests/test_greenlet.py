"""Greenlet: spawn, join, get, kill, links, wait/iwait, sleep, error reporting."""

from __future__ import annotations

from typing import Any

import pytest

import greenwire
from greenwire import Greenlet, GreenletExit, Timeout
from greenwire._core import Hub, LoopExit, VirtualClock


def test_spawn_runs_later_and_returns_value() -> None:
    ran: list[int] = []
    g = greenwire.spawn(lambda x, y=0: ran.append(x + y) or x + y, 1, y=2)
    assert not ran and not g.ready() and g.started
    assert g.get() == 3
    assert ran == [3]
    assert g.ready() and g.successful() and g.value == 3 and g.exception is None
    assert g.dead


def test_get_reraises_with_traceback(hub_errors: list) -> None:
    def fail() -> None:
        raise KeyError("k")

    g = greenwire.spawn(fail)
    with pytest.raises(KeyError) as info:
        g.get()
    assert any(entry.name == "fail" for entry in info.traceback)
    assert not g.successful() and isinstance(g.exception, KeyError)
    assert hub_errors == []  # get() was waiting: not reported a second time
    with pytest.raises(KeyError):
        g.get()


def test_unobserved_failure_is_reported_once(hub_errors: list) -> None:
    def fail() -> None:
        raise ValueError("nobody is looking")

    g = greenwire.spawn(fail)
    greenwire.sleep(0)
    greenwire.sleep(0)
    assert [(c, type(e)) for c, e in hub_errors] == [(g, ValueError)]
    g.join()
    assert len(hub_errors) == 1


def test_default_error_handler_prints_traceback(
    fresh_hub: Hub, capsys: pytest.CaptureFixture[str]
) -> None:
    from greenwire._core.hub import _print_error

    fresh_hub.error_handler = _print_error

    def explode() -> None:
        raise RuntimeError("kaboom")

    g = greenwire.spawn(explode)
    g.join()
    err = capsys.readouterr().err
    assert "Traceback" in err and "kaboom" in err and "explode" in err
    assert "failed with RuntimeError" in err


def test_system_exit_in_greenlet_reaches_main() -> None:
    def leave() -> None:
        raise SystemExit(3)

    greenwire.spawn(leave)
    with pytest.raises(SystemExit) as info:
        greenwire.sleep(0)
        greenwire.sleep(0)
    assert info.value.code == 3


def test_get_nonblocking_and_timeout(vclock: VirtualClock) -> None:
    g = greenwire.spawn(greenwire.sleep, 10)
    with pytest.raises(Timeout):
        g.get(block=False)
    with pytest.raises(Timeout):
        g.get(timeout=1)
    assert vclock.now() == 1
    g.join(timeout=1)
    assert not g.ready() and vclock.now() == 2
    g.join()
    assert g.ready() and vclock.now() == 10


def test_join_self_is_an_error() -> None:
    def selfjoin() -> None:
        greenwire.getcurrent().join()  # type: ignore[attr-defined]

    with pytest.raises(RuntimeError, match="join itself"):
        greenwire.spawn(selfjoin).get()


def test_kill_before_start_never_runs(hub_errors: list) -> None:
    ran: list[int] = []
    g = greenwire.spawn(ran.append, 1)
    g.kill()
    assert g.ready() and g.successful() and isinstance(g.value, GreenletExit)
    greenwire.sleep(0)
    assert ran == []
    unstarted = Greenlet(ran.append, 2)
    unstarted.kill(ValueError("never"), block=False)
    assert isinstance(unstarted.exception, ValueError)
    unstarted.start()
    greenwire.sleep(0)
    assert ran == []
    assert [(c, type(e)) for c, e in hub_errors] == [(unstarted, ValueError)]


def test_kill_running_greenlet_runs_its_cleanup(vclock: VirtualClock) -> None:
    cleaned: list[str] = []

    def worker() -> None:
        try:
            greenwire.sleep(100)
        finally:
            cleaned.append("cleanup")

    g = greenwire.spawn(worker)
    greenwire.sleep(0)
    g.kill()
    assert cleaned == ["cleanup"]
    assert isinstance(g.value, GreenletExit) and g.successful()
    assert vclock.now() == 0


def test_kill_with_custom_exception(hub_errors: list) -> None:
    g = greenwire.spawn(greenwire.sleep, 100)
    greenwire.sleep(0)
    g.kill(ValueError("stop"))
    assert isinstance(g.exception, ValueError)
    # Killing with a real error is reported like any failure nobody waited on.
    assert [type(e) for _, e in hub_errors] == [ValueError]


def test_kill_nonblocking_then_join() -> None:
    g = greenwire.spawn(greenwire.sleep, 100)
    greenwire.sleep(0)
    g.kill(block=False)
    assert not g.ready()
    g.join()
    assert g.ready()
    g.kill()  # killing a dead greenlet does nothing


def test_kill_timeout_when_victim_resists(vclock: VirtualClock) -> None:
    def stubborn() -> None:
        try:
            greenwire.sleep(100)
        except GreenletExit:
            greenwire.sleep(5)  # cleanup that takes a while

    g = greenwire.spawn(stubborn)
    greenwire.sleep(0)
    g.kill(timeout=1)
    assert not g.ready() and vclock.now() == 1
    g.join()
    assert g.ready() and vclock.now() == 5


def test_kill_self_raises_immediately() -> None:
    def suicide() -> str:
        try:
            greenwire.getcurrent().kill()  # type: ignore[attr-defined]
        except GreenletExit:
            return "raised"
        return "not raised"

    assert greenwire.spawn(suicide).get() == "raised"


def test_spawn_later_and_start_later(vclock: VirtualClock) -> None:
    g = greenwire.spawn_later(5, vclock.now)
    assert g.get() == 5
    h: Greenlet[float] = Greenlet(vclock.now)
    h.start_later(2)
    h.start_later(100)  # already scheduled: ignored
    assert h.get() == 7
    k = greenwire.spawn_later(10, vclock.now)
    k.kill()
    greenwire.sleep(20)
    assert isinstance(k.value, GreenletExit)


def test_subclass_overrides_run() -> None:
    class Doubler(Greenlet[int]):
        def _run(self, x: int) -> int:
            return 2 * x

    assert Doubler.spawn(None, 21).get() == 42  # type: ignore[arg-type]
    with pytest.raises(NotImplementedError):
        Greenlet.spawn(None).get()  # type: ignore[arg-type]


def test_links() -> None:
    seen: list[tuple[str, Any]] = []
    ok = greenwire.spawn(lambda: "v")
    ok.link(lambda g: seen.append(("link", g.value)))
    ok.link_value(lambda g: seen.append(("value", g.value)))
    ok.link_exception(lambda g: seen.append(("exc", g)))
    ok.rawlink(lambda g: seen.append(("raw", g.value)))
    removed = seen.append
    ok.link(removed)
    ok.unlink(removed)
    ok.join()
    greenwire.sleep(0)
    greenwire.sleep(0)
    assert sorted(seen) == [("link", "v"), ("raw", "v"), ("value", "v")]


def test_link_exception_and_link_after_done(hub_errors: list) -> None:
    seen: list[str] = []

    def fail() -> None:
        raise OSError("x")

    bad = greenwire.spawn(fail)
    bad.link_exception(lambda g: seen.append("exc"))
    bad.link_value(lambda g: seen.append("value"))
    bad.join()
    late = greenwire.spawn(lambda: 1)
    late.join()
    late.rawlink(lambda g: seen.append("late"))
    greenwire.sleep(0)
    greenwire.sleep(0)
    assert sorted(seen) == ["exc", "late"]
    # Linked, but not by someone consuming the result: still reported.
    assert [type(e) for _, e in hub_errors] == [OSError]


def test_failing_link_callback_is_reported(hub_errors: list) -> None:
    g = greenwire.spawn(lambda: 1)
    g.rawlink(lambda _: 1 / 0)
    g.join()
    greenwire.sleep(0)
    assert [type(e) for _, e in hub_errors] == [ZeroDivisionError]


def test_joinall_wait_iwait(vclock: VirtualClock, hub_errors: list) -> None:
    gs = [greenwire.spawn(greenwire.sleep, d) for d in (3, 1, 2)]
    order = [gs.index(g) for g in greenwire.iwait(gs)]
    assert order == [1, 2, 0]
    more = [greenwire.spawn(greenwire.sleep, d) for d in (3, 1, 2)]
    assert greenwire.wait(more, count=1) == [more[1]]
    assert greenwire.wait(more, timeout=0.5) == [more[1]]
    done = greenwire.joinall(more)
    assert set(done) == set(more)

    def fail() -> None:
        raise LookupError

    bad = [greenwire.spawn(greenwire.sleep, 1), greenwire.spawn(fail)]
    with pytest.raises(LookupError):
        greenwire.joinall(bad, raise_error=True)
    # Without raise_error the finished greenlets come back in the order given.
    assert greenwire.joinall(bad, timeout=5) == bad
    late = [greenwire.spawn(greenwire.sleep, 100), greenwire.spawn(greenwire.sleep, 1)]
    assert greenwire.joinall(late, timeout=5) == [late[1]]
    assert vclock.now() == 12
    greenwire.killall(late)
    # joinall is not get(): the failure was also reported, once.
    assert [type(e) for _, e in hub_errors] == [LookupError]


def test_wait_with_no_objects_waits_for_everything(vclock: VirtualClock) -> None:
    finished: list[int] = []
    for d in (1, 2, 3):
        greenwire.spawn(lambda d=d: (greenwire.sleep(d), finished.append(d)))
    assert greenwire.wait() == []
    assert finished == [1, 2, 3]
    greenwire.spawn(greenwire.sleep, 10)
    assert greenwire.wait(timeout=1) == []
    assert vclock.now() == 4
    greenwire.wait()


def test_killall(vclock: VirtualClock) -> None:
    gs = [greenwire.spawn(greenwire.sleep, 100) for _ in range(5)]
    greenwire.sleep(0)
    greenwire.killall(gs)
    assert all(g.ready() and isinstance(g.value, GreenletExit) for g in gs)
    gs = [greenwire.spawn(greenwire.sleep, 100) for _ in range(3)]
    greenwire.sleep(0)
    greenwire.killall(gs, block=False)
    assert not any(g.ready() for g in gs)
    greenwire.joinall(gs)


def test_sleep_zero_yields_round_robin() -> None:
    order: list[str] = []

    def worker(name: str) -> None:
        for i in range(3):
            order.append(f"{name}{i}")
            greenwire.sleep(0)

    greenwire.joinall([greenwire.spawn(worker, "a"), greenwire.spawn(worker, "b")])
    assert order == ["a0", "b0", "a1", "b1", "a2", "b2"]


def test_sleep_survives_spurious_wakeups(vclock: VirtualClock, fresh_hub: Hub) -> None:
    def sleeper() -> float:
        greenwire.sleep(10)
        return vclock.now()

    g = greenwire.spawn(sleeper)
    greenwire.sleep(0)
    fresh_hub.run_callback(g.switch)  # a stale wake-up must not end the sleep early
    assert g.get() == 10


def test_name_and_repr() -> None:
    def job() -> None:
        greenwire.sleep(0)

    g: Greenlet[None] = Greenlet(job)
    assert "job" in g.name and "new" in repr(g)
    g.name = "custom"
    assert g.name == "custom"
    g.start()
    assert "scheduled" in repr(g)
    greenwire.sleep(0)
    assert "running" in repr(g)
    g.join()
    assert "done" in repr(g)


def test_main_waiting_on_stuck_greenlet_gets_loop_exit(fresh_hub: Hub) -> None:
    g = greenwire.spawn(fresh_hub.park)
    with pytest.raises(LoopExit):
        g.get()
    g.kill()


def test_ten_thousand_greenlets(vclock: VirtualClock) -> None:
    gs = [greenwire.spawn(greenwire.sleep, i % 50 / 1000) for i in range(10_000)]
    greenwire.joinall(gs)
    assert all(g.successful() for g in gs)
    assert vclock.now() == pytest.approx(0.049)


@pytest.mark.realtime
def test_real_sleeps_are_never_early() -> None:
    import time

    def sleeper(delay: float) -> float:
        start = time.monotonic()
        greenwire.sleep(delay)
        return time.monotonic() - start

    gs = [greenwire.spawn(sleeper, d) for d in (0.02, 0.01, 0.03)]
    greenwire.joinall(gs)
    for g, wanted in zip(gs, (0.02, 0.01, 0.03), strict=True):
        assert g.value is not None
        assert wanted <= g.value < wanted + 2.0  # generous: the machine may be busy
