"""The gunicorn worker: greenwire's WSGI server inside a gunicorn worker process.

Theory of operation
-------------------
gunicorn's master binds the listening sockets, forks the workers and watches them: a
worker must touch its heartbeat file (:meth:`notify`) at least every ``--timeout``
seconds or it is aborted (SIGABRT, then SIGKILL); SIGTERM asks a worker to stop
gracefully, SIGQUIT / SIGINT to stop now, SIGUSR1 to reopen its log files. The worker
here, in the forked child:

1. ``init_process`` patches the standard library (before the application is imported,
   so that its modules bind the green ``socket``, ``threading``, ``time`` ...). The
   child's hub is new: greenwire forgets a hub inherited through ``fork()`` (an
   ``os.register_at_fork`` hook), so nothing of the master's loop runs here.
2. ``run`` adopts each of gunicorn's listening sockets (their fds move into green
   sockets) and serves each with a :class:`~greenwire.server.wsgi.WSGIServer`; the
   servers share one :class:`~greenwire.Pool` of ``worker_connections`` slots, so the
   cap is per worker, as gunicorn documents it. The main greenlet then beats the
   heartbeat once a second (or every half ``--timeout`` if shorter) until the worker
   is told to stop, and stops the servers: stop accepting, close idle keep-alive
   connections, let requests under way finish for up to ``graceful_timeout``, kill the
   rest. The heartbeat keeps beating meanwhile, since the master's timeout still runs.

Signals
-------
Python runs a signal handler in the main thread between two bytecodes: in the hub's
greenlet when it was polling, in an application greenlet when that one was running.
Blocking there would block (or, for a green wait inside the hub, break) the whole
process, so the handlers only set flags and hand work to the hub with
:meth:`~greenwire._core.Hub.run_callback_from_signal`, which writes the hub's wake-up
fd: the hub runs the work in a greenlet of its own on its next turn.

There is one race a handler cannot close: a signal that arrives after the interpreter's
last look at its pending signals but before ``epoll_wait`` starts. Its handler would run
only once the poll ends, up to a heartbeat later. gunicorn's base class points
``signal.set_wakeup_fd`` at a pipe of its own (``self.PIPE``), which the C-level
handler writes at once; a greenlet here waits on that pipe's read end, so the poll
returns immediately, the handler runs, and the pipe is drained and never fills up. The
hub does not use ``set_wakeup_fd`` itself, so nothing else competes for it.

SIGABRT is the exception: the master sends it to a worker that missed its heartbeat,
typically because the application blocked the hub with a real blocking call. Deferred
work would then never run, so when the handler interrupts anything but the hub, it runs
gunicorn's abort (the ``worker_abort`` hook, then ``SystemExit``) right there, as
gunicorn's own workers do.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from collections.abc import Callable, Iterator
from datetime import timedelta
from time import monotonic as _monotonic
from types import FrameType
from typing import Any

import gunicorn  # type: ignore[import-untyped]
from greenlet import getcurrent
from gunicorn.sock import ssl_context  # type: ignore[import-untyped]
from gunicorn.workers import base  # type: ignore[import-untyped]

from greenwire import monkey
from greenwire._core import Hub, get_hub
from greenwire.event import Event
from greenwire.greenlet import Greenlet, joinall
from greenwire.pool import Pool
from greenwire.server.wsgi import FileWrapper, WSGIServer

__all__ = ["GunicornWorker"]

_HEARTBEAT_MAX = 1.0
#: Seconds a new connection may take to start its request when keep-alive is off.
_FIRST_REQUEST_TIMEOUT = 30.0


class _ForwardToLogger(logging.Handler):
    """A logging handler passing records on to another logger's handlers."""

    def __init__(self, target: logging.Logger) -> None:
        super().__init__()
        self.target = target

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno >= self.target.getEffectiveLevel():
            self.target.handle(record)


