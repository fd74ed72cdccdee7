"""The registry of originals that patching replaces."""

from __future__ import annotations

import pytest

from greenwire.green import _registry, original, record_original


def test_original_without_patching_is_the_current_attribute() -> None:
    import os

    assert original("os", "getpid") is os.getpid
    assert original("os", "no_such_name", None) is None
    with pytest.raises(AttributeError, match="no_such_name"):
        original("os", "no_such_name")


def test_first_record_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_registry, "_saved", {})

    def real() -> None: ...

    def green() -> None: ...

    record_original("os", "getpid", real)
    record_original("os", "getpid", green)  # patching twice must not lose the real one
    assert original("os", "getpid") is real
    assert _registry.is_recorded("os", "getpid")
    assert not _registry.is_recorded("os", "getppid")
