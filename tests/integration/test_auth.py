"""SMTP AUTH, the security policy modes, the brute-force lockout and the password
policy, against the real server with smtplib, raw sessions and a SCRAM-SHA-256 client
written here from RFC 5802 / RFC 7677."""
import base64
import hashlib
import hmac
import os
import smtplib
import socket
import ssl
import subprocess
import time

import pytest

from conftest import BIN, PASSWORD, Raw

USER = "demo@example.test"
NO_DELAY = '[policy]\nauth_failure_delay = "0s"\n'


def tls_context():
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def b64(s):
    return base64.b64encode(s if isinstance(s, bytes) else s.encode()).decode()


def plain(user=USER, password=PASSWORD, authzid=""):
    return b64(f"{authzid}\0{user}\0{password}")


def connect(srv, service="submission", src="127.0.0.1", starttls=False):
    r = Raw.__new__(Raw)
    r.sock = socket.create_connection(("127.0.0.1", srv.ports[service]), timeout=20, source_address=(src, 0))
    r.buf = b""
    if service == "smtps":
        r.sock = tls_context().wrap_socket(r.sock)
    assert r.reply()[0] == 220
    code, ehlo = r.cmd("EHLO client.test")
    assert code == 250
    if starttls:
        assert r.cmd("STARTTLS")[0] == 220
        r.sock = tls_context().wrap_socket(r.sock)
        code, ehlo = r.cmd("EHLO client.test")
    r.ehlo = ehlo
    return r


def auth_line(ehlo):
    for line in ehlo.splitlines():
        if line[4:].startswith("AUTH"):
            return line[4:].split()[1:]
    return []


class Scram:
    """SCRAM-SHA-256 client per RFC 5802 section 3."""

    def __init__(self, user, password, nonce=None):
        self.user, self.password = user, password
        self.nonce = nonce or base64.b64encode(os.urandom(18)).decode()
        self.bare = f"n={user.replace('=', '=3D').replace(',', '=2C')},r={self.nonce}"

    def first(self):
        return "n,," + self.bare

    def final(self, server_first):
        attrs = dict(kv.split("=", 1) for kv in server_first.split(","))
        assert attrs["r"].startswith(self.nonce)
        salted = hashlib.pbkdf2_hmac("sha256", self.password.encode(), base64.b64decode(attrs["s"]), int(attrs["i"]))
        client_key = hmac.new(salted, b"Client Key", "sha256").digest()
        stored_key = hashlib.sha256(client_key).digest()
        without_proof = f"c={b64('n,,')},r={attrs['r']}"
        self.auth_message = f"{self.bare},{server_first},{without_proof}".encode()
        sig = hmac.new(stored_key, self.auth_message, "sha256").digest()
        proof = bytes(a ^ b for a, b in zip(client_key, sig))
        self.server_key = hmac.new(salted, b"Server Key", "sha256").digest()
        return f"{without_proof},p={b64(proof)}"

    def verify(self, server_final):
        expect = hmac.new(self.server_key, self.auth_message, "sha256").digest()
        return server_final == "v=" + b64(expect)


def scram_login(r, user=USER, password=PASSWORD):
    """Runs AUTH SCRAM-SHA-256; returns (code, text, server signature verified)."""
    c = Scram(user, password)
    code, text = r.cmd("AUTH SCRAM-SHA-256 " + b64(c.first()))
    if code != 334:
        return code, text, False
    code, text = r.cmd(b64(c.final(base64.b64decode(text[4:]).decode())))
    if code != 334:
        return code, text, False
    verified = c.verify(base64.b64decode(text[4:]).decode())
    code, text = r.cmd("")
    return code, text, verified


