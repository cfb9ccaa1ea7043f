"""Sender identity / anti-spoofing (SPEC 9): which envelope senders and From: addresses
a session may use, with delegations, aliases, groups and the per-domain switch."""
import smtplib

import pytest

from conftest import HOST, PASSWORD
from test_auth import NO_DELAY, connect, plain, tls_context

USER = "demo@example.test"


def identity_server(make_server, extra=""):
    srv = make_server(extra_config=NO_DELAY + extra, users=("demo@example.test", "other@example.test",
                                                            "boss@example.test"))
    srv.cli("alias", "add", "sales@example.test", "demo@example.test")
    srv.cli("alias", "add", "info@example.test", "sales@example.test")  # alias of an alias
    srv.cli("group", "add", "team@example.test", "--member", "demo@example.test", "--member", "other@example.test")
    srv.cli("delegate", "add", "--owner", "boss@example.test", "--to", "demo@example.test")
    srv.cli("domain", "add", "open.test", "--no-anti-spoofing")
    srv.cli("user", "add", "free@open.test", "--password-stdin", input=PASSWORD + "\n")
    return srv.start()


def logged_in(srv, user=USER):
    r = connect(srv, starttls=True)
    assert r.cmd("AUTH PLAIN " + plain(user))[0] == 235
    return r


def mail_from(r, sender):
    code, text = r.cmd(f"MAIL FROM:<{sender}>")
    if code == 250:
        r.cmd("RSET")
    return code, text


def test_authenticated_envelope_sender(make_server):
    srv = identity_server(make_server)
    r = logged_in(srv)
    for sender in ("demo@example.test", "DEMO@Example.Test", "sales@example.test", "info@example.test",
                   "team@example.test", "boss@example.test", ""):
        assert mail_from(r, sender)[0] == 250, sender
    for sender in ("other@example.test", "nobody@example.test", "someone@remote.test", "free@open.test"):
        code, text = mail_from(r, sender)
        assert code == 550 and text == "550 5.7.1 Sender address not allowed", sender
    log = srv.wait_log("security.log", "other@example.test")
    assert "SMTP sender <other@example.test> from 127.0.0.1 refused: not allowed for demo@example.test" in log
    # Delegation is one way: boss may not send as demo.
    r = logged_in(srv, "boss@example.test")
    assert mail_from(r, "demo@example.test")[0] == 550
    # A user of a domain with anti-spoofing off may send as anything.
    r = logged_in(srv, "free@open.test")
    assert mail_from(r, "someone@remote.test")[0] == 250
    # Delegation removed: refused again.
    srv.cli("delegate", "remove", "--owner", "boss@example.test", "--to", "demo@example.test")
    r = logged_in(srv)
    assert mail_from(r, "boss@example.test")[0] == 550


def test_from_header_is_checked(make_server):
    srv = identity_server(make_server)
    with smtplib.SMTP("127.0.0.1", srv.ports["submission"], timeout=20) as s:
        s.starttls(context=tls_context())
        s.login(USER, PASSWORD)
        ok = ["Demo <demo@example.test>", '"Sales, Team" <sales@example.test>', "boss@example.test (the boss)",
              "=?UTF-8?Q?D=C3=A9mo?= <demo@example.test>", "team: demo@example.test, sales@example.test;"]
        for frm in ok:
            s.sendmail(USER, [USER], f"From: {frm}\r\nSubject: ok\r\n\r\nx\r\n")
        bad = ["Demo <other@example.test>", "demo@example.test, other@example.test", "Mallory <m@remote.test>",
               "<>", "not an address"]
        for frm in bad:
            with pytest.raises(smtplib.SMTPDataError) as e:
                s.sendmail(USER, [USER], f"From: {frm}\r\nSubject: bad\r\n\r\nx\r\n")
            assert e.value.smtp_code == 550 and b"5.7.1" in e.value.smtp_error, frm
        # Two From: fields: refused.
        with pytest.raises(smtplib.SMTPDataError):
            s.sendmail(USER, [USER], "From: demo@example.test\r\nFrom: other@example.test\r\n\r\nx\r\n")
        # A folded From: is read whole.
        with pytest.raises(smtplib.SMTPDataError):
            s.sendmail(USER, [USER], "From: Demo\r\n <other@example.test>\r\nSubject: folded\r\n\r\nx\r\n")
    assert len(srv.wait_messages(len(ok))) == len(ok)
    assert "From: <other@example.test> not allowed for demo@example.test" in srv.wait_log("security.log", "From:")


