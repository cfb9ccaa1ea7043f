"""SMTP receive against the real server: delivery, TLS, addresses, limits, smuggling."""
import email.utils
import re
import smtplib
import socket
import ssl
import subprocess
import time

import pytest

import conftest
from conftest import HOST, Raw


def tls_context(server):
    ctx = ssl.create_default_context(cafile=server.cert)  # the generated self-signed cert
    return ctx


def body_of(maildir_bytes):
    """Our Maildir file = Return-Path + Delivered-To + Received (folded) + the client's message."""
    head, _, rest = maildir_bytes.partition(b"\nReceived: ")
    assert head.startswith(b"Return-Path: <")
    # skip the folded Received: field (continuation lines start with a tab)
    lines = rest.split(b"\n")
    i = 1
    while lines[i].startswith(b"\t"):
        i += 1
    return b"\n".join(lines[i:])


MESSAGE = (b"From: Someone <someone@remote.test>\r\nTo: demo@example.test\r\nSubject: hello\r\n"
           b"Message-ID: <m1@remote.test>\r\n\r\nline one\r\n.starts with a dot\r\n\r\n\xc3\xa9t\xc3\xa9 8-bit\r\n")


def test_plain_delivery_is_byte_exact(server):
    with smtplib.SMTP("127.0.0.1", server.ports["smtp"]) as s:
        s.ehlo("client.test")
        s.sendmail("someone@remote.test", ["demo@example.test"], MESSAGE, mail_options=["BODY=8BITMIME"])
    [msg] = server.wait_messages(1)
    # Maildir stores LF line ends (the convention); CRLF->LF is lossless as bare CR/LF are refused.
    assert body_of(msg) == MESSAGE.replace(b"\r\n", b"\n")
    # Our Authentication-Results on top (docs/authentication.md), then our Received:.
    assert re.match(rb"Return-Path: <someone@remote.test>\nDelivered-To: demo@example.test\n"
                    rb"Authentication-Results: mail.example.test;\n\tdkim=none;\n\tspf=\w+ [^\n]*"
                    rb"smtp.mailfrom=someone@remote.test;\n\tdmarc=\w+ [^\n]*header.from=remote.test\n"
                    rb"Received: from client.test \(\[127.0.0.1\]\)", msg), msg[:400]
    log = server.wait_log("mail.log", "delivered id=")
    assert "accepted id=" in log and "client=127.0.0.1" in log and "from=<someone@remote.test>" in log
    assert "to=<demo@example.test>" in log and "tls=none" in log and f"size=" in log


def test_ehlo_advertises_extensions(server):
    with smtplib.SMTP("127.0.0.1", server.ports["smtp"]) as s:
        code, text = s.ehlo("client.test")
        assert code == 250
        for ext in ("pipelining", "size", "8bitmime", "smtputf8", "enhancedstatuscodes", "chunking", "starttls"):
            assert s.has_extn(ext), ext
        assert s.esmtp_features["size"] == str(50 * 1024 * 1024)


def test_starttls_with_certificate_verification(server):
    with smtplib.SMTP("127.0.0.1", server.ports["smtp"]) as s:
        s.ehlo("client.test")
        s._host = HOST  # verify against the name in the certificate
        s.starttls(context=tls_context(server))
        s.ehlo("client.test")
        assert not s.has_extn("starttls")
        assert s.sock.version() in ("TLSv1.2", "TLSv1.3")
        s.sendmail("a@remote.test", ["demo@example.test"], b"Subject: tls\r\n\r\nvia starttls\r\n")
    [msg] = server.wait_messages(1)
    assert b"(using TLSv1." in msg and b"with ESMTPS" in msg
    assert "tls=TLSv1." in server.wait_log("mail.log", "accepted")


def test_smtps_implicit_tls(server):
    ctx = tls_context(server)
    by_ip = tls_context(server)
    by_ip.check_hostname = False  # smtplib verifies against the host it connects to (an IP here)
    with smtplib.SMTP_SSL("127.0.0.1", server.ports["smtps"], context=by_ip) as s:
        s.sendmail("a@remote.test", ["demo@example.test"], b"Subject: smtplib smtps\r\n\r\nhi\r\n")
    server.wait_messages(1)
    # and the certificate carries the server's host name
    with socket.create_connection(("127.0.0.1", server.ports["smtps"])) as sock:
        with ctx.wrap_socket(sock, server_hostname=HOST) as tls:
            assert tls.recv(100).startswith(b"220 " + HOST.encode())
            tls.sendall(b"EHLO client.test\r\nMAIL FROM:<a@remote.test>\r\nRCPT TO:<demo@example.test>\r\nDATA\r\n")
            time.sleep(0.3)
            tls.sendall(b"Subject: smtps\r\n\r\nhi\r\n.\r\nQUIT\r\n")
            data = b""
            while b"221 " not in data:
                chunk = tls.recv(4096)
                if not chunk:
                    break
                data += chunk
            assert b"250 2.0.0 Ok: queued as" in data
            assert b"STARTTLS" not in data  # already TLS: not offered again
    msgs = server.wait_messages(2)
    assert any(b"Subject: smtps\n" in m for m in msgs)


