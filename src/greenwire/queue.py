"""Queues for greenlets: FIFO, LIFO, priority, joinable, and a rendezvous channel.

The classes follow the standard library's ``queue.Queue`` (same signatures, the same
``queue.Empty`` / ``queue.Full`` exceptions, Python 3.13's ``shutdown()``), so they can
stand in for it under monkey patching, plus gevent's ``peek()`` and iteration.

How waiting works
-----------------
A greenlet that must wait appends a *ticket* to the queue's getters (or putters): a
one-element list holding the greenlet. A waker pops the first ticket, blanks it and
schedules the greenlet's ``switch`` on the hub. Nothing travels through ``switch()``: the
woken greenlet takes the item (or the free slot) from the queue itself, at once, so an
item can never be lost with a greenlet that is killed or times out at the moment it is
woken. The blank ticket tells a real wake-up from a stale one (a callback left over from
an earlier wait): a stale wake-up finds its ticket still queued and parks again.

One wake-up is issued per item put (or slot freed). A woken greenlet that leaves by an
exception without using its wake-up passes it on to the next waiter; one that finds the
item already taken by a greenlet that did not wait ("barging", as with threads) re-queues
its ticket at the front, keeping its turn. So blocked getters are served in FIFO order,
as are blocked putters, and no waiter is left parked while it could proceed.

The uncontended paths are a few attribute operations: ``put`` appends and checks for a
parked getter; ``get`` pops and checks for a parked putter.

A queue belongs to the OS thread whose greenlets wait on it; it is not a way to talk to
other threads.
"""

from __future__ import annotations

import heapq
import sys
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from queue import Empty, Full
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from greenlet import getcurrent
from greenlet import greenlet as RawGreenlet

from greenwire._core import Hub, HubBlockingError, get_hub

__all__ = [
    "Channel",
    "Empty",
    "Full",
    "JoinableQueue",
    "LifoQueue",
    "PriorityQueue",
    "Queue",
    "ShutDown",
]

T = TypeVar("T")

if sys.version_info >= (3, 13):
    from queue import ShutDown
else:

    class ShutDown(Exception):
        """Raised by put() on a shut-down queue, and by get() once it is also empty."""


#: A parked greenlet's place in line; blanked (set to None) by the waker that pops it.
_Ticket = list[RawGreenlet | None]
_Schedule = Callable[[tuple[Callable[..., Any], tuple[Any, ...]]], None]

_UNBOUNDED = sys.maxsize


