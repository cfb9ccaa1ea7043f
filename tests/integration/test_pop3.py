"""POP3 and POP3S against the real server: Python's poplib, fetchmail and getmail6
(Debian packages) fetching mail that arrived through SMTP, the security policy modes,
the brute-force block shared with SMTP, IN-USE, STLS injection, listener access
groups, POP-before-SMTP, and the store across restarts and kill -9."""
import poplib
import smtplib
import socket
import ssl
import subprocess
import time

import pytest

from conftest import HOST, PASSWORD
from mail_clients import fetchmail, getmail, same_message

USER = "demo@example.test"
NO_DELAY = '[policy]\nauth_failure_delay = "0s"\n'


def tls_context(srv):
    ctx = ssl.create_default_context(cafile=srv.cert)
    ctx.check_hostname = False
    return ctx


def message(i, extra=b""):
    return (b"From: Sender <a@remote.test>\r\nTo: demo@example.test\r\nSubject: message %d\r\n"
            b"Message-ID: <%d@remote.test>\r\n\r\nline one of %d\r\n.a line with a leading dot\r\n"
            b"..and two\r\n.\r\nlast line\r\n" % (i, i, i)) + extra


def send(srv, msgs):
    with smtplib.SMTP("127.0.0.1", srv.ports["smtp"], timeout=20) as s:
        for m in msgs:
            s.sendmail("a@remote.test", [USER], m)


def from_address(base, src):
    """poplib's class, connecting from a chosen loopback address (per-IP tests)."""
    class FromAddress(base):
        def _create_socket(self, timeout):
            sock = socket.create_connection((self.host, self.port), timeout, source_address=(src, 0))
            if base is poplib.POP3_SSL:
                sock = self.context.wrap_socket(sock, server_hostname=self.host)
            return sock
    return FromAddress


def pop(srv, service="pop3", src="127.0.0.1", stls=True, login=True, user=USER, password=PASSWORD):
    if service == "pop3s":
        p = from_address(poplib.POP3_SSL, src)("127.0.0.1", srv.ports["pop3s"], context=tls_context(srv), timeout=20)
    else:
        p = from_address(poplib.POP3, src)("127.0.0.1", srv.ports["pop3"], timeout=20)
        if stls:
            p.stls(tls_context(srv))
    if login:
        p.user(user)
        p.pass_(password)
    return p


def retr(p, i):
    resp, lines, octets = p.retr(i)
    return b"\r\n".join(lines) + b"\r\n"


class Raw:
    """A POP3 connection that shows the bytes, for what poplib hides or refuses."""

    def __init__(self, srv, service="pop3", src="127.0.0.1"):
        self.sock = socket.create_connection(("127.0.0.1", srv.ports[service]), timeout=10, source_address=(src, 0))
        if service == "pop3s":
            self.sock = tls_context(srv).wrap_socket(self.sock)
        self.buf = b""
        self.greeting = self.line()

    def line(self):
        while b"\r\n" not in self.buf:
            data = self.sock.recv(65536)
            if not data:
                raise EOFError(self.buf)
            self.buf += data
        line, _, self.buf = self.buf.partition(b"\r\n")
        return line.decode("latin-1")

    def cmd(self, text):
        self.sock.sendall(text.encode() + b"\r\n")
        return self.line()

    def closed(self, timeout=5):
        self.sock.settimeout(timeout)
        try:
            return self.sock.recv(1) == b""
        except (ConnectionResetError, ssl.SSLError):
            return True


