"""Cooperative ``queue``: Queue, LifoQueue, PriorityQueue and SimpleQueue for greenlets.

The classes are :mod:`greenwire.queue`'s, dressed in the standard library's API: every
queue but ``SimpleQueue`` counts unfinished tasks (``task_done()`` / ``join()``), ``queue``
is the container, ``maxsize`` and ``unfinished_tasks`` are attributes, and
:class:`queue.Empty` / :class:`queue.Full` are the standard library's own (this module
does not replace them, so ``except queue.Empty`` catches what these raise).

Subclasses that override the stdlib hooks
-----------------------------------------
``queue.Queue`` subclasses customise storage by overriding ``_init(maxsize)``,
``_qsize()``, ``_put(item)`` and ``_get()`` (urllib3's connection pool does). A subclass
that defines any of them is detected when it is created; its instances call ``_init``
as the standard library does and keep their items wherever the hooks say, behind a small
adapter that makes the hooks look like the container the fast paths use. Classes that
leave the hooks alone never pay for them.

Like every greenwire queue, these belong to the OS thread whose greenlets wait on them:
they are not a channel to real threads (use :func:`greenwire.threadpool.run_in_thread`).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from heapq import heapify, heappop, heappush
from queue import Empty, Full
from typing import Any, TypeVar

from greenwire.queue import JoinableQueue
from greenwire.queue import LifoQueue as _GreenLifoQueue
from greenwire.queue import Queue as _GreenFifoQueue

__target__ = "queue"
__implements__ = ["Queue", "LifoQueue", "PriorityQueue", "SimpleQueue"]
__all__ = ["Empty", "Full", "LifoQueue", "PriorityQueue", "Queue", "SimpleQueue"]

T = TypeVar("T")

_HOOKS = ("_init", "_qsize", "_put", "_get")
_NEGATIVE_TIMEOUT = "'timeout' must be a non-negative number"


class _HookAdapter:
    """The container seen by the fast paths of a queue whose subclass overrides hooks."""

    __slots__ = ("_owner", "_qsize", "append", "popleft", "pop")

    def __init__(self, owner: Queue[Any]) -> None:
        self._owner = owner
        self._qsize = owner._qsize
        self.append = owner._put
        self.popleft = self.pop = owner._get

    def __len__(self) -> int:
        return self._qsize()

    def __getitem__(self, index: int) -> Any:
        return self._owner.queue[index]  # peek(): works for sequences

    def clear(self) -> None:
        while self._qsize():
            self.popleft()


class Queue(JoinableQueue[T]):
    """``queue.Queue``: first in, first out, with ``task_done()`` and ``join()``.

    Args:
        maxsize: the most items it holds; 0 or less means unbounded.
        items: initial contents (greenwire's extension; they count as tasks).
    """

    __slots__ = ("_container",)

    #: True for subclasses that override a stdlib hook (``_init``, ``_qsize``, ...).
    _hooked = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "_hooked" not in cls.__dict__:
            cls._hooked = cls._hooked or any(name in cls.__dict__ for name in _HOOKS)

    def __init__(self, maxsize: int | None = 0, items: Iterable[T] = ()) -> None:
        if not self._hooked:
            super().__init__(maxsize, items)
            self._container = self._items
            return
        super().__init__(maxsize)
        self._container = self._items
        self._init(self.maxsize)  # sets self.queue, as in the standard library
        self._items = _HookAdapter(self)  # type: ignore[assignment]
        for item in items:
            self._put(item)
            self._unfinished += 1

    # put() and get() repeat greenwire's fast paths rather than calling them: the standard
    # library checks the timeout before looking at the queue, and an extra call per
    # operation would cost more than the check.

    def put(self, item: T, block: bool = True, timeout: float | None = None) -> None:
        """Put ``item`` in, waiting for room if the queue is full.

        Raises:
            queue.Full: no room (``block`` false, or ``timeout`` passed).
            ValueError: ``timeout`` is negative.
        """
        if timeout is not None and block and timeout < 0:
            raise ValueError(_NEGATIVE_TIMEOUT)
        items = self._items
        if len(items) >= self._limit:
            self._wait(self._putters, self._has_room, block, timeout, Full)
        items.append(item)
        self._unfinished += 1
        if self._getters:
            self._wake_one(self._getters)

    def get(self, block: bool = True, timeout: float | None = None) -> T:
        """Remove and return the next item, waiting for one if the queue is empty.

        Raises:
            queue.Empty: nothing came (``block`` false, or ``timeout`` passed).
            ValueError: ``timeout`` is negative.
        """
        if timeout is not None and block and timeout < 0:
            raise ValueError(_NEGATIVE_TIMEOUT)
        items = self._items
        if not items:
            self._wait(self._getters, items.__len__, block, timeout, Empty)
        item: T = items.popleft()
        if self._putters:
            self._wake_one(self._putters)
        return item

    # The standard library's hooks, for subclasses that override some of them.

    def _init(self, maxsize: int) -> None:
        self.queue = deque()

    def _qsize(self) -> int:
        return len(self.queue)

    def _put(self, item: T) -> None:
        self.queue.append(item)

    def _get(self) -> T:
        item: T = self.queue.popleft()
        return item

    @property
    def queue(self) -> Any:
        """The container of the items (settable, as in the standard library)."""
        return self._container

    @queue.setter
    def queue(self, container: Any) -> None:
        self._container = container
        if not self._hooked:
            self._items = container

    @property
    def unfinished_tasks(self) -> int:
        """Items put in for which ``task_done()`` was not called yet (settable)."""
        return self._unfinished

    @unfinished_tasks.setter
    def unfinished_tasks(self, value: int) -> None:
        self._unfinished = value


class LifoQueue(Queue[T], _GreenLifoQueue[T]):
    """``queue.LifoQueue``: last in, first out, with ``task_done()`` and ``join()``."""

    __slots__ = ()
    _hooked = False

    def get(self, block: bool = True, timeout: float | None = None) -> T:
        if timeout is not None and block and timeout < 0:
            raise ValueError(_NEGATIVE_TIMEOUT)
        items = self._items
        if not items:
            self._wait(self._getters, items.__len__, block, timeout, Empty)
        item: T = items.pop()
        if self._putters:
            self._wake_one(self._putters)
        return item

    get.__doc__ = Queue.get.__doc__

    def _init(self, maxsize: int) -> None:
        self.queue = []

    def _get(self) -> T:
        item: T = self.queue.pop()
        return item


class PriorityQueue(Queue[T]):
    """``queue.PriorityQueue``: smallest item first, with ``task_done()`` and ``join()``."""

    __slots__ = ()
    _hooked = False

    # A heap in a list; typed Any because heapq wants comparable items.
    _items: Any

    def _init_items(self, items: Iterable[T]) -> None:
        self._items = list(items)
        heapify(self._items)
        self._peek_index = 0

    def put(self, item: T, block: bool = True, timeout: float | None = None) -> None:
        if timeout is not None and block and timeout < 0:
            raise ValueError(_NEGATIVE_TIMEOUT)
        items = self._items
        if len(items) >= self._limit:
            self._wait(self._putters, self._has_room, block, timeout, Full)
        if type(items) is list:
            heappush(items, item)
        else:  # a subclass's hooks
            items.append(item)
        self._unfinished += 1
        if self._getters:
            self._wake_one(self._getters)

    def get(self, block: bool = True, timeout: float | None = None) -> T:
        if timeout is not None and block and timeout < 0:
            raise ValueError(_NEGATIVE_TIMEOUT)
        items = self._items
        if not items:
            self._wait(self._getters, items.__len__, block, timeout, Empty)
        item: T = heappop(items) if type(items) is list else items.popleft()
        if self._putters:
            self._wake_one(self._putters)
        return item

    put.__doc__ = Queue.put.__doc__
    get.__doc__ = Queue.get.__doc__

    def _init(self, maxsize: int) -> None:
        self.queue = []

    def _put(self, item: T) -> None:
        heappush(self.queue, item)

    def _get(self) -> T:
        item: T = heappop(self.queue)
        return item


class SimpleQueue(_GreenFifoQueue[T]):
    """``queue.SimpleQueue``: an unbounded FIFO queue; ``put()`` never blocks."""

    __slots__ = ()

    def __init__(self) -> None:
        super().__init__()

    def get(self, block: bool = True, timeout: float | None = None) -> T:
        """Remove and return the next item, waiting for one if the queue is empty.

        Raises:
            queue.Empty: nothing came (``block`` false, or ``timeout`` passed).
            ValueError: ``timeout`` is negative.
        """
        if timeout is not None and block and timeout < 0:
            raise ValueError(_NEGATIVE_TIMEOUT)
        items = self._items
        if not items:
            self._wait(self._getters, items.__len__, block, timeout, Empty)
        return items.popleft()
