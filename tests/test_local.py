"""local: greenlet-local storage with threading.local's semantics, and no leaks."""

from __future__ import annotations

import gc
import pickle
import threading
import weakref
from typing import Any

import pytest
from greenlet import getcurrent
from greenlet import greenlet as RawGreenlet

import greenwire
from greenwire._core import get_hub
from greenwire.local import local


class Payload:
    """Something weak-referenceable to store in a local."""


def test_each_greenlet_sees_its_own_attributes() -> None:
    data = local()
    data.x = "main"
    seen: list[Any] = []

    def child(tag: str) -> None:
        seen.append(hasattr(data, "x"))
        data.x = tag
        greenwire.sleep(0)  # let the other child write its own value
        seen.append(data.x)

    greenwire.joinall([greenwire.spawn(child, "a"), greenwire.spawn(child, "b")])
    assert seen == [False, False, "a", "b"]
    assert data.x == "main"


def test_dict_is_per_greenlet_and_read_only() -> None:
    data = local()
    data.x = 1
    assert data.__dict__ == {"x": 1}
    assert vars(data) is data.__dict__
    data.__dict__["y"] = 2
    assert data.y == 2
    assert greenwire.spawn(lambda: data.__dict__).get() == {}
    with pytest.raises(AttributeError, match="read-only"):
        data.__dict__ = {}
    with pytest.raises(AttributeError, match="read-only"):
        del data.__dict__
    assert data.__dict__ == {"x": 1, "y": 2}


def test_delete_and_missing_attributes() -> None:
    data = local()
    data.x = 1
    del data.x
    assert not hasattr(data, "x")
    with pytest.raises(AttributeError, match="'local' object has no attribute 'x'"):
        del data.x
    with pytest.raises(AttributeError, match="has no attribute 'nope'"):
        _ = data.nope


def test_arguments_need_an_init() -> None:
    with pytest.raises(TypeError, match="Initialization arguments are not supported"):
        local(1)
    with pytest.raises(TypeError):
        local(key=1)


def test_subclass_init_runs_once_per_greenlet_with_the_arguments() -> None:
    calls: list[tuple[Any, ...]] = []

    class Settings(local):
        def __init__(self, color: str, *, size: int = 1) -> None:
            calls.append((getcurrent(), color, size))
            self.color = color
            self.size = size

    s = Settings("red", size=3)
    main = getcurrent()
    assert calls == [(main, "red", 3)]
    s.color = "blue"

    def child() -> tuple[str, int]:
        first = (s.color, s.size)
        s.color = "green"
        return first

    g = greenwire.spawn(child)
    assert g.get() == ("red", 3)
    assert [c[0] for c in calls] == [main, g]
    assert s.color == "blue"
    assert len(calls) == 2  # the main greenlet's __init__ did not run again


def test_init_is_retried_in_a_greenlet_where_it_failed() -> None:
    attempts: list[int] = []

    class Flaky(local):
        def __init__(self) -> None:
            attempts.append(1)
            if len(attempts) == 2:
                raise RuntimeError("first try in the child fails")
            self.ready = True

    f = Flaky()

    def child() -> bool:
        with pytest.raises(RuntimeError):
            _ = f.ready
        return bool(f.ready)  # __init__ runs again and succeeds

    assert greenwire.spawn(child).get() is True
    assert len(attempts) == 3


def test_init_that_blocks_keeps_greenlets_apart() -> None:
    class Slow(local):
        def __init__(self) -> None:
            self.owner = getcurrent()
            greenwire.sleep(0)  # another greenlet initialises meanwhile
            self.check = self.owner is getcurrent()

    s = Slow()

    def child() -> bool:
        return bool(s.check and s.owner is getcurrent())

    a, b = greenwire.spawn(child), greenwire.spawn(child)
    assert a.get() and b.get()


def test_class_attributes_methods_and_getattr_fallback() -> None:
    class Counter(local):
        start = 10

        def __init__(self) -> None:
            self.n = self.start

        def bump(self) -> int:
            self.n += 1
            return self.n

        def __getattr__(self, name: str) -> str:
            return f"default-{name}"

    c = Counter()
    assert c.bump() == 11 and c.bump() == 12
    assert greenwire.spawn(c.bump).get() == 11
    assert c.n == 12
    assert c.whatever == "default-whatever"
    c.start = 0  # an instance attribute shadows the class attribute, per greenlet
    assert c.start == 0 and Counter.start == 10
    assert greenwire.spawn(lambda: c.start).get() == 10