def test_unauthenticated_local_sender(make_server):
    srv = identity_server(make_server, '[ip_groups]\nlan = ["127.0.0.9"]\n[relay]\nallow_ip_group = "lan"\n')
    r = connect(srv, "smtp")
    code, text = mail_from(r, "demo@example.test")
    assert code == 550 and "5.7.1" in text
    assert mail_from(r, "someone@remote.test")[0] == 250
    assert mail_from(r, "")[0] == 250                      # bounces always
    assert mail_from(r, "anyone@open.test")[0] == 250      # that domain opted out
    r = connect(srv, "smtp", src="127.0.0.9")              # the relay group may
    assert mail_from(r, "demo@example.test")[0] == 250
    # ...unless it failed AUTH in this session.
    r = connect(srv, "smtp", src="127.0.0.9", starttls=True)
    assert r.cmd("AUTH PLAIN " + plain(password="Wrong-Password-1"))[0] == 535
    assert mail_from(r, "demo@example.test")[0] == 550
    # An unauthenticated From: header is not this server's business (only the envelope).
    with smtplib.SMTP("127.0.0.1", srv.ports["smtp"], timeout=20) as s:
        s.sendmail("someone@remote.test", [USER], "From: demo@example.test\r\n\r\nx\r\n")


def test_anti_spoofing_off_globally(make_server):
    srv = identity_server(make_server, "anti_spoofing = false\n")
    r = connect(srv, "smtp")
    assert mail_from(r, "demo@example.test")[0] == 250
    r = logged_in(srv)
    assert mail_from(r, "other@example.test")[0] == 250


def test_server_hostname_is_protected_and_from_is_required(make_server):
    """Issue 8.20: our own host name cannot be used as a sender from outside, and an
    authenticated submission needs a From: header field (RFC 5322 3.6)."""
    srv = make_server(extra_config=NO_DELAY).start()
    with smtplib.SMTP("127.0.0.1", srv.ports["smtp"]) as s:
        s.ehlo("client.test")
        code, msg = s.mail("root@" + HOST)
        assert code == 550 and b"5.7.1" in msg
    with smtplib.SMTP("127.0.0.1", srv.ports["submission"]) as s:
        s.starttls(context=tls_context())
        s.login("demo@example.test", PASSWORD)
        with pytest.raises(smtplib.SMTPDataError) as e:
            s.sendmail("demo@example.test", ["demo@example.test"], b"Subject: no from\r\n\r\nbody\r\n")
        assert e.value.smtp_code == 550 and b"From:" in e.value.smtp_error
        code, msg = s.mail("root@" + HOST)  # not the user's either
        assert code == 550


def test_pop_before_smtp_session_is_known_as_the_user_who_opened_the_window(make_server):
    """Seed 002: "after this authentication the user is known already". A client that
    logged in over POP3 (or IMAP) from an address may then send through SMTP from it as
    that user -- its own address, aliases, groups, delegations -- and as nobody else."""
    import socket
    import ssl
    from test_pop3 import pop
    srv = identity_server(make_server, '[relay]\nallow_ip_group = ""\npop_before_smtp = "30m"\n')

    def session(src):
        s = smtplib.SMTP("127.0.0.1", srv.ports["smtp"], timeout=10, source_address=(src, 0))
        s.ehlo("client.test")
        return s

    def attempt(src, sender, rcpt="someone@remote.test", from_header=None):
        with session(src) as s:
            code, text = s.mail(sender)
            if code != 250:
                return code
            code, text = s.rcpt(rcpt)
            if code != 250:
                return code
            body = f"From: {from_header or sender}\r\nSubject: t\r\n\r\nhi\r\n"
            code, text = s.data(body.encode())
            return code

    # before any login: a local sender from outside is refused, relaying too
    assert attempt("127.0.0.21", USER) == 550
    ctx = ssl.create_default_context(cafile=srv.cert)
    ctx.check_hostname = False
    pop(srv, "pop3s", src="127.0.0.21").quit()
    # the user's own address, an alias, a group, a delegation; relayed out and local
    for sender in (USER, "sales@example.test", "team@example.test", "boss@example.test"):
        assert attempt("127.0.0.21", sender) == 250, sender
    assert attempt("127.0.0.21", USER, rcpt="other@example.test") == 250
    # nobody else's: another local user, or a foreign address relayed out
    assert attempt("127.0.0.21", "other@example.test") == 550
    assert attempt("127.0.0.21", "someone@elsewhere.test") == 554  # relaying needs the user's address
    assert attempt("127.0.0.21", USER, from_header="other@example.test") == 550  # From: is checked too
    # another address gained nothing
    assert attempt("127.0.0.22", USER) == 550
    # an IMAP login opens the window for its user too
    with smtplib.SMTP("127.0.0.1", srv.ports["smtp"], timeout=10, source_address=("127.0.0.23", 0)) as m:
        m.ehlo("x")
        assert m.mail("other@example.test")[0] == 550
    sock = ctx.wrap_socket(socket.create_connection(("127.0.0.1", srv.ports["imaps"]), timeout=10,
                                                    source_address=("127.0.0.23", 0)))
    f = sock.makefile("rb")
    f.readline()
    sock.sendall(f'a LOGIN "other@example.test" "{PASSWORD}"\r\n'.encode())
    assert f.readline().startswith(b"a OK")
    sock.close()
    assert attempt("127.0.0.23", "other@example.test") == 250
    assert attempt("127.0.0.23", "team@example.test") == 250
    assert attempt("127.0.0.23", USER) == 550
    sec = srv.log("security.log")
    assert "through the POP-before-SMTP window" in sec
