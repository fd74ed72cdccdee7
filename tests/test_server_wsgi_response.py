"""The WSGI server's file wrapper, error pages, wsgi.errors and access log lines."""

from __future__ import annotations

import io
import logging
import re
import tempfile

import pytest

from greenwire.server._wsgi_response import (
    ErrorStream,
    FileWrapper,
    bare_response,
    error_page,
    log_access,
    log_time,
    status_line,
)


def test_status_lines_of_the_servers_own_answers() -> None:
    assert status_line(431) == "431 Request Header Fields Too Large"
    assert status_line(599) == "599 Error"


def test_error_page_is_consistent() -> None:
    status, headers, body = error_page(413)
    assert status == "413 Content Too Large"
    assert dict(headers)["Content-Length"] == str(len(body))
    assert body == b"413 Content Too Large\n"


def test_bare_response_is_a_complete_closing_response() -> None:
    raw = bare_response(400)
    head, body = raw.split(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert b"Connection: close" in head and body == b"400 Bad Request\n"


def test_file_wrapper_iterates_in_blocks_and_closes() -> None:
    f = io.BytesIO(b"abcdefg")
    wrapper = FileWrapper(f, 3)
    assert list(wrapper) == [b"abc", b"def", b"g"]
    assert wrapper.fileno_and_span() is None  # BytesIO has no descriptor
    wrapper.close()
    assert f.closed


def test_file_wrapper_without_close() -> None:
    class Reader:
        def read(self, n: int) -> bytes:
            return b""

    wrapper = FileWrapper(Reader())
    assert list(wrapper) == []
    wrapper.close()  # nothing to close: no error


def test_file_wrapper_span_of_a_regular_file() -> None:
    with tempfile.TemporaryFile() as f:
        f.write(b"x" * 100)
        f.seek(30)
        span = FileWrapper(f).fileno_and_span()
        assert span == (f.fileno(), 30, 70)


def test_error_stream_logs_whole_lines(caplog: pytest.LogCaptureFixture) -> None:
    stream = ErrorStream()
    with caplog.at_level(logging.ERROR, "greenwire.wsgi"):
        assert stream.write("a\nb") == 3
        assert [r.getMessage() for r in caplog.records] == ["a"]
        stream.flush()
        stream.flush()
    assert [r.getMessage() for r in caplog.records] == ["a", "b"]
    with pytest.raises(TypeError):
        stream.write(b"bytes")  # type: ignore[arg-type]


def test_log_time_format() -> None:
    assert re.fullmatch(r"\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d [+-]\d{4}", log_time())


def test_log_access_fills_missing_fields_with_dashes(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("test.access")
    with caplog.at_level(logging.INFO, "test.access"):
        log_access(logger, "", None, "GET / HTTP/1.1", "200", 0, None, None)
    message = caplog.records[0].getMessage()
    assert message.startswith("- - - [")
    assert message.endswith('] "GET / HTTP/1.1" 200 - "-" "-"')
