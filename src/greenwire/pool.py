"""Groups and pools of greenlets.

A :class:`Group` tracks a set of running greenlets: a greenlet leaves the group by itself
when it finishes, and the group can wait for all of them (:meth:`Group.join`), kill them
all (:meth:`Group.kill`) or map a function over an iterable with one greenlet per item.

A :class:`Pool` is a Group with at most ``size`` members: :meth:`Pool.spawn` blocks while
the pool is full, and :meth:`Pool.imap` feeds a huge (or endless) iterable through the
pool without spawning everything at once.

Members are ordinary :class:`~greenwire.Greenlet` objects: a member that fails is reported
through the hub's error handler like any other greenlet, unless somebody is looking at it
(``join(raise_error=True)``, ``apply``, ``map``, ``imap``).

Waiting follows the hub's contract: a waiter registers itself, parks, re-checks its
condition when it wakes (wake-ups are hints) and removes its registration in ``finally``,
so timeouts and kills can hit it at any moment.
"""

from __future__ import annotations

import queue
import sys
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Generic, TypeVar

from greenlet import getcurrent
from greenlet import greenlet as RawGreenlet

from greenwire._core import get_hub
from greenwire.greenlet import Greenlet, GreenletExit

T = TypeVar("T")

__all__ = ["Group", "IMapIterator", "Pool", "PoolFull"]

_MISSING: Any = object()

# What a waiter registered in Group._joiners is waiting for.
_UNTIL_EMPTY = 0  # join(): the group is empty
_UNTIL_EMPTY_OR_FAILURE = 1  # join(raise_error=True): ... or a member failed
_UNTIL_ONLY_ME_OR_ADDED = 2  # kill(): nobody but the killer is left, or someone was added


class PoolFull(queue.Full):
    """Raised by :meth:`Pool.add` when no slot frees up in time (or at once if not blocking)."""


class _Joiner:
    """A greenlet waiting in :meth:`Group.join` or :meth:`Group.kill`."""

    __slots__ = ("greenlet", "until", "failed", "counted")

    def __init__(self, greenlet: RawGreenlet, until: int) -> None:
        self.greenlet = greenlet
        self.until = until
        self.failed: Greenlet[Any] | None = None
        # Members whose failures this joiner promised to look at (their _consumers count).
        self.counted: set[Greenlet[Any]] = set()


