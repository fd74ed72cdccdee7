"""The events of the sans-IO HTTP layer."""

from __future__ import annotations

from greenwire.server.http import CONNECTION_CLOSED, NEED_DATA, Data, EndOfMessage, Request


def test_request_defaults_and_body_flag() -> None:
    req = Request(b"GET", b"/", "1.1", [])
    assert req.keep_alive and not req.expect_continue and not req.upgrade
    assert req.content_length is None and not req.chunked and not req.has_body
    assert Request(b"POST", b"/", "1.1", [], content_length=0).has_body is False
    assert Request(b"POST", b"/", "1.1", [], content_length=3).has_body is True
    assert Request(b"POST", b"/", "1.1", [], chunked=True).has_body is True


def test_reprs_name_the_essentials() -> None:
    assert repr(Request(b"GET", b"/x", "1.0", [(b"A", b"1")])) == (
        "<Request GET b'/x' HTTP/1.0 headers=1>"
    )
    assert repr(Data(b"abc")) == "<Data 3 bytes>"
    assert repr(EndOfMessage()) == "<EndOfMessage trailers=0>"
    assert repr(NEED_DATA) == "NEED_DATA"
    assert repr(CONNECTION_CLOSED) == "CONNECTION_CLOSED"


def test_end_of_message_keeps_trailers() -> None:
    assert list(EndOfMessage([(b"X", b"1")]).trailers) == [(b"X", b"1")]
    assert list(EndOfMessage().trailers) == []


def test_events_have_no_instance_dict() -> None:
    for event in (Request(b"GET", b"/", "1.1", []), Data(b""), EndOfMessage()):
        assert not hasattr(event, "__dict__")
