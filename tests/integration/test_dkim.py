"""DKIM: `bulwark dkim keygen|list|remove`, and signatures on mail leaving for a real
remote MX (python3-aiosmtpd) checked by verifiers nobody here wrote -- dkimpy's
`dkimverify` and OpenDKIM's `opendkim-testmsg` -- which fetch the key records that
keygen printed from a real DNS server (python3-dnslib) on a loopback port 53."""
import os
import re
import smtplib
import stat
import subprocess

import pytest

from conftest import free_port, wait
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
    assert not key.exists() and "s1" not in srv.cli("dkim", "list").stdout


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
           "Subject: a subject\r\n  folded onto two lines\r\nDate: Tue, 24 Nov 2026 10:00:00 +0000\r\n"
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
