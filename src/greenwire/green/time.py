"""A cooperative ``time``: ``sleep`` parks the greenlet instead of the whole thread.

Everything else (``monotonic``, ``time``, ``perf_counter``...) is the stdlib's own and is
reachable from this module too.
"""

from __future__ import annotations

import importlib
from typing import Any

from greenwire.green._registry import original
from greenwire.green._waiting import as_number, seconds_in_range
from greenwire.greenlet import sleep as _green_sleep

__target__ = "time"
__implements__ = ["sleep"]

__all__ = ["sleep"]

# ``original`` gives the unpatched function whether this module is imported before or
# after patching, so it can be looked up once.
_real_sleep = original("time", "sleep")
#: Whole seconds that certainly fit CPython's nanosecond ``_PyTime_t``.
_MAX_SECONDS = 9_223_372_036


def sleep(secs: float, /) -> None:
    """Suspend the calling greenlet for ``secs`` seconds; other greenlets keep running.

    ``sleep(0)`` yields to the other ready greenlets. Arguments are checked exactly as by
    :func:`time.sleep`.

    Raises:
        ValueError: ``secs`` is negative or NaN.
        TypeError: ``secs`` is not a number.
        OverflowError: ``secs`` is too large.
        HubBlockingError: called inside the hub (a callback or a timer).
    """
    kind = type(secs)
    if (kind is float or kind is int) and 0 <= secs < _MAX_SECONDS:  # NaN fails too
        _green_sleep(secs)
        return
    number = as_number(secs)
    if number is None or number < 0 or not seconds_in_range(number):
        # Invalid for certain: the original raises the exact error without sleeping.
        _real_sleep(secs)
        return  # pragma: no cover - only if the original disagreed and slept
    _green_sleep(number)


def __getattr__(name: str) -> Any:
    """The rest of the stdlib ``time`` module."""
    return getattr(importlib.import_module("time"), name)