def test_swaks_with_starttls(server):
    r = subprocess.run(["swaks", "--server", f"127.0.0.1:{server.ports['smtp']}", "--tls", "--from",
                        "sender@remote.test", "--to", "demo@example.test", "--header", "Subject: swaks test",
                        "--helo", "swaks.test"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "250 2.0.0 Ok: queued as" in r.stdout
    [msg] = server.wait_messages(1)
    assert b"Subject: swaks test" in msg


def test_tls_1_0_and_1_1_refused(server):
    def handshake(max_version):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        ctx.set_ciphers("ALL:@SECLEVEL=0")  # let the client offer old versions, so a refusal is the server's
        ctx.minimum_version = ssl.TLSVersion.TLSv1
        ctx.maximum_version = max_version
        with socket.create_connection(("127.0.0.1", server.ports["smtps"]), timeout=5) as sock:
            with ctx.wrap_socket(sock) as tls:
                return tls.version()

    for old in (ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1):
        with pytest.raises(ssl.SSLError):
            handshake(old)
    assert handshake(ssl.TLSVersion.TLSv1_2) == "TLSv1.2"  # the same client succeeds with 1.2
    # and with openssl s_client, on STARTTLS
    r = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{server.ports['smtp']}", "-starttls", "smtp",
                        "-tls1_1", "-cipher", "DEFAULT:@SECLEVEL=0"], input="", capture_output=True, text=True,
                       timeout=20)
    assert r.returncode != 0
    assert "Cipher is (NONE)" in r.stdout or "alert" in (r.stdout + r.stderr).lower()


def test_starttls_pipelined_quit_is_not_executed(server):
    r = Raw(server.ports["smtp"])
    r.reply()
    r.cmd("EHLO client.test")
    r.send(b"STARTTLS\r\nQUIT\r\n")  # one packet
    code, _ = r.reply()
    assert code == 220
    ctx = ssl.create_default_context(cafile=server.cert)
    tls = ctx.wrap_socket(r.sock, server_hostname=HOST)
    # If QUIT had been executed after the handshake we would read "221" and EOF here.
    tls.settimeout(1.5)
    with pytest.raises(socket.timeout):
        tls.recv(100)
    tls.settimeout(5)
    tls.sendall(b"NOOP\r\n")
    assert tls.recv(100).startswith(b"250 ")
    tls.close()


@pytest.mark.parametrize("seq", [b"\n.\n", b"\n.\r\n", b"\r.\r", b"\r.\n", b"\r\n.\n", b"\n.\r"],
                         ids=["LF.LF", "LF.CRLF", "CR.CR", "CR.LF", "CRLF.LF", "LF.CR"])
def test_smuggling_sequences_never_end_data(server, raw, seq):
    r = raw()
    r.cmd("EHLO client.test")
    assert r.cmd("MAIL FROM:<a@remote.test>")[0] == 250
    assert r.cmd("RCPT TO:<demo@example.test>")[0] == 250
    assert r.cmd("DATA")[0] == 354
    r.send(b"Subject: first\r\n\r\nbody" + seq +
           b"MAIL FROM:<evil@remote.test>\r\nRCPT TO:<demo@example.test>\r\nDATA\r\nSubject: smuggled\r\n\r\nx\r\n.\r\n")
    code, text = r.reply()
    # The only end of data is the final CRLF.CRLF; the message with the bare sequence is refused.
    assert code == 550 and "5.6.0" in text
    assert r.cmd("NOOP")[0] == 250  # no other replies were queued: nothing smuggled was executed
    time.sleep(0.3)
    assert server.messages() == []


def test_bare_lf_in_commands_refused(raw):
    r = raw()
    r.send(b"EHLO client.test\n")
    code, text = r.reply()
    assert code == 500 and "5.5.2" in text