def test_submission_login_over_starttls_and_send(make_server):
    srv = make_server(extra_config=NO_DELAY).start()
    for mech in ("PLAIN", "LOGIN"):
        with smtplib.SMTP("127.0.0.1", srv.ports["submission"], timeout=20) as s:
            s.starttls(context=tls_context())
            s.ehlo("client.test")
            s.user, s.password = USER, PASSWORD
            code, _ = s.auth(mech, s.auth_plain if mech == "PLAIN" else s.auth_login)
            assert code == 235
            s.sendmail(USER, ["demo@example.test"], f"From: {USER}\r\nSubject: via {mech}\r\n\r\nhello\r\n")
    msgs = srv.wait_messages(2)
    assert all(b"with ESMTPSA id" in m for m in msgs)
    # Message submission completes what the client left out (RFC 6409 8).
    assert all(b"\nDate: " in m and b"\nMessage-ID: <" in m for m in msgs)
    # The user is not in Received: unless the administrator enables it.
    assert not any(b"authenticated as" in m for m in msgs)
    log = srv.wait_log("mail.log", "auth=demo@example.test")
    assert "service=submission" in log
    assert "SMTP AUTH PLAIN from 127.0.0.1: demo@example.test logged in" in srv.log("bulwark.log")


def test_submission_requires_auth(make_server):
    srv = make_server().start()
    r = connect(srv, starttls=True)
    code, text = r.cmd("MAIL FROM:<demo@example.test>")
    assert code == 530 and "5.7.0" in text
    # smtps (implicit TLS) offers AUTH at once.
    s = connect(srv, "smtps")
    assert auth_line(s.ehlo) == ["SCRAM-SHA-256", "PLAIN", "LOGIN"]


def test_scram_sha_256_with_a_client_from_the_rfc(make_server):
    srv = make_server(extra_config=NO_DELAY).start()
    # Offered without TLS under secure-auth: it never sends the password.
    r = connect(srv)
    assert auth_line(r.ehlo) == ["SCRAM-SHA-256"]
    code, text, verified = scram_login(r)
    assert code == 235 and "2.7.0" in text
    assert verified, "the server proved it knows the password too (v=)"
    assert r.cmd("MAIL FROM:<demo@example.test>")[0] == 250
    assert r.cmd("RCPT TO:<demo@example.test>")[0] == 250
    # Wrong password, and a user that does not exist: both fail only at the proof.
    for user, pw in ((USER, "Wrong-Password-1"), ("nobody@example.test", PASSWORD)):
        r = connect(srv)
        code, text, _ = scram_login(r, user, pw)
        assert code == 535 and "5.7.8" in text


def test_secure_auth_policy(make_server):
    srv = make_server(extra_config='[ip_groups]\nlan = ["127.0.0.5"]\n'
                                   '[policy]\nauth_failure_delay = "0s"\ninsecure_auth_ip_group = "lan"\n').start()
    r = connect(srv)
    assert "PLAIN" not in auth_line(r.ehlo)
    code, text = r.cmd("AUTH PLAIN " + plain())
    assert code == 538 and "5.7.11" in text
    code, text = r.cmd("AUTH LOGIN")
    assert code == 538
    r = connect(srv, starttls=True)
    assert auth_line(r.ehlo) == ["SCRAM-SHA-256", "PLAIN", "LOGIN"]
    assert r.cmd("AUTH PLAIN " + plain())[0] == 235
    # The insecure-auth group may use plaintext mechanisms without TLS.
    r = connect(srv, src="127.0.0.5")
    assert auth_line(r.ehlo) == ["SCRAM-SHA-256", "PLAIN", "LOGIN"]
    assert r.cmd("AUTH PLAIN " + plain())[0] == 235


def test_encrypted_policy(make_server):
    srv = make_server(extra_config='[policy]\nmode = "encrypted"\nauth_failure_delay = "0s"\n').start()
    r = connect(srv)  # submission, plain text
    assert auth_line(r.ehlo) == []
    for cmd in ("MAIL FROM:<demo@example.test>", "AUTH SCRAM-SHA-256 " + b64("n,,n=x,r=y"), "VRFY demo"):
        code, text = r.cmd(cmd)
        assert code == 530 and "5.7.0" in text and "STARTTLS" in text, cmd
    assert r.cmd("NOOP")[0] == 250
    # Port 25 still takes plain-text mail from other servers, but never AUTH.
    r = connect(srv, "smtp")
    assert auth_line(r.ehlo) == []
    assert r.cmd("AUTH PLAIN " + plain())[0] == 530
    r = connect(srv, "smtp")
    assert r.cmd("MAIL FROM:<someone@remote.test>")[0] == 250
    assert r.cmd("RCPT TO:<demo@example.test>")[0] == 250
    # With TLS everything is offered.
    r = connect(srv, starttls=True)
    assert auth_line(r.ehlo) == ["SCRAM-SHA-256", "PLAIN", "LOGIN"]
    assert r.cmd("AUTH PLAIN " + plain())[0] == 235
    assert r.cmd("MAIL FROM:<demo@example.test>")[0] == 250


