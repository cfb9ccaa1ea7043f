"""DKIM: `bulwark dkim keygen|list|remove`, and signatures on mail leaving for a real
remote MX (python3-aiosmtpd) checked by verifiers nobody here wrote -- dkimpy's
`dkimverify` and OpenDKIM's `opendkim-testmsg` -- which fetch the key records that
keygen printed from a real DNS server (python3-dnslib) on a loopback port 53."""
import base64
import concurrent.futures
import email
import re
import smtplib
import stat
import subprocess
from unittest import mock

import pytest

from conftest import HOST, free_port, wait
from dns_server import TXT, A, DnsTestServer, mx, resolv_conf_cmd
from remote_mx import CertAuthority, RemoteMx

DNS_IP = "127.53.0.1"  # the verifiers read /etc/resolv.conf: port 53 on an address of its own


def parse_record(line):
    """`sel._domainkey.example.test. IN TXT "..." "..."` -> (name, [strings])."""
    m = re.fullmatch(r'(\S+)\. IN TXT((?: "[^"]*")+)', line.strip())
    assert m, f"not a TXT record line: {line!r}"
    strings = re.findall(r'"([^"]*)"', m.group(2))
    assert all(len(s) <= 255 for s in strings)
    return m.group(1), strings


@pytest.fixture
def zone():
    return {("good.test", "MX"): [(300, mx("mx1.good.test"))], ("mx1.good.test", "A"): [(300, A("127.0.0.50"))]}


@pytest.fixture
def dns(zone):
    d = DnsTestServer(zone, address=DNS_IP, port=53)
    yield d
    d.stop()


@pytest.fixture
def remote():
    port = free_port()
    r = RemoteMx("127.0.0.50", port, CertAuthority())
    yield r
    r.stop()


def server(make_server, remote, relay_group="local"):
    return make_server(extra_config=(
        f'[dns]\nservers = ["{DNS_IP}:53"]\ntimeout = "2s"\n'
        f'[relay]\nallow_ip_group = "{relay_group}"\n'
        f'[delivery]\nmx_port = {remote.controller.port}\nretry_interval = "1s"\n'))


def keygen(srv, zone, *args):
    r = srv.cli("dkim", "keygen", "example.test", *args)
    name, strings = parse_record(r.stdout)
    zone[(name, "TXT")] = [(300, TXT(strings))]
    return name, strings


def verify(tmp_path, dns, data, index=0):
    """(dkimverify ok, opendkim-testmsg ok) for the index-th signature of `data`."""
    d = subprocess.run(resolv_conf_cmd(tmp_path, dns, ["dkimverify", "--index", str(index)]), input=data,
                       capture_output=True, timeout=60)
    return d.returncode == 0 and b"signature ok" in d.stdout, d.stdout + d.stderr


def opendkim(tmp_path, dns, data):
    r = subprocess.run(resolv_conf_cmd(tmp_path, dns, ["opendkim-testmsg"]), input=data.replace(b"\r\n", b"\n"),
                       capture_output=True, timeout=60)
    return r.returncode == 0 and not r.stdout.strip() and not r.stderr.strip(), r.stdout + r.stderr


