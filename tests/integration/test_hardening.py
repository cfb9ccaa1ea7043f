"""What an outside probe found, each as a regression test against the real server:
parallel password guesses past the login block, administrators' failures locking mail
clients out, hostile JSON, the settings API saving what the server refuses, a slow
drip on the admin port, quoting in alias targets, logout without CSRF, unbounded
literals before login, bearer case and doubled cookies, store errors reaching clients."""
import base64
import poplib
import smtplib
import ssl
import threading

import pytest

from conftest import PASSWORD, free_port, tmpfs_over
from imap_raw import ImapRaw
from test_admin import ADMIN_PW, call

USER = "demo@example.test"


def admin_server_with(make_server, extra=""):
    port = free_port()
    srv = make_server(extra_config=f'[[listener]]\nservice = "admin"\naddress = "127.0.0.1"\nport = {port}\n' + extra)
    srv.admin_port = port
    srv.cli("admin", "add", "root", "--password-stdin", input=ADMIN_PW + "\n")
    return srv.start()


def tls(srv):
    ctx = ssl.create_default_context(cafile=srv.cert)
    ctx.check_hostname = False
    return ctx


def in_parallel(n, attempt):
    """Runs attempt(i) on n threads released at once; their results in order."""
    results = [None] * n
    gate = threading.Barrier(n)

    def run(i):
        gate.wait()
        try:
            results[i] = attempt(i)
        except Exception as e:  # noqa: BLE001 -- the outcome is what the test looks at
            results[i] = e

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    return results


def imap_login(srv, password):
    s = ImapRaw(srv, login=False)
    try:
        _, done = s.cmd(f'LOGIN "{USER}" "{password}"')
        return done.decode()
    finally:
        s.close()


def pop3_login(srv, password):
    p = poplib.POP3_SSL("127.0.0.1", srv.ports["pop3s"], context=tls(srv), timeout=20)
    try:
        p.user(USER)
        return p.pass_(password).decode()
    except poplib.error_proto as e:
        return str(e)
    finally:
        p.close()


def smtp_login(srv, password):
    s = smtplib.SMTP_SSL("127.0.0.1", srv.ports["smtps"], context=tls(srv), timeout=20)
    try:
        s.ehlo()
        code, text = s.docmd("AUTH", "PLAIN " + base64.b64encode(f"\0{USER}\0{password}".encode()).decode())
        return f"{code} {text.decode()}"
    finally:
        s.close()


def admin_login(srv, password):
    r, j = call(srv, "POST", "/api/v1/login", {"name": "root", "password": password})
    return f"{r.status} {j}"


LOGINS = {
    "imap": (imap_login, "AUTHENTICATIONFAILED", "OK"),
    "pop3": (pop3_login, "[AUTH] Authentication failed", "+OK"),
    "smtp": (smtp_login, "535", "235"),
    "admin": (admin_login, "401", "200"),
}


@pytest.mark.parametrize("proto", sorted(LOGINS))
def test_parallel_guesses_never_get_past_the_login_block(make_server, proto):
    login, wrong_answer, right_answer = LOGINS[proto]
    srv = admin_server_with(make_server)
    answers = in_parallel(19, lambda i: login(srv, f"Wrong-Guess-{i}"))
    checked = [a for a in answers if isinstance(a, str) and wrong_answer in a]
    assert 1 <= len(checked) <= 5, answers  # policy.max_auth_failures = 5 reach the check
    assert not any(isinstance(a, str) and a.startswith(right_answer) for a in answers)
    # the right password after them: the address is blocked
    last = login(srv, PASSWORD if proto != "admin" else ADMIN_PW)
    assert not str(last).startswith(right_answer), last
    sec = srv.log("security.log")
    assert sec.count(" failed from 127.0.0.1") <= 5, sec
    assert "blocked for 15 minutes" in sec


def test_a_burst_of_right_logins_from_one_address_is_served_not_refused(server):
    """A mail client opening many connections at once (or an office behind one NAT):
    the checks queue for the address's slots, none is refused."""
    answers = in_parallel(12, lambda i: imap_login(server, PASSWORD))
    assert all(isinstance(a, str) and a.split()[1] == "OK" for a in answers), answers


