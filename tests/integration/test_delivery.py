"""Outbound delivery against real remote servers: python3-aiosmtpd as remote MX and as
relay server on loopback addresses, a dnslib DNS server giving MX records for the test
domains, and the DSNs that land in the local sender's mailbox."""
import email
import subprocess
import signal
import smtplib
import time

import pytest

from conftest import PASSWORD, free_port, tmpfs_over, wait
from dns_server import AAAA, MX, A, DnsTestServer, mx
from remote_mx import RemoteMx, CertAuthority

SENDER = "demo@example.test"

ZONE = {
    ("good.test", "MX"): [(300, mx("mx1.good.test"))],
    ("mx1.good.test", "A"): [(300, A("127.0.0.50"))],
    ("other.test", "MX"): [(300, mx("mx.other.test"))],
    ("mx.other.test", "A"): [(300, A("127.0.0.51"))],
    ("temp.test", "MX"): [(300, mx("mx.temp.test"))],
    ("mx.temp.test", "A"): [(300, A("127.0.0.52"))],
    ("perm.test", "MX"): [(300, mx("mx.perm.test"))],
    ("mx.perm.test", "A"): [(300, A("127.0.0.53"))],
    ("plain.test", "MX"): [(300, mx("mx.plain.test"))],
    ("mx.plain.test", "A"): [(300, A("127.0.0.54"))],
    ("nomx.test", "A"): [(300, A("127.0.0.50"))],         # no MX: the A record is the MX
    ("nullmx.test", "MX"): [(300, MX(".", 0))],            # RFC 7505
    ("relay.test", "A"): [(300, A("127.0.0.60"))],
    ("v6.test", "MX"): [(300, mx("mx.v6.test"))],
    ("mx.v6.test", "AAAA"): [(300, AAAA("::1"))],             # IPv6 only
    ("dual.test", "MX"): [(300, mx("mx.dual.test", 10)), (300, mx("mx1.good.test", 20))],
    ("mx.dual.test", "A"): [(300, A("127.0.0.59"))],          # nobody listens: next MX
    ("eight.test", "MX"): [(300, mx("mx.eight.test"))],
    ("mx.eight.test", "A"): [(300, A("127.0.0.55"))],
}


@pytest.fixture(scope="module")
def ca():
    return CertAuthority()


@pytest.fixture(scope="module")
def port():
    return free_port()


@pytest.fixture
def dns():
    d = DnsTestServer(ZONE)
    yield d
    d.stop()


@pytest.fixture
def remotes(ca, port):
    made = {}

    def make(ip, **kw):
        made[ip] = RemoteMx(ip, port, ca, **kw)
        return made[ip]

    yield make
    for r in made.values():
        r.stop()


def outbound(make_server, dns, port, delivery="", extra=""):
    cfg = (f'[dns]\nservers = ["127.0.0.1:{dns.port}"]\ntimeout = "2s"\n'
           '[relay]\nallow_ip_group = "local"\n'
           f'[delivery]\nmx_port = {port}\n{delivery}\n{extra}')
    if "retry_interval" not in delivery:
        cfg = cfg.replace("[delivery]\n", '[delivery]\nretry_interval = "1s"\n')
    return make_server(extra_config=cfg)


def send(srv, rcpts, subject="test", sender=SENDER, body="hello\r\n"):
    msg = f"From: {sender}\r\nTo: x\r\nSubject: {subject}\r\nMessage-ID: <{subject.replace(' ', '.')}@t>\r\n\r\n{body}"
    with smtplib.SMTP("127.0.0.1", srv.ports["smtp"], timeout=20) as s:
        s.sendmail(sender, rcpts, msg)


def queue_empty(srv):
    # (a line of its own: "10 message(s) queued" contains "0 message(s) queued")
    return "\n0 message(s) queued" in "\n" + srv.cli("queue", "list").stdout


def reports(srv):
    """DSNs in the sender's (demo's) mailbox, parsed."""
    return [email.message_from_bytes(m) for m in srv.messages() if b"multipart/report" in m]


def status_part(report):
    for part in report.walk():
        if part.get_content_type() == "message/delivery-status":
            return "\n".join(str(p) for p in part.get_payload())
    return ""


