"""greenwire.green._thread_event: threading.Event's behaviour, greenlets and OS threads.

The class is tested in-process, without patching (it needs none). That
``threading.Event`` is this class under the patch, and that ``Thread`` start and join
still work with it, is checked in a fresh interpreter.
"""

from __future__ import annotations

import threading
import warnings

import pytest

import greenwire
from _green_patching import check_patched
from _sync_helpers import settle
from greenwire._core import VirtualClock
from greenwire.green._thread_event import Event
from greenwire.timeout import TooSlowError, fail_after


def real_thread(fn: object) -> threading.Thread:
    """Start ``fn`` in a real OS thread (nothing is patched in this process)."""
    t = threading.Thread(target=fn, daemon=True)  # type: ignore[arg-type]
    t.start()
    return t


def test_the_flag_and_waits_that_do_not_block() -> None:
    event = Event()
    assert not event.is_set()
    assert event.wait(0) is False and event.wait(-1) is False
    event.set()
    event.set()
    assert event.is_set() and event.wait() is True and event.wait(0) is True
    event.clear()
    assert not event.is_set() and event.wait(0) is False
    assert not event._waiters


def test_set_wakes_every_waiter_in_order(vclock: VirtualClock) -> None:
    event = Event()
    woken: list[int] = []

    def waiter(n: int) -> None:
        assert event.wait() is True
        woken.append(n)

    greenlets = [greenwire.spawn(waiter, n) for n in range(5)]
    settle()
    assert woken == [] and len(event._waiters) == 5
    greenwire.spawn(event.set).join()
    greenwire.joinall(greenlets, raise_error=True)
    assert woken == [0, 1, 2, 3, 4]
    assert not event._waiters and vclock.now() == 0


def test_a_waiter_woken_by_set_returns_true_even_if_cleared_before_it_runs() -> None:
    event = Event()
    results: list[bool] = []
    greenlets = [greenwire.spawn(lambda: results.append(event.wait(10))) for _ in range(3)]
    settle()
    event.set()
    event.clear()  # before any waiter ran again (gh-57711)
    greenwire.joinall(greenlets, raise_error=True)
    assert results == [True, True, True]


def test_timeout_returns_false_and_leaves_the_queue(vclock: VirtualClock) -> None:
    event = Event()
    assert event.wait(2.5) is False
    assert vclock.now() == 2.5 and not event._waiters
    g = greenwire.spawn(event.wait, 5)
    settle()
    vclock.advance(1)
    event.set()
    assert g.get() is True and vclock.now() == 3.5


def test_an_exception_in_wait_takes_the_waiter_out(vclock: VirtualClock) -> None:
    event = Event()
    with pytest.raises(TooSlowError), fail_after(1):
        event.wait()
    assert not event._waiters
    event.set()
    assert event.wait() is True


def test_a_greenlet_waiter_is_woken_by_set_in_another_os_thread() -> None:
    event = Event()
    parked = Event()
    t = real_thread(lambda: (parked.wait(10), event.set()))
    # parked is set by a greenlet that runs only once the main greenlet has blocked below.
    greenwire.spawn(parked.set)
    assert event.wait(10) is True
    t.join(10)
    assert not t.is_alive()


def test_an_os_thread_waiter_is_woken_by_a_greenlet() -> None:
    event = Event()
    results: list[bool] = []
    t = real_thread(lambda: results.append(event.wait(10)))
    # The thread parks in the OS on its waiter lock; wait until it queued.
    with fail_after(10):
        while not event._waiters:
            greenwire.sleep(0.001)
    event.set()
    t.join(10)
    assert results == [True]


def test_repr_deprecated_alias_private_condition_and_fork_reset() -> None:
    event = Event()
    assert repr(event).startswith("<threading.Event at 0x") and repr(event).endswith(": unset>")
    event.set()
    assert repr(event).endswith(": set>")

    class Sub(Event):
        pass

    assert repr(Sub()).startswith(f"<{__name__}.test_repr_deprecated_alias")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert event.isSet() is True
    assert [w.category for w in caught] == [DeprecationWarning]
    cond = event._cond
    assert cond is event._cond
    with cond:
        assert not cond.acquire(False)
    event._at_fork_reinit()
    assert event.is_set() and event._cond is cond and not event._waiters


def test_under_patch_threading_event_is_green_and_threads_start_and_join() -> None:
    out = check_patched(
        """
        import threading
        from greenwire.green._thread_event import Event
        assert threading.Event is Event
        results = []
        go = threading.Event()
        def worker(n):
            go.wait()
            results.append(n)
        threads = [threading.Thread(target=worker, args=(n,)) for n in range(20)]
        for t in threads:
            t.start()
        assert all(t.is_alive() for t in threads)
        go.set()
        for t in threads:
            t.join(5)
        assert not any(t.is_alive() for t in threads)
        timer_fired = threading.Event()
        timer = threading.Timer(0.01, timer_fired.set)
        timer.start()
        print(sorted(results) == list(range(20)), timer_fired.wait(5), threading.active_count())
        """
    )
    assert out.split() == ["True", "True", "1"]
