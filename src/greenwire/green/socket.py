"""Cooperative :mod:`socket`: the stdlib socket API, blocking only the calling greenlet.

``from greenwire.green import socket`` is a drop-in for ``import socket``: every public
name of the stdlib module is here (constants, exceptions, ``inet_*``, ``getdefaulttimeout``
...), with the socket class, the functions that create sockets and name resolution made
cooperative.

Theory of operation
-------------------
:class:`socket` subclasses the stdlib's own ``socket.socket``, so ``isinstance`` checks,
``makefile()`` and ``SocketIO``, ``dup()``, the ``send()`` fallback of ``sendfile()`` and
the context manager are the stdlib's code running on top of the cooperative methods.

The OS socket is always non-blocking (its C-level timeout is 0.0). The timeout the user
sees -- ``settimeout``/``gettimeout``/``setblocking``/``getblocking``, the ``timeout``
attribute, ``getdefaulttimeout()`` at creation, ``SOCK_NONBLOCK`` in the type -- lives in a
Python slot and is emulated. Every blocking method first makes the C call; only on
``BlockingIOError`` does it look at the timeout: 0.0 re-raises (non-blocking mode,
exactly as the stdlib), anything else parks the greenlet on the hub until the fd is ready
and tries again. Wake-ups are hints, so the retry loops; with a timeout the deadline is
fixed when the wait starts, and expiry raises ``TimeoutError("timed out")``, which is
``socket.timeout``.

In blocking mode, ``recv`` and ``recv_into`` without flags read through an ``io.FileIO``
on the same fd once they have had to wait: it answers "would block" with None instead of
an exception, which is most of the cost of the wait in a request/response server.

The fd is registered with the hub the first time a call has to wait, not at creation:
sockets that never wait cost no ``epoll_ctl``. Registering after the failed call loses
nothing, because epoll reports a direction that is already ready when an fd is added.

As everywhere in greenwire, one greenlet at a time may wait to read a socket and one to
write it; a second concurrent reader gets :class:`~greenwire.ConcurrentWaitError` instead
of a silent hang. A socket belongs to the hub of the OS thread that waits on it; waiting
from another thread registers it with that thread's hub (sockets are not meant to be
shared between threads that both use them, as with any greenlet library).

Closing tells the hub *before* the fd is closed (``notify_closing``): greenlets parked on
the socket wake with :class:`~greenwire.ClosedResourceError` (an ``OSError`` with
``EBADF``) instead of waiting forever, and epoll drops the fd while the number still names
it. That happens in ``_real_close`` (the one place the stdlib closes the fd: ``close()``
without open makefiles, or the last makefile's ``close()``), in ``detach()`` and when an
unclosed socket is garbage-collected.

What differs from the stdlib, by design: the fd itself is always ``O_NONBLOCK`` (visible
to ``fcntl`` and to ``os.read(sock.fileno())``; ``detach()`` hands it back in the mode the
stdlib would have left). Blocking mode needs a non-blocking fd under a hub: the wait
belongs in the hub, not in the kernel call, and the hot ``recv`` path relies on the
flag to learn "would block" without an exception.

Host names in the addresses given to ``connect``, ``connect_ex``, ``sendto`` and
``sendmsg`` would make the C layer call libc's resolver inline and block the hub; they are
resolved through :mod:`greenwire.green.dns` first, the same way the C layer does it.
(``bind`` is left to the C layer: it names a local address.)
"""

from __future__ import annotations

import _socket
import builtins
import io
import math
import os
import socket as _stdlib
from collections.abc import Callable
from errno import EAGAIN, EALREADY, EINPROGRESS, EINTR, EISCONN, EWOULDBLOCK
from types import ModuleType
from typing import TYPE_CHECKING, Any, SupportsIndex

from greenwire._core import FdState, Hub, existing_hub, get_hub
from greenwire.green import _sendfile
from greenwire.green import dns as _dns
from greenwire.green._registry import original