def test_delivery_over_starttls_and_logged(make_server, dns, port, remotes):
    mx1 = remotes("127.0.0.50")
    srv = outbound(make_server, dns, port).start()
    send(srv, ["rcpt@good.test"], "over tls")
    m = wait(lambda: mx1.messages, what="delivery")[0]
    assert m["rcpts"] == ["rcpt@good.test"] and m["sender"] == SENDER and m["tls"]
    assert b"Subject: over tls" in m["data"] and m["data"].startswith(b"Received: from ")
    log = srv.wait_log("mail.log", "delivered id=")
    assert f"to=<rcpt@good.test> relay=mx1.good.test[127.0.0.50]:{port} tls=TLSv1." in log
    wait(lambda: queue_empty(srv), what="empty queue")


def test_one_message_many_domains(make_server, dns, port, remotes):
    mx1, other = remotes("127.0.0.50"), remotes("127.0.0.51")
    srv = outbound(make_server, dns, port).start()
    send(srv, ["a@good.test", "b@good.test", "c@other.test", "d@nomx.test", SENDER], "fan out")
    wait(lambda: len(mx1.messages) == 2 and other.messages, what="deliveries")
    # One transaction per destination: good.test's two recipients travel together;
    # nomx.test has no MX, so its A record (the same host) is used, separately.
    assert sorted(tuple(m["rcpts"]) for m in mx1.messages) == [("a@good.test", "b@good.test"), ("d@nomx.test",)]
    assert other.messages[0]["rcpts"] == ["c@other.test"]
    assert len(srv.wait_messages(1)) == 1  # the local copy
    wait(lambda: queue_empty(srv), what="empty queue")


def test_temporary_failure_is_retried(make_server, dns, port, remotes):
    temp = remotes("127.0.0.52")
    tries = []

    def flaky(address):
        tries.append(address)
        return "451 4.3.0 try again later" if len(tries) < 3 else None

    temp.handler.rcpt_replies["*"] = flaky
    srv = outbound(make_server, dns, port).start()
    send(srv, ["x@temp.test"], "flaky")
    wait(lambda: temp.messages, timeout=30, what="delivery after retries")
    log = srv.log("mail.log")
    assert log.count("deferred id=") == 2 and "451 4.3.0 try again later" in log
    assert len(temp.messages) == 1
    wait(lambda: queue_empty(srv), what="empty queue")
    assert reports(srv) == []  # no report for a delay shorter than warn_after


def test_permanent_failure_bounces_with_a_dsn(make_server, dns, port, remotes):
    perm = remotes("127.0.0.53")
    perm.handler.rcpt_replies["nobody@perm.test"] = "550 5.1.1 no such user here"
    srv = outbound(make_server, dns, port).start()
    send(srv, ["nobody@perm.test", "ok@perm.test"], "half bounce")
    wait(lambda: perm.messages, what="delivery of the good recipient")
    report = wait(lambda: reports(srv), what="DSN")[0]
    assert report["Auto-Submitted"] == "auto-replied"
    assert report["From"].startswith("Mail Delivery System <MAILER-DAEMON@")
    assert report.get_content_type() == "multipart/report"
    assert report.get_param("report-type") == "delivery-status"
    st = status_part(report)
    assert "Final-Recipient: rfc822; nobody@perm.test" in st and "Action: failed" in st and "Status: 5.1.1" in st
    assert "550 5.1.1 no such user here" in st and "ok@perm.test" not in st
    headers = [p for p in report.walk() if p.get_content_type() == "text/rfc822-headers"][0]
    assert "Subject: half bounce" in headers.get_payload()
    raw = srv.messages()[0]
    assert raw.startswith(b"Return-Path: <>\n")  # null sender: a bounce is never bounced
    assert perm.messages[0]["rcpts"] == ["ok@perm.test"]
    wait(lambda: queue_empty(srv), what="empty queue")
    assert "bounced id=" in srv.log("mail.log")


def test_null_mx_and_missing_domain_bounce_at_once(make_server, dns, port):
    srv = outbound(make_server, dns, port).start()
    send(srv, ["a@nullmx.test"], "null mx")
    send(srv, ["a@nowhere.test"], "no domain")
    got = wait(lambda: len(reports(srv)) == 2 and reports(srv), what="two DSNs")
    statuses = "\n".join(status_part(r) for r in got)
    assert "Status: 5.1.10" in statuses and "null MX" in statuses
    assert "Status: 5.1.2" in statuses
    wait(lambda: queue_empty(srv), what="empty queue")


