"""A sans-IO HTTP/1.1 server protocol: bytes in, events out, no sockets.

Parsing is done by httptools (llhttp); this package adds the events, limits, keep-alive
rules and response framing a server needs, and can be driven by any I/O.
"""

from greenwire.server.http.connection import (
    CHUNKED,
    CONTINUE_RESPONSE,
    LENGTH,
    NO_BODY,
    UNTIL_CLOSE,
    ServerConnection,
    http_date,
)
from greenwire.server.http.errors import LocalProtocolError, ProtocolError, RemoteProtocolError
from greenwire.server.http.events import (
    CONNECTION_CLOSED,
    NEED_DATA,
    Data,
    EndOfMessage,
    Event,
    Request,
)

__all__ = [
    "CHUNKED",
    "CONNECTION_CLOSED",
    "CONTINUE_RESPONSE",
    "LENGTH",
    "NEED_DATA",
    "NO_BODY",
    "UNTIL_CLOSE",
    "Data",
    "EndOfMessage",
    "Event",
    "LocalProtocolError",
    "ProtocolError",
    "RemoteProtocolError",
    "Request",
    "ServerConnection",
    "http_date",
]