if TYPE_CHECKING:
    from socket import socket as _BaseSocket

    from _typeshed import ReadableBuffer, WriteableBuffer

    # The stdlib names copied in below are invisible to the type checker.
    def __getattr__(name: str) -> Any: ...

else:
    _BaseSocket = original("socket", "socket")


def _copy_stdlib_names() -> list[str]:
    """Put the unpatched stdlib ``socket`` names in this module; return its ``__all__``."""
    namespace = globals()
    for name, value in vars(_stdlib).items():
        if not name.startswith("__") and not isinstance(value, ModuleType):
            namespace[name] = original("socket", name)
    return list(_stdlib.__all__)


__all__ = _copy_stdlib_names()
__target__ = "socket"
# SocketType stays the stdlib's: it is the C base class (``_socket.socket``), of which
# the green socket is a subclass, and replacing it would break isinstance checks on
# sockets made before patching (CPython's test_socket checks it is ``_socket.socket``).
__implements__ = ["socket", "socketpair", "fromfd", "create_connection", "create_server"]

_CSocket = _socket.socket
_c_init = _CSocket.__init__
_c_recv = _CSocket.recv
_c_recv_into = _CSocket.recv_into
_c_recvfrom = _CSocket.recvfrom
_c_recvfrom_into = _CSocket.recvfrom_into
_c_send = _CSocket.send
_c_sendto: Callable[..., int] = _CSocket.sendto
_c_accept: Callable[[_CSocket], tuple[int, Any]] = _CSocket.__dict__["_accept"]
_c_connect = _CSocket.connect
_c_connect_ex = _CSocket.connect_ex
_c_getsockopt = _CSocket.getsockopt
_c_fileno = _CSocket.fileno
_c_gettimeout = _CSocket.gettimeout
_c_settimeout = _CSocket.settimeout
_c_setblocking = _CSocket.setblocking
_c_finalize: Callable[[_CSocket], None] = _CSocket.__dict__.get("__del__", lambda s: None)
_c_family: Callable[[_CSocket], int] = _CSocket.__dict__["family"].__get__
_c_type: Callable[[_CSocket], int] = _CSocket.__dict__["type"].__get__
_c_proto: Callable[[_CSocket], int] = _CSocket.__dict__["proto"].__get__
_HAS_MSG = hasattr(_CSocket, "sendmsg")
_c_recvmsg: Any = getattr(_CSocket, "recvmsg", None)
_c_recvmsg_into: Any = getattr(_CSocket, "recvmsg_into", None)
_c_sendmsg: Any = getattr(_CSocket, "sendmsg", None)

_FileIO = io.FileIO
_getdefaulttimeout = _socket.getdefaulttimeout
_SOCK_NONBLOCK: int = getattr(_socket, "SOCK_NONBLOCK", 0)
_AF_INET = _socket.AF_INET
_AF_INET6: int | None = getattr(_socket, "AF_INET6", None)
_AF_UNIX: int | None = getattr(_socket, "AF_UNIX", None)
_SOCK_STREAM = _socket.SOCK_STREAM
_SOL_SOCKET = _socket.SOL_SOCKET
_SO_ERROR = _socket.SO_ERROR
_MSG_DONTWAIT: int = getattr(_socket, "MSG_DONTWAIT", 0)
_INET_FAMILIES = (_AF_INET, _AF_INET6)
#: Polling interval bounds when connect() says EAGAIN (a full AF_UNIX backlog): nothing
#: signals the connecting socket when the listener makes room, so it has to look again.
_UNIX_RETRY_FIRST = 0.001
_UNIX_RETRY_MAX = 0.1
_NS_PER_SECOND = 1_000_000_000

_GLOBAL_DEFAULT_TIMEOUT: object = original("socket", "_GLOBAL_DEFAULT_TIMEOUT")
_ExceptionGroup: Any = getattr(builtins, "ExceptionGroup", None)  # Python 3.11+