def test_delay_notice_once_then_expiry(make_server, dns, port, remotes):
    temp = remotes("127.0.0.52")
    temp.handler.rcpt_replies["*"] = "451 4.2.1 mailbox busy"
    srv = outbound(make_server, dns, port, 'warn_after = "2s"\nbounce_after = "6s"').start()
    send(srv, ["slow@temp.test"], "long wait")
    got = wait(lambda: len(reports(srv)) >= 2 and reports(srv), timeout=40, what="delay notice and bounce")
    actions = sorted(status_part(r).split("Action: ")[1].split("\n")[0] for r in got)
    assert actions == ["delayed", "failed"], actions
    delayed = [r for r in got if "Action: delayed" in status_part(r)][0]
    assert "Will-Retry-Until:" in status_part(delayed)
    failed = [r for r in got if "Action: failed" in status_part(r)][0]
    assert "Status: 4.4.7" in status_part(failed) and "expired" in status_part(failed)
    wait(lambda: queue_empty(srv), what="empty queue")
    time.sleep(1.5)
    assert len(reports(srv)) == 2  # the delay notice went out once


def test_required_tls_refused_by_plain_only_remote(make_server, dns, port, remotes):
    plain = remotes("127.0.0.54", starttls=False)
    srv = outbound(make_server, dns, port, 'tls = "required"\nbounce_after = "4s"').start()
    send(srv, ["x@plain.test"], "needs tls")
    srv.wait_log("mail.log", "4.7.10")
    assert "deferred id=" in srv.log("mail.log")
    report = wait(lambda: reports(srv), timeout=30, what="bounce after expiry")[0]
    assert "TLS is required" in status_part(report)
    assert plain.messages == []


def test_relay_server_with_auth_and_verified_tls(make_server, dns, port, remotes, ca, tmp_path):
    relay = remotes("127.0.0.60", auth=("relayuser", "Relay-Secret-77"))
    pw = tmp_path / "relay.pw"
    pw.write_text("Relay-Secret-77\n")
    delivery = (f'mode = "relay"\nrelay_host = "relay.test"\nrelay_port = {port}\nrelay_auth = "smtp"\n'
                f'relay_user = "relayuser"\nrelay_password_file = "{pw}"\ntls = "required"\n'
                f'tls_ca_file = "{ca.ca}"')
    srv = outbound(make_server, dns, port, delivery).start()
    send(srv, ["a@good.test", "b@other.test"], "via relay")
    m = wait(lambda: relay.messages, what="relayed message")[0]
    assert sorted(m["rcpts"]) == ["a@good.test", "b@other.test"] and m["tls"] and m["auth"] == "relayuser"
    assert "relay=relay.test[127.0.0.60]" in srv.wait_log("mail.log", "delivered id=")
    assert "Relay-Secret-77" not in srv.log("mail.log") + srv.log("bulwark.log")


def test_relay_certificate_not_trusted_is_deferred(make_server, dns, port, remotes, ca, tmp_path):
    relay = remotes("127.0.0.60")
    delivery = (f'mode = "relay"\nrelay_host = "relay.test"\nrelay_port = {port}\ntls = "required"\n'
                f'tls_ca_file = "{ca.other_ca}"')
    srv = outbound(make_server, dns, port, delivery).start()
    send(srv, ["a@good.test"], "untrusted")
    log = srv.wait_log("mail.log", "deferred id=")
    assert "TLS handshake" in log and "certificate verify failed" in log
    assert relay.messages == []


def deferred_queue(make_server, dns, port, remotes, n, subject):
    """A server with n messages for good.test, each deferred once (the MX said 451),
    next attempt in an hour. Returns the server and the MX (still answering 451)."""
    mx1 = remotes("127.0.0.50")
    mx1.handler.rcpt_replies["*"] = "451 4.3.2 not now"
    srv = outbound(make_server, dns, port, 'retry_interval = "1h"').start()
    for i in range(n):
        send(srv, [f"r{i}@good.test"], f"{subject} {i}")
    wait(lambda: srv.log("mail.log").count("deferred id=") >= n, what="every message deferred")
    return srv, mx1