def test_keygen_list_remove(make_server, remote):
    srv = server(make_server, remote)
    r = srv.cli("dkim", "keygen", "example.test", "--selector", "s1")
    name, strings = parse_record(r.stdout)
    assert name == "s1._domainkey.example.test"
    value = "".join(strings)
    assert value.startswith("v=DKIM1; k=rsa; p=MIIB") and len(strings) >= 2  # 2048 bits: over 255 octets
    key = srv.data / "dkim" / "example.test" / "s1.pem"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    r = srv.cli("dkim", "keygen", "example.test", "--algorithm", "ed25519")
    name, strings = parse_record(r.stdout)
    assert re.fullmatch(r"\d{6}e\._domainkey\.example\.test", name)   # default selector: YYYYMM + e
    assert re.fullmatch(r"v=DKIM1; k=ed25519; p=[A-Za-z0-9+/]{43}=", "".join(strings))
    listed = srv.cli("dkim", "list").stdout
    assert "example.test  s1  rsa2048" in listed and "ed25519" in listed and value[:60] in listed.replace('" "', "")
    # refusals: the same selector twice, a domain that is not ours, a bad selector, an unknown key
    r = srv.cli("dkim", "keygen", "example.test", "--selector", "s1", check=False)
    assert r.returncode != 0 and "already has a key with selector s1" in r.stderr
    r = srv.cli("dkim", "keygen", "other.test", check=False)
    assert r.returncode == 2 and "not a local domain" in r.stderr
    r = srv.cli("dkim", "keygen", "example.test", "--selector", "../x", check=False)
    assert r.returncode == 2 and "selector" in r.stderr
    r = srv.cli("dkim", "keygen", "example.test", "--algorithm", "rsa1024", check=False)
    assert r.returncode == 2
    r = srv.cli("dkim", "remove", "example.test", "--selector", "nope", check=False)
    assert r.returncode != 0 and "no key" in r.stderr
    srv.cli("dkim", "remove", "example.test", "--selector", "s1")
    assert not key.exists() and "example.test  s1  " not in srv.cli("dkim", "list").stdout  # (base64 may hold "s1")


def test_outgoing_mail_is_signed_and_verifies(make_server, dns, zone, remote, tmp_path):
    srv = server(make_server, remote)
    keygen(srv, zone, "--selector", "rsa1")
    keygen(srv, zone, "--selector", "ed1", "--algorithm", "ed25519")
    srv.start()
    # What canonicalization has to get right: trailing and inner whitespace, tabs,
    # leading dots (dot-stuffing on the way out), empty lines at the end, a body
    # longer than one 64 KiB read, folded and repeated header fields.
    body = ("Hello  there \t\r\n\tindented line\r\n.a line with a leading dot\r\n..two\r\n" +
            "".join(f"line {i} with  spaces   \r\n" for i in range(6000)) + "\r\n\r\n")
    msg = ("From: Demo User <demo@example.test>\r\nTo: someone@good.test\r\n"
           "Subject: Re: a subject\r\n  folded: onto two lines\r\nDate: Tue, 24 Nov 2026 10:00:00 +0000\r\n"
           "Message-ID: <dkim.1@example.test>\r\nX-Custom: one\r\nX-Custom: two\r\n\r\n" + body)
    with smtplib.SMTP("127.0.0.1", srv.ports["smtp"], timeout=20) as s:
        s.sendmail("demo@example.test", ["someone@good.test"], msg)
    data = wait(lambda: remote.messages, what="delivery")[0]["data"]
    head = data.split(b"\r\n\r\n", 1)[0].decode()
    sigs = re.findall(r"^DKIM-Signature:[^\r\n]*(?:\r\n[ \t][^\r\n]*)*", head, re.M)
    assert len(sigs) == 2, head
    assert any("a=rsa-sha256" in s and "s=rsa1" in s for s in sigs)
    assert any("a=ed25519-sha256" in s and "s=ed1" in s for s in sigs)
    for s in sigs:
        assert "c=relaxed/relaxed" in s and "d=example.test" in s
        hm = re.search(r"\bh=([^;]*);", s)
        assert hm, s
        h = hm.group(1).split(":")
        assert h.count("from") == 2 and "subject" in h and "received" not in h
    for i in (0, 1):
        ok, out = verify(tmp_path, dns, data, i)
        assert ok, out
    ok, out = opendkim(tmp_path, dns, data)
    assert ok, out
    # OpenDKIM on each signature alone (it passes a message when any signature verifies)
    for keep in sigs:
        alone = data
        for other in sigs:
            if other != keep:
                alone = alone.replace(other.encode() + b"\r\n", b"", 1)
        assert alone.count(b"DKIM-Signature:") == 1
        ok, out = opendkim(tmp_path, dns, alone)
        assert ok, (keep[:60], out)
        ok, out = opendkim(tmp_path, dns, alone.replace(b"line 5000 with", b"line 5001 with"))
        assert not ok, keep[:60]
    # The verifiers do fail: a changed body, and a From: added after signing.
    ok, out = verify(tmp_path, dns, data.replace(b"line 5000 with", b"line 5001 with"), 0)
    assert not ok and b"body hash mismatch" in out
    ok, out = opendkim(tmp_path, dns, data.replace(b"line 5000 with", b"line 5001 with"))
    assert not ok
    forged = data.replace(b"\r\n\r\n", b"\r\nFrom: ceo@example.test\r\n\r\n", 1)
    ok, out = verify(tmp_path, dns, forged, 1)
    assert not ok


