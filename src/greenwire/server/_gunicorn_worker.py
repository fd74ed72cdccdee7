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
from collections.abc import Callable
from datetime import timedelta
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
from greenwire.server.wsgi import WSGIServer

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
        line, field, fields, head = _request_limits(cfg)
        environ = {
            "SERVER_SOFTWARE": f"greenwire/{_greenwire_version()} gunicorn/{gunicorn.__version__}"
        }
        options: dict[str, Any] = {
            "pool": pool,
            "ssl_context": ssl_context(cfg) if cfg.is_ssl else None,
            # With --keepalive 0 every response closes its connection; the wait for a
            # connection's first request still needs a bound.
            "keep_alive": cfg.keepalive > 0,
            "keepalive_timeout": cfg.keepalive if cfg.keepalive > 0 else _FIRST_REQUEST_TIMEOUT,
            "max_request_line": line,
            "max_field_size": field,
            "max_headers": fields,
            "max_header_size": head,
            "max_body_size": None,  # gunicorn sets no limit on request bodies
            "script_name": getattr(cfg, "root_path", "") or "",
            "environ": environ,
            "connection_environ": _gunicorn_socket,
            "access_log": None,  # gunicorn's access log is written by the tracker
            "on_request_done": tracker.request_done if tracker.needed else None,
            "multiprocess": cfg.workers > 1,
        }
        servers = []
        for listener in self.sockets:
            # gunicorn's wrapper holds a stdlib socket: the server adopts its fd.
            server = WSGIServer(getattr(listener, "sock", listener), application, **options)
            server.start()
            servers.append(server)
        self.sockets = [server.socket for server in servers]
        if self.max_requests <= 1:
            self.drain()  # the first request is the last: it says so
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

    def drain(self) -> None:
        """From now on, answer every request with ``Connection: close``."""
        for server in self.servers:
            server.handler.keep_alive = False

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


# gunicorn's own limits (gunicorn.http.message), mapped one for one.
_GUNICORN_MAX_REQUEST_LINE = 8190
_GUNICORN_MAX_HEADERS = 32768
_GUNICORN_MAX_FIELD_SIZE = 8190
#: What gunicorn's fast parser allows for a request line with ``--limit-request-line 0``.
_GUNICORN_UNLIMITED_LINE = 1024 * 1024


def _request_limits(cfg: Any) -> tuple[int | None, int, int, int]:
    """``(max_request_line, max_field_size, max_headers, max_header_size)`` as gunicorn
    applies its settings.

    ``--limit-request-line``: negative or over 8190 is 8190, 0 is no limit of its own
    (414 beyond). ``--limit-request-field-size``: 0 or negative is 8190; a line counts
    ``name: value`` and its CRLF (431 beyond). ``--limit-request-fields``: 0, negative
    or over 32768 is 32768 (431 beyond). The whole head is held to what those allow
    together, as gunicorn's buffer limit does.
    """
    line: int | None = cfg.limit_request_line
    if line is None or line < 0 or line >= _GUNICORN_MAX_REQUEST_LINE:
        line = _GUNICORN_MAX_REQUEST_LINE
    elif line == 0:
        line = None
    field = cfg.limit_request_field_size
    if field <= 0:
        field = _GUNICORN_MAX_FIELD_SIZE
    fields = cfg.limit_request_fields
    if fields <= 0 or fields > _GUNICORN_MAX_HEADERS:
        fields = _GUNICORN_MAX_HEADERS
    line_budget = _GUNICORN_UNLIMITED_LINE if line is None else line
    head = line_budget + 2 + fields * (field + 2) + 2
    return line, field, fields, head


def _gunicorn_socket(sock: Any, address: Any) -> dict[str, Any]:
    """The environ key gunicorn's own workers set: the client's socket."""
    return {"gunicorn.socket": sock}


def _greenwire_version() -> str:
    import greenwire

    return str(greenwire.__version__)


# ------------------------------------------------------------------- per request
#
# What gunicorn does around each request is done from the WSGI server's
# ``on_request_done`` hook, called once the response is sent: count it for
# max_requests, write gunicorn's access log through ``log.access`` (with the body bytes
# really sent and the time the request really took) and run the post_request hook. The
# application is served as it is, so the server's one-send and sendfile() paths apply
# to it unchanged; only a pre_request hook needs a call in front of it.
#
# gunicorn counts a request when it starts and answers the one that reaches
# max_requests with ``Connection: close``. Counting when a request is done, the worker
# starts draining one request early: from then on every response says
# ``Connection: close`` (the servers' handlers turn ``keep_alive`` off) while the worker
# still serves, and the request that reaches the limit stops it.


class RequestTracker:
    """gunicorn's per-request duties: max_requests, the access log, the hooks."""

    def __init__(self, worker: GunicornWorker) -> None:
        cfg = worker.cfg
        self.worker = worker
        self.log = worker.log
        self.access = bool(getattr(worker.log, "access_log_enabled", True))
        error_log = getattr(worker.log, "error_log", None)
        debug = isinstance(error_log, logging.Logger) and error_log.isEnabledFor(logging.DEBUG)
        self.pre_request: Any = _configured_hook(cfg, "pre_request", always=debug)
        self.post_request: Any = _configured_hook(cfg, "post_request")

    def wrap(self, application: Callable[..., Any]) -> Callable[..., Any]:
        """The application to serve: ``application`` itself unless pre_request is set."""
        pre_request = self.pre_request
        if pre_request is None:
            return application
        worker = self.worker

        def with_pre_request(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
            pre_request(worker, _RequestView(environ))
            return application(environ, start_response)

        return with_pre_request

    @property
    def needed(self) -> bool:
        """True if :meth:`request_done` has anything to do."""
        return (
            self.access or self.post_request is not None or self.worker.max_requests < sys.maxsize
        )

    def request_done(
        self,
        environ: dict[str, Any],
        status: str,
        headers: list[tuple[str, str]],
        sent: int,
        seconds: float,
    ) -> None:
        """The server's ``on_request_done``: count, log, run post_request."""
        worker = self.worker
        worker.nr += 1
        if worker.nr >= worker.max_requests - 1:
            worker.drain()
            if worker.nr >= worker.max_requests:
                worker.request_limit_reached()
        if not (self.access or self.post_request is not None):
            return
        response = _ResponseView(status, headers, sent)
        request = _RequestView(environ)
        log = self.log
        if self.access:
            log.access(response, request, environ, timedelta(seconds=seconds))
        if self.post_request is not None:
            try:
                self.post_request(worker, request, environ, response)
            except Exception:
                log.exception("Exception in post_request hook")


def _configured_hook(cfg: Any, name: str, always: bool = False) -> Any:
    """The server hook ``name`` if the configuration changed it (or ``always``)."""
    setting = cfg.settings.get(name)
    if setting is None:
        return None
    hook = setting.get()
    return hook if always or hook is not setting.default else None


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

    __slots__ = ("status", "headers", "sent")

    def __init__(self, status: str, headers: list[tuple[str, str]], sent: int) -> None:
        self.status = status
        self.headers = headers
        self.sent = sent

    @property
    def status_code(self) -> int:
        try:
            return int(self.status.split(None, 1)[0])
        except ValueError:
            return 500

    @property
    def response_length(self) -> int:
        return self.sent