def test_restart_in_the_middle_of_a_queue(make_server, dns, port, remotes):
    n = 20
    srv, mx1 = deferred_queue(make_server, dns, port, remotes, n, "queued")
    assert srv.stop() == 0
    out = srv.cli("queue", "list").stdout
    assert f"{n} message(s) queued" in out and "attempts 1" in out
    # The remote recovers; the queue resumes after a restart and `queue retry`.
    mx1.handler.rcpt_replies.clear()
    srv.start()
    assert srv.cli("queue", "retry").returncode == 0
    wait(lambda: len(mx1.messages) >= 5, what="the first deliveries")
    assert srv.stop() == 0  # in the middle of the queue
    srv.start()
    srv.cli("queue", "retry")
    wait(lambda: queue_empty(srv), timeout=40, what="empty queue")
    subjects = [m["data"].split(b"Subject: ")[1].split(b"\r\n")[0] for m in mx1.messages]
    assert len(subjects) == n and len(set(subjects)) == n  # all delivered, none twice


def test_report_language_and_admin_templates(make_server, dns, port):
    srv = outbound(make_server, dns, port, 'report_language = "de"').start()
    send(srv, ["a@nowhere.test"], "auf deutsch")
    report = wait(lambda: reports(srv), what="DSN")[0]
    text = [p for p in report.walk() if p.get_content_type() == "text/plain"][0].get_payload(decode=True).decode()
    assert "Ihre Nachricht konnte" in text
    assert "Unzustellbare Nachricht" in str(email.header.make_header(email.header.decode_header(report["Subject"])))
    # The templates are in data_dir, where an administrator may edit them.
    custom = srv.data / "reports" / "de" / "failed.txt"
    custom.write_text("Subject: Eigener Text\nEigener Bericht von {hostname} für {sender}.\n{recipients}\n")
    srv.stop()
    srv.write_config(srv.extra_config.replace('report_language = "de"', 'report_language = "fr"'))
    srv.start()
    send(srv, ["b@nowhere.test"], "fallback")   # no French templates: English
    wait(lambda: len(reports(srv)) == 2, what="second DSN")
    srv.stop()
    srv.write_config(srv.extra_config.replace('report_language = "fr"', 'report_language = "de"'))
    srv.start()
    send(srv, ["c@nowhere.test"], "edited")
    got = wait(lambda: len(reports(srv)) == 3 and reports(srv), what="three DSNs")
    texts = [[p for p in r.walk() if p.get_content_type() == "text/plain"][0].get_payload(decode=True).decode()
             for r in got]
    assert any("Your message could not be delivered" in t for t in texts)
    assert any("Eigener Bericht von mail.example.test für demo@example.test" in t for t in texts)
    assert custom.read_text().startswith("Subject: Eigener Text")  # never overwritten


def test_relay_with_pop_before_smtp(make_server, dns, port, remotes, ca, tmp_path):
    from dovecot import Dovecot
    pop_port = free_port()
    pop = Dovecot("127.0.0.60", pop_port, "popuser", "Pop-Secret-55", "pop3", ca)
    try:
        relay = remotes("127.0.0.60")
        pw = tmp_path / "relay.pw"
        pw.write_text("Pop-Secret-55\n")
        delivery = (f'mode = "relay"\nrelay_host = "relay.test"\nrelay_port = {port}\n'
                    f'relay_auth = "pop3-before-smtp"\nrelay_pop3_port = {pop_port}\nrelay_user = "popuser"\n'
                    f'relay_password_file = "{pw}"\ntls = "required"\ntls_ca_file = "{ca.ca}"')
        srv = outbound(make_server, dns, port, delivery).start()
        send(srv, ["a@good.test"], "pop first")
        wait(lambda: relay.messages, what="relayed message")
        logins = wait(lambda: pop.logins(), what="the POP3 login in the Dovecot log")
        assert logins and "user=<popuser>" in logins[0] and "TLS" in logins[0]
        # A wrong password: the POP3 login fails and the message waits.
        srv.stop()
        pw.write_text("Wrong-Secret-1\n")
        srv.start()
        send(srv, ["b@good.test"], "pop refused")
        log = srv.wait_log("mail.log", "POP-before-SMTP login to relay.test failed")
        assert "POP3 login refused" in log and "Wrong-Secret-1" not in log
        assert len(relay.messages) == 1
    finally:
        pop.stop()