def test_policy_none_allows_plaintext_everywhere(make_server):
    srv = make_server(extra_config='[policy]\nmode = "none"\nauth_mechanisms = ["LOGIN", "PLAIN"]\n').start()
    r = connect(srv)
    assert auth_line(r.ehlo) == ["LOGIN", "PLAIN"]  # the configured order
    assert r.cmd("AUTH PLAIN " + plain())[0] == 235


def test_malformed_and_refused_exchanges(make_server):
    srv = make_server(extra_config=NO_DELAY + "max_auth_failures = 0\n").start()
    r = connect(srv, starttls=True)
    cases = [
        ("AUTH PLAIN not*base64", 501, "5.5.2"),
        ("AUTH PLAIN =", 501, "5.5.2"),                       # empty response
        ("AUTH PLAIN " + b64("no-nul-at-all"), 501, "5.5.2"),
        ("AUTH PLAIN " + plain(authzid="boss@example.test"), 535, "5.7.8"),  # impersonation
        ("AUTH PLAIN " + plain(password="Wrong-Password-1"), 535, "5.7.8"),
        ("AUTH PLAIN " + plain(user="nobody@example.test"), 535, "5.7.8"),
        ("AUTH KERBEROS_V4", 504, "5.5.4"),
        ("AUTH CRAM-MD5", 504, "5.5.4"),                       # not enabled
    ]
    for cmd, code, enh in cases:
        c, text = r.cmd(cmd)
        assert (c, enh) == (code, text[4:9]), (cmd, text)
    # "*" cancels; a bad base64 line ends the exchange. (A new session: each failure
    # above counts toward [limits] max_failed_commands.)
    r = connect(srv, starttls=True)
    assert r.cmd("AUTH LOGIN")[0] == 334
    c, text = r.cmd("*")
    assert c == 501
    assert r.cmd("AUTH LOGIN")[0] == 334
    assert r.cmd("!!!")[0] == 501
    # Oversized exchange line: refused, session goes on.
    assert r.cmd("AUTH PLAIN")[0] == 334
    c, text = r.cmd("A" * 20000)
    assert c == 500 and "5.5.6" in text
    assert r.cmd("NOOP")[0] == 250
    # A long but legal initial response (RFC 4954: up to 12288 octets) is read whole.
    c, _ = r.cmd("AUTH PLAIN " + plain(password="Aa1-" + "x" * 1000))
    assert c == 535
    assert r.cmd("AUTH PLAIN " + plain())[0] == 235
    assert r.cmd("AUTH PLAIN " + plain())[0] == 503  # already authenticated


def test_failed_auth_is_delayed(make_server):
    srv = make_server().start()  # default delay 1s
    r = connect(srv, starttls=True)
    t = time.monotonic()
    assert r.cmd("AUTH PLAIN " + plain(password="Wrong-Password-1"))[0] == 535
    assert time.monotonic() - t >= 0.9
    t = time.monotonic()
    assert r.cmd("AUTH PLAIN " + plain())[0] == 235
    assert time.monotonic() - t < 0.9


def test_brute_force_lockout(make_server):
    srv = make_server(extra_config=NO_DELAY + "max_auth_failures = 3\n").start()
    r = connect(srv, src="127.0.0.7", starttls=True)
    for _ in range(3):
        assert r.cmd("AUTH PLAIN " + plain(password="Guess-Number-1"))[0] == 535
    srv.wait_log("security.log", "SMTP AUTH from 127.0.0.7 blocked for 15 minutes: too many failed logins")
    # Even the right password is refused now, in a new session too.
    r = connect(srv, src="127.0.0.7", starttls=True)
    code, text = r.cmd("AUTH PLAIN " + plain())
    assert code == 454 and "4.7.0" in text
    assert r.cmd("AUTH SCRAM-SHA-256 " + b64("n,,n=demo@example.test,r=abc"))[0] == 454
    # Another address is not affected.
    r = connect(srv, src="127.0.0.8", starttls=True)
    assert r.cmd("AUTH PLAIN " + plain())[0] == 235


