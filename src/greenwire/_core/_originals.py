"""The standard library functions the core relies on, captured at import time.

The core never depends on monkey patching: whatever ``greenwire.monkey`` later does to
``time``, ``select``, ``threading`` or ``socket``, the hub keeps using the real OS
primitives captured here.
"""

from __future__ import annotations

import _thread
import os
import select
import time

monotonic = time.monotonic
real_sleep = time.sleep
get_ident = _thread.get_ident
allocate_lock = _thread.allocate_lock
start_new_thread = _thread.start_new_thread
thread_local = _thread._local
epoll = getattr(select, "epoll", None)
eventfd = getattr(os, "eventfd", None)
os_read = os.read
os_write = os.write
os_close = os.close
os_pipe = os.pipe
