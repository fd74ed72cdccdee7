"""Cooperative ``_threading_local``: its ``local`` is greenlet-local.

``_threading_local`` is the pure-Python fallback of ``threading.local``; code that imports
it directly gets per-OS-thread storage unless it is patched with this module together with
``_thread`` and ``threading`` (whose ``local`` :mod:`greenwire.green.threading` replaces).
"""

from __future__ import annotations

from greenwire.local import local

__target__ = "_threading_local"
__implements__ = ["local"]
__all__ = ["local"]
