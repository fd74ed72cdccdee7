"""Unchanged stdlib clients (xmlrpc.client, smtplib, ftplib) run patched, many at once.

Each program serves on 127.0.0.1 with a ``ThreadingMixIn`` server in the same patched
process (``SimpleXMLRPCServer``, and small hand-written SMTP and FTP servers, since
``smtpd`` is gone from newer Pythons) and drives it from many ``threading.Thread``
clients. Every result is checked against what that client sent. Overlap is proved with a
``threading.Barrier`` that only opens when every client is connected at the same time
(in the server for XML-RPC; in the clients, after logging in, for SMTP and FTP, with the
servers counting their open sessions).
"""

from __future__ import annotations

from pathlib import Path

from _real_programs import run_program

XMLRPC = """
import json
import threading
import xmlrpc.client
from socketserver import ThreadingMixIn
from xmlrpc.server import SimpleXMLRPCServer

from threaded import run_clients, serve, stop

CLIENTS = 50


class Server(ThreadingMixIn, SimpleXMLRPCServer):
    daemon_threads = True
    request_queue_size = 256


barrier = threading.Barrier(CLIENTS)


def meet(i):
    barrier.wait(timeout=20)
    return i


def fail(message):
    raise ValueError(message)


server = Server(("127.0.0.1", 0), logRequests=False, allow_none=True)
server.register_function(meet)
server.register_function(fail)
server.register_function(lambda a, b: a + b, "add")
server.register_function(lambda value: value, "echo")
server.register_multicall_functions()
serve(server)
url = "http://127.0.0.1:%d/" % server.server_address[1]
wrong = []


def client(i):
    with xmlrpc.client.ServerProxy(url, allow_none=True) as proxy:
        results = {"meet": proxy.meet(i), "add": proxy.add(i, 1000)}
        structure = {"id": i, "items": list(range(i)), "name": "client-%d" % i, "none": None}
        results["echo"] = proxy.echo(structure)
        try:
            proxy.fail("bad %d" % i)
            results["fault"] = None
        except xmlrpc.client.Fault as fault:
            results["fault"] = fault.faultString
        multi = xmlrpc.client.MultiCall(proxy)
        multi.add(i, 1)
        multi.echo("m%d" % i)
        results["multi"] = list(multi())
    expected = {
        "meet": i, "add": i + 1000, "echo": structure,
        "fault": "<class 'ValueError'>:bad %d" % i, "multi": [i + 1, "m%d" % i],
    }
    if results != expected:
        wrong.append([i, results])


errors = run_clients(client, CLIENTS)
stop(server)
print(json.dumps({"errors": errors, "wrong": wrong}))
"""


def test_xmlrpc_50_clients_meet_inside_the_server(tmp_path: Path) -> None:
    report = run_program(tmp_path, XMLRPC)
    # The barrier in ``meet`` breaks (an error) unless all 50 calls are served at once.
    assert report == {"errors": [], "wrong": []}


#: A minimal SMTP server: enough of RFC 5321 for smtplib's sendmail().
LOCAL_SMTP = r"""
import re
import socketserver

import threaded


class Handler(socketserver.StreamRequestHandler):
    def handle(self):
        with self.server.session():
            self.converse()

    def reply(self, *lines):
        text = "".join("%s%s%s\r\n" % (code, "-" if n < len(lines) - 1 else " ", message)
                       for n, (code, message) in enumerate(lines))
        self.wfile.write(text.encode())

    def converse(self):
        self.reply((220, "local ESMTP ready"))
        sender, recipients = None, []
        while True:
            line = self.rfile.readline(1024)
            if not line:
                return
            command = line.decode("ascii").rstrip("\r\n")
            verb, _, argument = command.partition(" ")
            verb = verb.upper()
            if verb == "EHLO":
                self.reply((250, "local"), (250, "8BITMIME"), (250, "SIZE 10000000"))
            elif verb == "HELO":
                self.reply((250, "local"))
            elif verb == "MAIL":
                sender = re.search(r"<(.*?)>", argument).group(1)
                self.reply((250, "OK"))
            elif verb == "RCPT":
                recipients.append(re.search(r"<(.*?)>", argument).group(1))
                self.reply((250, "OK"))
            elif verb == "DATA":
                self.reply((354, "end with <CR><LF>.<CR><LF>"))
                body = []
                while (line := self.rfile.readline()) != b".\r\n":
                    if not line:
                        return
                    body.append(line[1:] if line.startswith(b".") else line)
                with self.server.lock:
                    self.server.messages.append((sender, recipients, b"".join(body)))
                sender, recipients = None, []
                self.reply((250, "queued"))
            elif verb in ("RSET", "NOOP"):
                if verb == "RSET":
                    sender, recipients = None, []
                self.reply((250, "OK"))
            elif verb == "QUIT":
                self.reply((221, "bye"))
                return
            else:
                self.reply((502, "not implemented"))


class Server(threaded.SessionServer):
    def __init__(self):
        super().__init__(Handler)
        self.messages = []
"""

