"""Hooks around patching: events for subscribers and entry points for installed plug-ins.

Integrations (a database driver that needs its own cooperative mode, an APM agent that
wraps sockets) want to run code right before or after patching. Two ways in:

* In-process: :func:`subscribe` a callable; it receives every event object below.
* Installed packages: an entry point in the group ``greenwire.plugins.will_patch_all`` or
  ``greenwire.plugins.did_patch_all`` naming a callable; it is loaded and called with the
  :class:`WillPatchAll` / :class:`DidPatchAll` event. For example, in ``pyproject.toml``::

      [project.entry-points."greenwire.plugins.did_patch_all"]
      mydriver = "mydriver.greenwire_support:enable"

A subscriber (or ``will_patch_all`` plug-in) may veto by raising :class:`DoNotPatch`: from
a :class:`WillPatchModule` event it skips that module, from a :class:`WillPatchAll` event
it cancels the whole ``patch_all()`` call. Any other exception propagates to the caller
of ``patch_all()``: a broken integration must not leave a half-patched program silently.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib import metadata
from types import ModuleType
from typing import Any, Union

__all__ = [
    "DidPatchAll",
    "DidPatchModule",
    "DoNotPatch",
    "Event",
    "WillPatchAll",
    "WillPatchModule",
    "subscribe",
    "unsubscribe",
]

WILL_PATCH_ALL_GROUP = "greenwire.plugins.will_patch_all"
DID_PATCH_ALL_GROUP = "greenwire.plugins.did_patch_all"


class DoNotPatch(Exception):
    """Raised by a subscriber of a ``Will...`` event to prevent that patching."""


@dataclass(frozen=True)
class WillPatchAll:
    """``patch_all()`` is about to patch ``modules`` (``patch_all`` keywords, in order)."""

    modules: tuple[str, ...]
    arguments: Mapping[str, bool]


@dataclass(frozen=True)
class DidPatchAll:
    """``patch_all()`` finished: ``patched`` green modules replaced attributes, ``skipped``
    ones did not (missing, or vetoed)."""

    modules: tuple[str, ...]
    arguments: Mapping[str, bool]
    patched: tuple[str, ...]
    skipped: tuple[str, ...]


@dataclass(frozen=True)
class _ModuleEvent:
    """What the two per-module events carry: one green module patching one target."""

    green_name: str
    target_name: str
    green: ModuleType
    target: ModuleType
    names: tuple[str, ...]


@dataclass(frozen=True)
class WillPatchModule(_ModuleEvent):
    """The attributes ``names`` of ``target`` are about to be replaced from ``green``."""


@dataclass(frozen=True)
class DidPatchModule(_ModuleEvent):
    """The attributes ``names`` of ``target`` were replaced from ``green``."""


Event = Union[WillPatchAll, DidPatchAll, WillPatchModule, DidPatchModule]
Subscriber = Callable[[Event], Any]

_subscribers: list[Subscriber] = []


def subscribe(callback: Subscriber) -> None:
    """Call ``callback(event)`` for every patching event from now on."""
    _subscribers.append(callback)


def unsubscribe(callback: Subscriber) -> None:
    """Stop calling ``callback``; harmless if it was not subscribed."""
    try:
        _subscribers.remove(callback)
    except ValueError:
        pass


def _entry_point_group(event: Event) -> str | None:
    if isinstance(event, WillPatchAll):
        return WILL_PATCH_ALL_GROUP
    if isinstance(event, DidPatchAll):
        return DID_PATCH_ALL_GROUP
    return None


def notify(event: Event) -> None:
    """Give ``event`` to the subscribers, then to the installed plug-ins of its group.

    Raises:
        DoNotPatch: a subscriber or plug-in vetoed (only meaningful for ``Will`` events).
    """
    for callback in list(_subscribers):
        callback(event)
    group = _entry_point_group(event)
    if group is None:
        return
    for entry_point in sorted(metadata.entry_points(group=group), key=lambda ep: ep.name):
        plugin = entry_point.load()
        plugin(event)
