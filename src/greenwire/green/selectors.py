"""A cooperative ``selectors``: ``DefaultSelector().select()`` parks the greenlet.

Why ``selectors`` needs patching of its own, even with ``select`` patched: the stdlib
classes capture their polling function when the module is imported (``SelectSelector``
keeps ``select.select`` as a class attribute, ``PollSelector`` and ``EpollSelector`` keep
``select.poll`` / ``select.epoll`` as ``_selector_cls``), so patching ``select`` later
does not reach them, and ``DefaultSelector`` is ``EpollSelector``, whose epoll object the
green ``select`` deliberately leaves alone.

The classes here are the stdlib's own, subclassed, so registration, keys, errors and
``modify`` behave exactly alike:

* ``SelectSelector`` and ``PollSelector`` use the green ``select()`` and ``poll()``.
* ``EpollSelector`` keeps its real epoll object (registrations cost one syscall each, as
  in the stdlib), looks at it with a zero timeout, and when nothing is ready parks on
  the epoll fd itself, which the kernel reports readable as soon as any registered fd
  has an event. Waiting therefore costs the same however many fds are registered.
* ``DefaultSelector`` is ``EpollSelector`` where the platform has epoll.

In all three, a call prepared to wait (a timeout that is not zero) that finds events at
once lets the other greenlets run before it returns them (see
:mod:`greenwire.green._waiting`).

Known limit: closing a selector while another greenlet is inside its ``select()`` leaves
that greenlet waiting until its timeout, as with threads.
"""

from __future__ import annotations

import importlib
import math
from typing import TYPE_CHECKING, Any

from greenwire._core import get_hub
from greenwire.green._registry import original
from greenwire.green._waiting import take_turn, wait_any
from greenwire.green.select import poll as _green_poll
from greenwire.green.select import select as _green_select

if TYPE_CHECKING:
    from selectors import EpollSelector as _EpollSelectorBase
    from selectors import PollSelector as _PollSelectorBase
    from selectors import SelectorKey
    from selectors import SelectSelector as _SelectSelectorBase
else:
    _SelectSelectorBase = original("selectors", "SelectSelector")
    _PollSelectorBase = original("selectors", "PollSelector", None)
    _EpollSelectorBase = original("selectors", "EpollSelector", None)

__target__ = "selectors"
__implements__ = ["DefaultSelector", "SelectSelector"]

__all__ = ["DefaultSelector", "SelectSelector"]


class SelectSelector(_SelectSelectorBase):
    """``selectors.SelectSelector`` on the cooperative :func:`~greenwire.green.select.select`."""

    _select = staticmethod(_green_select)


DefaultSelector: type[Any] = SelectSelector

if _PollSelectorBase is not None:

    class PollSelector(_PollSelectorBase):
        """``selectors.PollSelector`` on the cooperative :func:`~greenwire.green.select.poll`."""

        _selector_cls = staticmethod(_green_poll)

    DefaultSelector = PollSelector
    __implements__.append("PollSelector")
    __all__.append("PollSelector")


if _EpollSelectorBase is not None:

    class EpollSelector(_EpollSelectorBase):
        """``selectors.EpollSelector`` whose ``select()`` waits on the hub for its epoll fd."""

        def select(self, timeout: float | None = None) -> list[tuple[SelectorKey, int]]:
            """Wait up to ``timeout`` seconds (None: forever) for registered events.

            Returns:
                ``(key, events)`` pairs, as :meth:`selectors.BaseSelector.select`.
            """
            if timeout is not None and timeout <= 0:
                return super().select(timeout)
            hub = get_hub()
            ready = super().select(0)
            if ready:
                take_turn(hub)  # a caller prepared to wait lets the others run
                return ready
            deadline = None
            if timeout is not None:
                # As the stdlib: whole milliseconds, rounded up, to wait *at least* timeout.
                deadline = hub.now() + math.ceil(timeout * 1e3) * 1e-3
            interest = ((self.fileno(), True, False),)
            while True:
                in_time = wait_any(hub, interest, deadline)
                ready = super().select(0)
                if ready or not in_time:
                    return ready

    DefaultSelector = EpollSelector
    __implements__.append("EpollSelector")
    __all__.append("EpollSelector")


def __getattr__(name: str) -> Any:
    """The rest of the stdlib ``selectors`` module (``EVENT_READ``, ``SelectorKey``...)."""
    return getattr(importlib.import_module("selectors"), name)
