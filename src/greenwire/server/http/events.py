"""The events a :class:`~greenwire.server.http.ServerConnection` turns bytes into.

A request arrives as one :class:`Request`, then zero or more :class:`Data`, then one
:class:`EndOfMessage`; a clean close between requests is :data:`CONNECTION_CLOSED`, and
:data:`NEED_DATA` says that nothing more can be parsed until more bytes are received.
The classes use slots and plain constructors: one is made per request on a server's hot
path.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

Headers = list[tuple[bytes, bytes]]
_NO_TRAILERS: Sequence[tuple[bytes, bytes]] = ()


class Request:
    """The head of a request: request line, headers and what they imply for the body.

    Attributes:
        method: the method, e.g. ``b"GET"``.
        target: the request target as sent (``b"/path?query"``, an absolute URL,
            ``b"*"`` or an authority for CONNECT).
        http_version: ``"1.1"`` or ``"1.0"``.
        headers: ``(name, value)`` pairs in arrival order, names as the client spelled
            them; repeated headers appear once per line.
        keep_alive: the client is willing to send another request on this connection.
        expect_continue: the client sent ``Expect: 100-continue`` and waits for an
            interim ``100 Continue`` (or a final response) before sending the body.
        content_length: the declared body length, None if absent (chunked, or no body).
        chunked: the body uses chunked transfer coding.
        upgrade: the client asked to switch protocols (``Upgrade``, or CONNECT); such a
            request has no body here and ends the HTTP/1.1 conversation.
    """

    __slots__ = (
        "method",
        "target",
        "http_version",
        "headers",
        "keep_alive",
        "expect_continue",
        "content_length",
        "chunked",
        "upgrade",
    )

    def __init__(
        self,
        method: bytes,
        target: bytes,
        http_version: str,
        headers: Headers,
        keep_alive: bool = True,
        expect_continue: bool = False,
        content_length: int | None = None,
        chunked: bool = False,
        upgrade: bool = False,
    ) -> None:
        self.method = method
        self.target = target
        self.http_version = http_version
        self.headers = headers
        self.keep_alive = keep_alive
        self.expect_continue = expect_continue
        self.content_length = content_length
        self.chunked = chunked
        self.upgrade = upgrade

    @property
    def has_body(self) -> bool:
        """True if a body follows (chunked, or a non-zero Content-Length)."""
        return self.chunked or bool(self.content_length)

    def __repr__(self) -> str:
        return (
            f"<Request {self.method.decode('latin-1')} {self.target!r} "
            f"HTTP/{self.http_version} headers={len(self.headers)}>"
        )


class Data:
    """A piece of a request body, with any chunked framing removed."""

    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data

    def __repr__(self) -> str:
        return f"<Data {len(self.data)} bytes>"


class EndOfMessage:
    """The end of a request body; ``trailers`` are the chunked trailer fields, if any."""

    __slots__ = ("trailers",)

    def __init__(self, trailers: Sequence[tuple[bytes, bytes]] = _NO_TRAILERS) -> None:
        self.trailers = trailers

    def __repr__(self) -> str:
        return f"<EndOfMessage trailers={len(self.trailers)}>"


class _Sentinel:
    """A named marker value (compare with ``is``)."""

    __slots__ = ("_name",)

    def __init__(self, name: str) -> None:
        self._name = name

    def __repr__(self) -> str:
        return self._name


#: Nothing more can be parsed until :meth:`receive_data` gets more bytes.
NEED_DATA: Final = _Sentinel("NEED_DATA")
#: The client closed its side cleanly between requests.
CONNECTION_CLOSED: Final = _Sentinel("CONNECTION_CLOSED")

Event = Request | Data | EndOfMessage | _Sentinel
