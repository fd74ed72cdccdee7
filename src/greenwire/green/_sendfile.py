"""``socket.sendfile`` for green sockets: ``os.sendfile`` with the hub's waits.

The stdlib's ``socket._sendfile_use_sendfile`` calls ``os.sendfile`` in a loop and, when
the socket's buffer is full, waits for writability in a blocking ``selectors`` poll: under
a hub that poll would stop every greenlet. Here a "would block" parks only the calling
greenlet, on the hub, with the socket's timeout applying to each wait, as in the stdlib.

Everything else is the stdlib's behaviour: a non-blocking socket is refused with
``ValueError``; a file without a usable ``fileno()``, one ``fstat`` rejects, or an error
before the first byte went out raise the stdlib's private ``_GiveupOnSendfile``, on which
``socket.sendfile()`` falls back to plain ``send()`` calls; an error after that is raised
as it is; and the file's position is left just past the last byte sent.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable
from typing import Any

from greenwire.green._registry import original

_GiveupOnSendfile: type[Exception] = original("socket", "_GiveupOnSendfile")
_os_sendfile: Callable[[int, int, int, int], int] | None = original("os", "sendfile", None)

__all__ = ["use_sendfile"]


def use_sendfile(sock: Any, file: Any, offset: int = 0, count: int | None = None) -> int:
    """Send ``file`` (from ``offset``, ``count`` bytes or to its end) on green ``sock``."""
    if _os_sendfile is None:  # pragma: no cover - every Linux has it
        raise _GiveupOnSendfile("os.sendfile() not available on this platform")
    sock._check_sendfile_params(file, offset, count)
    sockno = sock.fileno()
    try:
        fileno = file.fileno()
    except (AttributeError, io.UnsupportedOperation) as err:
        raise _GiveupOnSendfile(err) from None
    try:
        fsize = os.fstat(fileno).st_size
    except OSError as err:
        raise _GiveupOnSendfile(err) from None
    if not fsize:
        return 0
    blocksize = min(count or fsize, 2**30)
    timeout = sock._timeout
    if timeout == 0:
        raise ValueError("non-blocking sockets are not supported")
    hub, st = sock._wait_state()
    total_sent = 0
    try:
        while True:
            if count:
                blocksize = count - total_sent
                if blocksize <= 0:
                    break
            try:
                sent = _os_sendfile(sockno, fileno, offset, blocksize)
            except BlockingIOError:
                hub.wait_state_writable(st, timeout)
                continue
            except OSError as err:
                if total_sent == 0:
                    raise _GiveupOnSendfile(err) from None
                raise
            if sent == 0:
                break
            offset += sent
            total_sent += sent
        return total_sent
    finally:
        if total_sent > 0 and hasattr(file, "seek"):
            file.seek(offset)
