"""Real remote SMTP servers for the delivery tests: python3-aiosmtpd on loopback
addresses, with STARTTLS (a certificate from a test CA made with openssl) and
optional AUTH, scripted replies per recipient, and a record of what arrived."""
import asyncio
import pathlib
import ssl
import subprocess
import tempfile
import threading

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult

NAMES = ["relay.test", "mx1.good.test", "mx.other.test", "mx.temp.test", "mx.perm.test", "mx.plain.test"]


class CertAuthority:
    """A CA and one server certificate for every name in NAMES."""

    def __init__(self):
        self.dir = pathlib.Path(tempfile.mkdtemp(prefix="bulwark-ca-"))
        d = self.dir
        run = lambda *a: subprocess.run(a, check=True, capture_output=True, cwd=d)  # noqa: E731
        ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
        run("openssl", "req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=bulwark test CA")
        run("openssl", "req", *ec, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=mx")
        (d / "ext.cnf").write_text("subjectAltName=" + ",".join("DNS:" + n for n in NAMES) + "\n")
        run("openssl", "x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", "server.pem", "-days", "2", "-extfile", "ext.cnf")
        # A second, unrelated CA: a certificate bulwark must not trust.
        run("openssl", "req", "-x509", *ec, "-keyout", "other.key", "-out", "other.pem", "-days", "2", "-subj", "/CN=other")
        self.ca = str(d / "ca.pem")
        self.other_ca = str(d / "other.pem")

    def server_context(self):
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(str(self.dir / "server.pem"), str(self.dir / "server.key"))
        return ctx


class Handler:
    def __init__(self):
        self.messages = []        # dicts: sender, rcpts, data (bytes), tls, auth
        self.rcpt_replies = {}    # address -> reply, or callable(address) -> reply/None
        self.data_reply = None
        self.data_delay = 0.0       # seconds before answering the end of data
        self.lock = threading.Lock()
        self.transactions = 0
        self.rcpt_commands = []   # (address, ESMTP parameters) of every RCPT, as parsed

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        with self.lock:
            self.rcpt_commands.append((address, list(rcpt_options)))
        r = self.rcpt_replies.get(address.lower()) or self.rcpt_replies.get("*")
        if callable(r):
            r = r(address)
        if r:
            return r
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server, session, envelope):
        if self.data_delay:
            await asyncio.sleep(self.data_delay)
        if self.data_reply:
            return self.data_reply
        with self.lock:
            self.transactions += 1
            self.messages.append({"sender": envelope.mail_from, "rcpts": list(envelope.rcpt_tos),
                                  "data": envelope.original_content or envelope.content,
                                  "tls": session.ssl is not None,
                                  "auth": getattr(session, "auth_data", None)})
        return "250 2.0.0 queued"


class RemoteMx:
    def __init__(self, ip, port, ca=None, starttls=True, auth=None):
        """auth: (user, password) required from the client, or None."""
        self.handler = Handler()
        kw = {}
        if starttls:
            kw["tls_context"] = ca.server_context()
        if auth:
            def authenticator(server, session, envelope, mechanism, data):
                ok = data.login.decode() == auth[0] and data.password.decode() == auth[1]
                return AuthResult(success=ok, handled=False, auth_data=data.login.decode() if ok else None)
            kw.update(authenticator=authenticator, auth_required=True, auth_require_tls=True)
        self.controller = Controller(self.handler, hostname=ip, port=port, enable_SMTPUTF8=True, **kw)
        self.controller.start()

    @property
    def messages(self):
        with self.handler.lock:
            return list(self.handler.messages)

    def stop(self):
        self.controller.stop()
