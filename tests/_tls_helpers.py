"""Certificates for TLS tests: one throwaway CA and a server certificate for loopback.

``trustme`` makes them in memory; the CA and the certificate are made once per test
process (key generation is the slow part) and shared by every test.
"""

from __future__ import annotations

import functools
import ssl
from dataclasses import dataclass
from pathlib import Path

import trustme

#: The names the server certificate is valid for.
SERVER_NAMES = ("127.0.0.1", "localhost")


@dataclass(frozen=True)
class PemFiles:
    """The CA certificate and the server's key and chain, written as PEM files."""

    ca: Path
    server: Path


@functools.cache
def _authority() -> tuple[trustme.CA, trustme.LeafCert]:
    ca = trustme.CA()
    return ca, ca.issue_cert(*SERVER_NAMES)


def server_cert_pem() -> str:
    """The server certificate alone, in PEM (what ``get_server_certificate`` returns)."""
    return _authority()[1].cert_chain_pems[0].bytes().decode("ascii")


def server_context(cls: type[ssl.SSLContext] = ssl.SSLContext) -> ssl.SSLContext:
    """A server context (of class ``cls``) presenting the loopback certificate."""
    context = cls(ssl.PROTOCOL_TLS_SERVER)
    _authority()[1].configure_cert(context)
    return context


def client_context(cls: type[ssl.SSLContext] = ssl.SSLContext) -> ssl.SSLContext:
    """A client context (of class ``cls``) that trusts the test CA and checks host names."""
    context = cls(ssl.PROTOCOL_TLS_CLIENT)
    _authority()[0].configure_trust(context)
    return context


def write_pem_files(directory: Path) -> PemFiles:
    """Write the CA and the server's key and chain to ``directory`` (for subprocesses)."""
    ca, cert = _authority()
    files = PemFiles(directory / "ca.pem", directory / "server.pem")
    ca.cert_pem.write_to_path(str(files.ca))
    cert.private_key_and_cert_chain_pem.write_to_path(str(files.server))
    return files