def test_administrators_failures_do_not_lock_mail_clients_out(make_server):
    srv = admin_server_with(make_server, '[policy]\nauth_failure_delay = "0s"\n')
    for i in range(5):
        assert admin_login(srv, f"Wrong-{i}").startswith("401")
    assert admin_login(srv, ADMIN_PW).startswith("429")  # the console is blocked for the address
    assert imap_login(srv, PASSWORD).split()[1] == "OK"  # its mail clients are not
    assert pop3_login(srv, PASSWORD).startswith("+OK")
    assert smtp_login(srv, PASSWORD).startswith("235")
    # and the other way round: mail users' failures leave the console alone
    for i in range(5):
        assert "AUTHENTICATIONFAILED" in imap_login(srv, f"Wrong-{i}")
    assert "UNAVAILABLE" in imap_login(srv, PASSWORD)
    srv2 = admin_server_with(make_server, '[policy]\nauth_failure_delay = "0s"\n')
    for i in range(5):
        assert "AUTHENTICATIONFAILED" in imap_login(srv2, f"Wrong-{i}")
    assert admin_login(srv2, ADMIN_PW).startswith("200")


def admin_token(srv):
    return srv.cli("admin", "token", "root").stdout.strip()


def raw_admin(srv):
    import socket
    s = socket.create_connection(("127.0.0.1", srv.admin_port), timeout=30)
    return tls(srv).wrap_socket(s)


def test_deeply_nested_json_is_refused_and_every_service_stays_up(make_server):
    srv = admin_server_with(make_server)
    token = admin_token(srv)
    body = b'{"limits":' + b"[" * 20000 + b"]" * 20000 + b"}"  # 40 KB, under the body cap
    for path, method in (("/api/v1/settings", "PATCH"), ("/api/v1/domains", "POST"), ("/api/v1/login", "POST")):
        r, j = call(srv, method, path, raw=body, token=token)
        assert r.status == 400 and "nests deeper" in j["error"], (path, r.status, j)
    assert srv.proc.poll() is None
    assert imap_login(srv, PASSWORD).split()[1] == "OK"  # IMAP (and the rest) still serve
    assert smtp_login(srv, PASSWORD).startswith("235")
    r, _ = call(srv, "GET", "/api/v1/status", token=token)
    assert r.status == 200


def test_settings_are_checked_as_serve_checks_them_before_they_are_written(make_server):
    srv = admin_server_with(make_server)
    token = admin_token(srv)
    before = srv.config.read_text()
    bogus = srv.root / "not-a-cert.pem"
    bogus.write_text("this is not a certificate\n")
    r, j = call(srv, "PATCH", "/api/v1/settings", {"tls": {"certificate": str(bogus)}}, token=token)
    assert r.status == 400 and j["error"].startswith("tls.certificate:"), j
    assert srv.config.read_text() == before
    for key, value in (("data_dir", "/tmp/elsewhere"), ("log_dir", "/tmp/elsewhere-log"), ("user", "nobody")):
        r, j = call(srv, "PATCH", "/api/v1/settings", {"server": {key: value}}, token=token)
        assert r.status == 400 and j["error"].startswith(f"server.{key}:") and "restart" in j["error"], j
    assert srv.config.read_text() == before
    r, j = call(srv, "PATCH", "/api/v1/settings",
                {"delivery": {"mode": "relay", "relay_host": "relay.test", "relay_auth": "smtp", "tls": "required",
                              "relay_user": "u", "relay_password_file": str(srv.root / "missing")}}, token=token)
    assert r.status == 400 and j["error"].startswith("delivery.relay_password_file:"), j
    assert srv.config.read_text() == before
    # check-config makes the same checks as serve: a file serve would refuse is refused
    srv.config.write_text(before + f'\n[tls]\ncertificate = "{bogus}"\n')
    r = srv.cli("check-config", check=False)
    assert r.returncode == 2 and "tls.certificate" in r.stderr and "bulwark.toml:" in r.stderr, r.stderr
    srv.config.write_text(before)
    assert srv.cli("check-config").returncode == 0
    r, j = call(srv, "PATCH", "/api/v1/settings", {"limits": {"max_recipients": 40}}, token=token)
    assert r.status == 200


