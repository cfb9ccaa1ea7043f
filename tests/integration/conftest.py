"""Fixtures that run the real `bulwark serve` on loopback with a generated config.

Every test talks to the server with clients nobody here wrote (smtplib, ssl, swaks,
openssl s_client) or raw sockets, and checks what a user would observe: replies,
bytes in the Maildir, log lines.
"""
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import tempfile
import time

import pytest

BIN = os.environ.get("BULWARK_BIN") or str(pathlib.Path(__file__).resolve().parents[2] / "build" / "bulwark")
HOST = "mail.example.test"
PASSWORD = "Correct-Horse-9-Battery"
READY = "ready: accepting connections"
# What AddressSanitizer, LeakSanitizer and UBSan print (the CI's sanitizer pass runs
# every suite against an instrumented binary): any of it fails the test.
SANITIZER_MARKS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:", "SUMMARY: UndefinedBehavior")


def sanitizer_report(text):
    for mark in SANITIZER_MARKS:
        i = text.find(mark)
        if i >= 0:
            return text[max(0, i - 200):i + 3000]
    return None


_handed_out = set()


def free_ports(n):
    """n distinct loopback ports, free now and never handed out before in this process.
    All n sockets are held open together, so the kernel cannot give the same port twice."""
    socks, ports = [], []
    try:
        while len(ports) < n:
            s = socket.socket()
            socks.append(s)
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
            if port not in _handed_out:
                _handed_out.add(port)
                ports.append(port)
    finally:
        for s in socks:
            s.close()
    return ports


def node_ports(n, address):
    """n ports free on `address` (a cluster node's 127.0.0.x) and 127.0.0.1, from below
    the kernel's ephemeral range: a client connecting to 127.0.0.x gets 127.0.0.x as its
    own address and an ephemeral port, which a listener could not bind while it lasts."""
    import random
    ports = []
    while len(ports) < n:
        port = random.randrange(10000, 32000)
        if port in _handed_out:
            continue
        ok = True
        for a in (address, "127.0.0.1"):
            s = socket.socket()
            try:
                s.bind((a, port))
            except OSError:
                ok = False
            finally:
                s.close()
        if ok:
            _handed_out.add(port)
            ports.append(port)
    return ports