class _QueueBase(Generic[T]):
    """What every queue shares: parking, waking, shutdown state, nowait and iteration."""

    __slots__ = ("_getters", "_schedule", "_hub", "_shutdown", "__weakref__")

    _getters: deque[_Ticket]
    #: The ready-queue ``append`` of the hub the waiters park on; set by each waiter.
    _schedule: _Schedule
    #: The hub the last waiter parked in (a greenlet spawned by greenwire has it as its
    #: parent, which saves a get_hub() per wait).
    _hub: Hub | None
    _shutdown: bool

    if TYPE_CHECKING:  # defined by every subclass

        def put(self, item: T, block: bool = True, timeout: float | None = None) -> None: ...

        def get(self, block: bool = True, timeout: float | None = None) -> T: ...

        def peek(self, block: bool = True, timeout: float | None = None) -> T: ...

        def qsize(self) -> int: ...

    # ------------------------------------------------------------------ shared API

    def put_nowait(self, item: T) -> None:
        """Put ``item`` without blocking; raise :class:`queue.Full` if it would block."""
        self.put(item, False)

    def get_nowait(self) -> T:
        """Get an item without blocking; raise :class:`queue.Empty` if none is ready."""
        return self.get(False)

    def peek_nowait(self) -> T:
        """Return the next item without removing it or blocking (or raise Empty)."""
        return self.peek(False)

    @property
    def is_shutdown(self) -> bool:
        """True once :meth:`shutdown` was called."""
        return self._shutdown

    def __len__(self) -> int:
        return self.qsize()

    def __bool__(self) -> bool:
        # A queue is an object, not a container: ``if q:`` must not mean "if not empty".
        return True

    def __iter__(self) -> Iterator[T]:
        return self

    def __next__(self) -> T:
        """Get the next item; stop at a ``StopIteration`` item or at shutdown."""
        try:
            item = self.get()
        except ShutDown:
            raise StopIteration from None
        if item is StopIteration:
            raise StopIteration
        return item

    # -------------------------------------------------------------------- waiting

    def _wait(
        self,
        waiters: deque[_Ticket],
        ready: Callable[[], object],
        block: bool,
        timeout: float | None,
        unavailable: type[Exception],
    ) -> None:
        """Park in ``waiters`` until woken while ``ready()``; the caller then acts at once.

        Raises:
            ShutDown: the queue is (or gets) shut down.
            unavailable: ``block`` is false, or ``timeout`` passed first.
        """
        if self._shutdown:
            raise ShutDown
        if not block:
            raise unavailable
        g = getcurrent()
        hub = self._hub
        if hub is None or g.parent is not hub:
            hub = self._hub = get_hub()
            self._schedule = hub._callbacks.append
        deadline = None
        if timeout is not None:
            if timeout < 0:
                raise ValueError("'timeout' must be a non-negative number")
            if timeout == 0:
                raise unavailable
            deadline = hub.now() + timeout
        if g is hub:
            raise HubBlockingError("cannot block inside the hub (in a callback or timer)")
        ticket: _Ticket = [g]
        waiters.append(ticket)
        try:
            while True:
                if deadline is None:
                    hub.switch()
                    woken = True
                else:
                    woken = hub.park_until(deadline)
                if ticket[0] is None:  # a real wake-up, not a stale callback
                    if ready():
                        return
                    if self._shutdown:
                        raise ShutDown
                    # A greenlet that never waited took it first: keep our turn.
                    ticket[0] = g
                    waiters.appendleft(ticket)
                if not woken:
                    raise unavailable
        except BaseException:
            if ticket[0] is not None:
                waiters.remove(ticket)
            elif ready():
                self._wake_one(waiters)  # the wake-up was meant for an item we leave
            raise

    def _wake_one(self, waiters: deque[_Ticket]) -> None:
        if waiters:
            ticket = waiters.popleft()
            g = ticket[0]
            ticket[0] = None
            self._schedule((g.switch, ()))  # type: ignore[union-attr]  # queued: not blank

    def _wake_all(self, waiters: deque[_Ticket]) -> None:
        while waiters:
            self._wake_one(waiters)