def test_poplib_fetches_byte_identical_mail_over_stls_and_pop3s(server):
    msgs = [message(1), message(2, (b"y" * 998 + b"\r\n") * 300)]
    send(server, msgs)
    server.wait_messages(2)
    p = pop(server)
    assert p.stat() == (2, sum(int(x.split()[1]) for x in p.list()[1]))
    for i, m in enumerate(msgs, 1):
        got = retr(p, i)
        # Our trace headers first, then exactly the bytes that were sent.
        assert got.endswith(m) and got.startswith(b"Return-Path: <a@remote.test>\r\n")
        # LIST gives what RETR sends (RFC 1939), dot-stuffing aside
        assert int(p.list(i).split()[2]) == len(got)
    top = p.top(1, 1)[1]
    assert top[-1] == b"line one of 1" and b"Subject: message 1" in top
    uidls = p.uidl()[1]
    p.quit()
    p = pop(server, "pop3s")
    assert p.uidl()[1] == uidls
    assert retr(p, 2).endswith(msgs[1])
    p.quit()


def test_dele_takes_effect_at_quit_and_not_when_the_connection_drops(server):
    send(server, [message(i) for i in range(3)])
    server.wait_messages(3)
    p = pop(server)
    uidls = p.uidl()[1]
    p.dele(1)
    p.dele(3)
    p.close()  # dropped without QUIT: no UPDATE
    time.sleep(0.5)
    p = pop(server)
    assert p.uidl()[1] == uidls
    p.dele(2)
    assert p.quit().startswith(b"+OK")
    p = pop(server)
    left = p.uidl()[1]
    assert len(left) == 2 and [u.split()[1] for u in left] == [uidls[0].split()[1], uidls[2].split()[1]]
    p.quit()
    assert "deleted 1 messages" in server.wait_log("bulwark.log", "deleted 1 messages")


def test_uidl_is_stable_across_restart_and_new_mail_gets_new_uids(server):
    send(server, [message(1), message(2)])
    server.wait_messages(2)
    p = pop(server)
    before = [u.split()[1] for u in p.uidl()[1]]
    p.quit()
    server.stop()
    server.start()
    send(server, [message(3)])
    deadline = time.time() + 20
    while True:
        p = pop(server)
        after = [u.split()[1] for u in p.uidl()[1]]
        if len(after) == 3 or time.time() > deadline:
            break
        p.quit()
    assert after[:2] == before and after[2] not in before
    assert retr(p, 3).endswith(message(3))
    p.quit()


def test_second_session_gets_in_use(server):
    send(server, [message(1)])
    server.wait_messages(1)
    p = pop(server)
    with pytest.raises(poplib.error_proto, match=r"\[IN-USE\]"):
        pop(server, "pop3s")
    p.quit()
    q = pop(server, "pop3s")  # free again
    assert q.stat()[0] == 1
    q.quit()


def test_secure_auth_refuses_user_pass_without_tls(make_server):
    srv = make_server(extra_config=NO_DELAY).start()
    r = Raw(srv)
    assert r.greeting.startswith("+OK")
    capa = [r.cmd("CAPA")]
    while capa[-1] != ".":
        capa.append(r.line())
    assert "USER" not in capa and "STLS" in capa and "SASL SCRAM-SHA-256" in capa
    assert r.cmd("USER demo@example.test").startswith("-ERR [AUTH] Plaintext authentication disallowed")
    assert r.cmd("AUTH PLAIN AGRlbW9AZXhhbXBsZS50ZXN0AHg=").startswith("-ERR [AUTH]")
    assert "POP3 from 127.0.0.1 refused: USER without TLS" in srv.wait_log("security.log", "USER without TLS")
    # and with TLS it works
    p = pop(srv)
    assert p.stat() == (0, 0)
    p.quit()


def test_encrypted_mode_allows_only_capa_stls_quit_before_tls(make_server):
    srv = make_server(extra_config='[policy]\nmode = "encrypted"\nauth_failure_delay = "0s"\n').start()
    r = Raw(srv)
    for c in ("STAT", "NOOP", "USER demo@example.test", "AUTH SCRAM-SHA-256", "LIST"):
        assert r.cmd(c) == "-ERR [AUTH] TLS required: use STLS first", c
    assert r.cmd("CAPA") == "+OK Capability list follows"
    capa = []
    while (line := r.line()) != ".":
        capa.append(line)
    assert "STLS" in capa and "USER" not in capa and not any(c.startswith("SASL") for c in capa)
    assert r.cmd("QUIT").startswith("+OK")
    p = pop(srv)
    p.quit()
    p = pop(srv, "pop3s")
    p.quit()