def test_failed_auth_revokes_ip_group_relay(make_server):
    srv = make_server(extra_config=NO_DELAY + '[relay]\nallow_ip_group = "local"\n').start()
    r = connect(srv, "smtp")
    assert r.cmd("MAIL FROM:<>")[0] == 250
    assert r.cmd("RCPT TO:<someone@remote.test>")[0] == 250  # loopback is "local"
    r = connect(srv, "smtp", starttls=True)
    assert r.cmd("AUTH PLAIN " + plain(password="Wrong-Password-1"))[0] == 535
    assert r.cmd("MAIL FROM:<>")[0] == 250
    code, text = r.cmd("RCPT TO:<someone@remote.test>")
    assert code == 554 and "5.7.1" in text
    assert "IP group right revoked by a failed AUTH" in srv.wait_log("security.log", "revoked")


def test_authenticated_relay(make_server):
    srv = make_server(extra_config=NO_DELAY).start()  # harness: no IP group may relay
    r = connect(srv, "smtp", starttls=True)
    assert r.cmd("MAIL FROM:<>")[0] == 250
    assert r.cmd("RCPT TO:<someone@remote.test>")[0] == 554
    r = connect(srv, "smtp", starttls=True)
    assert r.cmd("AUTH PLAIN " + plain())[0] == 235
    assert r.cmd("MAIL FROM:<demo@example.test>")[0] == 250
    assert r.cmd("RCPT TO:<someone@remote.test>")[0] == 250
    r.cmd("QUIT")  # a transaction in flight would hold the shutdown up to [timeouts] shutdown
    srv.stop()
    srv.write_config(NO_DELAY + '[relay]\nallow_ip_group = ""\nallow_authenticated = false\n')
    srv.start()
    r = connect(srv, "smtp", starttls=True)
    assert r.cmd("AUTH PLAIN " + plain())[0] == 235
    assert r.cmd("MAIL FROM:<demo@example.test>")[0] == 250
    assert r.cmd("RCPT TO:<someone@remote.test>")[0] == 554


def test_cram_md5_only_when_enabled(make_server):
    srv = make_server(extra_config='[policy]\nauth_failure_delay = "0s"\n'
                                   'auth_mechanisms = ["CRAM-MD5", "SCRAM-SHA-256", "PLAIN"]\n')
    srv.cli("user", "add", "legacy@example.test", "--password-stdin", "--cram-md5", input=PASSWORD + "\n")
    srv.start()
    # smtplib prefers CRAM-MD5 when offered.
    with smtplib.SMTP("127.0.0.1", srv.ports["submission"], timeout=20) as s:
        s.ehlo("client.test")
        assert "CRAM-MD5" in s.esmtp_features["auth"]
        assert s.login("legacy@example.test", PASSWORD)[0] == 235
    with smtplib.SMTP("127.0.0.1", srv.ports["submission"], timeout=20) as s:
        s.ehlo("client.test")
        s.user, s.password = USER, PASSWORD  # no CRAM-MD5 secret stored for this user
        with pytest.raises(smtplib.SMTPAuthenticationError) as e:
            s.auth("CRAM-MD5", s.auth_cram_md5)
        assert e.value.smtp_code == 535


def test_received_names_the_user_only_when_enabled(make_server):
    srv = make_server(extra_config='[policy]\nreceived_auth_user = true\n').start()
    with smtplib.SMTP_SSL("127.0.0.1", srv.ports["smtps"], timeout=20, context=tls_context()) as s:
        s.login(USER, PASSWORD)
        s.sendmail(USER, [USER], f"From: {USER}\r\nSubject: x\r\nDate: Mon, 23 Nov 2026 00:00:00 +0000\r\nMessage-ID: <a@b>\r\n\r\nx\r\n")
    msg = srv.wait_messages(1)[0]
    assert b"(authenticated as demo@example.test)" in msg
    assert msg.count(b"Message-ID:") == 1 and msg.count(b"\nDate:") == 1  # the client's are kept


