"""Sender authentication of inbound mail: SPF (RFC 7208) checked by bulwark against
records served by a real DNS server (python3-dnslib on port 53 of a loopback address),
with python3-spf (pyspf) as the oracle on the very same records, and the verdicts in
the Authentication-Results field of the delivered message; spf.mode = "reject";
DMARC (RFC 7489): alignment strict and relaxed, by SPF and by DKIM (dkimpy signs),
p=reject refused and p=quarantine filed into Junk under dmarc.mode = "enforce",
the subdomain policy; DNSBL (listed, not listed, a zone that times out); greylisting
(first attempt deferred, retry after the delay accepted, kept across a restart)."""
import email
import json
import smtplib
import subprocess
import time

import pytest

from conftest import HOST, wait
from dns_server import MX, TXT, A, DnsTestServer, mx, resolv_conf_cmd

DNS_IP = "127.53.0.2"
HELO = "client.test"

ZONE = {
    ("pass.test", "TXT"): [(300, TXT("v=spf1 ip4:127.0.0.10 -all"))],
    ("soft.test", "TXT"): [(300, TXT("v=spf1 ip4:127.0.0.10 ~all"))],
    ("neutral.test", "TXT"): [(300, TXT("v=spf1 ?all"))],
    ("nospf.test", "A"): [(300, A("127.0.0.10"))],
    ("two.test", "TXT"): [(300, TXT("v=spf1 -all")), (300, TXT("v=spf1 +all"))],
    ("syntax.test", "TXT"): [(300, TXT("v=spf1 ip4:127.0.0.10 bogus:x -all"))],
    ("inc.test", "TXT"): [(300, TXT("v=spf1 include:_spf.prov.test -all"))],
    ("_spf.prov.test", "TXT"): [(300, TXT("v=spf1 ip4:127.0.0.20 ~all"))],
    ("redir.test", "TXT"): [(300, TXT("v=spf1 redirect=_spf.prov.test"))],
    ("mac.test", "TXT"): [(300, TXT("v=spf1 exists:%{ir}.%{l1r-}._spf.%{d} -all"))],
    ("10.0.0.127.strong._spf.mac.test", "A"): [(300, A("127.0.0.2"))],
    ("mx.test", "TXT"): [(300, TXT("v=spf1 mx -all"))],
    ("mx.test", "MX"): [(300, mx("mxhost.mx.test"))],
    ("mxhost.mx.test", "A"): [(300, A("127.0.0.20"))],
    ("cidr.test", "TXT"): [(300, TXT("v=spf1 a:host.cidr.test/24 -all"))],
    ("host.cidr.test", "A"): [(300, A("127.0.0.99"))],
    ("voids.test", "TXT"): [(300, TXT("v=spf1 a:n1.voids.test a:n2.voids.test a:n3.voids.test ip4:127.0.0.10 -all"))],
    ("lim.test", "TXT"): [(300, TXT("v=spf1 " + " ".join(f"a:h{i}.lim.test" for i in range(11)) + " -all"))],
    ("ten.test", "TXT"): [(300, TXT("v=spf1 " + " ".join(f"a:h{i}.lim.test" for i in range(10)) + " -all"))],
    **{(f"h{i}.lim.test", "A"): [(300, A("127.0.0.30"))] for i in range(11)},
    (HELO, "TXT"): [(300, TXT("v=spf1 ip4:127.0.0.20 -all"))],
    # DMARC
    ("_dmarc.pass.test", "TXT"): [(300, TXT("v=DMARC1; p=reject"))],
    ("quar.test", "TXT"): [(300, TXT("v=spf1 ip4:127.0.0.10 -all"))],
    ("_dmarc.quar.test", "TXT"): [(300, TXT("v=DMARC1; p=quarantine"))],
    ("_dmarc.org.test", "TXT"): [(300, TXT("v=DMARC1; p=none; sp=reject"))],
    ("bounce.relaxed.test", "TXT"): [(300, TXT("v=spf1 ip4:127.0.0.10 -all"))],
    ("_dmarc.relaxed.test", "TXT"): [(300, TXT("v=DMARC1; p=reject"))],
    ("bounce.strict.test", "TXT"): [(300, TXT("v=spf1 ip4:127.0.0.10 -all"))],
    ("_dmarc.strict.test", "TXT"): [(300, TXT("v=DMARC1; p=reject; aspf=s"))],
    ("_dmarc.dk.test", "TXT"): [(300, TXT("v=DMARC1; p=reject; adkim=s"))],
    # DNSBL: 127.0.0.20 is listed in bl.test; slow.test never answers
    ("20.0.0.127.bl.test", "A"): [(300, A("127.0.0.2"))],
    ("bl.test", "A"): [(300, A("127.0.0.1"))],
}

