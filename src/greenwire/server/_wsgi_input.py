"""``wsgi.input``: the request body as a file, read from the connection as the app asks.

Nothing is read ahead of the application: each read pulls body pieces from the
connection (which receives from the socket only when it has nothing parsed left), so a
large upload streams through a small buffer, and a body the app never reads is either
discarded cheaply or ends the connection. The stream ends where the body ends (its
Content-Length or the last chunk), so ``read()`` without a size is safe, and
``wsgi.input_terminated`` is true.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

_NO_LIMIT = -1


class WSGIInput:
    """A read-only binary file over a request body (PEP 3333 ``wsgi.input``).

    Args:
        pull: returns the next piece of the body, ``b""`` once it has ended; raises
            :class:`~greenwire.server.http.RemoteProtocolError` for a broken body and
            ``OSError`` if the client goes away.
    """

    __slots__ = ("_pull", "_buffer", "_done")

    def __init__(self, pull: Callable[[], bytes]) -> None:
        self._pull = pull
        self._buffer = bytearray()
        self._done = False

    @property
    def done(self) -> bool:
        """True once the whole body has been received (it may still be buffered)."""
        return self._done

    def _fill(self) -> bool:
        """Append the next piece of the body to the buffer; False at the end."""
        if self._done:
            return False
        chunk = self._pull()
        if not chunk:
            self._done = True
            return False
        self._buffer += chunk
        return True

    def read(self, size: int | None = -1) -> bytes:
        """Up to ``size`` bytes (all the rest if negative or None); ``b""`` at the end.

        Returns fewer than ``size`` bytes only at the end of the body.
        """
        buffer = self._buffer
        if size is None or size < 0:
            while self._fill():
                pass
            data = bytes(buffer)
            buffer.clear()
            return data
        if not buffer and not self._done and size > 0:
            chunk = self._pull()  # the common case: one piece, read whole
            if len(chunk) == size:
                return chunk
            if not chunk:
                self._done = True
                return b""
            buffer += chunk
        while len(buffer) < size and self._fill():
            pass
        data = bytes(buffer[:size])
        del buffer[:size]
        return data

    def read1(self, size: int = -1) -> bytes:
        """What is buffered, or one more piece of the body if nothing is (at most ``size``)."""
        if not self._buffer:
            self._fill()
        buffer = self._buffer
        if size < 0:
            size = len(buffer)
        data = bytes(buffer[:size])
        del buffer[:size]
        return data

    def readline(self, size: int | None = -1) -> bytes:
        """One line, with its ``b"\\n"``; at most ``size`` bytes if that is not negative."""
        limit = _NO_LIMIT if size is None or size < 0 else size
        buffer = self._buffer
        start = 0
        while True:
            newline = buffer.find(b"\n", start)
            if newline >= 0:
                end = newline + 1
                break
            if limit >= 0 and len(buffer) >= limit:
                end = limit
                break
            start = len(buffer)
            if not self._fill():
                end = len(buffer)
                break
        if limit >= 0 and end > limit:
            end = limit
        data = bytes(buffer[:end])
        del buffer[:end]
        return data

    def readlines(self, hint: int | None = -1) -> list[bytes]:
        """The remaining lines; stop once their total size reaches ``hint`` if positive."""
        lines: list[bytes] = []
        total = 0
        while True:
            line = self.readline()
            if not line:
                return lines
            lines.append(line)
            total += len(line)
            if hint is not None and 0 < hint <= total:
                return lines

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        line = self.readline()
        if not line:
            raise StopIteration
        return line

    def discard(self, limit: int) -> bool:
        """Read and drop the rest of the body; False if more than ``limit`` bytes remain."""
        self._buffer.clear()
        dropped = 0
        while not self._done:
            chunk = self._pull()
            if not chunk:
                self._done = True
                break
            dropped += len(chunk)
            if dropped > limit:
                return False
        return True

    def close(self) -> None:
        """Nothing to release; present because some frameworks call it."""


class EmptyInput:
    """``wsgi.input`` for a request without a body: always at its end, shared by all."""

    __slots__ = ()
    done = True

    def read(self, size: int | None = -1) -> bytes:
        """Always ``b""``."""
        return b""

    def read1(self, size: int = -1) -> bytes:
        """Always ``b""``."""
        return b""

    def readline(self, size: int | None = -1) -> bytes:
        """Always ``b""``."""
        return b""

    def readlines(self, hint: int | None = -1) -> list[bytes]:
        """Always empty."""
        return []

    def __iter__(self) -> Iterator[bytes]:
        return iter(())

    def discard(self, limit: int) -> bool:
        """Nothing to discard."""
        return True

    def close(self) -> None:
        """Nothing to release."""


EMPTY_INPUT = EmptyInput()
