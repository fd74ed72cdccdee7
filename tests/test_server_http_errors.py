"""The errors of the sans-IO HTTP layer carry the status to answer with."""

from __future__ import annotations

from greenwire.server.http import LocalProtocolError, ProtocolError, RemoteProtocolError


def test_remote_errors_default_to_400_and_take_a_status() -> None:
    assert RemoteProtocolError("bad").status_code == 400
    err = RemoteProtocolError("too big", 413)
    assert err.status_code == 413 and str(err) == "too big"
    assert isinstance(err, ProtocolError)


def test_local_errors_are_500() -> None:
    err = LocalProtocolError("misuse")
    assert err.status_code == 500 and isinstance(err, ProtocolError)


def test_status_is_per_instance() -> None:
    RemoteProtocolError("x", 431)
    assert RemoteProtocolError("y").status_code == 400