class GunicornWorker(base.Worker):  # type: ignore[misc]
    """A gunicorn worker serving the application with greenwire's WSGI server.

    Use it with ``gunicorn -k greenwire.gunicorn.Worker app:app``. Every connection runs
    in its own greenlet, at most ``--worker-connections`` at once per worker.
    """

    # Set by gunicorn's base class (typed here for the checker).
    alive: bool
    nr: int
    max_requests: int
    sockets: list[Any]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.worker_connections: int = self.cfg.worker_connections
        self.servers: list[WSGIServer] = []
        self._hub: Hub | None = None
        self._wakeup: Event | None = None

    @classmethod
    def check_config(cls, cfg: Any, log: Any) -> None:
        """Warn (in the master) about settings this worker does not follow."""
        if cfg.preload_app:
            log.warning(
                "greenwire worker with --preload: the application is imported before "
                "the worker patches the standard library; call "
                "greenwire.monkey.patch_all() first thing in the application module"
            )
        if any(p != "h1" for p in getattr(cfg, "http_protocols", ["h1"])):
            log.warning("greenwire worker serves HTTP/1.1 only; http_protocols is ignored")

    # ----------------------------------------------------------- the process

    def init_process(self) -> None:
        """Patch the standard library, then let gunicorn load the app and call run()."""
        # The fork left the master's handlers in place, which would queue a signal for
        # a master loop that does not run here: a SIGTERM sent while patching would be
        # lost. Ours first; gunicorn's init_signals sets them all again.
        signal.signal(signal.SIGTERM, self.handle_exit)
        signal.signal(signal.SIGQUIT, self.handle_quit)
        signal.signal(signal.SIGINT, self.handle_quit)
        monkey.patch_all()
        self._hub = get_hub()  # the child's own: the master's was dropped at fork
        self._wakeup = Event()
        super().init_process()

    def run(self) -> None:
        """Serve until told to stop, beating the heartbeat; then stop gracefully."""
        hub = get_hub()
        wakeup = self._wakeup
        assert wakeup is not None
        self._route_logs(hub)
        self.servers = self._start_servers()
        watcher = Greenlet.spawn(self._watch_signal_pipe, hub)
        interval = min(_HEARTBEAT_MAX, self.timeout) if self.timeout > 0 else _HEARTBEAT_MAX
        try:
            while self.alive:
                self.notify()
                wakeup.wait(interval)
                wakeup.clear()
            self._stop_servers(interval)
        finally:
            watcher.kill()

    def notify(self) -> None:
        """Beat the heartbeat; start stopping if the master went away."""
        super().notify()
        if self.ppid != os.getppid() and self.alive:
            self.log.info("Parent changed, shutting down: %s", self)
            self.alive = False

    # ----------------------------------------------------------- serving

    def _start_servers(self) -> list[WSGIServer]:
        cfg = self.cfg
        tracker = RequestTracker(self)
        application = tracker.wrap(self.wsgi)
        pool = Pool(self.worker_connections)
        environ = {
            "SERVER_SOFTWARE": f"greenwire/{_greenwire_version()} gunicorn/{gunicorn.__version__}"
        }
        options: dict[str, Any] = {
            "pool": pool,
            "ssl_context": ssl_context(cfg) if cfg.is_ssl else None,
            # With --keepalive 0 every response closes its connection (the tracker says
            # so); the wait for a connection's first request still needs a bound.
            "keepalive_timeout": cfg.keepalive if cfg.keepalive > 0 else _FIRST_REQUEST_TIMEOUT,
            "max_header_size": _max_header_size(cfg),
            "max_headers": cfg.limit_request_fields or 32768,
            "max_body_size": None,  # gunicorn sets no limit on request bodies
            "script_name": getattr(cfg, "root_path", "") or "",
            "environ": environ,
            "access_log": None,  # gunicorn's access log is written by the tracker
            "multiprocess": cfg.workers > 1,
        }
        servers = []
        for listener in self.sockets:
            # gunicorn's wrapper holds a stdlib socket: the server adopts its fd.
            server = WSGIServer(getattr(listener, "sock", listener), application, **options)
            server.start()
            servers.append(server)
        self.sockets = [server.socket for server in servers]
        return servers

    def _stop_servers(self, interval: float) -> None:
        """Stop every server at once; keep the heartbeat going while requests finish."""
        graceful = float(self.cfg.graceful_timeout)
        pool = self.servers[0].pool if self.servers else None
        self.log.info(
            "Worker stopping gracefully (pid:%s): %d connection(s) open, waiting up to %g s",
            self.pid,
            len(pool) if pool is not None else 0,
            graceful,
        )
        stoppers = [Greenlet.spawn(server.stop, graceful) for server in self.servers]
        hub = get_hub()
        deadline = hub.now() + graceful
        warned = False
        while len(joinall(stoppers, timeout=interval)) < len(stoppers):
            self.notify()
            if not warned and pool is not None and len(pool) and hub.now() >= deadline:
                warned = True
                self.log.warning("Worker graceful timeout (pid:%s)", self.pid)

    def request_limit_reached(self) -> None:
        """Called by the request tracker after ``max_requests``: stop gracefully."""
        if self.alive:
            self.log.info("Autorestarting worker after current request.")
            self.alive = False
            if self._wakeup is not None:
                self._wakeup.set()

    # ----------------------------------------------------------- signals

    def _watch_signal_pipe(self, hub: Hub) -> None:
        """Wake the hub whenever gunicorn's signal wake-up pipe is written; drain it."""
        fd = self.PIPE[0]
        read = monkey.get_original("os", "read")
        try:
            while True:
                try:
                    while read(fd, 4096):
                        pass
                except BlockingIOError:
                    hub.wait_readable(fd)
        finally:
            hub.notify_closing(fd)  # gunicorn closes it at exit: drop our registration

    def _in_hub(self, fn: Callable[..., object], *args: Any) -> None:
        """Run ``fn(*args)`` in a new greenlet, started by the hub (signal-safe)."""
        hub = self._hub
        if hub is None:  # a signal before init_process: nothing green runs yet
            fn(*args)
            return
        hub.run_callback_from_signal(Greenlet.spawn, fn, *args)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        """SIGTERM: stop gracefully."""
        self.alive = False
        if self._hub is not None and self._wakeup is not None:
            self._hub.run_callback_from_signal(self._wakeup.set)

    def handle_quit(self, sig: int, frame: FrameType | None) -> None:
        """SIGQUIT, SIGINT: gunicorn's quick exit (``worker_int`` hook, then exit)."""
        self.alive = False
        self._in_hub(super().handle_quit, sig, None)

    def handle_usr1(self, sig: int, frame: FrameType | None) -> None:
        """SIGUSR1: reopen the log files."""
        self._in_hub(super().handle_usr1, sig, None)

    def handle_abort(self, sig: int, frame: FrameType | None) -> None:
        """SIGABRT (a missed heartbeat): ``worker_abort`` hook, then exit."""
        if self._hub is not None and getcurrent() is self._hub:
            self.alive = False
            self._in_hub(super().handle_abort, sig, None)
        else:  # the hub is not running, maybe blocked for good: abort right here
            super().handle_abort(sig, frame)

    # ----------------------------------------------------------- logs

    def _route_logs(self, hub: Hub) -> None:
        """Send greenwire's logs and the hub's error reports to gunicorn's error log."""
        error_log = getattr(self.log, "error_log", None)
        if isinstance(error_log, logging.Logger):
            ours = logging.getLogger("greenwire")
            if not ours.handlers:  # else the user's logging configuration decides
                ours.addHandler(_ForwardToLogger(error_log))
                ours.setLevel(error_log.getEffectiveLevel())
                ours.propagate = False

        def report(context: object, exc: BaseException) -> None:
            self.log.error("%r failed", context, exc_info=(type(exc), exc, exc.__traceback__))

        hub.error_handler = report


