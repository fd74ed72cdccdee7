"""Run blocking calls in real OS threads while the hub keeps serving the other greenlets.

Use it for work that cannot be made cooperative: DNS lookups through libc, reads and writes
on regular files, CPU-heavy calls into C. The calling greenlet blocks; nothing else does::

    from greenwire.threadpool import run_in_thread

    data = run_in_thread(read_whole_file, "/etc/hosts")

Each hub (one per OS thread) has a default pool, :func:`get_threadpool`, sized by the
``GREENWIRE_THREADPOOL_SIZE`` environment variable (default 10). Make a
:class:`ThreadPool` of your own to bound a particular kind of work separately.
"""

from __future__ import annotations

from greenwire._core.threadpool import (
    ThreadPool,
    ThreadPoolClosed,
    ThreadPoolStatistics,
    ThreadResult,
    get_threadpool,
    run_in_thread,
)

__all__ = [
    "ThreadPool",
    "ThreadPoolClosed",
    "ThreadPoolStatistics",
    "ThreadResult",
    "get_threadpool",
    "run_in_thread",
]
