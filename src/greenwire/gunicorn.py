"""A gunicorn worker class: ``gunicorn -k greenwire.gunicorn.Worker app:app``.

Each gunicorn worker process patches the standard library with
:func:`greenwire.monkey.patch_all`, then serves the application with greenwire's WSGI
server, one greenlet per connection and up to ``--worker-connections`` at once. The
usual gunicorn lifecycle applies: heartbeat and ``--timeout``, graceful stop on SIGTERM
(and so graceful reload on SIGHUP to the master), ``--max-requests`` (with jitter),
``--keepalive``, ``--graceful-timeout``, TLS settings, the access log and the
``pre_request`` / ``post_request`` hooks. See ``docs/gunicorn.md``.

Needs gunicorn (``pip install greenwire[gunicorn]``).
"""

from __future__ import annotations

try:
    import gunicorn.workers.base  # type: ignore[import-untyped]  # noqa: F401
except ImportError as exc:  # pragma: no cover - gunicorn is installed for the tests
    raise ImportError(
        "greenwire.gunicorn needs gunicorn: pip install 'greenwire[gunicorn]'"
    ) from exc

from greenwire.server._gunicorn_worker import GunicornWorker

#: The worker class to give gunicorn: ``-k greenwire.gunicorn.Worker``.
Worker = GunicornWorker

__all__ = ["GunicornWorker", "Worker"]