# (client address, MAIL FROM)
CASES = [
    ("127.0.0.10", "a@pass.test"), ("127.0.0.20", "a@pass.test"), ("127.0.0.20", "a@soft.test"),
    ("127.0.0.20", "a@neutral.test"), ("127.0.0.20", "a@nospf.test"), ("127.0.0.20", "a@servfail.test"),
    ("127.0.0.20", "a@two.test"), ("127.0.0.10", "a@syntax.test"), ("127.0.0.20", "a@inc.test"),
    ("127.0.0.10", "a@inc.test"), ("127.0.0.20", "a@redir.test"), ("127.0.0.10", "a@redir.test"),
    ("127.0.0.10", "strong-bad@mac.test"), ("127.0.0.10", "weak-bad@mac.test"), ("127.0.0.20", "a@mx.test"),
    ("127.0.0.10", "a@mx.test"), ("127.0.0.10", "a@cidr.test"), ("127.0.1.10", "a@cidr.test"),
    ("127.0.0.10", "a@voids.test"), ("127.0.0.30", "a@lim.test"), ("127.0.0.30", "a@ten.test"),
    ("127.0.0.20", ""), ("127.0.0.10", ""),
]

ORACLE = """
import json, sys, spf
out = []
for ip, sender in json.load(sys.stdin):
    out.append(spf.check2(i=ip, s=sender, h=%r, timeout=10)[0])
print(json.dumps(out))
""" % HELO


@pytest.fixture(scope="module")
def dns():
    d = DnsTestServer(ZONE, address=DNS_IP, port=53)
    yield d
    d.stop()


def server(make_server, spf_mode="tag", dmarc_mode="tag"):
    return make_server(extra_config=(f'[dns]\nservers = ["{DNS_IP}:53"]\ntimeout = "2s"\n'
                                     f'[spf]\nmode = "{spf_mode}"\n[dmarc]\nmode = "{dmarc_mode}"\n')).start()


def send(srv, ip, sender, subject, from_hdr="x@y.test", sign=None):
    msg = f"From: {from_hdr}\r\nSubject: {subject}\r\n\r\nhi\r\n".encode()
    if sign:
        msg = sign(msg) + msg
    with smtplib.SMTP("127.0.0.1", srv.ports["smtp"], local_hostname=HELO, source_address=(ip, 0),
                      timeout=30) as s:
        return s.sendmail(sender, ["demo@example.test"], msg)


def spf_results(srv, n):
    got = {}
    for raw in srv.wait_messages(n):
        m = email.message_from_bytes(raw)
        ar = " ".join(str(m.get_all("Authentication-Results")[0]).split())
        assert ar.startswith(HOST + ";"), ar
        got[m["Subject"]] = ar
    return got


