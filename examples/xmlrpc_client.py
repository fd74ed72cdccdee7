"""A load generator for the XML-RPC examples: N clients calling ``gen(n)`` for a while.

    python examples/xmlrpc_client.py [--port 8080] [--clients 10] [--duration 5]
                                     [--n 2048] [--green]

Each client is a thread with its own ``ServerProxy``, calling in a loop, as the article's
client does once. At the end it prints the calls per second, the latency percentiles and
the errors. ``--green`` first calls ``greenwire.monkey.patch_all()``, so the clients are
greenlets: a thousand of them then cost one OS thread. The full experiment, with every
server side by side, is ``python -m greenwire.bench xmlrpc``.
"""

from __future__ import annotations

import argparse


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--clients", type=int, default=10, help="concurrent callers")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds of calls")
    parser.add_argument("--n", type=int, default=2048, help="the argument of gen(n)")
    parser.add_argument("--green", action="store_true", help="run the clients as greenlets")
    args = parser.parse_args()
    if args.clients < 1 or args.duration <= 0:
        parser.error("--clients must be at least 1 and --duration positive")
    if args.green:
        from greenwire import monkey

        monkey.patch_all()

    # Imported after the optional patching, so that they use the green socket and threads.
    import threading
    import time
    from xmlrpc.client import ServerProxy

    url = f"http://127.0.0.1:{args.port}"
    try:
        print(ServerProxy(url).add(3, 5), "= add(3, 5)")  # the article's first call
    except OSError as exc:
        raise SystemExit(f"cannot reach the server at {url}: {exc}") from None
    expected = "0" * args.n
    latencies: list[float] = []
    errors: list[str] = []
    deadline = time.perf_counter() + args.duration

    def client() -> None:
        server = ServerProxy(url)
        while time.perf_counter() < deadline:
            began = time.perf_counter()
            try:
                ok = server.gen(args.n) == expected
            except Exception as exc:
                errors.append(type(exc).__name__)
                continue
            latencies.append(time.perf_counter() - began)
            if not ok:
                errors.append("wrong answer")

    started = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(args.clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started

    latencies.sort()
    kind = "greenlets" if args.green else "threads"
    print(
        f"{args.clients} clients ({kind}), {elapsed:.1f} s: {len(latencies)} calls,"
        f" {len(latencies) / elapsed:,.0f} calls/s, {len(errors)} errors"
    )
    if latencies:
        p50 = latencies[len(latencies) // 2] * 1000
        p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000
        print(f"latency p50 {p50:.1f} ms, p99 {p99:.1f} ms, max {latencies[-1] * 1000:.1f} ms")
    if errors:
        print("errors:", ", ".join(sorted(set(errors))))
        raise SystemExit(1)


if __name__ == "__main__":
    main()
