"""greenwire: cooperative concurrency and networking on greenlet.

Write ordinary blocking code; greenwire runs each "thread" as a greenlet and switches
whenever one would block, driven by one event loop (the hub) per OS thread.
"""

from greenwire._core import (
    ClosedResourceError,
    ConcurrentWaitError,
    Hub,
    HubBlockingError,
    LoopExit,
    VirtualClock,
    WouldBlockForever,
    get_hub,
)
from greenwire.condition import Condition
from greenwire.event import AsyncResult, Event
from greenwire.greenlet import (
    Greenlet,
    GreenletExit,
    getcurrent,
    idle,
    iwait,
    joinall,
    killall,
    sleep,
    spawn,
    spawn_later,
    wait,
)
from greenwire.io import notify_closing, wait_readable, wait_writable
from greenwire.local import local
from greenwire.lock import Lock, RLock
from greenwire.pool import Group, Pool, PoolFull
from greenwire.queue import (
    Channel,
    Empty,
    Full,
    JoinableQueue,
    LifoQueue,
    PriorityQueue,
    Queue,
    ShutDown,
)
from greenwire.semaphore import BoundedSemaphore, Semaphore
from greenwire.taskgroup import TaskGroup, TaskGroupError
from greenwire.threadpool import ThreadPool, ThreadResult, get_threadpool, run_in_thread
from greenwire.timeout import (
    CancelScope,
    Timeout,
    TooSlowError,
    fail_after,
    fail_at,
    move_on_after,
    move_on_at,
    with_timeout,
)

__version__ = "0.1.0"

__all__ = [
    "AsyncResult",
    "BoundedSemaphore",
    "CancelScope",
    "Channel",
    "ClosedResourceError",
    "ConcurrentWaitError",
    "Condition",
    "Empty",
    "Event",
    "Full",
    "Greenlet",
    "GreenletExit",
    "Group",
    "Hub",
    "HubBlockingError",
    "JoinableQueue",
    "LifoQueue",
    "Lock",
    "LoopExit",
    "Pool",
    "PoolFull",
    "PriorityQueue",
    "Queue",
    "RLock",
    "Semaphore",
    "ShutDown",
    "TaskGroup",
    "TaskGroupError",
    "ThreadPool",
    "ThreadResult",
    "Timeout",
    "TooSlowError",
    "VirtualClock",
    "WouldBlockForever",
    "fail_after",
    "fail_at",
    "get_hub",
    "get_threadpool",
    "getcurrent",
    "idle",
    "iwait",
    "joinall",
    "killall",
    "local",
    "move_on_after",
    "move_on_at",
    "notify_closing",
    "run_in_thread",
    "sleep",
    "spawn",
    "spawn_later",
    "wait",
    "wait_readable",
    "wait_writable",
    "with_timeout",
]
