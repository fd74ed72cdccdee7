"""Make the standard library cooperative, so unchanged threaded code runs as greenlets.

Patch first thing in the program, in the main thread, before other imports::

    from greenwire import monkey
    monkey.patch_all()

or run a program patched without touching it::

    python -m greenwire.monkey [--no-<module> ...] [--verbose] script.py [args...]
    python -m greenwire.monkey [--no-<module> ...] [--verbose] -m package.module [args...]

Patching is driven by the green modules' own declarations (``__target__`` and
``__implements__``, see :mod:`greenwire.green`); the originals stay reachable with
:func:`get_original`. Integrations hook in with :func:`subscribe` or with entry points
(see :mod:`greenwire.monkey._events`).
"""

from __future__ import annotations

from greenwire.monkey._events import (
    DID_PATCH_ALL_GROUP,
    WILL_PATCH_ALL_GROUP,
    DidPatchAll,
    DidPatchModule,
    DoNotPatch,
    Event,
    WillPatchAll,
    WillPatchModule,
    subscribe,
    unsubscribe,
)
from greenwire.monkey._patching import (
    MODULES,
    get_original,
    is_module_patched,
    is_object_patched,
    patch_all,
    patch_module,
)

__all__ = [
    "DID_PATCH_ALL_GROUP",
    "MODULES",
    "WILL_PATCH_ALL_GROUP",
    "DidPatchAll",
    "DidPatchModule",
    "DoNotPatch",
    "Event",
    "WillPatchAll",
    "WillPatchModule",
    "get_original",
    "is_module_patched",
    "is_object_patched",
    "patch_all",
    "patch_module",
    "subscribe",
    "unsubscribe",
]
