"""Relay control and per-IP security options, from several loopback source addresses."""
import smtplib
import socket
import time

import pytest

from conftest import Raw


def connect(srv, src, service="smtp"):
    """A raw client bound to the loopback source address `src` (e.g. 127.0.0.2)."""
    r = Raw.__new__(Raw)
    r.sock = socket.create_connection(("127.0.0.1", srv.ports[service]), timeout=10, source_address=(src, 0))
    r.buf = b""
    return r


def session(srv, src):
    r = connect(srv, src)
    code, _ = r.reply()
    assert code == 220
    r.cmd("EHLO client.test")
    return r


RELAY_CONFIG = """
[ip_groups]
office = ["127.0.0.2", "10.9.9.0/24"]
[relay]
allow_ip_group = "office"
"""


def test_relay_matrix(make_server):
    srv = make_server(extra_config=RELAY_CONFIG).start()
    inside, outside = session(srv, "127.0.0.2"), session(srv, "127.0.0.3")
    for r in (inside, outside):
        assert r.cmd("MAIL FROM:<a@remote.test>")[0] == 250
    assert inside.cmd("RCPT TO:<far@elsewhere.test>")[0] == 250
    code, text = outside.cmd("RCPT TO:<far@elsewhere.test>")
    assert code == 554 and "5.7.1 Relaying denied" in text
    # anyone may send to the local domains
    assert outside.cmd("RCPT TO:<demo@example.test>")[0] == 250
    assert "SMTP relay denied from 127.0.0.3" in srv.wait_log("security.log", "relay denied")
    assert "127.0.0.2" not in srv.log("security.log")


def test_default_local_group_is_loopback(make_server):
    # No [relay] section from the test harness: the defaults apply (local = loopback).
    srv = make_server(extra_config="[relay]\nopen = false\n").start()
    r = session(srv, "127.0.0.9")
    r.cmd("MAIL FROM:<a@remote.test>")
    assert r.cmd("RCPT TO:<far@elsewhere.test>")[0] == 250


def test_open_relay_warns(make_server):
    srv = make_server(extra_config="[relay]\nopen = true\nallow_ip_group = \"\"\n").start()
    r = session(srv, "127.0.0.5")
    r.cmd("MAIL FROM:<a@remote.test>")
    assert r.cmd("RCPT TO:<far@elsewhere.test>")[0] == 250
    r.cmd("QUIT")
    srv.wait_log("bulwark.log", "OPEN RELAY")
    srv2 = make_server(extra_config='[ip_groups]\nworld = ["0.0.0.0/0"]\n[relay]\nallow_ip_group = "world"\n').start()
    srv2.wait_log("bulwark.log", "contains every address: this server is an OPEN RELAY")


# Every address form that has opened relays somewhere. From a client without relay
# rights none of them may be accepted (see docs/relay.md for the list and why).
TRICKS = [
    "<victim%elsewhere.test@example.test>",      # % hack: local part, unknown user
    "<victim%elsewhere.test>",                   # % hack without domain
    "<elsewhere.test!victim@example.test>",      # bang path: local part, unknown user
    "<elsewhere.test!victim>",                   # bare bang path
    "<@example.test:victim@elsewhere.test>",     # source route: final domain is foreign
    "<@example.test,@example.test:victim@elsewhere.test>",
    "<\"victim@elsewhere.test\"@example.test>",  # quoted @: local part, unknown user
    "<\"victim%elsewhere.test\"@example.test>",
    "<victim@elsewhere.test@example.test>",      # double @
    "<victim@@elsewhere.test>",
    "<victim@[127.0.0.1]>",                      # IP literal (even our own)
    "<victim@[IPv6:::1]>",
    "<victim@elsewhere.test.>",                  # trailing dot
    "<victim@example.test.>",
    "victim@elsewhere.test",                     # missing angle brackets
    "<victim@elsewhere.test",
    "<victim@ElseWhere.TEST>",                   # case games
    "<VICTIM@EXAMPLE.TEST.elsewhere.test>",      # local domain as a prefix
    "<victim@example.test.elsewhere.test>",
    "<victim@elsewhere.test> NOTIFY=NEVER",      # parameters we do not offer
    "<victim@elsewhere.test>\tx",
    "<victim@xn--elsewhere.test>",
    "<victim@elsewhere.test%example.test>",
]


@pytest.mark.parametrize("trick", TRICKS)
def test_address_tricks_never_relay(make_server, trick):
    srv = make_server(extra_config=RELAY_CONFIG).start()
    r = session(srv, "127.0.0.3")
    r.cmd("MAIL FROM:<a@remote.test>")
    code, text = r.cmd("RCPT TO:" + trick)
    assert code in (501, 550, 553, 554, 555), (trick, code, text)
    assert r.cmd("DATA")[0] == 554  # no recipient was taken
    assert "0 message(s) queued" in srv.cli("queue", "list").stdout


def test_messages_per_hour(make_server):
    srv = make_server(extra_config="[limits]\nmax_messages_per_hour = 2\nexempt_ip_group = \"trusted\"\n"
                                   "[ip_groups]\ntrusted = [\"127.0.0.4\"]\n").start()

    def send(src):
        with smtplib.SMTP("127.0.0.1", srv.ports["smtp"], source_address=(src, 0)) as s:
            s.sendmail("a@remote.test", ["demo@example.test"], b"Subject: rate\r\n\r\nx\r\n")

    send("127.0.0.2")
    send("127.0.0.2")
    with pytest.raises(smtplib.SMTPSenderRefused) as e:
        send("127.0.0.2")
    assert e.value.smtp_code == 450 and b"4.7.1" in e.value.smtp_error
    send("127.0.0.3")  # another address has its own count
    for _ in range(4):
        send("127.0.0.4")  # the exempt group has no limit
    assert len(srv.wait_messages(7)) == 7
    assert "127.0.0.2 refused: more than 2 messages in the last hour" in srv.wait_log("security.log", "last hour")


