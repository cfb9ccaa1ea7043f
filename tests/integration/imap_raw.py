"""A raw IMAP connection for the tests that must see every byte and the order of the
untagged responses (imaplib files them in a dictionary by name and loses both): one
command at a time, literals read whole, nothing interpreted but the tag."""
import re
import socket
import ssl

from conftest import PASSWORD

USER = "demo@example.test"


class ImapRaw:
    def __init__(self, srv, service="imaps", timeout=20, login=True, user=USER, password=PASSWORD):
        sock = socket.create_connection(("127.0.0.1", srv.ports[service]), timeout=timeout)
        if service == "imaps":
            ctx = ssl.create_default_context(cafile=srv.cert)
            ctx.check_hostname = False
            sock = ctx.wrap_socket(sock)
        self.sock = sock
        self.buf = b""
        self.n = 0
        self.greeting = self.line()
        if login:
            untagged, done = self.cmd(f'LOGIN "{user}" "{password}"')
            assert done.split()[1] == b"OK", done

    def line(self):
        """One response line with its literals inlined (CRLF kept inside, dropped at the end)."""
        out = b""
        while True:
            while b"\r\n" not in self.buf:
                chunk = self.recv(65536)
                if not chunk:
                    raise EOFError("connection closed; had " + repr(out + self.buf))
                self.buf += chunk
            part, self.buf = self.buf.split(b"\r\n", 1)
            out += part
            m = re.search(rb"\{(\d+)\}$", part)
            if not m:
                return out
            n = int(m.group(1))
            while len(self.buf) < n:
                chunk = self.recv(65536)
                if not chunk:
                    raise EOFError("connection closed in a literal")
                self.buf += chunk
            out += b"\r\n" + self.buf[:n]
            self.buf = self.buf[n:]

    def recv(self, n):
        return self.sock.recv(n)

    def send(self, data):
        self.sock.sendall(data)

    def cmd(self, text, literal=None):
        """Sends `text` (str or bytes; with `literal`, as a synchronising literal after it)
        and returns (untagged lines, tagged line)."""
        self.n += 1
        tag = b"t%d" % self.n
        data = text.encode() if isinstance(text, str) else text
        if literal is not None:
            self.send(tag + b" " + data + b" {%d}\r\n" % len(literal))
            cont = self.line()
            if not cont.startswith(b"+"):
                return [], cont
            self.send(literal + b"\r\n")
        else:
            self.send(tag + b" " + data + b"\r\n")
        untagged = []
        while True:
            got = self.line()
            if got.startswith(tag + b" "):
                return untagged, got
            untagged.append(got)

    def ok(self, text, literal=None):
        untagged, done = self.cmd(text, literal)
        assert done.split()[1] == b"OK", (text, done)
        return untagged

    def closed(self, timeout=5):
        self.sock.settimeout(timeout)
        try:
            return self.sock.recv(1) == b""
        except (ConnectionResetError, BrokenPipeError, ssl.SSLError):
            return True

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def fetch_items(line):
    """'* 3 FETCH (UID 7 FLAGS (\\Seen) MODSEQ (12))' -> (3, {'UID': 7, 'FLAGS': [...], 'MODSEQ': 12})."""
    m = re.match(rb"\* (\d+) FETCH \((.*)\)$", line, re.S)
    if not m:
        return None
    body = m.group(2)
    items = {}
    u = re.search(rb"\bUID (\d+)", body)
    if u:
        items["UID"] = int(u.group(1))
    f = re.search(rb"\bFLAGS \(([^)]*)\)", body)
    if f:  # the stored flags: \Recent is the session's, not the message's
        items["FLAGS"] = sorted(x.decode() for x in f.group(1).split() if x != b"\\Recent")
        items["RECENT"] = b"\\Recent" in f.group(1).split()
    ms = re.search(rb"\bMODSEQ \((\d+)\)", body)
    if ms:
        items["MODSEQ"] = int(ms.group(1))
    return int(m.group(1)), items
