"""The core runtime: hub, event loop backends, timers, clocks and the thread pool.

Everything above this package reaches the hub through :func:`get_hub` and the names
exported here.
"""

from greenwire._core import children
from greenwire._core.backends import EpollBackend, SelectorsBackend, default_backend
from greenwire._core.clock import Clock, MonotonicClock, VirtualClock
from greenwire._core.errors import (
    ClosedResourceError,
    ConcurrentWaitError,
    HubBlockingError,
    LoopExit,
    WouldBlockForever,
)
from greenwire._core.fdwaits import FdObserver, FdState
from greenwire._core.hub import Hub, HubStatistics, existing_hub, get_hub, set_hub
from greenwire._core.timeout import Timeout
from greenwire._core.timers import Timer

__all__ = [
    "Clock",
    "ClosedResourceError",
    "ConcurrentWaitError",
    "EpollBackend",
    "FdObserver",
    "FdState",
    "Hub",
    "HubBlockingError",
    "HubStatistics",
    "LoopExit",
    "MonotonicClock",
    "SelectorsBackend",
    "Timeout",
    "Timer",
    "VirtualClock",
    "WouldBlockForever",
    "children",
    "default_backend",
    "existing_hub",
    "get_hub",
    "set_hub",
]
