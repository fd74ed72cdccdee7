"""Cooperative name resolution: libc's answers, from the thread pool.

Every lookup is compared with the stdlib function on the same arguments. Only names that
libc answers locally are used (``/etc/hosts``, literals, services), never the network.
"""

from __future__ import annotations

import socket as std
import subprocess
import sys
import threading
from collections.abc import Callable
from typing import Any

import pytest

import greenwire as gw
from greenwire.green import dns

THREADS = 10  # the default pool size


def hosts_names() -> list[str]:
    """Names from /etc/hosts other than localhost (libc answers them from the file)."""
    names = []
    try:
        with open("/etc/hosts") as f:
            for line in f:
                fields = line.split("#", 1)[0].split()
                names += [n for n in fields[1:] if "localhost" not in n]
    except OSError:
        pass
    return names


def outcome(fn: Callable[..., Any], *args: Any) -> Any:
    """What ``fn(*args)`` returns, or the type, errno and text of what it raises."""
    try:
        return fn(*args)
    except OSError as e:
        return (type(e), e.errno, str(e))


GETADDRINFO_CASES = [
    ("localhost", 80),
    ("localhost", "80"),
    ("localhost", "http"),
    ("localhost", None, std.AF_INET, std.SOCK_STREAM),
    ("localhost", 80, 0, 0, 0, std.AI_CANONNAME),
    ("127.0.0.1", 80),
    ("127.0.0.1", 443, std.AF_INET, std.SOCK_DGRAM),
    ("127.0.0.1", 80, 0, 0, 0, std.AI_CANONNAME),
    ("127.1", 80),  # a legacy form libc accepts: not short-cut, still libc's answer
    ("::1", 80),
    ("::1", 80, std.AF_INET6, std.SOCK_STREAM),
    (None, 8080, 0, std.SOCK_STREAM, 0, std.AI_PASSIVE),
    (None, 0),
    (b"127.0.0.1", b"80"),
    ("127.0.0.1", 80, std.AF_INET6),  # wrong family for the literal: libc's error
    ("not-an-address", 80, 0, 0, 0, std.AI_NUMERICHOST),
    ("localhost", "no-such-service-xyz"),
    ("localhost", 80, 12345),  # bad family
    ("", 80),
    ("127.0.0.1\x00", 80),
]


@pytest.mark.parametrize("args", GETADDRINFO_CASES, ids=repr)
def test_getaddrinfo_answers_like_libc(args: tuple[Any, ...]) -> None:
    assert outcome(dns.getaddrinfo, *args) == outcome(std.getaddrinfo, *args)


@pytest.mark.parametrize("name", hosts_names()[:3] or ["(none)"])
def test_names_from_etc_hosts(name: str) -> None:
    if name == "(none)":
        pytest.skip("/etc/hosts has no name besides localhost")
    assert outcome(dns.getaddrinfo, name, 80) == outcome(std.getaddrinfo, name, 80)
    assert outcome(dns.gethostbyname, name) == outcome(std.gethostbyname, name)
    assert outcome(dns.gethostbyname_ex, name) == outcome(std.gethostbyname_ex, name)


@pytest.mark.parametrize("name", ["localhost", "127.0.0.1", "0.0.0.0", "", "::1", "not a name"])
def test_gethostbyname_and_ex_like_libc(name: str) -> None:
    assert outcome(dns.gethostbyname, name) == outcome(std.gethostbyname, name)
    assert outcome(dns.gethostbyname_ex, name) == outcome(std.gethostbyname_ex, name)


@pytest.mark.parametrize("address", ["127.0.0.1", "::1", "localhost"])
def test_gethostbyaddr_like_libc(address: str) -> None:
    assert outcome(dns.gethostbyaddr, address) == outcome(std.gethostbyaddr, address)


@pytest.mark.parametrize(
    ("sockaddr", "flags"),
    [
        (("127.0.0.1", 80), 0),
        (("127.0.0.1", 80), std.NI_NUMERICHOST | std.NI_NUMERICSERV),
        (("127.0.0.1", 80), std.NI_NUMERICHOST),
        (("::1", 22, 0, 0), std.NI_NUMERICHOST | std.NI_NUMERICSERV),
        (("localhost", 80), std.NI_NUMERICHOST | std.NI_NUMERICSERV),
        (("not an address", 80), std.NI_NUMERICHOST | std.NI_NUMERICSERV),
        (("127.0.0.1", 80), std.NI_NAMEREQD),
    ],
)
def test_getnameinfo_like_libc(sockaddr: Any, flags: int) -> None:
    assert outcome(dns.getnameinfo, sockaddr, flags) == outcome(std.getnameinfo, sockaddr, flags)