def test_policy_none_allows_user_pass_in_plain_text(make_server):
    srv = make_server(extra_config='[policy]\nmode = "none"\n').start()
    p = pop(srv, stls=False)
    assert p.stat() == (0, 0)
    p.quit()


def test_wrong_password_is_refused_and_the_block_is_shared_with_smtp(make_server):
    srv = make_server(extra_config=NO_DELAY + "max_auth_failures = 3\n").start()
    for i in range(3):
        with pytest.raises(poplib.error_proto, match=r"\[AUTH\] Authentication failed"):
            pop(srv, src="127.0.0.9", password=f"Wrong-Guess-{i}")
    srv.wait_log("security.log", "POP3 from 127.0.0.9 blocked for 15 minutes: too many failed logins")
    # The right password from that address is refused now, on POP3 and on SMTP AUTH.
    with pytest.raises(poplib.error_proto, match=r"\[SYS/TEMP\] Too many failed logins"):
        pop(srv, src="127.0.0.9")
    s = smtplib.SMTP("127.0.0.1", srv.ports["submission"], timeout=20, source_address=("127.0.0.9", 0))
    s.starttls(context=tls_context(srv))
    with pytest.raises(smtplib.SMTPAuthenticationError) as e:
        s.login(USER, PASSWORD)
    assert e.value.smtp_code == 454
    s.close()
    # and SMTP failures count for POP3 too
    for i in range(3):
        s = smtplib.SMTP("127.0.0.1", srv.ports["submission"], timeout=20, source_address=("127.0.0.10", 0))
        s.starttls(context=tls_context(srv))
        with pytest.raises(smtplib.SMTPAuthenticationError):
            s.login(USER, f"Wrong-Guess-{i}")
        s.close()
    with pytest.raises(poplib.error_proto, match=r"\[SYS/TEMP\]"):
        pop(srv, src="127.0.0.10")
    pop(srv, src="127.0.0.11").quit()  # another address is not affected
    sec = srv.log("security.log")
    assert "Wrong-Guess" not in sec and PASSWORD not in sec and PASSWORD not in srv.log("bulwark.log")


def test_stls_injection_is_discarded(server):
    r = Raw(server)
    # STLS and a command in one packet: the command was sent in clear and must not run.
    r.sock.sendall(b"STLS\r\nUSER demo@example.test\r\n")
    assert r.line() == "+OK Begin TLS negotiation"
    assert r.buf == b""
    r.sock = tls_context(server).wrap_socket(r.sock)
    r.sock.settimeout(1)
    with pytest.raises(socket.timeout):  # nothing more was answered
        r.sock.recv(100)
    r.sock.settimeout(10)
    assert r.cmd("PASS " + PASSWORD) == "-ERR Send USER first"


def test_bad_input_gets_err_and_the_session_closes_after_the_limit(make_server):
    srv = make_server(extra_config="[limits]\nmax_failed_commands = 4\n").start()
    r = Raw(srv)
    assert r.cmd("XYZZY") == "-ERR Unknown command"
    assert r.cmd("A" * 1000) == "-ERR Command line too long (RFC 2449: 255 octets)"
    assert r.cmd("RETR 1") == "-ERR Not logged in"
    assert r.cmd("\x00\xff") == "-ERR Too many errors, closing connection"
    assert r.closed()
    assert "too many failed commands (4)" in srv.wait_log("security.log", "too many failed commands")
    # A line that never ends is bounded too: the server does not buffer it.
    r = Raw(srv)
    for _ in range(64):
        r.sock.sendall(b"x" * 16384)
    r.sock.sendall(b"\r\nNOOP\r\n")
    assert r.line() == "-ERR Command line too long (RFC 2449: 255 octets)"