def test_spf_agrees_with_pyspf(make_server, dns, tmp_path):
    oracle = subprocess.run(resolv_conf_cmd(tmp_path, dns, ["/usr/bin/python3", "-c", ORACLE]),
                            input=json.dumps(CASES), capture_output=True, text=True, timeout=120)
    assert oracle.returncode == 0, oracle.stderr
    expected = json.loads(oracle.stdout)
    srv = server(make_server)
    for i, (ip, sender) in enumerate(CASES):
        send(srv, ip, sender, f"case {i}")
    got = spf_results(srv, len(CASES))
    for i, (ip, sender) in enumerate(CASES):
        ar = got[f"case {i}"]
        ours = ar.split("spf=")[1].split()[0].rstrip(";")
        assert ours == expected[i], f"{sender or '<>'} from {ip}: bulwark {ours}, pyspf {expected[i]} ({ar})"
        ident = f"smtp.mailfrom={sender}" if sender else f"smtp.helo={HELO}"
        assert ident in ar, ar
    # Every result kind came up, so the comparison covered them all.
    assert set(expected) == {"pass", "fail", "softfail", "neutral", "none", "temperror", "permerror"}


def test_spf_reject_mode(make_server, dns):
    srv = server(make_server, "reject")
    with smtplib.SMTP("127.0.0.1", srv.ports["smtp"], local_hostname=HELO, source_address=("127.0.0.20", 0),
                      timeout=30) as s:
        s.ehlo()
        s.mail("a@pass.test")
        s.rcpt("demo@example.test")
        code, text = s.data(b"Subject: refused\r\n\r\nhi\r\n")
        assert code == 550 and text.startswith(b"5.7.23 SPF validation failed: [127.0.0.20] may not send for pass.test")
        # the session goes on: softfail and pass are delivered
        s.sendmail("a@soft.test", ["demo@example.test"], b"Subject: softfail\r\n\r\nhi\r\n")
    send(srv, "127.0.0.10", "a@pass.test", "pass")
    got = spf_results(srv, 2)
    assert "spf=softfail" in got["softfail"] and "spf=pass" in got["pass"]
    assert "SMTP refused from 127.0.0.20: SPF validation failed: [127.0.0.20] may not send for pass.test" in \
        srv.wait_log("security.log", "SPF validation failed")


def test_checks_skipped_for_relay_group_and_off(make_server, dns):
    """Clients allowed to relay (and authenticated ones) are ours: no verdicts at all."""
    srv = make_server(extra_config=(f'[dns]\nservers = ["{DNS_IP}:53"]\ntimeout = "2s"\n'
                                    '[relay]\nallow_ip_group = "local"\n[spf]\nmode = "reject"\n')).start()
    send(srv, "127.0.0.20", "a@pass.test", "from the relay group")
    raw = srv.wait_messages(1)[0]
    assert b"spf=" not in raw and b"Authentication-Results" not in raw
    srv.stop()
    # SPF off: still evaluated for DMARC (which needs it) unless DMARC is off too
    srv.write_config(f'[dns]\nservers = ["{DNS_IP}:53"]\ntimeout = "2s"\n[spf]\nmode = "off"\n')
    srv.start()
    send(srv, "127.0.0.20", "a@pass.test", "spf off", from_hdr="x@pass.test")
    raw = [m for m in srv.wait_messages(2) if b"spf off" in m][0]
    assert b"spf=fail" in raw and b"dmarc=fail" in raw
    srv.stop()
    srv.write_config(f'[dns]\nservers = ["{DNS_IP}:53"]\ntimeout = "2s"\n[spf]\nmode = "off"\n[dmarc]\nmode = "off"\n')
    srv.start()
    send(srv, "127.0.0.20", "a@pass.test", "both off", from_hdr="x@pass.test")
    raw = [m for m in srv.wait_messages(3) if b"both off" in m][0]
    assert b"spf=" not in raw and b"dmarc=" not in raw and b"dkim=none" in raw