def test_a_refused_getnameinfo_keeps_no_reference_to_its_argument() -> None:
    argument = "".join(["not", " a tuple"])  # a fresh object nobody else holds
    before = sys.getrefcount(argument)
    try:
        dns.getnameinfo(argument, 0)  # type: ignore[arg-type]
    except TypeError:
        # The traceback is alive here, as in CPython's own refcount test.
        assert sys.getrefcount(argument) == before
    else:
        pytest.fail("getnameinfo accepted a string address")


@pytest.mark.parametrize("name", ["", "localhost", "127.0.0.1", "0.0.0.0", "::"])
def test_getfqdn_like_the_stdlib(name: str) -> None:
    assert dns.getfqdn(name) == std.getfqdn(name)


def test_getfqdn_picks_a_dotted_alias_or_returns_the_name(monkeypatch: pytest.MonkeyPatch) -> None:
    answers: dict[str, Any] = {
        "dotted": ("short", ["alias", "full.example.org"], ["10.0.0.1"]),
        "plain": ("short", ["alias"], ["10.0.0.1"]),
    }

    def fake_gethostbyaddr(name: str) -> tuple[str, list[str], list[str]]:
        if name not in answers:
            raise std.herror(1, "Unknown host")
        result: tuple[str, list[str], list[str]] = answers[name]
        return result

    monkeypatch.setattr(dns, "_gethostbyaddr", fake_gethostbyaddr)
    assert dns.getfqdn(" dotted ") == "full.example.org"
    assert dns.getfqdn("plain") == "short"
    assert dns.getfqdn("unknown.name") == "unknown.name"


def test_literals_are_answered_inline_and_names_in_the_pool(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pooled: list[Any] = []

    def spy(fn: Callable[..., Any], *args: Any) -> Any:
        pooled.append(args)
        return fn(*args)

    monkeypatch.setattr(dns, "run_in_thread", spy)
    dns.getaddrinfo("127.0.0.1", 80)
    dns.getaddrinfo("::1", "443", std.AF_INET6)
    dns.getaddrinfo(None, 80, 0, 0, 0, std.AI_PASSIVE)
    dns.gethostbyname("10.1.2.3")
    dns.getnameinfo(("127.0.0.1", 80), std.NI_NUMERICHOST | std.NI_NUMERICSERV)
    assert pooled == []
    dns.getaddrinfo("localhost", 80)
    dns.getaddrinfo("127.0.0.1", "http")  # a service name may need NSS
    dns.getaddrinfo("127.0.0.1", 80, 0, 0, 0, std.AI_CANONNAME)
    dns.getaddrinfo("fe80::1%lo", 80)  # a scope id is libc's business
    dns.gethostbyname("localhost")
    dns.gethostbyname_ex("127.0.0.1")
    dns.gethostbyaddr("127.0.0.1")
    dns.getnameinfo(("127.0.0.1", 80), 0)
    assert len(pooled) == 8


def test_lookups_overlap_in_the_pool_and_the_hub_keeps_running(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Each lookup waits in its thread until THREADS of them are running at once: if they
    # were serialized, the barrier would never fill and would break after its timeout.
    barrier = threading.Barrier(THREADS, timeout=10)
    real = dns._getaddrinfo
    in_flight = 0
    most = 0
    lock = threading.Lock()

    def slow_getaddrinfo(*args: Any) -> Any:
        nonlocal in_flight, most
        with lock:
            in_flight += 1
            most = max(most, in_flight)
        try:
            barrier.wait()
            return real(*args)
        finally:
            with lock:
                in_flight -= 1

    monkeypatch.setattr(dns, "_getaddrinfo", slow_getaddrinfo)
    ticks = 0

    def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            gw.sleep(0.001)

    tick = gw.spawn(ticker)
    lookups = [gw.spawn(dns.getaddrinfo, "localhost", 1000 + i) for i in range(100)]
    results = [g.get() for g in lookups]
    tick.kill()
    assert most == THREADS
    assert all(r and r[0][4][1] == 1000 + i for i, r in enumerate(results))
    assert ticks > 1  # the hub ran other greenlets while the threads resolved


def test_errors_come_back_with_libc_codes() -> None:
    with pytest.raises(std.gaierror) as ours:
        dns.getaddrinfo("localhost", "no-such-service-xyz")
    with pytest.raises(std.gaierror) as theirs:
        std.getaddrinfo("localhost", "no-such-service-xyz")
    assert ours.value.errno == theirs.value.errno and ours.value.args == theirs.value.args


def test_the_module_stands_alone() -> None:
    code = (
        "import sys, greenwire.green.dns as d\n"
        "assert 'greenwire.green.socket' not in sys.modules\n"
        "assert d.__target__ == 'socket'\n"
        "print(d.getaddrinfo('localhost', 80, 2, 1)[0][4])\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "('127.0.0.1', 80)"
    assert set(dns.__implements__) == {
        "getaddrinfo",
        "gethostbyname",
        "gethostbyname_ex",
        "gethostbyaddr",
        "getnameinfo",
        "getfqdn",
    }