def test_key_removed_or_sign_off_means_unsigned(make_server, dns, zone, remote):
    srv = server(make_server, remote)
    keygen(srv, zone, "--selector", "old")
    srv.start()

    def send(subject):
        n = len(remote.messages)
        with smtplib.SMTP("127.0.0.1", srv.ports["smtp"], timeout=20) as s:
            s.sendmail("demo@example.test", ["x@good.test"],
                       f"From: demo@example.test\r\nSubject: {subject}\r\n\r\nbody\r\n")
        return wait(lambda: len(remote.messages) > n and remote.messages[n]["data"], what="delivery")

    assert b"s=old;" in send("signed")
    srv.cli("dkim", "remove", "example.test", "--selector", "old")
    keygen(srv, zone, "--selector", "new")
    data = send("after rotation")
    assert b"s=new;" in data and b"s=old;" not in data   # the running server sees key changes
    srv.stop()
    srv.write_config(srv.extra_config + "\n[dkim]\nsign = false\n")
    srv.start()
    assert b"DKIM-Signature" not in send("signing off")


def test_signed_backlog_is_all_delivered_without_a_false_deferral(make_server, dns, zone):
    """A backlog of signed mail (the MX was down; it comes up, the server restarts): signing makes the
    messages reach the delivery sessions a little apart, and one queued while a
    connection was saying QUIT used to be deferred with "no address found"."""
    port = free_port()
    srv = make_server(extra_config=(
        f'[dns]\nservers = ["{DNS_IP}:53"]\ntimeout = "2s"\n[relay]\nallow_ip_group = "local"\n'
        f'[delivery]\nmx_port = {port}\nretry_interval = "1h"\nmax_delivery_threads = 20\nmax_per_destination = 20\n'))
    keygen(srv, zone, "--selector", "s1")
    srv.start()
    n_threads, per_thread = 8, 150

    def client(t):
        with smtplib.SMTP("127.0.0.1", srv.ports["smtp"], timeout=30) as s:
            for i in range(per_thread):
                s.sendmail("demo@example.test", ["x@good.test"],
                           f"From: demo@example.test\r\nSubject: load {t}-{i}\r\n\r\nbody {t} {i}\r\n")

    with concurrent.futures.ThreadPoolExecutor(n_threads) as pool:
        list(pool.map(client, range(n_threads)))
    total = n_threads * per_thread
    wait(lambda: srv.log("mail.log").count("cannot connect") >= total, what="every message deferred")
    srv.stop()
    # The MX comes up -- Postfix's smtp-sink, fast enough for connections to run dry --
    # and the server restarts with the whole backlog due at once.
    sink = subprocess.Popen(["smtp-sink", "-u", "nobody", f"127.0.0.50:{port}", "256"])
    try:
        srv.start()
        srv.cli("queue", "retry")  # everything due now
        delivered = lambda: srv.log("mail.log").count(" delivered id=")  # noqa: E731
        try:
            wait(lambda: delivered() >= total, timeout=30, what="every message delivered")
        except AssertionError:
            other = [l for l in srv.log("mail.log").splitlines() if "cannot connect" not in l and " accepted " not in l
                     and " delivered " not in l]
            raise AssertionError(f"{delivered()} of {total} delivered; {other[:3]}; {srv.log('bulwark.log')[-600:]}")
        false = [line for line in srv.log("mail.log").splitlines() if "no address found" in line]
        assert not false, false[:3]
        assert delivered() == total
    finally:
        sink.terminate()
        sink.wait()


