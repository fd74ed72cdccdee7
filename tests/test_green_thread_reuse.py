"""greenwire.green.thread: an ended green thread's greenlet runs the next thread.

In-process tests start threads with the module's ``start_new_thread`` (no patching); the
last one checks ``threading.Thread`` under the patch in a fresh interpreter.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable
from typing import Any

import pytest
from greenlet import getcurrent

import greenwire
from _green_patching import check_patched
from _sync_helpers import settle
from greenwire._core import Hub
from greenwire.green import thread

_var: contextvars.ContextVar[str] = contextvars.ContextVar("_var", default="unset")


def run_threads(*functions: Callable[[], Any]) -> list[Any]:
    """Run each function in a green thread, one after the other; their greenlets."""
    used: list[Any] = []
    for function in functions:
        done = greenwire.Event()

        def body(function: Callable[[], Any] = function, done: greenwire.Event = done) -> None:
            used.append(getcurrent())
            try:
                function()
            finally:
                greenwire.get_hub().run_callback(done.set)

        thread.start_new_thread(body, ())
        done.wait()
        settle()  # let the thread's greenlet finish or park
    return used


def test_the_next_thread_runs_on_the_greenlet_of_the_last() -> None:
    first, second = run_threads(lambda: None, lambda: None)
    assert first is second
    assert first.ready() and not first.dead  # parked: looks finished
    assert thread._count() == 0


def test_context_variables_do_not_pass_to_the_next_thread() -> None:
    seen: list[str] = []
    first, second = run_threads(lambda: _var.set("first"), lambda: seen.append(_var.get()))
    assert first is second and seen == ["unset"]


def test_a_thread_that_used_greenlet_local_storage_is_not_reused() -> None:
    state = greenwire.local()
    seen: list[object] = []

    def set_local() -> None:
        state.x = 1

    first, second = run_threads(set_local, lambda: seen.append(getattr(state, "x", None)))
    assert first is not second and first.dead and seen == [None]


@pytest.mark.parametrize("ending", ["raise", "kill"])
def test_a_thread_that_raised_or_was_killed_is_not_reused(
    ending: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("sys.unraisablehook", lambda args: None)

    def end() -> None:
        if ending == "raise":
            raise ValueError("boom")
        raise greenwire.GreenletExit

    first, second = run_threads(end, lambda: None)
    assert first is not second and first.dead


def test_only_so_many_greenlets_are_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(thread, "IDLE_GREENLETS_KEPT", 2)
    release = greenwire.Event()
    ended: list[int] = []
    for n in range(4):
        thread.start_new_thread(lambda n=n: (release.wait(), ended.append(n)), ())
    settle()
    release.set()
    settle()
    assert sorted(ended) == [0, 1, 2, 3]
    idle = greenwire.get_hub().__dict__["_idle_green_threads"]
    assert len(idle) == 2 and all(g.ready() and not g.dead for g in idle)


def test_a_stray_wake_up_or_exception_leaves_the_parked_greenlet_parked(
    fresh_hub: Hub,
) -> None:
    errors: list[tuple[object, BaseException]] = []
    fresh_hub.error_handler = lambda context, exc: errors.append((context, exc))
    [parked] = run_threads(lambda: None)
    fresh_hub.run_callback(parked.switch)
    fresh_hub.run_callback(parked.throw, KeyError("stray"))
    settle()
    assert not parked.dead and parked.ready()
    assert [type(exc) for _, exc in errors] == [KeyError]
    [again] = run_threads(lambda: None)
    assert again is parked


def test_destroying_the_hub_ends_the_parked_greenlets() -> None:
    [parked] = run_threads(lambda: None)
    greenwire.get_hub().destroy()
    assert parked.dead


def test_under_patch_threads_started_one_after_another_share_a_greenlet() -> None:
    out = check_patched(
        """
        import threading
        from greenlet import getcurrent

        seen = []

        def record():
            seen.append((getcurrent(), threading.current_thread().name))

        for n in range(5):
            t = threading.Thread(target=record)
            t.start()
            t.join()
        greenlets = {id(g) for g, _ in seen}
        names = {name for _, name in seen}
        print(len(seen), len(greenlets), len(names), threading.active_count())
        """
    )
    # Five threads, each with its own name and Thread object, on fewer greenlets.
    count, greenlets, names, active = map(int, out.split())
    assert (count, names, active) == (5, 5, 1) and greenlets < 5


def test_a_thread_killed_before_it_ran_on_a_parked_greenlet_still_ends() -> None:
    [parked] = run_threads(lambda: None)
    ran: list[bool] = []
    thread.start_new_thread(lambda: ran.append(True), ())  # scheduled on the parked one
    assert thread._count() == 1 and not parked.ready()
    # kill() would queue its exception behind the thread's start; throw it in first.
    parked.parent = getcurrent()
    parked.throw(greenwire.GreenletExit)
    assert parked.dead and parked.ready() and thread._count() == 0
    settle()  # the queued start finds the greenlet gone
    assert ran == []
