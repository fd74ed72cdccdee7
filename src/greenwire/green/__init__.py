"""Cooperative stand-ins for standard library modules.

Each module here is a faithful replacement for (part of) one stdlib module, and declares
what it replaces so that :mod:`greenwire.monkey` can patch by reading declarations
instead of hard-coding lists:

``__target__``
    the name of the stdlib module it stands in for (``"socket"``, ``"_thread"``...).
``__implements__``
    the names in the target module that are replaced by this module's attributes of the
    same name when patching.
``__patch__`` (optional)
    a function called after those names are replaced, for what replacing names cannot do
    (``green.ssl`` sets a class attribute of the stdlib's ``SSLContext``).

A green module can be used without patching (``from greenwire.green import socket``).
It must never capture a stdlib object that patching may replace by plain import-time
reference; it asks :func:`original` instead, which returns the unpatched object whether
or not patching has happened yet.
"""

from __future__ import annotations

from greenwire.green._registry import original, record_original

__all__ = ["original", "record_original"]
