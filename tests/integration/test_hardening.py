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

from conftest import PASSWORD, free_port
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