class Queue(_QueueBase[T]):
    """A first-in, first-out queue.

    Args:
        maxsize: the most items it holds; 0 or None means unbounded.
        items: initial contents (may exceed ``maxsize``).
    """

    __slots__ = ("_items", "_peek_index", "_limit", "_maxsize", "_putters")

    # put() and get() call the deque's methods directly (a bound method kept in a slot
    # would be slower to call); LifoQueue and PriorityQueue override them.
    _items: deque[T]
    _peek_index: int

    def __init__(self, maxsize: int | None = 0, items: Iterable[T] = ()) -> None:
        self._getters = deque()
        self._putters: deque[_Ticket] = deque()
        self._shutdown = False
        self._hub = None
        self._maxsize = maxsize if maxsize is not None and maxsize > 0 else 0
        # put() compares the size with _limit only: unbounded is a huge limit, and a shut
        # down queue has a negative one, which sends put() to the slow path that raises.
        self._limit = self._maxsize or _UNBOUNDED
        self._init_items(items)

    def _init_items(self, items: Iterable[T]) -> None:
        self._items = deque(items)
        self._peek_index = 0

    # ----------------------------------------------------------------- put / get

    def put(self, item: T, block: bool = True, timeout: float | None = None) -> None:
        """Put ``item`` in, waiting for room if the queue is full.

        Raises:
            queue.Full: no room (``block`` false, or ``timeout`` passed).
            ShutDown: the queue is shut down.
        """
        items = self._items
        if len(items) >= self._limit:
            self._wait(self._putters, self._has_room, block, timeout, Full)
        items.append(item)
        if self._getters:
            ticket = self._getters.popleft()
            g = ticket[0]
            ticket[0] = None
            self._schedule((g.switch, ()))  # type: ignore[union-attr]

    def get(self, block: bool = True, timeout: float | None = None) -> T:
        """Remove and return the next item, waiting for one if the queue is empty.

        Raises:
            queue.Empty: nothing came (``block`` false, or ``timeout`` passed).
            ShutDown: the queue is shut down and empty.
        """
        items = self._items
        if not items:
            self._wait(self._getters, items.__len__, block, timeout, Empty)
        item = items.popleft()
        if self._putters:
            ticket = self._putters.popleft()
            g = ticket[0]
            ticket[0] = None
            self._schedule((g.switch, ()))  # type: ignore[union-attr]
        return item

    def peek(self, block: bool = True, timeout: float | None = None) -> T:
        """Return the next item without removing it, waiting for one if empty.

        Raises:
            queue.Empty: nothing came (``block`` false, or ``timeout`` passed).
            ShutDown: the queue is shut down and empty.
        """
        items = self._items
        if items:
            return items[self._peek_index]
        self._wait(self._getters, items.__len__, block, timeout, Empty)
        item = items[self._peek_index]
        self._wake_one(self._getters)  # we were woken for this item but leave it in
        return item

    def _has_room(self) -> bool:
        return len(self._items) < self._limit

    # --------------------------------------------------------------------- state

    @property
    def maxsize(self) -> int:
        """The most items the queue holds (0: unbounded); settable."""
        return self._maxsize

    @maxsize.setter
    def maxsize(self, value: int | None) -> None:
        self._maxsize = value if value is not None and value > 0 else 0
        if not self._shutdown:
            self._limit = self._maxsize or _UNBOUNDED
            for _ in range(min(len(self._putters), self._limit - len(self._items))):
                self._wake_one(self._putters)

    @property
    def queue(self) -> deque[T]:
        """The underlying container, as the standard library's ``Queue.queue``."""
        return self._items

    def qsize(self) -> int:
        """The number of items in the queue."""
        return len(self._items)

    def empty(self) -> bool:
        """True if a get() would block now."""
        return not self._items

    def full(self) -> bool:
        """True if a put() would block now (always False when unbounded)."""
        return 0 < self._maxsize <= len(self._items)

    def shutdown(self, immediate: bool = False) -> None:
        """Shut the queue down, as Python 3.13's ``queue.Queue.shutdown``.

        Afterwards put() raises :class:`ShutDown`; get() returns what is left, then
        raises it. Blocked putters and getters are woken and raise.

        Args:
            immediate: also discard the items, so get() raises at once.
        """
        self._shutdown = True
        self._limit = -1
        if immediate:
            self._items.clear()
        self._wake_all(self._getters)
        self._wake_all(self._putters)

    def __repr__(self) -> str:
        return (
            f"<{type(self).__name__} at {id(self):#x} maxsize={self._maxsize}"
            f" qsize={len(self._items)} getters={len(self._getters)}"
            f" putters={len(self._putters)}{' shutdown' if self._shutdown else ''}>"
        )


class LifoQueue(Queue[T]):
    """A last-in, first-out queue (a stack)."""

    __slots__ = ()

    def _init_items(self, items: Iterable[T]) -> None:
        self._items = deque(items)
        self._peek_index = -1

    def get(self, block: bool = True, timeout: float | None = None) -> T:
        items = self._items
        if not items:
            self._wait(self._getters, items.__len__, block, timeout, Empty)
        item = items.pop()
        if self._putters:
            self._wake_one(self._putters)
        return item

    get.__doc__ = Queue.get.__doc__