SMTP = """
import email
import json
import smtplib
import threading

import local_smtp
from threaded import run_clients, serve, stop

CLIENTS, PER_CLIENT = 30, 3
server = serve(local_smtp.Server())
port = server.server_address[1]
logged_in = threading.Barrier(CLIENTS)


def message(i, j):
    # A line starting with a dot checks the dot-stuffing on both sides.
    return (
        "From: sender%d@example.org\\r\\nTo: rcpt%d@example.org\\r\\n"
        "Subject: message %d-%d\\r\\n\\r\\nline one of %d-%d\\r\\n.dotted line\\r\\n%s\\r\\n"
        % (i, i, i, j, i, j, "x" * (100 * j))
    )


def client(i):
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as smtp:
        smtp.ehlo()
        logged_in.wait(timeout=20)
        for j in range(PER_CLIENT):
            recipients = ["rcpt%d@example.org" % i, "copy%d-%d@example.org" % (i, j)]
            refused = smtp.sendmail("sender%d@example.org" % i, recipients, message(i, j))
            assert refused == {}, refused
        smtp.noop()


errors = run_clients(client, CLIENTS)
stop(server)
wrong = []
seen = set()
for sender, recipients, data in server.messages:
    parsed = email.message_from_bytes(data)
    i, j = map(int, parsed["Subject"].split()[1].split("-"))
    seen.add((i, j))
    expected_recipients = ["rcpt%d@example.org" % i, "copy%d-%d@example.org" % (i, j)]
    if (sender != "sender%d@example.org" % i or recipients != expected_recipients
            or data.decode() != message(i, j)):
        wrong.append([i, j])
print(json.dumps({"errors": errors, "wrong": wrong, "messages": len(server.messages),
                  "distinct": len(seen), "peak_sessions": server.peak}))
"""


def test_smtplib_30_clients_send_3_messages_each(tmp_path: Path) -> None:
    report = run_program(tmp_path, SMTP, modules={"local_smtp": LOCAL_SMTP})
    assert report["errors"] == []
    assert report["wrong"] == []
    assert report["messages"] == 90
    assert report["distinct"] == 90
    # The clients wait for each other after EHLO: all 30 sessions were open at once.
    assert report["peak_sessions"] >= 30