def test_password_policy_on_the_cli(make_server):
    srv = make_server(extra_config='[password_policy]\nmin_length = 12\n')
    cases = [("Sh0rt-pass", "shorter than 12"), ("alllowercaseletters", "at least 3"),
             ("Fred-Rocks-2026!", "user name")]
    for pw, why in cases:
        r = srv.cli("user", "add", "fred@example.test", "--password-stdin", input=pw + "\n", check=False)
        assert r.returncode == 2 and why in r.stderr, r.stderr
        assert pw not in r.stderr + r.stdout
    assert srv.cli("user", "add", "fred@example.test", "--password-stdin", input="Long-Enough-Pass-9\n").returncode == 0
    r = srv.cli("user", "passwd", "fred@example.test", "--password-stdin", input="weak\n", check=False)
    assert r.returncode == 2 and "password refused" in r.stderr
    # There is no way to put a password on the command line.
    r = srv.cli("user", "add", "joe@example.test", "--password", "Long-Enough-Pass-9", check=False)
    assert r.returncode == 2


def test_no_password_or_auth_payload_on_disk_or_in_logs(make_server):
    secret = "Very-Secret-Passw0rd-42"
    srv = make_server(extra_config='[policy]\nmode = "none"\nauth_failure_delay = "0s"\n')
    srv.cli("user", "add", "spy@example.test", "--password-stdin", "--cram-md5", input=secret + "\n")
    srv.start()
    payloads = [plain("spy@example.test", secret + "x"), plain("spy@example.test", secret, authzid="boss@example.test"),
                plain("spy@example.test", secret)]
    r = connect(srv)
    for p in payloads:
        r.cmd("AUTH PLAIN " + p)
    r = connect(srv)
    assert r.cmd("AUTH LOGIN")[0] == 334
    assert r.cmd(b64("spy@example.test"))[0] == 334
    assert r.cmd(b64(secret))[0] == 235
    srv.stop()
    needles = [secret.encode(), b64(secret).encode()] + [p.encode() for p in payloads]
    found = []
    for root in (srv.data, srv.logs, srv.root / "serve.stderr"):
        files = [root] if root.is_file() else [p for p in root.rglob("*") if p.is_file()]
        for f in files:
            content = f.read_bytes()
            found += [(str(f), n) for n in needles if n in content]
    assert not found
    assert "user <spy@example.test>" in srv.log("security.log")  # the failures were logged, by user name


def test_a_failed_login_with_an_unknown_name_logs_only_a_tag(make_server):
    """Issue 8.17: people type passwords into the user field; such a name is never
    written to the log, only a tag that is the same for the same name."""
    srv = make_server(extra_config='[policy]\nmode = "none"\nauth_failure_delay = "0s"\nmax_auth_failures = 0\n')
    srv.start()
    typed = "Hunter2-My-Real-Passw0rd"
    r = connect(srv)
    for _ in range(2):
        assert r.cmd("AUTH PLAIN " + plain(typed, "whatever"))[0] == 535
    assert r.cmd("AUTH PLAIN " + plain("someone-else", "whatever"))[0] == 535
    log = srv.wait_log("security.log", "unknown user")
    assert typed not in log and "someone-else" not in log
    tags = [line.split("tag ")[1].split(")")[0] for line in log.splitlines() if "unknown user" in line]
    assert len(tags) == 3 and tags[0] == tags[1] != tags[2]
    srv.stop()
    assert typed not in srv.serve_output() and typed not in srv.log("bulwark.log")


def test_starttls_forgets_a_plaintext_login(make_server):
    # SCRAM is allowed without TLS; after STARTTLS the session starts over (RFC 3207 4.2):
    # no relaying or sending on the strength of the earlier login.
    srv = make_server(extra_config=NO_DELAY).start()
    r = connect(srv, "smtp")
    assert scram_login(r)[0] == 235
    assert r.cmd("STARTTLS")[0] == 220
    r.sock = tls_context().wrap_socket(r.sock)
    assert r.cmd("EHLO client.test")[0] == 250
    assert r.cmd("MAIL FROM:<>")[0] == 250
    code, text = r.cmd("RCPT TO:<someone@remote.test>")
    assert code == 554 and "5.7.1" in text