def test_relay_denied_and_logged(server, raw):
    r = raw()
    r.cmd("EHLO client.test")
    r.cmd("MAIL FROM:<a@remote.test>")
    code, text = r.cmd("RCPT TO:<victim@elsewhere.test>")
    assert code == 554 and "5.7.1 Relaying denied" in text
    for trick in ("<victim%elsewhere.test@[127.0.0.1]>", "<@example.test:victim@elsewhere.test>",
                  "<\"victim@elsewhere.test\"@example.test>", "<victim@elsewhere.test.>", "victim@elsewhere.test",
                  "<victim@EXAMPLE.test@elsewhere.test>"):
        code, _ = r.cmd(f"RCPT TO:{trick}")
        assert code in (550, 554, 501), trick
    log = server.wait_log("security.log", "relay denied")
    assert "127.0.0.1" in log and "victim@elsewhere.test" in log


def test_unknown_local_user(raw):
    r = raw()
    r.cmd("EHLO client.test")
    r.cmd("MAIL FROM:<a@remote.test>")
    code, text = r.cmd("RCPT TO:<nobody@example.test>")
    assert code == 550 and "5.1.1" in text
    code, text = r.cmd("DATA")
    assert code == 554


def test_aliases_groups_and_postmaster(make_server):
    srv = make_server(users=("demo@example.test", "ann@example.test"))
    srv.cli("alias", "add", "info@example.test", "ann@example.test")
    srv.cli("alias", "add", "postmaster@example.test", "demo@example.test")
    srv.cli("group", "add", "team@example.test", "--member", "demo@example.test", "--member", "ann@example.test")
    srv.start()
    with smtplib.SMTP("127.0.0.1", srv.ports["smtp"]) as s:
        s.sendmail("x@remote.test", ["INFO@Example.TEST"], b"Subject: alias\r\n\r\n1\r\n")
        s.sendmail("x@remote.test", ["team@example.test"], b"Subject: group\r\n\r\n2\r\n")
        s.sendmail("x@remote.test", ["Postmaster"], b"Subject: pm\r\n\r\n3\r\n")
        # group + member directly: one copy each
        s.sendmail("x@remote.test", ["team@example.test", "ann@example.test"], b"Subject: dup\r\n\r\n4\r\n")
    ann = srv.wait_messages(3, user="ann")
    demo = srv.wait_messages(3, user="demo")
    assert sorted(m.split(b"Subject: ")[1][:3] for m in ann) == [b"ali", b"dup", b"gro"]
    assert sorted(m.split(b"Subject: ")[1][:3] for m in demo) == [b"dup", b"gro", b"pm\n"[:3]]


def test_directory_changes_seen_without_restart(server, raw):
    r = raw()
    r.cmd("EHLO client.test")
    r.cmd("MAIL FROM:<a@remote.test>")
    assert r.cmd("RCPT TO:<late@example.test>")[0] == 550
    server.cli("user", "add", "late@example.test", "--password-stdin", input="Another-Passw0rd-here\n")
    assert r.cmd("RCPT TO:<late@example.test>")[0] == 250
    server.cli("domain", "add", "new.test")
    server.cli("user", "add", "x@new.test", "--password-stdin", input="Another-Passw0rd-here\n")
    assert r.cmd("RCPT TO:<x@new.test>")[0] == 250


def test_size_limit(make_server):
    srv = make_server(extra_config='[limits]\nmax_message_size = "1KB"\n').start()
    r = Raw(srv.ports["smtp"])
    r.reply()
    code, text = r.cmd("EHLO client.test")
    assert "SIZE 1024" in text
    code, text = r.cmd("MAIL FROM:<a@remote.test> SIZE=2000")
    assert code == 552 and "5.3.4" in text
    assert r.cmd("MAIL FROM:<a@remote.test> SIZE=500")[0] == 250
    assert r.cmd("RCPT TO:<demo@example.test>")[0] == 250
    assert r.cmd("DATA")[0] == 354
    r.send(b"Subject: big\r\n\r\n" + (b"x" * 70 + b"\r\n") * 20 + b".\r\n")
    code, text = r.reply()
    assert code == 552 and "5.3.4" in text
    r.close()
    assert srv.messages() == []


def test_line_length_limits(raw):
    r = raw()
    r.send(b"NOOP " + b"x" * 600 + b"\r\n")
    code, text = r.reply()
    assert code == 500 and "5.5.2" in text
    r.cmd("EHLO client.test")
    r.cmd("MAIL FROM:<a@remote.test>")
    r.cmd("RCPT TO:<demo@example.test>")
    r.cmd("DATA")
    r.send(b"Subject: long\r\n\r\n" + b"y" * 1200 + b"\r\n.\r\n")
    code, text = r.reply()
    assert code == 500 and "5.5.2" in text