def test_dmarc_tag_and_enforce(make_server, dns, tmp_path):
    import dkim
    from test_dkim import rsa_key, txt
    priv, pub = rsa_key(tmp_path, "dk")
    dns.resolver.zone[("s._domainkey.dk.test", "TXT")] = txt(f"v=DKIM1; k=rsa; p={pub}")
    dk_sign = lambda m: dkim.sign(m, b"s", b"dk.test", priv)  # noqa: E731
    # (client, MAIL FROM, From:, signer) -> the dmarc= part of the A-R under "tag"
    cases = {
        "aligned spf": ("127.0.0.10", "a@pass.test", "x@pass.test", None, "dmarc=pass (p=reject dis=none) header.from=pass.test"),
        "spf fails": ("127.0.0.20", "a@pass.test", "x@pass.test", None, "dmarc=fail (p=reject dis=reject) header.from=pass.test"),
        "unaligned": ("127.0.0.10", "a@pass.test", "x@relaxed.test", None, "dmarc=fail (p=reject dis=reject)"),
        "relaxed": ("127.0.0.10", "a@bounce.relaxed.test", "x@relaxed.test", None, "dmarc=pass"),
        "strict": ("127.0.0.10", "a@bounce.strict.test", "x@strict.test", None, "dmarc=fail (p=reject dis=reject)"),
        "quarantine": ("127.0.0.20", "a@quar.test", "x@quar.test", None, "dmarc=fail (p=quarantine dis=quarantine)"),
        "subdomain": ("127.0.0.20", "a@sub.org.test", "x@sub.org.test", None, "dmarc=fail (p=reject dis=reject) header.from=sub.org.test"),
        "org itself": ("127.0.0.20", "a@org.test", "x@org.test", None, "dmarc=fail (p=none dis=none)"),
        "dkim aligned": ("127.0.0.20", "a@nospf.test", "x@dk.test", dk_sign, "dmarc=pass"),
        "no record": ("127.0.0.20", "a@nospf.test", "x@nospf.test", None, "dmarc=none header.from=nospf.test"),
    }
    srv = server(make_server)
    for subject, (ip, sender, from_hdr, signer, _) in cases.items():
        send(srv, ip, sender, subject, from_hdr, signer)
    got = spf_results(srv, len(cases))
    for subject, (*_, want) in cases.items():
        assert want in got[subject], (subject, got[subject])
    srv.stop()

    # enforce: p=reject refused after the data, p=quarantine filed into Junk
    srv.write_config(f'[dns]\nservers = ["{DNS_IP}:53"]\ntimeout = "2s"\n[dmarc]\nmode = "enforce"\n')
    srv.start()
    for subject in ("spf fails", "subdomain", "strict"):
        ip, sender, from_hdr, signer, _ = cases[subject]
        with pytest.raises(smtplib.SMTPDataError) as e:
            send(srv, ip, sender, subject + " enforced", from_hdr, signer)
        assert e.value.smtp_code == 550 and e.value.smtp_error.startswith(b"5.7.1 DMARC policy of")
    ip, sender, from_hdr, signer, _ = cases["quarantine"]
    send(srv, ip, sender, "quarantined", from_hdr)
    junk = srv.data / "mail" / "example.test" / "demo" / ".Junk" / "new"
    wait(lambda: junk.exists() and list(junk.iterdir()), what="a message in Junk")
    [quarantined] = [p.read_bytes() for p in junk.iterdir()]
    assert b"Subject: quarantined" in quarantined and b"dmarc=fail (p=quarantine dis=quarantine)" in quarantined
    ip, sender, from_hdr, signer, _ = cases["aligned spf"]
    send(srv, ip, sender, "passes enforced", from_hdr)
    assert any(b"passes enforced" in m for m in srv.wait_messages(len(cases) + 1))
    assert "dkim=none spf=fail dmarc=fail junk=dmarc-quarantine" in srv.log("mail.log")
    assert "DMARC policy of pass.test rejects this message" in srv.log("security.log")