def test_mail_not_ours_is_never_signed(make_server, dns, zone, remote):
    """Mail from outside that claims our domain in From: and is forwarded by an alias
    to a remote address leaves unsigned: only our users' mail gets our signature."""
    srv = server(make_server, remote, relay_group="")
    keygen(srv, zone, "--selector", "s1")
    srv.cli("alias", "add", "fwd@example.test", "someone@good.test")
    srv.start()
    with smtplib.SMTP("127.0.0.1", srv.ports["smtp"], timeout=20) as s:
        s.sendmail("stranger@elsewhere.test", ["fwd@example.test"],
                   "From: demo@example.test\r\nSubject: forged\r\n\r\nbody\r\n")
    data = wait(lambda: remote.messages, what="delivery")[0]["data"]
    assert b"Subject: forged" in data and b"DKIM-Signature" not in data


# ---- inbound: signatures made by dkimpy, checked by bulwark, the verdict in the
# Authentication-Results field on top of the delivered message

def rsa_key(tmp_path, name):
    path = tmp_path / f"{name}.pem"
    subprocess.run(["openssl", "genrsa", "-out", str(path), "2048"], check=True, capture_output=True)
    pub = subprocess.run(["openssl", "rsa", "-in", str(path), "-pubout", "-outform", "DER"], check=True,
                         capture_output=True).stdout
    return path.read_bytes(), base64.b64encode(pub).decode()


def ed_key():
    import nacl.signing
    sk = nacl.signing.SigningKey.generate()
    return base64.b64encode(bytes(sk)), base64.b64encode(bytes(sk.verify_key)).decode()


def txt(value):
    return [(300, TXT([value[i:i + 255] for i in range(0, len(value), 255)]))]


def results_of(raw):
    """The Authentication-Results fields of a delivered message, and the first field."""
    msg = email.message_from_bytes(raw)
    first = [k for k in msg.keys() if k.lower() not in ("return-path", "delivered-to")][0]
    return [" ".join(str(v).split()) for v in msg.get_all("Authentication-Results", [])], first