def wait(pred, timeout=20, what="condition"):
    """pred()'s first true value, polled every 50 ms; AssertionError after `timeout` s."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def tmpfs_over(path, size):
    """A preexec_fn: the server gets a private mount namespace with a tmpfs of `size`
    over `path` (root only), so its disk fills up where the test wants."""
    import ctypes
    import ctypes.util

    def run():
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        if libc.unshare(0x00020000) != 0:  # CLONE_NEWNS
            raise OSError(ctypes.get_errno(), "unshare")
        if libc.mount(b"none", b"/", None, 0x4000 | 0x40000, None) != 0:  # MS_REC | MS_PRIVATE
            raise OSError(ctypes.get_errno(), "mount --make-rprivate /")
        if libc.mount(b"tmpfs", str(path).encode(), b"tmpfs", 0, f"size={size},mode=0700".encode()) != 0:
            raise OSError(ctypes.get_errno(), "mount tmpfs")
    return run


def free_port():
    return free_ports(1)[0]


class Bulwark:
    def __init__(self, root, extra_config="", users=("demo@example.test",), run_as="", address="127.0.0.1",
                 prepare=None, domain=True):
        """`address`: the listeners' (cluster nodes run on 127.0.0.2-4); `prepare(self)`
        runs after the config is written and before the directory is filled (`cluster
        init`); `domain`: add example.test (a second cluster node shares the first's)."""
        self.root = pathlib.Path(root)
        self.data = self.root / "data"
        self.logs = self.root / "log"
        self.config = self.root / "bulwark.toml"
        names = ("smtp", "submission", "smtps", "pop3", "pop3s", "imap", "imaps")
        self.ports = dict(zip(names, free_ports(7) if address == "127.0.0.1" else node_ports(7, address)))
        self.proc = None
        self.expect_quarantine = False  # a test of damaged queue files sets it
        self.data_key = None  # encryption at rest: the data key, when a test made the keyring
        self.extra_config = extra_config
        self.run_as = run_as
        self.address = address
        self.write_config()
        if prepare:
            prepare(self)
        if domain:
            self.cli("domain", "add", "example.test")
        for u in users:
            self.cli("user", "add", u, "--password-stdin", input=PASSWORD + "\n")
        if users:  # RFC 5321 4.5.1: serve refuses to start without a postmaster
            self.cli("alias", "add", "postmaster@example.test", users[0])

    def write_config(self, extra=None):
        if extra is not None:
            self.extra_config = extra
        text = f"""
[server]
hostname = "{HOST}"
data_dir = "data"
log_dir = "log"
user = "{self.run_as}"
{self.extra_config}
"""
        if "[relay]" not in self.extra_config:
            # Tests connect from loopback, which the default "local" group may relay for;
            # unless a test is about relaying, nobody may relay.
            text += '\n[relay]\nallow_ip_group = ""\n'
        for svc, port in self.ports.items():
            text += f'\n[[listener]]\nservice = "{svc}"\naddress = "{self.address}"\nport = {port}\n'
        self.config.write_text(text)

    def cli(self, *args, input=None, check=True):
        r = subprocess.run([BIN, "--config", str(self.config), *args], input=input, capture_output=True,
                           text=True, timeout=60)
        report = sanitizer_report(r.stderr)
        assert report is None, f"bulwark {' '.join(args)}: sanitizer report:\n{report}"
        if check and r.returncode != 0:
            raise AssertionError(f"bulwark {' '.join(args)} failed ({r.returncode}): {r.stderr}")
        return r

    def start(self, preexec_fn=None):
        """Starts `bulwark serve` and waits for its readiness line (written once the
        listeners are open, privileges dropped and signal handlers in place)."""
        out = self.root / "serve.stderr"
        offset = out.stat().st_size if out.exists() else 0
        self.stderr = open(out, "ab")
        self.proc = subprocess.Popen([BIN, "serve", "--config", str(self.config)], stdout=self.stderr,
                                     stderr=subprocess.STDOUT, preexec_fn=preexec_fn)
        deadline = time.time() + 30
        while time.time() < deadline:
            if READY in out.read_text(errors="replace")[offset:]:
                return self
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited with {self.proc.returncode}: {self.serve_output()}")
            time.sleep(0.02)
        raise AssertionError("server did not become ready")

    def serve_output(self):
        return (self.root / "serve.stderr").read_text(errors="replace")

    def stop(self, sig=signal.SIGTERM, timeout=30):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError("server did not stop after SIGTERM")
        self.check_sanitizers()
        return self.proc.returncode if self.proc else None

    def check_sanitizers(self):
        report = sanitizer_report(self.serve_output()) if (self.root / "serve.stderr").exists() else None
        assert report is None, f"sanitizer report from the server:\n{report}"
        # A queue file the server itself wrote must always read back.
        if not self.expect_quarantine:
            assert "quarantined id=" not in self.log("mail.log"), self.log("mail.log")

    def kill9(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    @property
    def cert(self):
        return str(self.data / "cert.pem")

    def maildir(self, user="demo", domain="example.test"):
        return self.mailbox(user, domain) / "new"

    def mailbox(self, user="demo", domain="example.test"):
        """The user's mailbox directory: mail/<domain>/<user>, or with encryption at rest
        (a test that made the keyring sets data_key) mail/=<keyed BLAKE2b-128 of the
        address> (docs/encryption.md)."""
        if self.data_key:
            import hashlib
            name = hashlib.blake2b(b"bulwark mailbox name\n" + f"{user}@{domain}".lower().encode(),
                                   key=self.data_key, digest_size=16).hexdigest()
            return self.data / "mail" / ("=" + name)
        return self.data / "mail" / domain / user

    def messages(self, user="demo", domain="example.test"):
        d = self.maildir(user, domain)
        if not d.exists():
            return []
        return [p.read_bytes() for p in sorted(d.iterdir())]

    def wait_messages(self, n, user="demo", domain="example.test", timeout=20):
        deadline = time.time() + timeout
        while time.time() < deadline:
            msgs = self.messages(user, domain)
            if len(msgs) >= n:
                return msgs
            time.sleep(0.05)
        raise AssertionError(f"expected {n} messages for {user}@{domain}, have {len(self.messages(user, domain))}")

    def log(self, name):
        p = self.logs / name
        return p.read_text(errors="replace") if p.exists() else ""

    def wait_log(self, name, needle, timeout=10):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if needle in self.log(name):
                return self.log(name)
            time.sleep(0.05)
        raise AssertionError(f"{needle!r} not in {name}:\n{self.log(name)}")


@pytest.fixture
def make_server():
    made = []

    def make(**kw):
        root = tempfile.mkdtemp(prefix="bulwark-test-")
        srv = Bulwark(root, **kw)
        made.append(srv)
        return srv

    yield make
    for srv in made:
        rc = srv.stop()
        assert rc in (0, None, -signal.SIGKILL), f"server exited with {rc}: {srv.serve_output()}"
        if not os.environ.get("BULWARK_KEEP"): shutil.rmtree(srv.root, ignore_errors=True)


@pytest.fixture
def server(make_server):
    return make_server().start()


class Raw:
    """A raw SMTP client socket: exact bytes out, replies parsed on the way in."""

    def __init__(self, port, timeout=10):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buf = b""

    def send(self, data):
        self.sock.sendall(data)

    def reply(self):
        """Reads one (possibly multi-line) reply; returns (code, full text)."""
        lines = []
        while True:
            while b"\r\n" not in self.buf:
                chunk = self.sock.recv(65536)
                if not chunk:
                    raise EOFError("connection closed; had " + repr(self.buf))
                self.buf += chunk
            line, self.buf = self.buf.split(b"\r\n", 1)
            lines.append(line.decode("utf-8", "replace"))
            if len(line) < 4 or line[3:4] != b"-":
                return int(line[:3]), "\n".join(lines)

    def cmd(self, line):
        self.send(line.encode() + b"\r\n")
        return self.reply()

    def begin_data(self, sender="a@remote.test", rcpt="demo@example.test"):
        """EHLO, MAIL, RCPT, DATA: leaves the session inside DATA (after the 354)."""
        self.cmd("EHLO client.test")
        self.cmd(f"MAIL FROM:<{sender}>")
        self.cmd(f"RCPT TO:<{rcpt}>")
        code, text = self.cmd("DATA")
        assert code == 354, text

    def closed(self, timeout=5):
        self.sock.settimeout(timeout)
        try:
            return self.sock.recv(1) == b""
        except (ConnectionResetError, BrokenPipeError):
            return True

    def close(self):
        self.sock.close()


@pytest.fixture
def raw(server):
    conns = []

    def connect(service="smtp"):
        r = Raw(server.ports[service])
        code, _ = r.reply()
        assert code == 220
        conns.append(r)
        return r

    yield connect
    for r in conns:
        r.close()