def test_ipv6_mx_and_mx_preference_order(make_server, dns, port, remotes):
    v6 = remotes("::1")
    mx1 = remotes("127.0.0.50")
    srv = outbound(make_server, dns, port).start()
    send(srv, ["a@v6.test"], "over ipv6")
    send(srv, ["b@dual.test"], "second mx")
    assert wait(lambda: v6.messages, what="IPv6 delivery")[0]["rcpts"] == ["a@v6.test"]
    assert wait(lambda: mx1.messages, what="delivery to the second MX")[0]["rcpts"] == ["b@dual.test"]
    log = srv.wait_log("mail.log", "to=<b@dual.test> relay=mx1.good.test")
    assert f"to=<a@v6.test> relay=mx.v6.test[::1]:{port}" in log
    wait(lambda: queue_empty(srv), what="empty queue")


def test_8bit_message_to_a_server_without_8bitmime_bounces_with_the_reason(make_server, dns, port):
    # Postfix's smtp-sink, told not to announce 8BITMIME (-8): no 7-bit downgrade is done.
    sink = subprocess.Popen(["smtp-sink", "-8", "-u", "nobody", f"127.0.0.55:{port}", "64"])
    try:
        srv = outbound(make_server, dns, port).start()
        with smtplib.SMTP("127.0.0.1", srv.ports["smtp"], timeout=20) as s:
            s.sendmail(SENDER, ["x@eight.test"], "Subject: caf\u00e9\r\n\r\nd\u00e9j\u00e0 vu\r\n".encode())
        st = status_part(wait(lambda: reports(srv), what="DSN")[0])
        assert "Status: 5.6.3" in st and "does not support 8BITMIME" in st
    finally:
        sink.terminate()
        sink.wait()


def test_kill_9_during_outbound_delivery_loses_nothing(make_server, dns, port, remotes):
    n = 30
    srv, mx1 = deferred_queue(make_server, dns, port, remotes, n, "kill")
    mx1.handler.rcpt_replies.clear()
    mx1.handler.data_delay = 0.1  # a slower remote: the kill lands mid-queue
    srv.cli("queue", "retry")
    wait(lambda: len(mx1.messages) >= 5, what="the first deliveries")
    srv.kill9()
    assert len(mx1.messages) < n, "the queue was already empty: the test proves nothing"
    srv.start()
    srv.cli("queue", "retry")
    wait(lambda: queue_empty(srv), timeout=60, what="empty queue after the crash")
    subjects = [m["data"].split(b"Subject: ")[1].split(b"\r\n")[0] for m in mx1.messages]
    # Nothing lost. A message the remote took just before the kill may come again
    # (at-least-once, RFC 5321 6.1) -- at most the sessions in flight at that moment.
    assert len(set(subjects)) == n
    assert len(subjects) - n <= 20


def test_sighup_reloads_delivery_settings(make_server, dns, port, remotes):
    relay = remotes("127.0.0.60")
    closed = free_port()
    srv = outbound(make_server, dns, port,
                   f'mode = "relay"\nrelay_host = "127.0.0.60"\nrelay_port = {closed}\nretry_interval = "1h"').start()
    send(srv, ["a@good.test"], "after reload")
    # The line names the relay that was tried (nothing listens on its port).
    assert f"relay=127.0.0.60[127.0.0.60]:{closed} reason=" in srv.wait_log("mail.log", "deferred id=")
    # The administrator fixes the relay port and sends SIGHUP: no restart.
    srv.write_config(srv.extra_config.replace(f"relay_port = {closed}", f"relay_port = {port}"))
    srv.proc.send_signal(signal.SIGHUP)
    srv.wait_log("bulwark.log", "reload: delivery settings updated")
    srv.cli("queue", "retry")
    assert wait(lambda: relay.messages, what="delivery after the reload")[0]["rcpts"] == ["a@good.test"]
    assert srv.proc.poll() is None