def test_pipelining_many_commands_in_one_packet(server, raw):
    r = raw()
    r.cmd("EHLO client.test")
    r.send(b"MAIL FROM:<a@remote.test>\r\nRCPT TO:<demo@example.test>\r\nRCPT TO:<no@example.test>\r\n"
           b"RCPT TO:<x@far.test>\r\nDATA\r\n")
    assert [r.reply()[0] for _ in range(5)] == [250, 250, 550, 554, 354]
    r.send(b"Subject: p\r\n\r\nx\r\n.\r\nMAIL FROM:<>\r\nRCPT TO:<demo@example.test>\r\nDATA\r\n")
    assert [r.reply()[0] for _ in range(4)] == [250, 250, 250, 354]
    r.send(b"Subject: q\r\n\r\ny\r\n.\r\nQUIT\r\n")
    assert [r.reply()[0] for _ in range(2)] == [250, 221]
    assert len(server.wait_messages(2)) == 2


def test_bdat_chunking(server, raw):
    r = raw()
    r.cmd("EHLO client.test")
    r.cmd("MAIL FROM:<a@remote.test>")
    r.cmd("RCPT TO:<demo@example.test>")
    part1 = b"Subject: bdat\r\n\r\nfirst "
    part2 = b"second\r\n.no stuffing in BDAT\r\n"
    r.send(b"BDAT %d\r\n" % len(part1) + part1 + b"BDAT %d LAST\r\n" % len(part2) + part2)
    assert r.reply()[0] == 250
    code, text = r.reply()
    assert code == 250 and "queued as" in text
    [msg] = server.wait_messages(1)
    assert body_of(msg) == (part1 + part2).replace(b"\r\n", b"\n")


def test_smtputf8(server):
    with smtplib.SMTP("127.0.0.1", server.ports["smtp"]) as s:
        s.ehlo("client.test")
        s.sendmail("jörg@bücher.test", ["demo@example.test"], "Subject: ü\r\n\r\nünïcödé\r\n".encode(),
                   mail_options=["SMTPUTF8", "BODY=8BITMIME"])
        with pytest.raises(smtplib.SMTPSenderRefused) as e:
            s.sendmail("jörg@bücher.test", ["demo@example.test"], b"x\r\n")
        assert e.value.smtp_code == 553
    [msg] = server.wait_messages(1)
    assert "Return-Path: <jörg@bücher.test>".encode() in msg and "ünïcödé".encode() in msg


def test_mail_loop_detected(raw):
    r = raw()
    r.cmd("EHLO client.test")
    r.cmd("MAIL FROM:<a@remote.test>")
    r.cmd("RCPT TO:<demo@example.test>")
    r.cmd("DATA")
    r.send(b"".join(b"Received: from h%d by h; Mon, 1 Jan 2024 00:00:00 +0000\r\n" % i for i in range(31)) +
           b"Subject: loop\r\n\r\nx\r\n.\r\n")
    code, text = r.reply()
    assert code == 554 and "5.4.6" in text


def test_vrfy_does_not_reveal_users(raw):
    r = raw()
    assert r.cmd("VRFY demo@example.test")[0] == 252
    assert r.cmd("VRFY nobody@example.test")[0] == 252
    assert r.cmd("HELP")[0] == 214


def test_too_many_errors_closes(raw):
    r = raw()
    for _ in range(9):
        assert r.cmd("BOGUS")[0] == 500
    r.send(b"BOGUS\r\n")
    assert r.reply()[0] == 500
    code, text = r.reply()
    assert code == 421 and "4.7.0" in text
    assert r.closed()


def test_submission_requires_auth(raw):
    r = raw("submission")
    r.cmd("EHLO client.test")
    code, text = r.cmd("MAIL FROM:<demo@example.test>")
    assert code == 530 and "5.7.0" in text


def test_command_timeout(make_server):
    srv = make_server(extra_config='[timeouts]\ncommand = "1s"\n').start()
    r = Raw(srv.ports["smtp"])
    r.reply()
    t = time.time()
    code, text = r.reply()  # we send nothing
    assert code == 421 and "4.4.2" in text
    assert 0.8 < time.time() - t < 5
    assert r.closed()


def test_session_bound_stops_slow_drip(make_server):
    srv = make_server(extra_config='[timeouts]\ncommand = "3s"\nsession = "2s"\n').start()
    r = Raw(srv.ports["smtp"])
    r.reply()
    t = time.time()
    with pytest.raises((EOFError, ConnectionResetError, BrokenPipeError)):
        while time.time() - t < 10:
            r.cmd("NOOP")  # each command is answered, but the whole session is bounded
            time.sleep(0.5)
    assert time.time() - t < 6