def test_listener_access_group_and_connection_caps(make_server):
    srv = make_server(extra_config='[ip_groups]\nonly2 = ["127.0.0.2"]\n[limits]\nmax_mailbox_connections_per_ip = 2\n')
    text = srv.config.read_text().replace(
        f'service = "pop3"\naddress = "127.0.0.1"\nport = {srv.ports["pop3"]}\n',
        f'service = "pop3"\naddress = "127.0.0.1"\nport = {srv.ports["pop3"]}\nallowed_ip_group = "only2"\n')
    srv.config.write_text(text)
    srv.start()
    r = Raw(srv, src="127.0.0.3")
    assert r.greeting == "-ERR [AUTH] Access denied" and r.closed()
    assert Raw(srv, src="127.0.0.2").greeting.startswith("+OK")
    # two mailbox connections from one address; the third is refused, SMTP unaffected
    a, b = Raw(srv, "pop3s", src="127.0.0.4"), Raw(srv, "pop3s", src="127.0.0.4")
    c = Raw(srv, "pop3s", src="127.0.0.4")
    assert c.greeting == "-ERR [SYS/TEMP] Too many connections from your address, try later"
    with smtplib.SMTP("127.0.0.1", srv.ports["smtp"], timeout=10, source_address=("127.0.0.4", 0)) as s:
        assert s.noop()[0] == 250
    assert "POP3 connection from 127.0.0.3 rejected: not in IP group only2" in srv.log("security.log")
    a.cmd("QUIT"), b.cmd("QUIT")


def test_pop_before_smtp_opens_the_relay_window_and_it_expires(make_server):
    srv = make_server(extra_config='[relay]\nallow_ip_group = ""\npop_before_smtp = "3s"\n').start()

    def try_relay():
        with smtplib.SMTP("127.0.0.1", srv.ports["smtp"], timeout=10, source_address=("127.0.0.12", 0)) as s:
            s.ehlo("client.test")
            s.mail("")
            code = s.rcpt("someone@remote.test")[0]
            s.rset()
            return code

    assert try_relay() == 554
    pop(srv, src="127.0.0.13").quit()  # another address opens nothing for this one
    assert try_relay() == 554
    pop(srv, src="127.0.0.12").quit()
    assert try_relay() == 250
    time.sleep(3.5)
    assert try_relay() == 554


def test_login_cache_never_outlives_a_password_change_or_removal(make_server):
    srv = make_server(extra_config=NO_DELAY).start()
    pop(srv).quit()
    pop(srv).quit()  # cached now
    srv.cli("user", "passwd", USER, "--password-stdin", input="Another-Horse-7-Battery\n")
    with pytest.raises(poplib.error_proto, match=r"\[AUTH\]"):
        pop(srv)
    pop(srv, password="Another-Horse-7-Battery").quit()
    srv.cli("user", "add", "gone@example.test", "--password-stdin", input=PASSWORD + "\n")
    pop(srv, user="gone@example.test").quit()
    srv.cli("user", "remove", "gone@example.test")
    with pytest.raises(poplib.error_proto, match=r"\[AUTH\]"):
        pop(srv, user="gone@example.test")


def test_fetchmail_fetches_and_deletes(server, tmp_path):
    msgs = [message(i) for i in range(3)]
    send(server, msgs)
    server.wait_messages(3)
    # STLS: fetchmail upgrades the plain port when told a TLS protocol and finds STLS
    r, got = fetchmail(tmp_path, "pop3", server.ports["pop3"], server.cert, USER)
    assert r.returncode == 0, r.stdout + r.stderr
    assert len(got) == 3 and all(any(same_message(g, m) for g in got) for m in msgs), got
    p = pop(server)  # fetchmail deleted what it fetched
    assert p.stat() == (0, 0)
    p.quit()