def _max_header_size(cfg: Any) -> int:
    """The request head budget from gunicorn's per-line limits.

    greenwire limits the request line and headers together; the budget is what
    gunicorn's limits allow at most, so no request gunicorn accepts is refused
    (0 means "unlimited" to gunicorn: its hard maximum of 8190 bytes is used then).
    """
    line = cfg.limit_request_line or 8190
    field = cfg.limit_request_field_size or 8190
    fields = cfg.limit_request_fields or 32768
    return line + 2 + fields * (field + 2) + 2


def _greenwire_version() -> str:
    import greenwire

    return str(greenwire.__version__)


# ------------------------------------------------------------------- per request
#
# What gunicorn does around each request (count it for max_requests, the
# pre_request / post_request hooks, the access log through ``log.access``, no
# keep-alive with --keepalive 0) is done by wrapping the application: the WSGI
# server has no per-request callback. The wrapper keeps list, tuple and
# ``wsgi.file_wrapper`` results as they are, so the server's one-send and sendfile()
# paths still apply; those requests are logged when the application returns, other
# bodies when the server closes them.


class RequestTracker:
    """Wraps the WSGI application with gunicorn's per-request duties."""

    def __init__(self, worker: GunicornWorker) -> None:
        cfg = worker.cfg
        self.worker = worker
        self.log = worker.log
        self.access = bool(getattr(worker.log, "access_log_enabled", True))
        self.close_each = cfg.keepalive <= 0
        error_log = getattr(worker.log, "error_log", None)
        debug = isinstance(error_log, logging.Logger) and error_log.isEnabledFor(logging.DEBUG)
        self.pre_request: Any = _configured_hook(cfg, "pre_request", always=debug)
        self.post_request: Any = _configured_hook(cfg, "post_request")
        self.application: Callable[..., Any] | None = None

    def wrap(self, application: Callable[..., Any]) -> Callable[..., Any]:
        """The application to serve: ``application`` itself if nothing is to be done."""
        self.application = application
        needed = (
            self.access
            or self.close_each
            or self.pre_request is not None
            or self.post_request is not None
            or self.worker.max_requests < sys.maxsize
        )
        return self if needed else application

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        worker = self.worker
        application = self.application
        assert application is not None
        worker.nr += 1
        last = worker.nr >= worker.max_requests
        if last:
            worker.request_limit_reached()
        if not (self.access or self.pre_request or self.post_request or self.close_each or last):
            return application(environ, start_response)
        exchange = _Exchange(self, environ, start_response, self.close_each or last)
        return exchange.run(application)