def test_postmaster_without_an_alias_goes_to_server_postmaster(make_server):
    """Issue 8.20: RFC 5321 4.5.1 -- postmaster@ every local domain, of our host name
    and the bare <Postmaster> are taken even when the domain has no postmaster alias."""
    srv = make_server(users=("demo@example.test", "ann@example.test"),
                      extra_config='postmaster = "ann@example.test"\n')
    srv.cli("alias", "remove", "postmaster@example.test")
    srv.cli("domain", "add", "other.test")
    srv.start()
    with smtplib.SMTP("127.0.0.1", srv.ports["smtp"]) as s:
        s.sendmail("x@remote.test", ["Postmaster"], b"Subject: pm1\r\n\r\n1\r\n")
        s.sendmail("x@remote.test", ["postmaster@other.test"], b"Subject: pm2\r\n\r\n2\r\n")
        s.sendmail("x@remote.test", ["PostMaster@" + HOST], b"Subject: pm3\r\n\r\n3\r\n")
    assert len(srv.wait_messages(3, user="ann")) == 3
    assert srv.messages("demo") == []


def test_serve_refuses_to_start_without_any_postmaster(make_server):
    srv = make_server()
    srv.cli("alias", "remove", "postmaster@example.test")
    r = subprocess.run([conftest.BIN, "serve", "--config", str(srv.config)], capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 1
    assert "no postmaster" in r.stderr and "bulwark alias add postmaster@" in r.stderr


def test_five_hundred_relay_attempts_end_the_session(server):
    """Issue 8.7: refused relaying counts toward max_failed_commands (10)."""
    c = Raw(server.ports["smtp"])
    c.reply()
    c.cmd("EHLO client.test")
    c.cmd("MAIL FROM:<a@remote.test>")
    codes = []
    with pytest.raises((EOFError, OSError)):
        for i in range(500):
            code, text = c.cmd(f"RCPT TO:<x{i}@elsewhere.test>")
            codes.append(code)
            if "421" in text:
                codes.append(421)
    assert codes.count(554) == 10 and codes[-1] == 421
    assert server.log("security.log").count("relay denied") == 10


def test_message_pipelined_behind_a_refused_data_never_runs_as_commands(server):
    """Issue 8.19: the nested MAIL/RCPT/DATA in the body used to store a message."""
    c = Raw(server.ports["smtp"])
    c.reply()
    c.send(b"EHLO client.test\r\nMAIL FROM:<a@remote.test>\r\nRCPT TO:<nobody@example.test>\r\nDATA\r\n"
           b"Subject: hi\r\n\r\nMAIL FROM:<evil@remote.test>\r\nRCPT TO:<demo@example.test>\r\nDATA\r\n"
           b"smuggled\r\n.\r\n")
    codes = []
    with pytest.raises(EOFError):
        while True:
            codes.append(c.reply()[0])
    assert codes == [250, 250, 550, 554, 421]
    time.sleep(0.5)
    assert server.messages() == []
    assert "message content sent without waiting" in server.log("security.log")


def _enddate(path):
    out = subprocess.run(["openssl", "x509", "-enddate", "-noout", "-in", str(path)], capture_output=True,
                         text=True, check=True).stdout
    return email.utils.parsedate_to_datetime(out.split("=", 1)[1].strip().replace(" GMT", " +0000"))


def test_self_signed_certificate_lives_a_year_and_is_renewed_near_its_end(make_server):
    """Issue 8.21: it lived 10 years; now one, and a start within 30 days of the end
    makes a new one. TLS key exchange is limited to X25519, P-256 and P-384."""
    import datetime
    srv = make_server()
    srv.data.mkdir(exist_ok=True)
    # A self-signed certificate with 10 days left, as an earlier start would have left it.
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                    "-keyout", str(srv.data / "key.pem"), "-out", str(srv.data / "cert.pem"), "-days", "10",
                    "-subj", f"/CN={HOST}"], check=True, capture_output=True)
    old = (srv.data / "cert.pem").read_bytes()
    srv.start()
    assert (srv.data / "cert.pem").read_bytes() != old
    left = _enddate(srv.data / "cert.pem") - datetime.datetime.now(datetime.timezone.utc)
    assert 360 <= left.days <= 366
    assert "expires within 30 days" in srv.log("bulwark.log")

    def handshake(group):
        r = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{srv.ports['smtps']}", "-groups", group,
                            "-brief"], input="", capture_output=True, text=True, timeout=20)
        return "CONNECTION ESTABLISHED" in r.stderr

    assert handshake("X25519") and handshake("P-384")
    assert not handshake("P-521") and not handshake("ffdhe2048")
