"""Errors of the sans-IO HTTP layer, each carrying the status code a server should send."""

from __future__ import annotations


class ProtocolError(Exception):
    """Something broke the HTTP/1.1 rules; ``status_code`` says how to answer it.

    Attributes:
        status_code: the response status a server should send (400 unless it is a more
            specific client error such as 413 or 431), or 500 for misuse of the API.
    """

    status_code: int = 400

    def __init__(self, message: str, status_code: int | None = None) -> None:
        super().__init__(message)
        if status_code is not None:
            self.status_code = status_code


class RemoteProtocolError(ProtocolError):
    """The peer sent something that is not acceptable HTTP (or is over a limit)."""


class LocalProtocolError(ProtocolError):
    """The caller asked for something HTTP does not allow (a bug in the caller)."""

    status_code = 500