class Group:
    """A set of greenlets; finished greenlets leave it by themselves.

    Args:
        greenlets: greenlets to add at once.
    """

    #: The class :meth:`spawn` instantiates.
    greenlet_class: type[Greenlet[Any]] = Greenlet

    def __init__(self, greenlets: Iterable[Greenlet[Any]] = ()) -> None:
        self._greenlets: dict[Greenlet[Any], None] = {}  # an insertion-ordered set
        self._dying: set[Greenlet[Any]] = set()
        self._joiners: list[_Joiner] = []
        for g in greenlets:
            self.add(g)

    # ------------------------------------------------------------- membership

    def add(self, greenlet: Greenlet[Any]) -> None:
        """Track ``greenlet`` until it finishes (it is not started)."""
        if greenlet in self._greenlets:
            return
        self._track(greenlet)

    def _track(self, greenlet: Greenlet[Any]) -> None:
        self._greenlets[greenlet] = None
        greenlet.rawlink(self._on_finish)
        if self._joiners:
            self._on_added(greenlet)

    def discard(self, greenlet: Greenlet[Any]) -> None:
        """Stop tracking ``greenlet`` (it keeps running)."""
        if greenlet in self._greenlets:
            greenlet.unlink(self._on_finish)
            self._on_finish(greenlet)

    def start(self, greenlet: Greenlet[Any]) -> None:
        """Add ``greenlet`` to the group and start it."""
        self.add(greenlet)
        greenlet.start()

    def spawn(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> Greenlet[T]:
        """Start ``fn(*args, **kwargs)`` in a new greenlet that belongs to the group.

        The hot path: it does not go through :meth:`add` and :meth:`start`.
        """
        g: Greenlet[T] = self.greenlet_class(fn, *args, **kwargs)
        self._greenlets[g] = None
        g.rawlink(self._on_finish)
        if self._joiners:
            self._on_added(g)
        g.start()
        return g

    def __len__(self) -> int:
        return len(self._greenlets)

    def __contains__(self, item: object) -> bool:
        return item in self._greenlets

    def __iter__(self) -> Iterator[Greenlet[Any]]:
        # A snapshot: members leave while the caller iterates and blocks.
        return iter(list(self._greenlets))

    def full(self) -> bool:
        """True if :meth:`spawn` would block; a Group is never full."""
        return False

    def free_count(self) -> int:
        """How many greenlets can be added without blocking (unbounded: ``sys.maxsize``)."""
        return sys.maxsize

    def wait_available(self, timeout: float | None = None) -> int:
        """Wait until a greenlet can be added without blocking; return :meth:`free_count`."""
        return self.free_count()

    # --------------------------------------------------------- notifications

    def _on_finish(self, greenlet: Greenlet[Any]) -> None:
        # A rawlink: runs in the hub after ``greenlet`` finished (or from discard()).
        if self._greenlets.pop(greenlet, _MISSING) is _MISSING:
            return
        if self._dying:
            self._dying.discard(greenlet)
        if self._joiners:
            self._wake_joiners(greenlet)

    def _wake_joiners(self, removed: Greenlet[Any]) -> None:
        members = self._greenlets
        wake = get_hub().run_callback
        for j in self._joiners:
            if j.until == _UNTIL_ONLY_ME_OR_ADDED:
                if not members or (len(members) == 1 and j.greenlet in members):
                    wake(j.greenlet.switch)
                continue
            if (
                j.until == _UNTIL_EMPTY_OR_FAILURE
                and j.failed is None
                and removed.exception is not None
                and removed in j.counted
            ):
                j.failed = removed
                wake(j.greenlet.switch)
            elif not members:
                wake(j.greenlet.switch)

    def _on_added(self, greenlet: Greenlet[Any]) -> None:
        wake = get_hub().run_callback
        for j in self._joiners:
            if j.until == _UNTIL_ONLY_ME_OR_ADDED:
                wake(j.greenlet.switch)
            elif j.until == _UNTIL_EMPTY_OR_FAILURE and not greenlet.ready():
                greenlet._consumers += 1
                j.counted.add(greenlet)

    # ---------------------------------------------------------- join and kill

    def join(self, timeout: float | None = None, raise_error: bool = False) -> bool:
        """Wait until the group is empty.

        Args:
            timeout: give up after this many seconds.
            raise_error: re-raise the first failure of a member as soon as it is seen
                (the other members keep running). Failures seen this way are not reported
                to the hub; other members failing meanwhile are reported once.

        Returns:
            True if the group is empty, False on timeout.
        """
        if raise_error:
            for g in self._greenlets:
                if g.ready() and g.exception is not None:
                    raise g.exception
        if not self._greenlets:
            return True
        hub = get_hub()
        joiner = _Joiner(getcurrent(), _UNTIL_EMPTY_OR_FAILURE if raise_error else _UNTIL_EMPTY)
        if raise_error:
            for g in self._greenlets:
                if not g.ready():
                    g._consumers += 1
                    joiner.counted.add(g)
        deadline = None if timeout is None else hub.now() + timeout
        self._joiners.append(joiner)
        try:
            while self._greenlets and joiner.failed is None:
                if not hub.park_until(deadline):
                    break
        finally:
            self._joiners.remove(joiner)
            for g in joiner.counted:
                g._consumers -= 1
                # It failed while we promised to look, but we are raising another one.
                exc = g.exception
                if exc is not None and g is not joiner.failed and not g._consumers:
                    hub.handle_error(g, exc)
        if joiner.failed is not None:
            exc = joiner.failed.exception
            assert exc is not None
            raise exc
        return not self._greenlets

    def kill(
        self,
        exception: BaseException | type[BaseException] = GreenletExit,
        block: bool = True,
        timeout: float | None = None,
    ) -> None:
        """Kill every member; by default wait until they have all finished.

        Greenlets added while this waits are killed too. The calling greenlet, if it is a
        member, is neither killed nor waited for.
        """
        me = getcurrent()
        hub = get_hub()
        deadline = None if timeout is None else hub.now() + timeout
        joiner = _Joiner(me, _UNTIL_ONLY_ME_OR_ADDED)
        self._joiners.append(joiner)
        try:
            while True:
                dying = self._dying
                for g in [g for g in self._greenlets if g not in dying and g is not me]:
                    dying.add(g)
                    g.kill(exception, block=False)
                if not block:
                    return
                members = self._greenlets
                if not members or (len(members) == 1 and me in members):
                    return
                if not hub.park_until(deadline):
                    return
        finally:
            self._joiners.remove(joiner)

    def killone(
        self,
        greenlet: Greenlet[Any],
        exception: BaseException | type[BaseException] = GreenletExit,
        block: bool = True,
        timeout: float | None = None,
    ) -> None:
        """Kill one member (once: a greenlet already being killed is not killed again)."""
        if greenlet in self._greenlets and greenlet not in self._dying:
            self._dying.add(greenlet)
            greenlet.kill(exception, block=False)
        if block:
            greenlet.join(timeout)

    # ------------------------------------------------------------ map / apply

    def apply(
        self,
        fn: Callable[..., T],
        args: Iterable[Any] | None = (),
        kwargs: dict[str, Any] | None = None,
    ) -> T:
        """Run ``fn(*args, **kwargs)`` in the group and return its result (or raise).

        Called from a member greenlet, it runs ``fn`` directly: waiting for a slot held by
        the caller itself could deadlock a full pool.
        """
        args = () if args is None else args
        kwargs = {} if kwargs is None else kwargs
        if getcurrent() in self._greenlets:
            return fn(*args, **kwargs)
        return self.spawn(fn, *args, **kwargs).get()

    def apply_async(
        self,
        fn: Callable[..., T],
        args: Iterable[Any] | None = (),
        kwargs: dict[str, Any] | None = None,
        callback: Callable[[T], Any] | None = None,
    ) -> Greenlet[T]:
        """Start ``fn(*args, **kwargs)`` in the group without blocking.

        If the group is full, a helper greenlet outside the group waits for a slot.
        ``callback(result)`` runs in a new greenlet if ``fn`` succeeds.
        """
        args = () if args is None else args
        kwargs = {} if kwargs is None else kwargs
        if self._spawn_would_block():
            return Greenlet.spawn(self._apply_then_call, fn, tuple(args), kwargs, callback)
        g = self.spawn(fn, *args, **kwargs)
        if callback is not None:
            g.link_value(_ValueCallback(callback))
        return g

    def _apply_then_call(
        self,
        fn: Callable[..., T],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        callback: Callable[[T], Any] | None,
    ) -> T:
        result = self.apply(fn, args, kwargs)
        if callback is not None:
            callback(result)
        return result

    def _spawn_would_block(self) -> bool:
        return False

    def map(self, fn: Callable[..., T], iterable: Iterable[Any]) -> list[T]:
        """``[fn(x) for x in iterable]``, each call in a member greenlet; ordered.

        The first failure (in input order) is raised and the calls still running are
        killed.
        """
        it = self.imap(fn, iterable)
        try:
            return list(it)
        finally:
            it.close()

    def map_async(
        self,
        fn: Callable[..., T],
        iterable: Iterable[Any],
        callback: Callable[[list[T]], Any] | None = None,
    ) -> Greenlet[list[T]]:
        """Run :meth:`map` in a new greenlet (outside the group) and return it."""
        return Greenlet.spawn(self._map_then_call, fn, iterable, callback)

    def _map_then_call(
        self,
        fn: Callable[..., T],
        iterable: Iterable[Any],
        callback: Callable[[list[T]], Any] | None,
    ) -> list[T]:
        result = self.map(fn, iterable)
        if callback is not None:
            callback(result)
        return result

    def imap(
        self, fn: Callable[..., T], *iterables: Iterable[Any], maxsize: int | None = None
    ) -> IMapIterator[T]:
        """Iterate over ``fn(*args)`` for args in ``zip(*iterables)``, in input order.

        Args:
            maxsize: at most this many calls running or finished-but-not-consumed at once;
                None bounds them only by the pool's size.
        """
        return IMapIterator(self.spawn, fn, iterables, maxsize, ordered=True)

    def imap_unordered(
        self, fn: Callable[..., T], *iterables: Iterable[Any], maxsize: int | None = None
    ) -> IMapIterator[T]:
        """Like :meth:`imap`, yielding results in the order they are ready."""
        return IMapIterator(self.spawn, fn, iterables, maxsize, ordered=False)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} at {id(self):#x} members={len(self._greenlets)}>"


class _ValueCallback:
    """Adapts ``callback(value)`` to a link that receives the finished greenlet."""

    __slots__ = ("callback",)

    def __init__(self, callback: Callable[[Any], Any]) -> None:
        self.callback = callback

    def __call__(self, greenlet: Greenlet[Any]) -> None:
        self.callback(greenlet.value)


class Pool(Group):
    """A Group that runs at most ``size`` greenlets at once.

    :meth:`spawn` (and :meth:`add`, :meth:`start`) block while the pool is full; greenlets
    waiting for a slot get one in the order they asked.

    Args:
        size: the maximum number of members; None for no limit.
        greenlet_class: the class :meth:`spawn` instantiates.

    Raises:
        ValueError: ``size`` is not positive.
    """

    def __init__(
        self, size: int | None = None, greenlet_class: type[Greenlet[Any]] | None = None
    ) -> None:
        if size is not None and size < 1:
            raise ValueError(f"a Pool needs a positive size (or None for no limit), not {size}")
        super().__init__()
        self.size = size
        if greenlet_class is not None:
            self.greenlet_class = greenlet_class
        self._slot_waiters: deque[RawGreenlet] = deque()

    def add(
        self, greenlet: Greenlet[Any], blocking: bool = True, timeout: float | None = None
    ) -> None:
        """Add ``greenlet``, waiting for a free slot.

        Raises:
            PoolFull: no slot freed up within ``timeout`` (at once if not ``blocking``).
        """
        if greenlet in self._greenlets:
            return
        size = self.size
        # Newcomers queue behind the greenlets already waiting: slots go in FIFO order.
        if (
            size is not None
            and (len(self._greenlets) >= size or self._slot_waiters)
            and not (blocking and self._wait_for_slot(timeout, taking=True))
        ):
            raise PoolFull()
        self._track(greenlet)

    def full(self) -> bool:
        """True if no slot is free."""
        return self.free_count() <= 0

    def free_count(self) -> int:
        """How many more greenlets fit (``sys.maxsize`` if the pool is unbounded)."""
        if self.size is None:
            return sys.maxsize
        return max(0, self.size - len(self._greenlets))

    def wait_available(self, timeout: float | None = None) -> int:
        """Wait until a slot is free (without taking it); return :meth:`free_count`."""
        if self._spawn_would_block():
            self._wait_for_slot(timeout, taking=False)
        return self.free_count()

    def _spawn_would_block(self) -> bool:
        size = self.size
        return size is not None and (len(self._greenlets) >= size or bool(self._slot_waiters))

    def _wait_for_slot(self, timeout: float | None, taking: bool) -> bool:
        """Queue for a slot; True once this greenlet is first in line and a slot is free.

        Args:
            taking: the caller adds a member right after a True return (no switch between).
        """
        size = self.size
        assert size is not None
        hub = get_hub()
        me = getcurrent()
        waiters = self._slot_waiters
        deadline = None if timeout is None else hub.now() + timeout
        got = False
        waiters.append(me)
        try:
            while True:
                if waiters[0] is me and len(self._greenlets) < size:
                    got = True
                    return True
                if not hub.park_until(deadline):
                    got = waiters[0] is me and len(self._greenlets) < size
                    return got
        finally:
            waiters.remove(me)
            # Pass the turn on when a slot remains for the next in line: several slots
            # freed at once, or we leave (timeout, kill) without the slot we were woken for.
            free = size - len(self._greenlets) - (1 if got and taking else 0)
            if waiters and free > 0:
                hub.run_callback(waiters[0].switch)

    def spawn(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> Greenlet[T]:
        """Start ``fn(*args, **kwargs)`` in the pool, first waiting for a free slot."""
        size = self.size
        if size is not None and (len(self._greenlets) >= size or self._slot_waiters):
            self._wait_for_slot(None, taking=True)
        return super().spawn(fn, *args, **kwargs)

    def _on_finish(self, greenlet: Greenlet[Any]) -> None:
        if self._greenlets.pop(greenlet, _MISSING) is _MISSING:
            return
        if self._dying:
            self._dying.discard(greenlet)
        waiters = self._slot_waiters
        if waiters and self.size is not None and len(self._greenlets) < self.size:
            get_hub().run_callback(waiters[0].switch)
        if self._joiners:
            self._wake_joiners(greenlet)

    def __repr__(self) -> str:
        return (
            f"<Pool at {id(self):#x} size={self.size} members={len(self._greenlets)}"
            f" waiting={len(self._slot_waiters)}>"
        )


class IMapIterator(Generic[T]):
    """The iterator returned by :meth:`Group.imap` and :meth:`Group.imap_unordered`.

    A feeder greenlet (outside the group) walks the input and spawns one member per item,
    blocking whenever the pool is full or ``maxsize`` results are outstanding, so a huge
    input never becomes a huge number of greenlets. Results are kept here and handed out
    by ``next()``; a failed call raises its exception from ``next()`` at its position,
    and iterating may continue past it. An error raised by the input iterable itself is
    raised after the results of the items it produced.

    Failures are not reported to the hub when they happen, since ``next()`` raises them;
    those never consumed are reported by :meth:`close` or when the iterator is collected.
    """

    def __init__(
        self,
        spawn: Callable[..., Greenlet[Any]],
        fn: Callable[..., T],
        iterables: tuple[Iterable[Any], ...],
        maxsize: int | None,
        ordered: bool,
    ) -> None:
        self._by_index: dict[int, tuple[bool, Any]] = {}  # ordered: results by position
        self._fifo: deque[tuple[bool, Any]] = deque()  # unordered: results as they come
        if maxsize is not None and maxsize < 1:
            raise ValueError(f"maxsize must be positive or None, not {maxsize}")
        self._hub = get_hub()
        self._spawn = spawn
        self._fn = fn
        self._maxsize = maxsize
        self._ordered = ordered
        self._running: dict[Greenlet[Any], int] = {}  # member -> its input position
        self._spawned = 0
        self._delivered = 0
        self._feeding = True
        self._input_error: BaseException | None = None
        self._consumer: RawGreenlet | None = None
        self._feeder_parked: RawGreenlet | None = None
        self._closed = False
        self._feeder: Greenlet[None] = Greenlet.spawn(self._feed, zip(*iterables, strict=False))

    # -------------------------------------------------------------- feeding

    def _feed(self, items: Iterator[tuple[Any, ...]]) -> None:
        hub = self._hub
        maxsize = self._maxsize
        try:
            for args in items:
                if maxsize is not None:
                    while self._spawned - self._delivered >= maxsize:
                        self._feeder_parked = getcurrent()
                        try:
                            hub.park()
                        finally:
                            self._feeder_parked = None
                g = self._spawn(self._fn, *args)
                # next() raises its failure; see _report_unconsumed for the rest.
                g._report_errors = False
                self._running[g] = self._spawned
                self._spawned += 1
                g.rawlink(self._on_result)
        except Exception as e:
            self._input_error = e
        finally:
            self._feeding = False
            self._wake_consumer()

    def _on_result(self, g: Greenlet[Any]) -> None:
        # A rawlink: runs in the hub when a member finishes.
        index = self._running.pop(g)
        exc = g.exception
        item = (True, g.value) if exc is None else (False, exc)
        if self._ordered:
            self._by_index[index] = item
        else:
            self._fifo.append(item)
        self._wake_consumer()

    def _wake_consumer(self) -> None:
        consumer = self._consumer
        if consumer is not None:
            self._consumer = None  # one wake-up per park: no stale switches piling up
            self._hub.run_callback(consumer.switch)

    # ----------------------------------------------------------- consuming

    def __iter__(self) -> IMapIterator[T]:
        return self

    def __next__(self) -> T:
        while True:
            if self._ordered:
                item = self._by_index.pop(self._delivered, None)
            else:
                item = self._fifo.popleft() if self._fifo else None
            if item is not None:
                self._delivered += 1
                feeder = self._feeder_parked
                if feeder is not None:
                    self._feeder_parked = None
                    self._hub.run_callback(feeder.switch)
                ok, value = item
                if ok:
                    return value  # type: ignore[no-any-return]
                raise value
            if self._closed or (not self._feeding and self._delivered == self._spawned):
                error, self._input_error = self._input_error, None
                if error is not None:
                    raise error
                raise StopIteration
            me = getcurrent()
            if self._consumer is not None:
                raise RuntimeError("another greenlet is already waiting on this iterator")
            self._consumer = me
            try:
                self._hub.park()
            finally:
                self._consumer = None

    def close(self) -> None:
        """Stop: no more items are started and the calls still running are killed.

        Failures that finished but were never consumed are reported to the hub.
        """
        if self._closed:
            return
        self._closed = True
        self._wake_consumer()  # a greenlet blocked in next() gets StopIteration
        self._feeder.kill()
        for g in list(self._running):
            g.kill(block=False)
        # Wait for every _on_result (which runs after the group dropped the member).
        me = getcurrent()
        while self._running:
            self._consumer = me
            try:
                self._hub.park()
            finally:
                self._consumer = None
        self._report_unconsumed()

    def _report_unconsumed(self) -> None:
        items = list(self._by_index.values()) + list(self._fifo)
        self._by_index.clear()
        self._fifo.clear()
        for ok, value in items:
            if not ok:
                self._hub.handle_error(self, value)

    def __del__(self) -> None:
        if self._by_index or self._fifo:
            try:
                self._report_unconsumed()
            except Exception:  # pragma: no cover - interpreter shutdown: nothing to do
                pass

    def __repr__(self) -> str:
        kind = "imap" if self._ordered else "imap_unordered"
        return (
            f"<IMapIterator {kind} spawned={self._spawned} delivered={self._delivered}"
            f" running={len(self._running)}>"
        )
