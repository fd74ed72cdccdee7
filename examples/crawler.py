"""A concurrent web crawler: plain ``requests`` and threads, made cooperative by patching.

The crawler is ordinary thread-based code — worker threads take URLs from a
``queue.Queue``, fetch them with ``requests`` and queue the links they find. After
``monkey.patch_all()`` every worker is a greenlet, so a hundred of them cost almost
nothing and wait on the network together.

With no ``--url`` it crawls a small site it serves itself on 127.0.0.1 (pages that answer
after a delay, like a real server far away), so it runs anywhere.

Run:  python examples/crawler.py [--url URL] [--workers N] [--max-pages N]
"""

from greenwire import monkey

monkey.patch_all()

import argparse  # noqa: E402  (imports after patching, on purpose)
import http.server  # noqa: E402
import queue  # noqa: E402
import re  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
import urllib.parse  # noqa: E402

import requests  # noqa: E402

LINK = re.compile(r'href="([^"#]+)"')


def local_site(pages: int, delay: float) -> http.server.ThreadingHTTPServer:
    """Serve ``pages`` linked pages on 127.0.0.1, each answered after ``delay`` seconds."""

    class Page(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            time.sleep(delay)
            n = int(self.path.strip("/") or 0)
            links = "".join(f'<a href="/{(n * 3 + k) % pages}">p</a>' for k in (1, 2, 3))
            body = f"<html><body>page {n} {links}</body></html>".encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    class Server(http.server.ThreadingHTTPServer):
        daemon_threads = True
        # The default backlog of 5 overflows when 50 workers connect at once, and the
        # kernel then drops SYNs that the clients retry only after a second.
        request_queue_size = 128

    server = Server(("127.0.0.1", 0), Page)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def crawl(start: str, workers: int, max_pages: int) -> dict[str, int]:
    """Fetch pages reachable from ``start`` on the same host; return url -> status."""
    host = urllib.parse.urlsplit(start).netloc
    todo: queue.Queue[str | None] = queue.Queue()
    seen = {start}
    results: dict[str, int] = {}
    lock = threading.Lock()
    todo.put(start)

    def worker() -> None:
        with requests.Session() as session:
            while (url := todo.get()) is not None:
                try:
                    response = session.get(url, timeout=10)
                    status = response.status_code
                    links = LINK.findall(response.text)
                except requests.RequestException as e:
                    status, links = 0, []
                    print(f"  {url}: {e}")
                with lock:
                    results[url] = status
                    for link in links:
                        absolute = urllib.parse.urljoin(url, link)
                        if urllib.parse.urlsplit(absolute).netloc != host:
                            continue
                        if absolute not in seen and len(seen) < max_pages:
                            seen.add(absolute)
                            todo.put(absolute)
                todo.task_done()

    threads = [threading.Thread(target=worker) for _ in range(workers)]
    for t in threads:
        t.start()
    todo.join()  # every queued URL has been fetched and its links queued
    for _ in threads:
        todo.put(None)
    for t in threads:
        t.join()
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="where to start (default: a local demo site)")
    parser.add_argument("--workers", type=int, default=50)
    parser.add_argument("--max-pages", type=int, default=200)
    parser.add_argument("--delay", type=float, default=0.05, help="local site's delay (s)")
    args = parser.parse_args()

    server = None
    start = args.url
    if start is None:
        server = local_site(args.max_pages, args.delay)
        start = f"http://127.0.0.1:{server.server_address[1]}/0"
    began = time.monotonic()
    results = crawl(start, args.workers, args.max_pages)
    elapsed = time.monotonic() - began
    if server is not None:
        server.shutdown()
        server.server_close()
    ok = sum(1 for status in results.values() if status == 200)
    print(f"crawled {len(results)} pages ({ok} OK) with {args.workers} workers in {elapsed:.2f} s")
    if server is not None:
        print(f"one after another that is at least {len(results) * args.delay:.1f} s")
    return 0 if ok == len(results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