def test_data_descriptors_win_and_slots_are_shared() -> None:
    class WithProperty(local):
        __slots__ = ("shared",)

        @property
        def doubled(self) -> int:
            return int(self.value) * 2

        @doubled.setter
        def doubled(self, v: int) -> None:
            self.value = v // 2

        @property
        def constant(self) -> str:
            return "fixed"

    w = WithProperty()
    w.doubled = 8
    assert w.value == 4 and w.doubled == 8
    w.__dict__["doubled"] = "shadow?"  # like threading.local: the property still wins
    assert w.doubled == 8
    with pytest.raises(AttributeError):
        w.constant = "x"  # type: ignore[misc]
    w.shared = "everyone"
    assert greenwire.spawn(lambda: w.shared).get() == "everyone"
    del w.shared
    assert not hasattr(w, "shared")
    assert isinstance(w, WithProperty) and w.__class__ is WithProperty


def _table(data: local) -> dict[int, Any]:
    """The local's per-greenlet table (id(greenlet) -> dict)."""
    table: dict[int, Any] = object.__getattribute__(data, "_local__storage")
    return table


def test_storage_freed_when_a_greenlet_finishes_even_if_kept() -> None:
    data = local()
    refs: list[weakref.ref[Payload]] = []

    def child() -> None:
        p = Payload()
        refs.append(weakref.ref(p))
        data.p = p

    g = greenwire.spawn(child)
    g.join()
    assert len(_table(data)) == 2  # main and the finished child, until its links run
    greenwire.sleep(0)  # the rawlink that drops the storage runs in the hub
    assert refs[0]() is None
    assert list(_table(data)) == [id(getcurrent())]


def test_storage_freed_with_a_raw_greenlet() -> None:
    data = local()
    refs: list[weakref.ref[Payload]] = []

    def body() -> None:
        p = Payload()
        refs.append(weakref.ref(p))
        data.p = p

    raw = RawGreenlet(body)
    raw.switch()
    assert raw.dead and refs[0]() is not None  # a raw greenlet frees it when collected
    assert len(_table(data)) == 2
    del raw
    gc.collect()
    assert refs[0]() is None
    assert list(_table(data)) == [id(getcurrent())]


def test_storage_freed_when_the_local_is_collected() -> None:
    data = local()
    p = Payload()
    ref = weakref.ref(p)
    data.p = p
    del p

    holder = [data]

    def child() -> None:
        holder[0].q = Payload()
        greenwire.sleep(0)  # still alive when the local goes away

    g = greenwire.spawn(child)
    greenwire.sleep(0)
    table_ref = weakref.ref(_table(data))
    local_ref = weakref.ref(data)
    del data
    holder.clear()
    gc.collect()
    assert local_ref() is None and table_ref() is None
    assert ref() is None
    g.join()
    greenwire.sleep(0)  # its rawlink finds the table gone: nothing to do


def test_local_referring_to_itself_is_collected() -> None:
    class Node(local):
        pass

    n = Node()
    n.me = n
    p = Payload()
    n.p = p
    ref = weakref.ref(p)
    del n, p
    gc.collect()
    assert ref() is None


def test_hub_callbacks_have_their_own_storage() -> None:
    data = local()
    data.x = "main"
    seen: list[Any] = []
    get_hub().run_callback(lambda: seen.append(getattr(data, "x", None)))
    greenwire.sleep(0)
    assert seen == [None]


def test_os_threads_are_separate_too() -> None:
    data = local()
    data.x = "main"
    seen: list[Any] = []

    def worker() -> None:
        seen.append(getattr(data, "x", None))
        data.x = "thread"
        seen.append(data.x)

    t = threading.Thread(target=worker)
    t.start()
    t.join()
    assert seen == [None, "thread"]
    assert data.x == "main"


def test_dir_lists_the_greenlets_own_attributes() -> None:
    data = local()
    data.x = 1
    assert "x" in dir(data)
    assert "x" not in greenwire.spawn(dir, data).get()


def test_cannot_be_pickled() -> None:
    with pytest.raises(TypeError, match="cannot pickle"):
        pickle.dumps(local())


def test_weak_referenceable() -> None:
    data = local()
    assert weakref.ref(data)() is data


def test_delete_as_the_first_touch_in_a_greenlet() -> None:
    class Preset(local):
        def __init__(self) -> None:
            self.x = "preset"

    p = Preset()

    def child() -> bool:
        del p.x  # runs __init__ first, then deletes its attribute
        return hasattr(p, "x")

    assert greenwire.spawn(child).get() is False
    assert p.x == "preset"
