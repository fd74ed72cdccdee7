"""Detecting the known traps of patching late, so that users hear about them.

Patching replaces module attributes. Whatever grabbed the original objects before that
keeps them, and keeps blocking:

* real threads already running keep running as real threads, with the locks and sockets
  they already hold;
* patching from a thread other than the main one leaves the main thread's view of
  ``threading`` inconsistent (``main_thread()`` is not the patching thread);
* a module that did ``from ssl import get_server_certificate`` (or took any other function
  that patching replaces) before patching keeps the blocking one. SSL contexts are not
  affected: patching makes every ``SSLContext``, old or new, produce green sockets.

Each check is cheap and returns a message (or None); the patcher turns them into
``RuntimeWarning``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable

from greenwire.green._registry import original

#: At most this many offending modules are named in one warning.
_MAX_NAMED = 8


def not_main_thread() -> str | None:
    """A warning if the calling OS thread is not the main thread."""
    if _in_main_thread():
        return None
    return (
        "greenwire.monkey: patching from a thread other than the main thread; patch at "
        "the very start of the program, in the main thread, before any other import"
    )


def _in_main_thread() -> bool:
    # ``threading.main_thread()`` is whichever thread first imported ``threading``, which
    # may well be this very thread if it is the one importing greenwire. On Linux the
    # kernel knows better: the main thread's id is the process id.
    if sys.platform.startswith("linux"):
        return bool(original("_thread", "get_native_id")() == os.getpid())
    main = original("threading", "main_thread")()  # pragma: no cover - not Linux
    return bool(original("_thread", "get_ident")() == main.ident)  # pragma: no cover


def running_threads() -> str | None:
    """A warning naming the real threads (other than main) started before patching.

    Threads that ``threading`` did not start (dummy threads, the thread pool's workers,
    anything started with ``_thread.start_new_thread``) are not seen: ``threading``
    cannot tell them from greenwire's own pool workers.
    """
    if "threading" not in sys.modules:
        return None  # no ``threading.Thread`` can have been started
    main = original("threading", "main_thread")()
    dummy = original("threading", "_DummyThread")
    started = [
        t
        for t in original("threading", "enumerate")()
        if t is not main and not isinstance(t, dummy)
    ]
    if not started:
        return None
    names = ", ".join(repr(t.name) for t in started[:_MAX_NAMED])
    more = "" if len(started) <= _MAX_NAMED else f" and {len(started) - _MAX_NAMED} more"
    return (
        f"greenwire.monkey: patching while {len(started)} real thread(s) already run "
        f"({names}{more}); they stay real threads and keep the locks, sockets and queues "
        "they hold, which may block or deadlock with greenlets. Patch before starting "
        "any thread."
    )


def stale_references(target: str, objects: Iterable[object]) -> dict[str, list[str]]:
    """Modules other than ``target`` whose globals hold one of ``objects``.

    Returns:
        ``{module name: [global names]}``, greenwire's own modules excluded.
    """
    wanted = {id(obj) for obj in objects}
    found: dict[str, list[str]] = {}
    for name, module in list(sys.modules.items()):
        if module is None or name == target or name.startswith("greenwire"):
            continue
        namespace = getattr(module, "__dict__", None)
        if not isinstance(namespace, dict):
            continue
        hits = [key for key, value in list(namespace.items()) if id(value) in wanted]
        if hits:
            found[name] = sorted(hits)
    return found


def ssl_imported_early(names: Iterable[str]) -> str | None:
    """A warning if ``ssl`` was imported and other modules hold the objects being replaced."""
    ssl = sys.modules.get("ssl")
    if ssl is None:
        return None
    objects = [getattr(ssl, name) for name in names if hasattr(ssl, name)]
    holders = stale_references("ssl", objects)
    if not holders:
        return None
    listed = [f"{module} ({', '.join(attrs)})" for module, attrs in sorted(holders.items())]
    more = "" if len(listed) <= _MAX_NAMED else f" and {len(listed) - _MAX_NAMED} more"
    return (
        "greenwire.monkey: ssl was imported before patching, and these modules hold the "
        f"original objects, which stay blocking: {'; '.join(listed[:_MAX_NAMED])}{more}. "
        "Patch before importing them (first thing in the program, or run it with "
        "'python -m greenwire.monkey')."
    )