def test_connections_per_ip(make_server):
    srv = make_server(extra_config="[limits]\nmax_connections_per_ip = 2\n").start()
    a, b = session(srv, "127.0.0.2"), session(srv, "127.0.0.2")
    c = connect(srv, "127.0.0.2")
    code, text = c.reply()
    assert code == 421 and "4.7.0" in text
    assert c.closed()
    session(srv, "127.0.0.3")  # others are not affected
    a.cmd("QUIT")
    a.close()
    time.sleep(0.3)
    session(srv, "127.0.0.2")  # a slot is free again
    assert "127.0.0.2 rejected: more than 2 connections" in srv.wait_log("security.log", "connections")


def test_directory_harvest_blocks_the_address(make_server):
    srv = make_server(extra_config='[limits]\nmax_unknown_recipients = 3\nharvest_block = "1h"\n').start()
    r = session(srv, "127.0.0.2")
    r.cmd("MAIL FROM:<a@remote.test>")
    assert r.cmd("RCPT TO:<nobody1@example.test>")[0] == 550
    assert r.cmd("RCPT TO:<nobody2@example.test>")[0] == 550
    code, text = r.cmd("RCPT TO:<nobody3@example.test>")
    assert code == 421 and "4.7.1" in text
    assert r.closed()
    again = connect(srv, "127.0.0.2")
    code, text = again.reply()
    assert code == 421 and "4.7.1" in text
    assert again.closed()
    session(srv, "127.0.0.3")  # another address still gets in
    log = srv.wait_log("security.log", "rejected: directory harvest attack")
    assert "SMTP connection from 127.0.0.2 rejected: directory harvest attack" in log.splitlines()[-1] or \
        any(l.endswith("SMTP connection from 127.0.0.2 rejected: directory harvest attack") for l in log.splitlines())


def test_harvest_block_expires(make_server):
    srv = make_server(extra_config='[limits]\nmax_unknown_recipients = 1\nharvest_block = "2s"\n').start()
    r = session(srv, "127.0.0.2")
    r.cmd("MAIL FROM:<a@remote.test>")
    assert r.cmd("RCPT TO:<nobody@example.test>")[0] == 421
    assert connect(srv, "127.0.0.2").reply()[0] == 421
    time.sleep(2.5)
    assert connect(srv, "127.0.0.2").reply()[0] == 220


def test_recipients_per_message(make_server):
    srv = make_server(extra_config="[limits]\nmax_recipients = 2\n",
                      users=("demo@example.test", "ann@example.test", "bob@example.test")).start()
    r = session(srv, "127.0.0.2")
    r.cmd("MAIL FROM:<a@remote.test>")
    assert r.cmd("RCPT TO:<demo@example.test>")[0] == 250
    assert r.cmd("RCPT TO:<ann@example.test>")[0] == 250
    code, text = r.cmd("RCPT TO:<bob@example.test>")
    assert code == 452 and "4.5.3" in text
    assert "more than 2 recipients" in srv.wait_log("security.log", "recipients")


LISTENER_CONFIG = """
[ip_groups]
office = ["127.0.0.2"]
"""


def test_listener_allowed_group_and_cap(make_server):
    srv = make_server(extra_config=LISTENER_CONFIG)
    # restrict the submission listener to the office group, cap smtps at one connection
    text = srv.config.read_text()
    text = text.replace(f'service = "submission"\naddress = "127.0.0.1"\nport = {srv.ports["submission"]}\n',
                        f'service = "submission"\naddress = "127.0.0.1"\nport = {srv.ports["submission"]}\n'
                        'allowed_ip_group = "office"\n')
    text = text.replace(f'service = "smtp"\naddress = "127.0.0.1"\nport = {srv.ports["smtp"]}\n',
                        f'service = "smtp"\naddress = "127.0.0.1"\nport = {srv.ports["smtp"]}\nmax_connections = 1\n')
    srv.config.write_text(text)
    srv.start()
    ok = connect(srv, "127.0.0.2", "submission")
    assert ok.reply()[0] == 220
    denied = connect(srv, "127.0.0.3", "submission")
    code, text = denied.reply()
    assert code == 554 and "5.7.1" in text
    assert denied.closed()
    first = connect(srv, "127.0.0.2")
    assert first.reply()[0] == 220
    second = connect(srv, "127.0.0.3")
    code, text = second.reply()
    assert code == 421 and "4.7.0" in text
    log = srv.wait_log("security.log", "not in IP group office")
    assert "127.0.0.3 rejected: not in IP group office allowed on submission" in log


def test_smtps_refusals_are_said_inside_tls(make_server):
    """Issue 8.18: on the implicit-TLS port a refused client still gets its reply --
    after the handshake, inside TLS -- instead of a TLS error on plain text."""
    import ssl
    srv = make_server(extra_config="[limits]\nmax_connections_per_ip = 1\n").start()
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE

    def smtps(src):
        sock = socket.create_connection(("127.0.0.1", srv.ports["smtps"]), timeout=10, source_address=(src, 0))
        return ctx.wrap_socket(sock)

    first = smtps("127.0.0.2")
    assert first.recv(512).startswith(b"220 ")
    second = smtps("127.0.0.2")
    line = second.recv(512)
    assert line.startswith(b"421 4.7.0") and b"Too many connections" in line, line
    assert second.recv(512) == b""
    first.close()
    second.close()
