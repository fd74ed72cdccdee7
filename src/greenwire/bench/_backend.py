"""The small backend service the "io" handlers call: ``python _backend.py DELAY_MS``.

One request per connection: the caller sends a decimal byte count and a newline; after
``DELAY_MS`` milliseconds the service answers that many ``"0"`` bytes and closes the
connection. It stands for the database or internal HTTP service a real handler waits on.

It is written on asyncio (standard library, protocol callbacks, no streams) so that it is
neither one of the libraries under test nor a bottleneck: it only schedules a timer and
writes. It is the same process for every server variant, announces its port as
``READY <port>`` and runs until killed. Its CPU time is reported with the results.
"""

from __future__ import annotations

import asyncio
import sys

#: Longest request line accepted; anything longer is a protocol error.
MAX_LINE = 32
#: Largest answer served, so a bad request cannot make the service allocate gigabytes.
MAX_SIZE = 1 << 24


class DelayedAnswer(asyncio.Protocol):
    """Read one ``N\\n`` line, answer ``N`` zero bytes after the delay, close."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.buffer = b""
        self.transport: asyncio.Transport | None = None
        self.timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        if self.timer is not None or self.transport is None:
            return
        self.buffer += data
        line, newline, _ = self.buffer.partition(b"\n")
        if not newline:
            if len(self.buffer) > MAX_LINE:
                self.transport.close()
            return
        try:
            size = int(line)
        except ValueError:
            size = -1
        if not 0 <= size <= MAX_SIZE:
            self.transport.write(b"bad request\n")
            self.transport.close()
            return
        loop = asyncio.get_running_loop()
        self.timer = loop.call_later(self.delay, self.answer, size)

    def answer(self, size: int) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(b"0" * size)
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.timer is not None:
            self.timer.cancel()
        self.transport = None


async def serve(delay: float) -> None:
    """Listen on 127.0.0.1 (an OS-chosen port), announce it, answer until cancelled."""
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: DelayedAnswer(delay), "127.0.0.1", 0, backlog=4096, reuse_address=True
    )
    port = server.sockets[0].getsockname()[1]
    print(f"READY {port}", flush=True)
    async with server:
        await server.serve_forever()


def main(argv: list[str]) -> None:
    """``DELAY_MS``: serve until killed."""
    if len(argv) != 1:
        raise SystemExit("usage: _backend.py DELAY_MS")
    delay_ms = float(argv[0])
    if not 0 <= delay_ms <= 60_000:
        raise SystemExit(f"DELAY_MS must be between 0 and 60000, not {delay_ms}")
    asyncio.run(serve(delay_ms / 1000))


if __name__ == "__main__":
    main(sys.argv[1:])