class PriorityQueue(Queue[T]):
    """A queue that returns the smallest item first (items must be comparable)."""

    __slots__ = ()

    # A heap in a list: only put() and get() below treat it as more than a sized,
    # indexable, clearable container. Typed Any because heapq wants comparable items,
    # which the class cannot demand of T.
    _items: list[Any]  # type: ignore[assignment]

    def _init_items(self, items: Iterable[T]) -> None:
        self._items = list(items)
        heapq.heapify(self._items)
        self._peek_index = 0

    def put(self, item: T, block: bool = True, timeout: float | None = None) -> None:
        items = self._items
        if len(items) >= self._limit:
            self._wait(self._putters, self._has_room, block, timeout, Full)
        heapq.heappush(items, item)
        if self._getters:
            self._wake_one(self._getters)

    def get(self, block: bool = True, timeout: float | None = None) -> T:
        items = self._items
        if not items:
            self._wait(self._getters, items.__len__, block, timeout, Empty)
        item: T = heapq.heappop(items)
        if self._putters:
            self._wake_one(self._putters)
        return item

    put.__doc__ = Queue.put.__doc__
    get.__doc__ = Queue.get.__doc__


class JoinableQueue(Queue[T]):
    """A FIFO queue that counts unfinished tasks: see :meth:`task_done` and :meth:`join`.

    Every item put in is a task; it is finished when a consumer calls :meth:`task_done`.
    Initial ``items`` count as tasks too.
    """

    __slots__ = ("_unfinished", "_joiners")

    def __init__(self, maxsize: int | None = 0, items: Iterable[T] = ()) -> None:
        super().__init__(maxsize, items)
        self._unfinished = len(self._items)
        self._joiners: deque[_Ticket] = deque()

    def put(self, item: T, block: bool = True, timeout: float | None = None) -> None:
        super().put(item, block, timeout)
        self._unfinished += 1

    put.__doc__ = Queue.put.__doc__

    @property
    def unfinished_tasks(self) -> int:
        """Items put in for which :meth:`task_done` was not called yet."""
        return self._unfinished

    def task_done(self) -> None:
        """Mark one task finished; wake the joiners when none are left.

        Raises:
            ValueError: called more times than items were put in.
        """
        if self._unfinished <= 0:
            raise ValueError("task_done() called too many times")
        self._unfinished -= 1
        if not self._unfinished:
            self._wake_all(self._joiners)

    def join(self, timeout: float | None = None) -> bool:
        """Wait until every task is finished.

        Returns:
            True if the count of unfinished tasks reached zero, False on timeout.
        """
        if not self._unfinished:
            return True
        hub = get_hub()
        deadline = None if timeout is None else hub.now() + timeout
        self._hub = hub
        self._schedule = hub._callbacks.append
        ticket: _Ticket = [getcurrent()]
        self._joiners.append(ticket)
        try:
            while True:
                woken = hub.park_until(deadline)
                # Woken because the count reached zero: that is what we waited for, even
                # if new tasks arrived since.
                if ticket[0] is None or not self._unfinished:
                    return True
                if not woken:
                    return False
        finally:
            if ticket[0] is not None:
                self._joiners.remove(ticket)

    def shutdown(self, immediate: bool = False) -> None:
        """See :meth:`Queue.shutdown`; ``immediate`` also finishes the discarded tasks."""
        if immediate:
            self._unfinished = max(0, self._unfinished - len(self._items))
        super().shutdown(immediate)
        if not self._unfinished:
            self._wake_all(self._joiners)


class _Offer(Generic[T]):
    """An item offered on a channel, with the putter waiting for it to be taken."""

    __slots__ = ("putter", "item", "taken")

    def __init__(self, putter: RawGreenlet | None, item: T) -> None:
        self.putter = putter
        self.item = item
        self.taken = False