def _configured_hook(cfg: Any, name: str, always: bool = False) -> Any:
    """The server hook ``name`` if the configuration changed it (or ``always``)."""
    setting = cfg.settings.get(name)
    if setting is None:
        return None
    hook = setting.get()
    return hook if always or hook is not setting.default else None


class _Exchange:
    """One request and its response, as the access log and the hooks see them."""

    __slots__ = (
        "tracker",
        "environ",
        "inner",
        "close",
        "started",
        "status",
        "headers",
        "sent",
        "finished",
    )

    def __init__(
        self,
        tracker: RequestTracker,
        environ: dict[str, Any],
        start_response: Callable[..., Any],
        close: bool,
    ) -> None:
        self.tracker = tracker
        self.environ = environ
        self.inner = start_response
        self.close = close
        self.started = _monotonic()
        self.status: str | None = None
        self.headers: list[tuple[str, str]] = []
        self.sent = 0
        self.finished = False

    def run(self, application: Callable[..., Any]) -> Any:
        tracker = self.tracker
        if tracker.pre_request is not None:
            tracker.pre_request(tracker.worker, _RequestView(self.environ))
        try:
            result = application(self.environ, self.start_response)
        except BaseException:
            self.status = "500 Internal Server Error"
            self.finish()
            raise
        kind = type(result)
        if kind is list or kind is tuple:
            self.sent += sum(map(len, result))
            self.finish()
            return result
        if isinstance(result, FileWrapper):
            span = result.fileno_and_span()
            self.sent += span[2] if span is not None else 0
            self.finish()
            return result
        return _TrackedBody(self, result)

    def start_response(
        self, status: str, headers: list[tuple[str, str]], exc_info: Any = None
    ) -> Callable[[bytes], None]:
        if self.close and not any(name.lower() == "connection" for name, _ in headers):
            headers = [*headers, ("Connection", "close")]
        write = self.inner(status, headers, exc_info)
        self.status = status
        self.headers = headers

        def counting_write(data: bytes) -> None:
            write(data)
            self.sent += len(data)

        return counting_write

    def finish(self) -> None:
        """Write the access log line and run the post_request hook (once)."""
        if self.finished:
            return
        self.finished = True
        tracker = self.tracker
        environ = self.environ
        if environ.get("REQUEST_METHOD") == "HEAD":
            self.sent = 0
        elapsed = timedelta(seconds=_monotonic() - self.started)
        response = _ResponseView(self.status or "500 Internal Server Error", self.headers, self)
        request = _RequestView(environ)
        log = tracker.log
        if tracker.access:
            log.access(response, request, environ, elapsed)
        if tracker.post_request is not None:
            try:
                tracker.post_request(tracker.worker, request, environ, response)
            except Exception:
                log.exception("Exception in post_request hook")