def test_inbound_signatures_are_verified(make_server, dns, zone, tmp_path):
    import dkim
    rsa_priv, rsa_pub = rsa_key(tmp_path, "a")
    other_priv, _ = rsa_key(tmp_path, "b")
    ed_priv, ed_pub = ed_key()
    zone[("rsa._domainkey.sender.test", "TXT")] = txt(f"v=DKIM1; k=rsa; p={rsa_pub}")
    zone[("ed._domainkey.sender.test", "TXT")] = txt(f"v=DKIM1; k=ed25519; p={ed_pub}")
    zone[("gone._domainkey.sender.test", "TXT")] = txt("v=DKIM1; k=rsa; p=")
    srv = make_server(extra_config=f'[dns]\nservers = ["{DNS_IP}:53"]\ntimeout = "2s"\n')
    srv.start()

    def message(subject, body="Hello.\r\n", extra=""):
        return (f"From: Someone <someone@sender.test>\r\nTo: demo@example.test\r\nSubject: {subject}\r\n"
                f"Date: Tue, 24 Nov 2026 10:00:00 +0000\r\nMessage-ID: <{subject.replace(' ', '.')}@sender.test>\r\n"
                f"{extra}\r\n{body}").encode()

    def sign(msg, selector, key, alg=b"rsa-sha256", domain=b"sender.test", **kw):
        return dkim.sign(msg, selector, domain, key, signature_algorithm=alg, **kw) + msg

    def expired(msg):
        orig = dkim.DKIM.gen_header

        def with_x(self, fields, *a, **k):
            return orig(self, fields[:-3] + [(b"x", b"1000000100")] + fields[-3:], *a, **k)

        with mock.patch.object(dkim.DKIM, "gen_header", with_x), mock.patch("time.time", return_value=1000000000):
            return sign(msg, b"rsa", rsa_priv)

    cases = {
        "rsa good": sign(message("rsa good"), b"rsa", rsa_priv),
        "ed good": sign(message("ed good"), b"ed", ed_priv, alg=b"ed25519-sha256"),
        "simple canon": sign(message("simple canon"), b"rsa", rsa_priv, canonicalize=(b"simple", b"simple")),
        "body changed": sign(message("body changed"), b"rsa", rsa_priv).replace(b"Hello.", b"Hello!"),
        "header changed": sign(message("header changed"), b"rsa", rsa_priv).replace(b"header changed",
                                                                                       b"header CHANGED"),
        "wrong key": sign(message("wrong key"), b"rsa", other_priv),
        "revoked key": sign(message("revoked key"), b"gone", rsa_priv),
        "no key": sign(message("no key"), b"missing", rsa_priv),
        "dns failure": sign(message("dns failure"), b"rsa", rsa_priv, domain=b"servfail.test"),
        "expired": expired(message("expired")),
        "length appended": sign(message("length appended"), b"rsa", rsa_priv, length=True) + b"Buy now!\r\n",
        "unsigned": message("unsigned"),
        # over 256 KiB: the body is spilled to a file while it arrives and hashed from there
        "large body": sign(message("large body", body="".join(f"line {i} of a long message body\r\n"
                                                             for i in range(12000))), b"ed", ed_priv,
                           alg=b"ed25519-sha256"),
        "forged results": sign(message("forged results", extra=(
            "Authentication-Results: mail.example.test; dkim=pass header.d=example.test\r\n"
            "Authentication-Results: elsewhere.test; dkim=pass\r\n")), b"rsa", rsa_priv),
    }
    with smtplib.SMTP("127.0.0.1", srv.ports["smtp"], timeout=30) as s:
        for subject, data in cases.items():
            s.sendmail("someone@sender.test", ["demo@example.test"], data)
    got = {}
    for raw in srv.wait_messages(len(cases)):
        subject = email.message_from_bytes(raw)["Subject"].replace("CHANGED", "changed")
        got[subject] = results_of(raw)
    for subject, (ar, first) in got.items():
        assert first == "Authentication-Results", f"{subject}: ours is not on top"
        assert ar[0].startswith(f"{HOST}; dkim="), (subject, ar)
    want = {
        "rsa good": "dkim=pass header.d=sender.test header.s=rsa header.a=rsa-sha256",
        "ed good": "dkim=pass header.d=sender.test header.s=ed header.a=ed25519-sha256",
        "simple canon": "dkim=pass header.d=sender.test",
        "body changed": 'dkim=fail reason="body hash did not verify"',
        "header changed": 'dkim=fail reason="signature did not verify"',
        "wrong key": 'dkim=fail reason="signature did not verify"',
        "revoked key": 'dkim=fail reason="key revoked"',
        "no key": 'dkim=permerror reason="no key for signature"',
        "dns failure": 'dkim=temperror reason="key lookup failed" header.d=servfail.test',
        "expired": 'dkim=fail reason="signature expired"',
        "length appended": 'dkim=neutral reason="l= leaves part of the body unsigned"',
        "unsigned": "dkim=none",
        "large body": "dkim=pass header.d=sender.test header.s=ed",
        "forged results": "dkim=pass header.d=sender.test",
    }
    for subject, expect in want.items():
        assert expect in got[subject][0][0], (subject, got[subject][0])
    # The forged field claiming our name is gone; someone else's stays, below ours.
    assert got["forged results"][0][1:] == ["elsewhere.test; dkim=pass"]
    # dkimpy agrees with every verdict of pass and fail above (same key records).
    keys = {b"rsa._domainkey.sender.test.": f"v=DKIM1; k=rsa; p={rsa_pub}".encode(),
            b"ed._domainkey.sender.test.": f"v=DKIM1; k=ed25519; p={ed_pub}".encode()}
    for subject in ("rsa good", "ed good", "simple canon", "body changed", "header changed"):
        try:
            ok = dkim.verify(cases[subject], dnsfunc=lambda n, timeout=5: keys.get(n))
        except dkim.ValidationError:
            ok = False
        assert ok == ("good" in subject or "canon" in subject), subject
