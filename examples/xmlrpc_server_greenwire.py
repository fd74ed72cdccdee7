"""The article's third server: the threaded one, unchanged, after ``patch_all()``.

    python examples/xmlrpc_server_greenwire.py [--port 8080] [--duration SECONDS]

``greenwire.monkey.patch_all()`` makes sockets, ``select``, threads and locks cooperative;
then this script runs xmlrpc_server_threaded.py itself, not a copy of it. Each request's
"thread" is now a greenlet: starting one costs microseconds, a thousand cost one OS thread,
and while a handler waits on a socket the hub runs the others. The same effect without
this file: ``python -m greenwire.monkey examples/xmlrpc_server_threaded.py``.
"""

from greenwire import monkey

monkey.patch_all()  # first, before anything imports socket or threading

import runpy  # noqa: E402
from pathlib import Path  # noqa: E402

runpy.run_path(str(Path(__file__).with_name("xmlrpc_server_threaded.py")), run_name="__main__")
