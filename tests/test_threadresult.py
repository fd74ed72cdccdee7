"""ThreadResult: values and errors, waiting, timeouts, kills, links, error reporting.

Calls block on real locks the test releases (see _threadpool_helpers); no sleeps order
anything, and every test joins its threads.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest

import greenwire
from _threadpool_helpers import REAL_WAIT, RealEvent, no_threads_left
from greenwire import Timeout
from greenwire._core import Hub, VirtualClock, get_hub
from greenwire.threadpool import ThreadPool, ThreadResult


@pytest.fixture(autouse=True)
def every_thread_joined(fresh_hub: Hub) -> Iterator[None]:
    with no_threads_left():
        yield


@pytest.fixture
def pool() -> Iterator[ThreadPool]:
    p = ThreadPool(4)
    yield p
    assert p.shutdown(cancel_pending=True, timeout=REAL_WAIT)
    assert p.size == 0


# --------------------------------------------------------------------------- outcome


def test_submit_returns_a_waitable_result(pool: ThreadPool) -> None:
    r = pool.spawn(pow, 2, 10)
    assert isinstance(r, ThreadResult)
    assert not r.ready() and r.value is None and not r.successful()
    assert "pending" in repr(r)
    assert r.get() == 1024
    assert r.ready() and r.successful() and r.value == 1024 and r.exception is None
    assert r.wait() is True and r.get(block=False) == 1024
    assert "done" in repr(r)


def test_failed_result_keeps_its_exception(pool: ThreadPool) -> None:
    r = pool.submit(int, "not a number")
    assert r.exception is None  # not before it reaches the hub, even if the thread is done
    assert r.wait() is True
    assert not r.successful() and r.value is None
    assert isinstance(r.exception, ValueError)
    assert "failed with ValueError" in repr(r)
    for _ in range(2):
        with pytest.raises(ValueError):
            r.get()


def test_waiting_from_another_os_thread_is_refused(pool: ThreadPool) -> None:
    gate = RealEvent()
    r = pool.submit(gate.wait)
    errors: list[BaseException] = []

    def other() -> None:
        try:
            r.wait()
        except RuntimeError as e:
            errors.append(e)

    t = threading.Thread(target=other)
    t.start()
    t.join(REAL_WAIT)
    gate.set()
    assert r.get() is True
    assert len(errors) == 1 and "submitting thread" in str(errors[0])


# ------------------------------------------------------------- kills and timeouts


def test_killed_waiter_leaves_the_call_running_and_drops_its_result() -> None:
    pool = ThreadPool(1)
    gate = RealEvent()
    done = RealEvent()

    def call() -> str:
        gate.wait()
        done.set()
        return "nobody wants me"

    g = greenwire.spawn(pool.apply, call)
    greenwire.sleep(0)  # g submits and parks
    assert get_hub().statistics().keepalive == 1
    g.kill()
    assert g.ready() and isinstance(g.value, greenwire.GreenletExit)
    gate.set()
    assert pool.shutdown(timeout=REAL_WAIT)  # waits cooperatively; the result arrives first
    assert done.wait()
    assert pool.statistics().completed == 1
    assert get_hub().statistics().keepalive == 0  # delivered (and dropped) in the hub


def test_failure_nobody_waits_for_is_reported_once(hub_errors: list[Any]) -> None:
    pool = ThreadPool(1)
    gate = RealEvent()

    def call() -> None:
        gate.wait()
        raise LookupError("nobody looked")

    g = greenwire.spawn(pool.apply, call)
    greenwire.sleep(0)
    g.kill()
    gate.set()
    assert pool.shutdown(timeout=REAL_WAIT)
    assert len(hub_errors) == 1
    context, exc = hub_errors[0]
    assert isinstance(context, ThreadResult) and isinstance(exc, LookupError)
    with pytest.raises(LookupError):  # still there for anyone who asks later
        context.get()
    assert len(hub_errors) == 1


def test_success_nobody_waits_for_is_dropped_silently(pool: ThreadPool) -> None:
    r = pool.submit(int, "9")
    assert pool.shutdown(timeout=REAL_WAIT)
    assert r.ready() and r.value == 9


def test_get_times_out_and_the_call_completes_later(vclock: VirtualClock) -> None:
    pool = ThreadPool(1)
    gate = RealEvent()
    r = pool.submit(gate.wait)
    with pytest.raises(Timeout):
        r.get(block=False)
    # With a thread in flight the virtual clock waits in real time: keep timeouts tiny.
    with pytest.raises(Timeout):
        r.get(timeout=0.01)
    assert r.wait(timeout=0.01) is False
    assert greenwire.wait([r], timeout=0.01) == []
    assert not r._waiters and not r._links and r._consumers == 0
    gate.set()
    assert r.get() is True
    assert pool.shutdown(timeout=REAL_WAIT)


def test_deadline_scope_around_apply(vclock: VirtualClock) -> None:
    pool = ThreadPool(1)
    gate = RealEvent()
    with greenwire.move_on_after(0.01) as scope:
        pool.apply(gate.wait)
    assert scope.cancelled_caught
    gate.set()
    assert pool.shutdown(timeout=REAL_WAIT)
    assert get_hub().statistics().keepalive == 0


# ------------------------------------------------------------ waiting on results


def test_wait_and_iwait_see_results_in_completion_order(pool: ThreadPool) -> None:
    first_gate = RealEvent()
    slow = pool.submit(lambda: first_gate.wait() and "slow")
    fast = pool.submit(lambda: "fast")
    order = []
    for r in greenwire.iwait([slow, fast]):
        order.append(r.get())
        first_gate.set()
    assert order == ["fast", "slow"]
    assert greenwire.wait([slow, fast]) == [slow, fast]


def test_rawlink_and_unlink(pool: ThreadPool, hub_errors: list[Any]) -> None:
    seen: list[Any] = []
    r = pool.submit(int, "1")
    r.rawlink(seen.append)
    r.rawlink(str)
    r.unlink(str)
    r.unlink(repr)  # never linked: harmless
    assert r.get() == 1
    greenwire.sleep(0)
    assert seen == [r]

    def broken(_: object) -> None:
        raise RuntimeError("bad link")

    r.rawlink(seen.append)  # already ready: runs soon, in the hub
    r.rawlink(broken)
    greenwire.sleep(0)
    assert seen == [r, r]
    assert [type(e) for _, e in hub_errors] == [RuntimeError]


def test_two_waiters_on_one_result(pool: ThreadPool) -> None:
    gate = RealEvent()
    r = pool.submit(lambda: gate.wait() and 42)
    a = greenwire.spawn(r.get)
    b = greenwire.spawn(r.get)
    greenwire.sleep(0)
    gate.set()
    assert a.get() == b.get() == 42


def test_a_waiter_dying_with_an_error_is_reported(
    fresh_hub: Hub, pool: ThreadPool, hub_errors: list[Any]
) -> None:
    from greenlet import greenlet as RawGreenlet

    gate = RealEvent()
    r = pool.submit(lambda: gate.wait() and 5)

    def wait_then_fail() -> None:
        r.wait()
        raise KeyError("after waking")

    raw = RawGreenlet(wait_then_fail, parent=fresh_hub)
    fresh_hub.run_callback(raw.switch)
    greenwire.sleep(0)
    gate.set()
    assert r.get() == 5  # the second waiter is still woken
    assert raw.dead
    assert [(c, type(e)) for c, e in hub_errors] == [(raw, KeyError)]