class Channel(_QueueBase[T]):
    """A rendezvous: put() returns only once a getter has taken the item.

    ``put_nowait`` succeeds only while a getter is parked waiting; the item is then
    committed to the channel (the next get() returns it, even if that getter gave up).
    A put() that times out raises :class:`queue.Full` and its item is never delivered.
    """

    __slots__ = ("_offers", "_peekers")

    def __init__(self) -> None:
        self._getters = deque()
        self._peekers: deque[_Ticket] = deque()
        self._offers: deque[_Offer[T]] = deque()
        self._shutdown = False
        self._hub = None

    @property
    def maxsize(self) -> int:
        """Always 0: a channel holds nothing of its own."""
        return 0

    def put(self, item: T, block: bool = True, timeout: float | None = None) -> None:
        """Offer ``item`` and wait until a getter takes it.

        Raises:
            queue.Full: not taken (``block`` false and no getter waiting, or ``timeout``
                passed); the item is withdrawn.
            ShutDown: the channel is (or gets) shut down; the item is withdrawn.
        """
        if self._shutdown:
            raise ShutDown
        if timeout is not None and block:
            if timeout < 0:
                raise ValueError("'timeout' must be a non-negative number")
            block = timeout > 0
        if not block:
            if not self._getters:
                raise Full
            self._offers.append(_Offer(None, item))
            self._wake_one(self._getters)
            self._wake_all(self._peekers)
            return
        hub = get_hub()
        g = getcurrent()
        if g is hub:
            raise HubBlockingError("cannot block inside the hub (in a callback or timer)")
        deadline = None if timeout is None else hub.now() + timeout
        self._hub = hub
        self._schedule = hub._callbacks.append
        offer = _Offer(g, item)
        self._offers.append(offer)
        self._wake_one(self._getters)
        self._wake_all(self._peekers)
        try:
            while not offer.taken:
                woken = hub.park_until(deadline)
                if offer.taken:
                    return
                if self._shutdown:
                    raise ShutDown
                if not woken:
                    raise Full
        except BaseException:
            if not offer.taken:
                try:
                    self._offers.remove(offer)
                except ValueError:
                    pass  # already withdrawn by shutdown()
            raise

    def get(self, block: bool = True, timeout: float | None = None) -> T:
        """Take an item from a putter, waiting for one to offer.

        Raises:
            queue.Empty: nothing offered (``block`` false, or ``timeout`` passed).
            ShutDown: the channel is shut down and nothing is left to take.
        """
        offers = self._offers
        if not offers:
            self._wait(self._getters, offers.__len__, block, timeout, Empty)
        offer = offers.popleft()
        offer.taken = True
        putter = offer.putter
        if putter is not None:
            self._schedule((putter.switch, ()))
        return offer.item

    def peek(self, block: bool = True, timeout: float | None = None) -> T:
        """Return the next offered item without taking it, waiting for an offer."""
        offers = self._offers
        if not offers:
            self._wait(self._peekers, offers.__len__, block, timeout, Empty)
        return offers[0].item

    def qsize(self) -> int:
        """The number of items offered and not taken yet."""
        return len(self._offers)

    def empty(self) -> bool:
        """True if a get() would block now."""
        return not self._offers

    def full(self) -> bool:
        """True if put_nowait() would fail now (no getter is waiting)."""
        return not self._getters

    def shutdown(self, immediate: bool = False) -> None:
        """Shut the channel down: blocked and future putters raise :class:`ShutDown`.

        Items committed by put_nowait() can still be taken, unless ``immediate``.
        """
        self._shutdown = True
        offers = self._offers
        kept = [] if immediate else [o for o in offers if o.putter is None]
        withdrawn = [o.putter for o in offers if o.putter is not None]
        offers.clear()
        offers.extend(kept)
        for putter in withdrawn:
            self._schedule((putter.switch, ()))
        self._wake_all(self._getters)
        self._wake_all(self._peekers)

    def __repr__(self) -> str:
        return (
            f"<Channel at {id(self):#x} offered={len(self._offers)}"
            f" getters={len(self._getters)}{' shutdown' if self._shutdown else ''}>"
        )