def test_dnsbl(make_server, dns):
    srv = make_server(extra_config=(f'[dns]\nservers = ["{DNS_IP}:53"]\ntimeout = "2s"\n'
                                    '[dnsbl]\nzones = ["slow.test", "bl.test"]\n')).start()
    with pytest.raises(smtplib.SMTPRecipientsRefused) as e:
        send(srv, "127.0.0.20", "a@pass.test", "listed")
    code, text = e.value.recipients["demo@example.test"]
    assert code == 554 and text == b"5.7.1 Service unavailable; client [127.0.0.20] blocked using bl.test"
    assert "SMTP client 127.0.0.20 listed in bl.test: recipient <demo@example.test> refused" in \
        srv.wait_log("security.log", "listed in bl.test")
    # postmaster still takes mail from a listed client; an unlisted client is served
    with smtplib.SMTP("127.0.0.1", srv.ports["smtp"], local_hostname=HELO, source_address=("127.0.0.20", 0),
                      timeout=30) as s:
        s.sendmail("a@pass.test", ["postmaster@example.test"], b"Subject: to postmaster\r\n\r\nhi\r\n")
    send(srv, "127.0.0.10", "a@pass.test", "not listed")
    msgs = srv.wait_messages(2)
    assert any(b"not listed" in m for m in msgs) and any(b"to postmaster" in m for m in msgs)
    # the zone that never answered was taken as not listing, and said so
    assert "DNSBL slow.test did not answer for 127.0.0.10: taken as not listed" in \
        srv.wait_log("bulwark.log", "slow.test")


def test_greylisting(make_server, dns):
    cfg = (f'[dns]\nservers = ["{DNS_IP}:53"]\ntimeout = "2s"\n'
           '[greylisting]\nenabled = true\ndelay = "2s"\n')
    srv = make_server(extra_config=cfg).start()
    for attempt in range(2):
        with pytest.raises(smtplib.SMTPRecipientsRefused) as e:
            send(srv, "127.0.0.10", "a@pass.test", f"attempt {attempt}")
        code, text = e.value.recipients["demo@example.test"]
        assert code == 451 and text.startswith(b"4.7.1 Greylisted, please try again in ")
    time.sleep(2.2)
    send(srv, "127.0.0.11", "a@pass.test", "retried")  # the same /24: the same triplet
    assert b"retried" in srv.wait_messages(1)[0]
    assert "greylisted client=127.0.0.10 from=<a@pass.test> to=<demo@example.test>" in srv.log("mail.log")
    srv.stop()
    srv.start()  # a passed triplet survives the restart; a new one is deferred
    send(srv, "127.0.0.10", "a@pass.test", "after restart")
    with pytest.raises(smtplib.SMTPRecipientsRefused):
        send(srv, "127.0.0.10", "b@pass.test", "another sender")
    assert len(srv.wait_messages(2)) == 2


def test_trusted_group_skips_sender_checks(make_server, dns):
    """relay.trusted_ip_group (a backup MX): no SPF, DMARC, DNSBL or greylisting -- its
    mail would fail them all on the sender's behalf -- but DKIM is still verified."""
    srv = make_server(extra_config=(
        f'[dns]\nservers = ["{DNS_IP}:53"]\ntimeout = "2s"\n[ip_groups]\nbackup = ["127.0.0.20"]\n'
        '[relay]\nallow_ip_group = ""\ntrusted_ip_group = "backup"\n[spf]\nmode = "reject"\n'
        '[dmarc]\nmode = "enforce"\n[dnsbl]\nzones = ["bl.test"]\n[greylisting]\nenabled = true\n')).start()
    send(srv, "127.0.0.20", "a@pass.test", "via the backup mx", from_hdr="x@pass.test")
    raw = srv.wait_messages(1)[0]
    ar = " ".join(email.message_from_bytes(raw)["Authentication-Results"].split())
    assert ar == f"{HOST}; dkim=none", ar
    # a neighbour outside the group gets the checks (here: greylisted)
    with pytest.raises(smtplib.SMTPRecipientsRefused):
        send(srv, "127.0.0.21", "a@pass.test", "not trusted", from_hdr="x@pass.test")