def test_a_slow_drip_on_the_admin_port_is_cut_off_when_the_request_is_due(make_server):
    import time
    srv = admin_server_with(make_server, '[timeouts]\ncommand = "3s"\n')
    s = raw_admin(srv)
    s.sendall(b"GET /api/v1/status HTTP/1.1\r\nHost: x\r\n")
    started = time.time()
    closed_after = None
    try:
        for _ in range(20):
            time.sleep(0.5)
            s.sendall(b"X")  # one byte of a header field, again and again
    except (BrokenPipeError, ConnectionResetError, OSError):
        closed_after = time.time() - started
    if closed_after is None:
        s.settimeout(5)
        try:
            data = s.recv(100)
        except OSError:
            data = b""
        assert data in (b"",) or data.startswith(b"HTTP/1.1 408"), data
        closed_after = time.time() - started
    assert closed_after < 8, closed_after


def test_session_cookie_rules_bearer_case_and_logout_by_post_only(make_server):
    srv = admin_server_with(make_server)
    r, j = call(srv, "POST", "/api/v1/login", {"name": "root", "password": ADMIN_PW})
    assert r.status == 200
    sid, csrf = j["token"], j["csrf"]
    # the scheme is case-insensitive (RFC 9110 11.1)
    for scheme in ("bearer", "BEARER", "Bearer"):
        r, j = call(srv, "GET", "/api/v1/status", headers={"Authorization": f"{scheme} {sid}"})
        assert r.status == 200, (scheme, r.status, j)
    # two session cookies: refused, whichever is valid
    r, j = call(srv, "GET", "/api/v1/status", headers={"Cookie": f"bulwark_session=forged; bulwark_session={sid}"})
    assert r.status == 400 and "more than one" in j["error"], (r.status, j)
    # GET /api/v1/logout ends nothing (a state change needs POST and, by cookie, the CSRF token)
    r, j = call(srv, "GET", "/api/v1/logout", headers={"Cookie": f"bulwark_session={sid}"})
    assert r.status == 405
    r, j = call(srv, "GET", "/api/v1/status", headers={"Cookie": f"bulwark_session={sid}"})
    assert r.status == 200
    r, j = call(srv, "POST", "/api/v1/logout", headers={"Cookie": f"bulwark_session={sid}"})
    assert r.status == 403  # no X-CSRF-Token
    r, j = call(srv, "POST", "/api/v1/logout", headers={"Cookie": f"bulwark_session={sid}", "X-CSRF-Token": csrf})
    assert r.status == 204
    r, j = call(srv, "GET", "/api/v1/status", headers={"Cookie": f"bulwark_session={sid}"})
    assert r.status == 401


def test_a_huge_literal_before_login_ends_the_connection(server):
    import socket
    import time
    for literal in (b"{99999999+}", b"{99999999}", b"{9000+}"):
        s = ImapRaw(server, login=False)
        s.send(b"a LOGIN " + literal + b"\r\n")
        line = s.line()
        assert line.startswith(b"* BYE") and b"too big" in line.lower(), line
        assert s.closed()
        s.close()
    # a small literal still works before login
    s = ImapRaw(server, login=False)
    s.send(b'a LOGIN {17+}\r\ndemo@example.test "' + PASSWORD.encode() + b'"\r\n')
    assert s.line().startswith(b"a OK")
    s.close()
    # after login, APPEND's literals are bounded by limits.max_message_size again
    s = ImapRaw(server)
    big = b"Subject: big\r\n\r\n" + b"x" * 20000 + b"\r\n"
    s.ok("APPEND INBOX", literal=big)
    s.close()