def test_getmail6_fetches_over_pop3s_into_a_maildir(server, tmp_path):
    msgs = [message(i) for i in range(2)]
    send(server, msgs)
    server.wait_messages(2)
    # getmail6 has no STLS: POP3S, the certificate checked against the test CA
    r, got = getmail(tmp_path, "SimplePOP3SSLRetriever", server.ports["pop3s"], server.cert, USER)
    assert r.returncode == 0, r.stdout + r.stderr
    assert len(got) == 2 and all(any(same_message(g, m) for g in got) for m in msgs), got
    p = pop(server)  # delete = false: still there
    assert p.stat()[0] == 2
    p.quit()


def test_kill_9_during_update_and_delivery_loses_nothing_and_reuses_no_uid(make_server):
    srv = make_server().start()
    n = 200
    send(srv, [message(i) for i in range(n)])
    srv.wait_messages(n)
    p = pop(srv)
    uidls = [u.split()[1] for u in p.uidl()[1]]
    for i in range(1, n + 1):
        p.dele(i)
    p.sock.sendall(b"QUIT\r\n")  # UPDATE starts; kill the server in the middle of it
    time.sleep(0.005)
    srv.kill9()
    p.close()
    srv.start()
    # meanwhile: deliveries under way when the server dies again
    sender = subprocess.Popen(["/usr/bin/python3", "-c", f"""
import smtplib
for i in range(100):
    try:
        with smtplib.SMTP("127.0.0.1", {srv.ports['smtp']}, timeout=10) as s:
            s.sendmail("a@remote.test", ["{USER}"], b"Subject: late %d\\r\\n\\r\\nx\\r\\n" % i)
        print(i, flush=True)
    except Exception:
        break
"""], stdout=subprocess.PIPE, text=True)
    time.sleep(1.0)
    srv.kill9()
    acked = len(sender.communicate(timeout=60)[0].split())
    srv.start()
    deadline = time.time() + 30
    while True:
        p = pop(srv)
        now = [u.split()[1] for u in p.uidl()[1]]
        subjects = [b"".join(p.top(i, 0)[1]) for i in range(1, len(now) + 1)]
        late = sum(1 for s in subjects if b"Subject: late" in s)
        if late >= acked or time.time() > deadline:
            break
        p.quit()
        time.sleep(0.2)
    p.quit()
    new = [u for u in now if u not in uidls]
    assert late >= acked, (late, acked)  # every acknowledged message is there
    # old messages either gone (deleted) or still there, never renumbered; new ones
    # got UIDs never used before
    assert len(set(now)) == len(now)
    assert all(int(u, 16) & 0xFFFFFFFF > max(int(x, 16) & 0xFFFFFFFF for x in uidls) for u in new)


def test_a_100000_message_mailbox_lists_without_reading_bodies(make_server):
    srv = make_server()
    box = srv.data / "mail" / "example.test" / "demo"
    for d in ("tmp", "new", "cur"):
        (box / d).mkdir(parents=True)
    body = b"Subject: bulk\n\nbody\n"
    n = 100000
    for i in range(n):
        (box / "new" / f"{1700000000 + i}.M{i}P1.host,S={len(body)},W={len(body) + 3}").write_bytes(body)
    srv.start()
    t = time.time()
    p = pop(srv)
    first = time.time() - t
    uidl = p.uidl()[1]
    assert len(uidl) == n and p.stat() == (n, n * (len(body) + 3))
    assert retr(p, n) == b"Subject: bulk\r\n\r\nbody\r\n"
    p.quit()
    t = time.time()
    p = pop(srv)
    assert len(p.uidl()[1]) == n
    again = time.time() - t
    p.quit()
    print(f"100,000 messages: first login {first:.2f}s (UIDs given), next login + UIDL {again:.2f}s")
    # bodies were not read: sizes came from the names (atime is not reliable; check
    # the index says what the names say)
    idx = (box / "bulwark-uidlist").read_text()
    assert idx.count("\n") == n + 1 and f" {len(body)} {len(body) + 3} " in idx