def _reusable(items: Any) -> Any:
    """``items`` as a list if it is a one-shot iterable (a retry must see it again)."""
    if type(items) is list or type(items) is tuple:
        return items
    try:
        return list(items)
    except TypeError:
        return items  # not iterable: the C call raises its own error


def _normalized_timeout(sock: _CSocket, value: Any) -> float | None:
    """``value`` as ``settimeout`` stores it, or the exception the stdlib raises for it."""
    if value is None:
        return None
    kind = type(value)
    if (kind is float or kind is int) and 0 <= value < 1e9:
        # CPython keeps whole nanoseconds, rounding a float up (see _PyTime_FromDouble).
        ns = math.ceil(value * 1e9) if kind is float else value * _NS_PER_SECOND
        if ns % _NS_PER_SECOND == 0:
            return float(ns // _NS_PER_SECOND)
        return float(ns / 1e9)
    # Anything else (NaN, negative, huge, not a number): let the C code judge it, so the
    # errors are the stdlib's, then put the OS socket back into non-blocking mode.
    _c_settimeout(sock, value)
    try:
        return _c_gettimeout(sock)
    finally:
        _c_settimeout(sock, 0.0)


class socket(_BaseSocket):
    """A stdlib ``socket.socket`` whose blocking calls park the greenlet, not the thread.

    Same constructor and methods as the stdlib class; see the module docstring.
    """

    __slots__ = ("_timeout", "_hub", "_state", "_reader")

    _timeout: float | None
    _hub: Hub | None
    _state: FdState | None
    _reader: io.FileIO | None

    def __init__(
        self, family: int = -1, type: int = -1, proto: int = -1, fileno: int | None = None
    ) -> None:
        created_non_blocking = False
        if fileno is None:
            if family == -1:
                family = _AF_INET
            if type == -1:
                type = _SOCK_STREAM
            if proto == -1:
                proto = 0
            if _SOCK_NONBLOCK and isinstance(type, int):
                # Made non-blocking by the socket() call itself, one syscall saved; the
                # C layer strips the flag from ``type``, and so does the kernel.
                _c_init(self, family, type | _SOCK_NONBLOCK, proto)
                timeout = 0.0 if type & _SOCK_NONBLOCK else _getdefaulttimeout()
                created_non_blocking = True
            else:
                _c_init(self, family, type, proto)
        else:
            _c_init(self, family, type, proto, fileno)
        if not created_non_blocking:
            timeout = _c_gettimeout(self)  # the default timeout, or 0.0 for SOCK_NONBLOCK
            _c_setblocking(self, False)
        self._io_refs = 0
        self._closed = False
        self._timeout = timeout
        self._hub = None
        self._state = None
        self._reader = None

    # --------------------------------------------------------------- timeouts

    @property
    def timeout(self) -> float | None:
        """The timeout in seconds, None for blocking mode (like ``gettimeout()``)."""
        return self._timeout

    def gettimeout(self) -> float | None:
        return self._timeout

    # Both make the one syscall the stdlib's make (fcntl F_GETFL: the fd is already
    # non-blocking, so there is nothing to set), which is what reports a closed or
    # invalid fd here with the stdlib's OSError rather than at the next I/O call.

    def settimeout(self, value: float | None, /) -> None:
        self._timeout = _normalized_timeout(self, value)
        _c_setblocking(self, False)

    def setblocking(self, flag: bool, /) -> None:
        if type(flag) is not bool and type(flag) is not int:
            # The C method judges the argument (an integer, or something with
            # __index__) and raises the stdlib's errors; then undo what it did.
            _c_setblocking(self, flag)
        self._timeout = None if flag else 0.0
        _c_setblocking(self, False)

    def getblocking(self) -> bool:
        return self._timeout != 0.0

    # ------------------------------------------------------------- waiting

    def _register(self, hub: Hub) -> FdState:
        """Register with ``hub``: on the first wait, or when waiting from another thread."""
        st = hub.register_fd(self)
        self._hub = hub
        self._state = st
        return st

    def _wait_state(self) -> tuple[Hub, FdState]:
        """The current hub and this socket's state in it, registering if needed."""
        hub = get_hub()
        st = self._state
        if self._hub is not hub or st is None or st.closed:
            st = self._register(hub)
        return hub, st

    def _must_not_wait(self, flags: int) -> bool:
        """True if a call that would block must raise BlockingIOError instead of waiting.

        That is non-blocking mode, and ``MSG_DONTWAIT`` on a blocking socket. With a
        timeout the stdlib polls before each call, so there it waits even with the flag.
        """
        timeout = self._timeout
        return timeout == 0.0 or (timeout is None and flags & _MSG_DONTWAIT != 0)

    def _blocked(self, writing: bool, op: Callable[..., Any], *args: Any) -> Any:
        """``op(self, *args)`` raised BlockingIOError: wait until ready and retry it.

        Raises:
            TimeoutError: the socket's timeout passed first.
            ClosedResourceError: the socket was closed meanwhile.
        """
        hub = get_hub()
        st = self._state
        if self._hub is not hub or st is None or st.closed:
            st = self._register(hub)
        wait = hub.wait_state_writable if writing else hub.wait_state_readable
        timeout = self._timeout
        if timeout is None:
            while True:
                wait(st)
                try:
                    return op(self, *args)
                except BlockingIOError:
                    pass
        deadline = hub.now() + timeout
        while True:
            wait(st, timeout)
            try:
                return op(self, *args)
            except BlockingIOError:
                pass
            timeout = deadline - hub.now()
            if timeout <= 0.0:
                raise TimeoutError("timed out")

    # ------------------------------------------------------------- receiving

    # recv and recv_into are what servers spend their time in. In blocking mode, once a
    # call has had to wait, they read through an io.FileIO on the same fd: read(2) is
    # recv(2) without flags, and FileIO says "would block" by returning None where the
    # socket method raises BlockingIOError. Raising, catching and the traceback's frame
    # object cost more than the rest of the wrapper; servers hit that once per request.

    def recv(self, bufsize: int, flags: int = 0, /) -> bytes:
        reader = self._reader
        if reader is not None and not flags and bufsize > 0 and self._timeout is None:
            data: bytes | None = reader.read(bufsize)
            if data is not None:
                return data
        else:
            try:
                return _c_recv(self, bufsize, flags)
            except BlockingIOError:
                if self._timeout is not None:
                    if self._timeout == 0.0:
                        raise
                    result: bytes = self._blocked(False, _c_recv, bufsize, flags)
                    return result
                if flags & _MSG_DONTWAIT:
                    raise
            if not flags and bufsize > 0:
                reader = self._reader = _FileIO(_c_fileno(self), "rb", closefd=False)
            else:
                reader = None  # flags (MSG_PEEK...) need the socket call
        hub = get_hub()
        st = self._state
        if self._hub is not hub or st is None or st.closed:
            st = self._register(hub)
        while True:
            hub.wait_state_readable(st)
            if reader is not None:
                data = reader.read(bufsize)
                if data is not None:
                    return data
            else:
                try:
                    return _c_recv(self, bufsize, flags)
                except BlockingIOError:
                    pass

    def recv_into(self, buffer: WriteableBuffer, nbytes: int = 0, flags: int = 0) -> int:
        reader = self._reader
        if reader is not None and not (nbytes or flags) and self._timeout is None:
            count: int | None = reader.readinto(buffer)
            if count is not None:
                return count
        else:
            try:
                return _c_recv_into(self, buffer, nbytes, flags)
            except BlockingIOError:
                if self._timeout is not None:
                    if self._timeout == 0.0:
                        raise
                    result: int = self._blocked(False, _c_recv_into, buffer, nbytes, flags)
                    return result
                if flags & _MSG_DONTWAIT:
                    raise
            if not (nbytes or flags):
                reader = self._reader = _FileIO(_c_fileno(self), "rb", closefd=False)
            else:
                reader = None  # flags (MSG_PEEK...) and nbytes need the socket call
        hub = get_hub()
        st = self._state
        if self._hub is not hub or st is None or st.closed:
            st = self._register(hub)
        while True:
            hub.wait_state_readable(st)
            if reader is not None:
                count = reader.readinto(buffer)
                if count is not None:
                    return count
            else:
                try:
                    return _c_recv_into(self, buffer, nbytes, flags)
                except BlockingIOError:
                    pass

    def recvfrom(self, bufsize: int, flags: int = 0, /) -> tuple[bytes, Any]:
        try:
            return _c_recvfrom(self, bufsize, flags)
        except BlockingIOError:
            if self._must_not_wait(flags):
                raise
        result: tuple[bytes, Any] = self._blocked(False, _c_recvfrom, bufsize, flags)
        return result

    def recvfrom_into(
        self, buffer: WriteableBuffer, nbytes: int = 0, flags: int = 0
    ) -> tuple[int, Any]:
        try:
            return _c_recvfrom_into(self, buffer, nbytes, flags)
        except BlockingIOError:
            if self._must_not_wait(flags):
                raise
        result: tuple[int, Any] = self._blocked(False, _c_recvfrom_into, buffer, nbytes, flags)
        return result

    if _HAS_MSG:

        def recvmsg(self, *args: Any) -> tuple[bytes, list[tuple[int, int, bytes]], int, Any]:
            try:
                return _c_recvmsg(self, *args)  # type: ignore[no-any-return]
            except BlockingIOError:
                if self._must_not_wait(args[2] if len(args) > 2 else 0):
                    raise
            return self._blocked(False, _c_recvmsg, *args)  # type: ignore[no-any-return]

        def recvmsg_into(self, *args: Any) -> tuple[int, list[tuple[int, int, bytes]], int, Any]:
            if args:
                args = (_reusable(args[0]), *args[1:])
            try:
                return _c_recvmsg_into(self, *args)  # type: ignore[no-any-return]
            except BlockingIOError:
                if self._must_not_wait(args[2] if len(args) > 2 else 0):
                    raise
            return self._blocked(False, _c_recvmsg_into, *args)  # type: ignore[no-any-return]

    # --------------------------------------------------------------- sending

    def send(self, data: ReadableBuffer, flags: int = 0, /) -> int:
        try:
            return _c_send(self, data, flags)
        except BlockingIOError:
            if self._must_not_wait(flags):
                raise
        result: int = self._blocked(True, _c_send, data, flags)
        return result

    def sendall(self, data: ReadableBuffer, flags: int = 0, /) -> None:
        """Send all of ``data``; the timeout bounds the whole call, as in the stdlib."""
        try:
            sent = _c_send(self, data, flags)
        except BlockingIOError:
            if self._must_not_wait(flags):
                raise
            sent = 0
        else:
            kind = type(data)
            if kind is memoryview:
                if sent == data.nbytes:  # type: ignore[attr-defined]
                    return
            elif kind is bytes or kind is bytearray:
                if sent == len(data):  # type: ignore[arg-type]
                    return
            elif sent == memoryview(data).nbytes:
                return
        self._sendall_rest(data, flags, sent)

    def _sendall_rest(self, data: ReadableBuffer, flags: int, sent: int) -> None:
        view = memoryview(data).cast("B")
        total = len(view)
        hub, st = self._wait_state()
        timeout = self._timeout
        deadline = None if timeout is None else hub.now() + timeout
        while sent < total:
            try:
                sent += _c_send(self, view[sent:], flags)
                continue
            except BlockingIOError:
                if self._must_not_wait(flags):
                    raise
            if deadline is not None:
                timeout = deadline - hub.now()
                if timeout <= 0.0:
                    raise TimeoutError("timed out")
            hub.wait_state_writable(st, timeout)

    def sendto(self, data: ReadableBuffer, *args: Any) -> int:
        if 1 <= len(args) <= 2:
            args = (*args[:-1], self._resolved(args[-1]))
        try:
            return _c_sendto(self, data, *args)
        except BlockingIOError:
            if self._must_not_wait(args[0] if len(args) == 2 else 0):
                raise
        result: int = self._blocked(True, _c_sendto, data, *args)
        return result

    if _HAS_MSG:

        def sendmsg(self, *args: Any) -> int:
            if len(args) == 4 and args[3] is not None:
                args = (*args[:3], self._resolved(args[3]))
            if args:  # buffers and ancillary data, both iterables
                args = (*map(_reusable, args[:2]), *args[2:])
            try:
                return _c_sendmsg(self, *args)  # type: ignore[no-any-return]
            except BlockingIOError:
                if self._must_not_wait(args[2] if len(args) > 2 else 0):
                    raise
            result: int = self._blocked(True, _c_sendmsg, *args)
            return result

    # ------------------------------------------------------ connections

    def _resolved(self, address: Any) -> Any:
        """``address`` with a host name replaced by its address, looked up cooperatively.

        The C layer would resolve the name itself, blocking the hub; it resolves with
        ``getaddrinfo(host, None, family)`` and takes the first answer, and so do we.
        Empty hosts, ``"<broadcast>"`` and literals are left to the C layer.
        """
        if type(address) is not tuple or not address or _c_family(self) not in _INET_FAMILIES:
            return address
        host = address[0]
        if (
            type(host) is not str
            or not host
            or host == "<broadcast>"
            or "%" in host
            or _dns._is_ip_literal(host)
        ):
            return address
        infos = _dns.getaddrinfo(host, None, _c_family(self))
        return (infos[0][4][0], *address[1:])

    def connect(self, address: Any, /) -> None:
        address = self._resolved(address)
        try:
            _c_connect(self, address)
            return
        except (BlockingIOError, InterruptedError) as e:
            first_error = e.errno or 0
            if self._timeout == 0.0 or not self._connect_pending(first_error):
                raise
        err = self._finish_connect(address, first_error)
        if err:
            raise OSError(err, os.strerror(err))

    def connect_ex(self, address: Any, /) -> int:
        address = self._resolved(address)
        err = _c_connect_ex(self, address)
        if self._timeout != 0.0 and self._connect_pending(err):
            try:
                err = self._finish_connect(address, err)
            except TimeoutError:
                return EWOULDBLOCK  # what the stdlib's connect_ex returns on timeout
        return err

    def _connect_pending(self, err: int) -> bool:
        """True if a connect that failed with ``err`` is one the stdlib would wait for.

        With a timeout the C layer waits only for EINPROGRESS (and EINTR); a blocking
        socket also waits in the kernel for a connect already under way (EALREADY) and,
        on AF_UNIX, for room in a full backlog (EAGAIN).
        """
        if err in (EINPROGRESS, EINTR):
            return True
        if self._timeout is not None:
            return False
        return err == EALREADY or (err == EAGAIN and _c_family(self) == _AF_UNIX)

    def _finish_connect(self, address: Any, err: int) -> int:
        """Wait for a connect that is under way; return 0 or the error number.

        Writability is only a hint (a stale edge, a spurious wake-up), so after
        ``SO_ERROR`` says "no error" a second ``connect`` confirms: ``EISCONN`` means
        done, ``EALREADY`` still under way.
        """
        hub, st = self._wait_state()
        timeout = self._timeout
        deadline = None if timeout is None else hub.now() + timeout
        retry_delay = _UNIX_RETRY_FIRST
        while True:
            if err == EAGAIN:  # AF_UNIX without a timeout, see _connect_pending
                # The listener's backlog is full; its accept() will not wake us.
                hub.park_until(hub.now() + retry_delay)
                retry_delay = min(retry_delay * 2, _UNIX_RETRY_MAX)
            else:
                hub.wait_state_writable(st, timeout)
                err = _c_getsockopt(self, _SOL_SOCKET, _SO_ERROR)
                if err:
                    return err
            err = _c_connect_ex(self, address)
            if err == 0 or err == EISCONN:
                return 0
            if err != EALREADY and err != EINPROGRESS and not self._connect_pending(err):
                return err
            if deadline is not None:
                timeout = deadline - hub.now()
                if timeout <= 0.0:
                    raise TimeoutError("timed out")

    def _accept(self) -> tuple[int, Any]:
        try:
            return _c_accept(self)
        except BlockingIOError:
            if self._timeout == 0.0:
                raise
        result: tuple[int, Any] = self._blocked(False, _c_accept)
        return result

    def accept(self) -> tuple[socket, Any]:
        """Wait for a connection; return a new green socket and the peer's address.

        The new socket's timeout is the default timeout, as in the stdlib.
        """
        fd, address = self._accept()
        return socket(_c_family(self), _c_type(self), _c_proto(self), fd), address

    # ------------------------------------------------------------- closing

    def _forget_fd(self) -> None:
        """Tell the hub the fd is going away: wakes its waiters, removes it from epoll."""
        self._reader = None  # it holds the fd number, which may soon name another file
        hub = self._hub
        if hub is not None:
            st = self._state
            self._hub = self._state = None
            # A closed state means the number was reused and registered by another
            # socket behind our back: that registration is not ours to drop.
            if st is not None and not st.closed:
                hub.notify_closing(st.fd)

    def _real_close(self, _ss: Any = _CSocket) -> None:
        self._forget_fd()
        _ss.close(self)

    def detach(self) -> int:
        self._forget_fd()
        # Hand the fd over in the mode the stdlib would leave it in: blocking unless a
        # timeout is set. The stdlib's detach() cannot fail, so neither may this: an fd
        # already closed behind the socket's back has no mode to restore.
        if self._timeout is None and _c_fileno(self) != -1:
            try:
                _c_setblocking(self, True)
            except OSError:
                pass
        return super().detach()

    def __del__(self) -> None:
        try:
            try:
                if self._hub is not None:
                    self._forget_fd()
            except Exception:  # half-built, or the interpreter is shutting down
                pass
            _c_finalize(self)
        except (KeyboardInterrupt, SystemExit) as exc:
            # A signal handler raised it here only because the signal came while this
            # finalizer ran, where Python would print it and drop it: finish closing,
            # then raise it in the thread's main greenlet as soon as the hub runs.
            _c_finalize(self)
            hub = existing_hub()
            if hub is not None:
                hub.raise_in_main_soon(exc)

    # ------------------------------------------------------------ sendfile

    def _sendfile_use_sendfile(self, file: Any, offset: int = 0, count: int | None = None) -> int:
        """``os.sendfile`` with the hub's waits (see :mod:`greenwire.green._sendfile`)."""
        return _sendfile.use_sendfile(self, file, offset, count)


SocketType = _socket.socket


# Once patched in, the functions below stand where the stdlib's are, and those look up
# ``socket`` and ``getaddrinfo`` in their module at call time. Doing the same honours a
# later replacement (a test's mock, an instrumenting subclass, a caching resolver) as long
# as the class is still a green socket; unpatched, the green class and resolver are used.


def _socket_class() -> type[socket]:
    cls: Any = _stdlib.socket
    if cls is not socket and isinstance(cls, type) and issubclass(cls, socket):
        return cls
    return socket


def _resolver() -> Callable[..., list[tuple[Any, Any, int, str, Any]]]:
    resolve: Callable[..., list[tuple[Any, Any, int, str, Any]]] = _stdlib.getaddrinfo
    return _dns.getaddrinfo if resolve is _original_getaddrinfo else resolve


def _adopt(sock: Any) -> socket:
    """A green socket owning ``sock``'s fd (``sock`` itself if it is green already)."""
    if isinstance(sock, socket):
        return sock
    timeout = sock.gettimeout()
    green = _socket_class()(sock.family, sock.type, sock.proto, sock.detach())
    green._timeout = timeout
    return green


def fromfd(fd: SupportsIndex, family: int, type: int, proto: int = 0) -> socket:
    """A green socket on a duplicate of ``fd`` (see :func:`socket.fromfd`)."""
    return _socket_class()(family, type, proto, _socket.dup(fd))


def socketpair(
    family: int | None = None, type: int = _SOCK_STREAM, proto: int = 0
) -> tuple[socket, socket]:
    """A pair of connected green sockets (see :func:`socket.socketpair`)."""
    if family is None:
        family = _AF_UNIX if _AF_UNIX is not None else _AF_INET
    a, b = _socket.socketpair(family, type, proto)
    cls = _socket_class()
    return cls(family, type, proto, a.detach()), cls(family, type, proto, b.detach())


def create_connection(
    address: tuple[str | None, int],
    timeout: Any = _GLOBAL_DEFAULT_TIMEOUT,
    source_address: Any = None,
    *,
    all_errors: bool = False,
) -> socket:
    """Connect to ``(host, port)``, trying each address of the host in turn.

    Cooperative :func:`socket.create_connection`: the name is resolved in the thread pool
    and each attempt waits on the hub. ``timeout`` (default: the global default timeout)
    is set on the socket before connecting.

    Raises:
        OSError: the last attempt's error, or an ``ExceptionGroup`` of all of them with
            ``all_errors=True`` (Python 3.11+).
    """
    host, port = address
    errors: list[OSError] = []
    cls = _socket_class()
    for family, kind, proto, _, sockaddr in _resolver()(host, port, 0, _SOCK_STREAM):
        sock = None
        try:
            sock = cls(family, kind, proto)
            if timeout is not _GLOBAL_DEFAULT_TIMEOUT:
                sock.settimeout(timeout)
            if source_address:
                sock.bind(source_address)
            sock.connect(sockaddr)
            errors.clear()
            return sock
        except OSError as exc:
            if not all_errors:
                errors.clear()
            errors.append(exc)
            if sock is not None:
                sock.close()
    if not errors:
        raise OSError("getaddrinfo returns an empty list")
    try:
        if all_errors and _ExceptionGroup is not None:
            raise _ExceptionGroup("create_connection failed", errors)
        raise errors[0]
    finally:
        errors.clear()  # the traceback would otherwise keep a reference cycle


_create_server: Callable[..., Any] = original("socket", "create_server")
_original_getaddrinfo: Any = original("socket", "getaddrinfo")


def create_server(
    address: Any,
    *,
    family: int = _AF_INET,
    backlog: int | None = None,
    reuse_port: bool = False,
    dualstack_ipv6: bool = False,
) -> socket:
    """A green listening TCP socket bound to ``address`` (see :func:`socket.create_server`).

    Binding and listening never block; the stdlib's own function does them, so options
    and error messages are exactly its own.
    """
    return _adopt(
        _create_server(
            address,
            family=family,
            backlog=backlog,
            reuse_port=reuse_port,
            dualstack_ipv6=dualstack_ipv6,
        )
    )


getaddrinfo = _dns.getaddrinfo
gethostbyname = _dns.gethostbyname
gethostbyname_ex = _dns.gethostbyname_ex
gethostbyaddr = _dns.gethostbyaddr
getnameinfo = _dns.getnameinfo
getfqdn = _dns.getfqdn
