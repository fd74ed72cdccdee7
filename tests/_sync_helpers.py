"""Small helpers shared by the tests of the synchronisation primitives."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import greenwire


def settle(passes: int = 3) -> None:
    """Let every greenlet that can run do so (a few full hub passes)."""
    for _ in range(passes):
        greenwire.sleep(0)


def outcome(fn: Callable[[], Any]) -> Any:
    """What a call returns, or the type of exception it raises."""
    try:
        return fn()
    except Exception as e:
        return type(e)
