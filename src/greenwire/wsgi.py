"""The WSGI server: ``from greenwire.wsgi import WSGIServer``.

See :mod:`greenwire.server.wsgi` and ``docs/wsgi.md``.
"""

from greenwire.server.wsgi import FileWrapper, WSGIApplication, WSGIHandler, WSGIServer

__all__ = ["FileWrapper", "WSGIApplication", "WSGIHandler", "WSGIServer"]
