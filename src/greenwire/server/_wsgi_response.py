"""Pieces of the WSGI server's responses: file wrapper, error pages, logs.

``FileWrapper`` is ``wsgi.file_wrapper``: the server recognises it and sends a real file
with ``sendfile(2)`` when the framing allows (a known length, a plain socket). The error
pages are the server's own answers to bad requests and failed applications. The access
log is one line per request in the combined log format, through :mod:`logging`, and
``wsgi.errors`` writes to the error logger.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterable, Iterator
from stat import S_ISREG
from typing import IO, Any

from greenwire.server.http.connection import PerSecond

#: Application failures, client resets and timeouts, protocol errors.
error_logger = logging.getLogger("greenwire.wsgi")
#: One line per request in the combined log format, at INFO.
access_logger = logging.getLogger("greenwire.wsgi.access")

_REASONS = {
    400: "Bad Request",
    408: "Request Timeout",
    413: "Content Too Large",
    414: "URI Too Long",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    505: "HTTP Version Not Supported",
}


def status_line(code: int) -> str:
    """``"413 Content Too Large"`` for 413: the status of the server's own answers."""
    return f"{code} {_REASONS.get(code, 'Error')}"


def error_page(code: int) -> tuple[str, list[tuple[str, str]], bytes]:
    """Status, headers and body of the server's own plain-text answer with ``code``."""
    status = status_line(code)
    body = (status + "\n").encode("ascii")
    headers = [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body)))]
    return status, headers, body


def bare_response(code: int) -> bytes:
    """A complete response with ``code`` that closes the connection, without a request."""
    status, headers, body = error_page(code)
    lines = "".join(f"{name}: {value}\r\n" for name, value in headers)
    return f"HTTP/1.1 {status}\r\n{lines}Connection: close\r\n\r\n".encode("ascii") + body


class FileWrapper:
    """``wsgi.file_wrapper``: iterate a file in blocks, or let the server sendfile() it.

    Args:
        filelike: a binary file-like object with ``read``; its ``close`` is called by
            :meth:`close`, as PEP 3333 asks.
        block_size: the size of the blocks read when iterating.
    """

    def __init__(self, filelike: IO[bytes] | Any, block_size: int = 64 * 1024) -> None:
        self.filelike = filelike
        self.block_size = block_size

    def __iter__(self) -> Iterator[bytes]:
        read = self.filelike.read
        size = self.block_size
        while True:
            block = read(size)
            if not block:
                return
            yield block

    def close(self) -> None:
        """Close the file, if it can be closed."""
        closer = getattr(self.filelike, "close", None)
        if closer is not None:
            closer()

    def fileno_and_span(self) -> tuple[int, int, int] | None:
        """``(fd, offset, size)`` of what is left of a regular file, or None.

        None when the object has no usable file descriptor (a BytesIO, a pipe), so the
        server iterates it instead.
        """
        filelike = self.filelike
        try:
            fd = filelike.fileno()
            offset = filelike.tell()
            stat = os.fstat(fd)
        except (AttributeError, OSError, ValueError):
            return None
        if not S_ISREG(stat.st_mode):
            return None
        return fd, offset, max(stat.st_size - offset, 0)


class ErrorStream:
    """``wsgi.errors``: a text stream whose lines go to the ``greenwire.wsgi`` logger."""

    __slots__ = ("_pending",)

    def __init__(self) -> None:
        self._pending = ""

    def write(self, text: str) -> int:
        """Log each complete line at ERROR; keep a partial line until it is complete."""
        if type(text) is not str:
            raise TypeError(f"wsgi.errors takes str, not {type(text).__name__}")
        pending = self._pending + text
        *lines, self._pending = pending.split("\n")
        for line in lines:
            error_logger.error("%s", line)
        return len(text)

    def writelines(self, lines: Iterable[str]) -> None:
        """Write each of ``lines``."""
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        """Log a partial line, if any."""
        if self._pending:
            error_logger.error("%s", self._pending)
            self._pending = ""


_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def _log_time_text(second: int) -> str:
    """The local time in the access log's ``10/Oct/2000:13:55:36 -0700`` form."""
    t = time.localtime(second)
    offset = t.tm_gmtoff // 60
    sign = "-" if offset < 0 else "+"
    hours, minutes = divmod(abs(offset), 60)
    return (
        f"{t.tm_mday:02d}/{_MONTHS[t.tm_mon - 1]}/{t.tm_year}:"
        f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} {sign}{hours:02d}{minutes:02d}"
    )


log_time = PerSecond(_log_time_text)


def log_access(
    logger: logging.Logger,
    client: str,
    user: str | None,
    request_line: str,
    status: str,
    size: int,
    referer: str | None,
    user_agent: str | None,
) -> None:
    """Write one combined-format line: ``host - user [time] "request" status size ...``."""
    logger.info(
        '%s - %s [%s] "%s" %s %s "%s" "%s"',
        client or "-",
        user or "-",
        log_time(),
        request_line,
        status,
        size or "-",
        referer or "-",
        user_agent or "-",
    )