class SlowLink:
    """A TCP link that carries at most `rate` bytes a second from the client to the
    server: a proxy between bulwark and a real remote MX, with small socket buffers so
    that bulwark's writes wait for it."""

    def __init__(self, listen_ip, port, target_ip, rate):
        import socket
        import threading
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((listen_ip, port))
        self.sock.listen(4)
        self.target = (target_ip, port)
        self.rate = rate
        self.stopped = False
        threading.Thread(target=self.accept, daemon=True).start()

    def accept(self):
        import socket
        import threading
        while not self.stopped:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            server = socket.create_connection(self.target)
            threading.Thread(target=self.pump, args=(client, server, True), daemon=True).start()
            threading.Thread(target=self.pump, args=(server, client, False), daemon=True).start()

    def pump(self, src, dst, slow):
        step = max(1, self.rate // 10)
        try:
            while slow and self.rate == 0:  # a link that carries nothing at all
                time.sleep(0.1)
            while True:
                data = src.recv(step if slow else 65536)
                if not data:
                    break
                dst.sendall(data)
                if slow:
                    time.sleep(len(data) / self.rate)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.close()
            except OSError:
                pass

    def stop(self):
        self.stopped = True
        self.sock.close()


def test_a_slow_link_is_not_cut_while_the_message_moves(make_server, dns, port, remotes):
    """Issue 8.9: the whole body went out under one reply timeout, so any link slower
    than size/timeout always failed. Now each step of progress has its own deadline."""
    mx1 = remotes("127.0.0.50")
    dns.resolver.zone = {**dns.resolver.zone, ("narrow.test", "MX"): [(300, mx("mx.narrow.test"))],
                         ("mx.narrow.test", "A"): [(300, A("127.0.0.56"))]}
    link = SlowLink("127.0.0.56", port, "127.0.0.50", rate=40_000)
    try:
        srv = outbound(make_server, dns, port, 'tls = "off"\nreply_timeout = "2s"\n').start()
        body = "".join(f"line {i} " + "s" * 70 + "\r\n" for i in range(3000))  # ~240 KB: ~6 s on this link
        t0 = time.time()
        send(srv, ["far@narrow.test"], "slow link", body=body)
        m = wait(lambda: mx1.messages, timeout=60, what="delivery over the slow link")[0]
        assert time.time() - t0 > 3  # longer than the reply timeout, and still delivered
        assert m["data"].endswith(body.encode())
        assert "deferred" not in srv.log("mail.log")
    finally:
        link.stop()


def test_a_large_message_is_streamed_out_dot_stuffed(make_server, dns, port, remotes):
    mx1 = remotes("127.0.0.50")
    srv = outbound(make_server, dns, port).start()
    lines = [("." if i % 7 == 0 else "") + f"line {i} " + "d" * (i % 90) for i in range(40000)]
    body = "\r\n".join(lines) + "\r\n"
    send(srv, ["big@good.test"], "large", body=body)
    m = wait(lambda: mx1.messages, timeout=60, what="delivery")[0]
    assert m["data"].endswith(body.encode())  # aiosmtpd undid the dot-stuffing: byte-exact
    wait(lambda: queue_empty(srv), what="empty queue")


def test_sigterm_while_a_remote_answers_records_the_bounce_and_its_report(make_server, dns, port, remotes):
    """Issue 8.14: the spool stopped before remote delivery, so a report made while it
    drained was lost and the outcome never recorded: after a restart the message went
    out again and the sender got a second report."""
    perm = remotes("127.0.0.53")
    perm.handler.data_delay = 2.0
    perm.handler.data_reply = "550 5.7.1 not wanted here"
    srv = outbound(make_server, dns, port).start()
    send(srv, ["x@perm.test"], "refused late")
    time.sleep(1.0)  # the end of data is sent; the remote is thinking
    assert srv.stop() == 0
    assert "bounced id=" in srv.log("mail.log")
    srv.start()
    wait(lambda: reports(srv), timeout=10, what="the report")
    time.sleep(3)  # would be enough for a retry (retry_interval is 1s)
    assert len(reports(srv)) == 1
    assert srv.log("mail.log").count("bounced id=") == 1
    assert queue_empty(srv)


def test_a_stalled_link_is_cut_and_the_message_deferred(make_server, dns, port, remotes):
    remotes("127.0.0.50")
    dns.resolver.zone = {**dns.resolver.zone, ("stuck.test", "MX"): [(300, mx("mx.stuck.test"))],
                         ("mx.stuck.test", "A"): [(300, A("127.0.0.57"))]}
    link = SlowLink("127.0.0.57", port, "127.0.0.50", rate=0)
    try:
        srv = outbound(make_server, dns, port, 'tls = "off"\nreply_timeout = "2s"\nretry_interval = "1h"\n').start()
        t0 = time.time()
        send(srv, ["far@stuck.test"], "stuck link")
        log = srv.wait_log("mail.log", "deferred id=", timeout=30)
        assert "timeout" in log and time.time() - t0 < 15
    finally:
        link.stop()


def test_quoted_local_parts_of_alias_and_group_targets_stay_quoted_and_inject_nothing(make_server, dns, port, remotes):
    """A target's quoted local part goes out quoted, as one path: a '>' or a space in it
    cannot end the path or add ESMTP parameters (NOTIFY=NEVER, ORCPT=...)."""
    mx1 = remotes("127.0.0.50")
    srv = outbound(make_server, dns, port).start()
    hostile = '"victim@other.test> NOTIFY=NEVER ORCPT=rfc822;x"@good.test'
    srv.cli("alias", "add", "john@example.test", '"john smith"@good.test')
    srv.cli("alias", "add", "trap@example.test", hostile)
    srv.cli("group", "add", "team@example.test", "--member", '"Ann \\"the boss\\" Lee"@good.test',
            "--member", "demo@example.test")
    assert '"john smith"@good.test' in srv.cli("alias", "list").stdout  # stored as parsed
    send(srv, ["john@example.test", "trap@example.test", "team@example.test"], "quoted")
    wait(lambda: len(mx1.handler.rcpt_commands) >= 3, what="RCPTs at the remote")
    got = dict(mx1.handler.rcpt_commands)
    assert got == {'"john smith"@good.test': [], hostile[:-len("@good.test")] + "@good.test": [],
                   '"Ann \\"the boss\\" Lee"@good.test': []}, mx1.handler.rcpt_commands
    # A target no SMTP path can carry (a local part over 64 octets) is refused when added.
    r = srv.cli("alias", "add", "long@example.test", '"' + "x" * 70 + '"@good.test', check=False)
    assert r.returncode != 0 and "long@" not in srv.cli("alias", "list").stdout


@pytest.mark.skipif(__import__("os").geteuid() != 0, reason="a tmpfs over mail/ needs root (mount namespace)")
def test_write_once_with_mail_on_another_filesystem(make_server):
    """mail/ on its own filesystem (a tmpfs here): the copies written at the end of data
    are synced there besides the spool's commit, and the message is read over POP3."""
    import poplib
    import ssl
    srv = make_server()
    (srv.data / "mail").mkdir(parents=True, exist_ok=True)
    srv.start(preexec_fn=tmpfs_over(srv.data / "mail", 64 * 1024 * 1024))
    with smtplib.SMTP("127.0.0.1", srv.ports["smtp"], timeout=10) as s:
        s.sendmail("a@remote.test", ["demo@example.test"], b"Subject: elsewhere\r\n\r\non a tmpfs\r\n")
    assert "(at the end of data)" in srv.log("mail.log")
    p = poplib.POP3("127.0.0.1", srv.ports["pop3"], timeout=10)
    ctx = ssl.create_default_context(cafile=srv.cert)
    ctx.check_hostname = False
    p.stls(context=ctx)
    p.user("demo@example.test")
    p.pass_(PASSWORD)
    assert b"on a tmpfs" in b"\n".join(p.retr(1)[1])
    p.quit()
    # what the test sees is the directory under the tmpfs: no message there
    assert not [f for f in (srv.data / "mail").rglob("*") if f.parent.name in ("new", "cur", "tmp")]


@pytest.mark.skipif(__import__("os").geteuid() != 0, reason="a tmpfs of a set size needs root (mount namespace)")
def test_write_once_on_a_full_mail_filesystem_falls_back_to_the_spool(make_server):
    """No room in mail/ at the end of data: the message is still accepted -- the spool
    (another filesystem) keeps it, nothing is left half-written in the mailbox, and
    local delivery defers it, to retry, as for any mailbox it cannot write."""
    srv = make_server()
    (srv.data / "mail").mkdir(parents=True, exist_ok=True)
    srv.start(preexec_fn=tmpfs_over(srv.data / "mail", 64 * 1024))
    body = b"Subject: no room\r\n\r\n" + (b"z" * 76 + b"\r\n") * 2000  # ~156 KB > 64 KiB
    with smtplib.SMTP("127.0.0.1", srv.ports["smtp"], timeout=10) as s:
        s.sendmail("a@remote.test", ["demo@example.test"], body)  # 250, or this raises
    wait(lambda: "deferred" in srv.log("mail.log"), what="the deferral")
    log = srv.log("mail.log")
    assert "(at the end of data)" not in log
    assert "relay=local" in log and "No space left on device" in log, log
    queued = [p for p in (srv.data / "queue").iterdir() if "." not in p.name]
    assert len(queued) == 1, queued
    assert queued[0].name in srv.cli("queue", "list").stdout