@pytest.mark.skipif(__import__("os").geteuid() != 0, reason="a tmpfs of a set size needs root (mount namespace)")
def test_a_full_disk_is_told_with_an_rfc5530_code_and_no_path(make_server):
    srv = make_server()
    full = srv.data / "mail" / "example.test" / "demo" / ".Full"
    full.mkdir(parents=True)
    srv.start(preexec_fn=tmpfs_over(full, 64 * 1024))
    s = ImapRaw(srv)
    big = b"Subject: too big for the disk\r\n\r\n" + (b"y" * 76 + b"\r\n") * 3000
    for _ in range(5):
        _, done = s.cmd("APPEND Full", literal=big)
        assert done.split()[1] == b"NO" and b"[OVERQUOTA]" in done, done
        assert b"/" not in done.split(b"]", 1)[1] and b"No space" not in done, done
    # MULTIAPPEND is all or none: a small message with one that does not fit adds neither
    small = b"Subject: small\r\n\r\nfits\r\n"
    s.send(b"m1 APPEND Full {%d+}\r\n" % len(small) + small + b" {%d+}\r\n" % len(big) + big + b"\r\n")
    while not (done := s.line()).startswith(b"m1 "):
        pass
    assert done.split()[1] == b"NO" and b"[OVERQUOTA]" in done, done
    assert b"MESSAGES 0" in b"".join(s.ok("STATUS Full (MESSAGES)"))
    s.ok("SELECT Full")
    s.close()
    log = srv.log("bulwark.log")
    lines = [l for l in log.splitlines() if "No space left on device" in l]
    assert len(lines) == 1, lines  # the detail once per 10 s for a repeated cause


def test_search_keys_nested_without_end_are_refused_and_the_session_goes_on(server):
    """NOT and OR nest without parentheses: 16,000 NOTs in one 64 KiB line must not take
    the server's stack (the parentheses were bounded, these were not)."""
    s = ImapRaw(server)
    s.ok("APPEND INBOX", literal=b"Subject: one\r\n\r\nbody\r\n")
    s.ok("SELECT INBOX")
    for cmd in ("SEARCH " + "NOT " * 16000 + "ALL", "SEARCH " + "OR ALL " * 9000 + "ALL",
                "UID SORT (DATE) UTF-8 " + "NOT " * 16000 + "ALL",
                "THREAD REFERENCES UTF-8 " + "NOT " * 16000 + "ALL"):
        _, done = s.cmd(cmd)
        assert done.split()[1] == b"BAD" and b"nested too deeply" in done, done
    # deep but reasonable nesting still works
    untagged = s.ok("SEARCH " + "NOT " * 20 + "ALL")
    assert untagged == [b"* SEARCH 1"], untagged
    untagged = s.ok("SEARCH " + "OR SEEN " * 20 + "ALL")
    assert untagged == [b"* SEARCH 1"], untagged
    s.close()


def test_thread_of_a_very_long_reply_chain_is_answered(make_server):
    """A mailing list's 30,000-message reply chain (each message answers the one before):
    THREAD walks it without recursion as deep as the chain and answers in one piece."""
    import time
    srv = make_server()
    new = srv.mailbox() / "new"
    new.mkdir(parents=True)
    (srv.mailbox() / "cur").mkdir()
    (srv.mailbox() / "tmp").mkdir()
    n = 30000
    for i in range(n):
        head = f"From: a@example.org\r\nSubject: Re: the chain\r\nDate: Mon, 1 Jun 2026 10:00:00 +0000\r\n" \
               f"Message-ID: <{i}@chain>\r\n"
        if i:
            head += f"In-Reply-To: <{i - 1}@chain>\r\n"
        (new / f"{1700000000 + i}.M{i}P1Q1.test").write_bytes((head + "\r\nlink\r\n").encode())
    srv.start()
    s = ImapRaw(srv, timeout=120)
    s.ok("EXAMINE INBOX")
    chain = "(" + " ".join(str(i) for i in range(1, n + 1)) + ")"
    t = time.monotonic()
    untagged = s.ok("THREAD REFERENCES UTF-8 ALL")
    assert untagged == [("* THREAD " + chain).encode()], untagged[0][:200]
    assert time.monotonic() - t < 30
    untagged = s.ok("THREAD ORDEREDSUBJECT UTF-8 ALL")  # one subject: the first message, the rest under it
    assert untagged == [("* THREAD (1 " + "".join(f"({i})" for i in range(2, n + 1)) + ")").encode()], untagged[0][:200]
    s.ok("NOOP")
    s.close()