class _TrackedBody:
    """An application's response iterable, counted; finishing the exchange on close()."""

    __slots__ = ("exchange", "body")

    def __init__(self, exchange: _Exchange, body: Any) -> None:
        self.exchange = exchange
        self.body = body

    def __iter__(self) -> Iterator[bytes]:
        exchange = self.exchange
        for block in self.body:
            exchange.sent += len(block)
            yield block

    def close(self) -> None:
        try:
            close = getattr(self.body, "close", None)
            if close is not None:
                close()
        finally:
            self.exchange.finish()


class _RequestView:
    """The parts of gunicorn's request object that hooks and the access log read."""

    __slots__ = ("environ",)

    def __init__(self, environ: dict[str, Any]) -> None:
        self.environ = environ

    @property
    def method(self) -> str:
        return str(self.environ.get("REQUEST_METHOD", ""))

    @property
    def uri(self) -> str:
        return str(self.environ.get("RAW_URI", ""))

    @property
    def path(self) -> str:
        return str(self.environ.get("PATH_INFO", ""))

    @property
    def query(self) -> str:
        return str(self.environ.get("QUERY_STRING", ""))

    @property
    def version(self) -> tuple[int, int]:
        return (1, 0) if self.environ.get("SERVER_PROTOCOL") == "HTTP/1.0" else (1, 1)

    @property
    def headers(self) -> list[tuple[str, str]]:
        """``(NAME, value)`` pairs, upper-case as gunicorn gives them."""
        pairs = []
        for key, value in self.environ.items():
            if key.startswith("HTTP_"):
                pairs.append((key[5:].replace("_", "-"), value))
            elif key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
                pairs.append((key.replace("_", "-"), value))
        return pairs


class _ResponseView:
    """The parts of gunicorn's response object that hooks and the access log read."""

    __slots__ = ("status", "headers", "_exchange")

    def __init__(self, status: str, headers: list[tuple[str, str]], exchange: _Exchange) -> None:
        self.status = status
        self.headers = headers
        self._exchange = exchange

    @property
    def status_code(self) -> int:
        try:
            return int(self.status.split(None, 1)[0])
        except ValueError:
            return 500

    @property
    def sent(self) -> int:
        return self._exchange.sent

    response_length = sent