#: A minimal passive-mode FTP server: USER, PASS, TYPE, PASV, RETR, STOR, NLST, QUIT.
LOCAL_FTP = r"""
import socket
import socketserver

import threaded


class Handler(socketserver.StreamRequestHandler):
    def handle(self):
        self.listener = None
        with self.server.session():
            try:
                self.converse()
            finally:
                if self.listener is not None:
                    self.listener.close()

    def reply(self, code, message):
        self.wfile.write(b"%d %s\r\n" % (code, message.encode()))

    def data_connection(self):
        listener, self.listener = self.listener, None
        with listener:
            listener.settimeout(10)
            connection, _ = listener.accept()
        connection.settimeout(10)
        return connection

    def converse(self):
        self.reply(220, "local FTP ready")
        user, logged_in = None, False
        while True:
            line = self.rfile.readline(1024)
            if not line:
                return
            verb, _, argument = line.decode().rstrip("\r\n").partition(" ")
            verb = verb.upper()
            if verb == "USER":
                user, logged_in = argument, False
                self.reply(331, "password please")
            elif verb == "PASS":
                logged_in = (user, argument) == ("tester", "secret")
                self.reply(*((230, "welcome") if logged_in else (530, "wrong password")))
            elif verb == "QUIT":
                self.reply(221, "bye")
                return
            elif not logged_in:
                self.reply(530, "log in first")
            elif verb == "TYPE":
                self.reply(200, "type is now " + argument)
            elif verb == "PASV":
                if self.listener is not None:
                    self.listener.close()
                self.listener = socket.create_server(("127.0.0.1", 0))
                port = self.listener.getsockname()[1]
                self.reply(227, "Entering Passive Mode (127,0,0,1,%d,%d)" % divmod(port, 256))
            elif verb in ("RETR", "STOR", "NLST") and self.listener is None:
                self.reply(425, "use PASV first")
            elif verb in ("RETR", "NLST"):
                with self.server.lock:
                    if verb == "NLST":
                        data = "".join(n + "\r\n" for n in sorted(self.server.files)).encode()
                    else:
                        data = self.server.files.get(argument)
                if data is None:
                    self.reply(550, "no such file")
                    continue
                self.reply(150, "sending")
                with self.data_connection() as connection:
                    connection.sendall(data)
                self.reply(226, "sent")
            elif verb == "STOR":
                self.reply(150, "receiving")
                chunks = []
                with self.data_connection() as connection:
                    while chunk := connection.recv(65536):
                        chunks.append(chunk)
                with self.server.lock:
                    self.server.files[argument] = b"".join(chunks)
                self.reply(226, "stored")
            else:
                self.reply(502, "not implemented")


class Server(threaded.SessionServer):
    def __init__(self, files):
        super().__init__(Handler)
        self.files = dict(files)
"""

FTP = """
import ftplib
import io
import json
import threading

import local_ftp
from threaded import run_clients, serve, stop

CLIENTS = 20
shared = bytes(range(256)) * 1024
server = serve(local_ftp.Server({"shared.bin": shared}))
port = server.server_address[1]
logged_in = threading.Barrier(CLIENTS)
wrong = []


def client(i):
    mine = ("file %d " % i).encode() * (5000 + 100 * i)
    with ftplib.FTP(timeout=10) as ftp:
        ftp.connect("127.0.0.1", port)
        ftp.login("tester", "secret")
        logged_in.wait(timeout=20)
        ftp.storbinary("STOR file-%d.txt" % i, io.BytesIO(mine), blocksize=16384)
        back = io.BytesIO()
        ftp.retrbinary("RETR file-%d.txt" % i, back.write)
        whole = io.BytesIO()
        ftp.retrbinary("RETR shared.bin", whole.write)
        names = ftp.nlst()
        try:
            ftp.retrbinary("RETR missing.bin", whole.write)
            missing = "retrieved"
        except ftplib.error_perm as e:
            missing = str(e)
        ftp.quit()
    if back.getvalue() != mine:
        wrong.append([i, "own file"])
    if whole.getvalue() != shared:
        wrong.append([i, "shared file"])
    if "file-%d.txt" % i not in names or "shared.bin" not in names:
        wrong.append([i, "listing", names])
    if missing != "550 no such file":
        wrong.append([i, "missing", missing])


errors = run_clients(client, CLIENTS)
stop(server)
stored_ok = all(
    server.files.get("file-%d.txt" % i) == ("file %d " % i).encode() * (5000 + 100 * i)
    for i in range(CLIENTS)
)
print(json.dumps({"errors": errors, "wrong": wrong, "stored_ok": stored_ok,
                  "files": len(server.files), "peak_sessions": server.peak}))
"""


def test_ftplib_20_clients_store_and_retrieve(tmp_path: Path) -> None:
    report = run_program(tmp_path, FTP, modules={"local_ftp": LOCAL_FTP})
    assert report["errors"] == []
    assert report["wrong"] == []
    assert report["stored_ok"]
    assert report["files"] == 21
    # The clients wait for each other after logging in: all 20 sessions open at once.
    assert report["peak_sessions"] >= 20
