"""The admin CLI: domains, users, aliases, groups, queue; passwords never in the clear."""
import os
import time
import subprocess

import pytest

from conftest import BIN, PASSWORD


def run(srv, *args, input=None):
    return subprocess.run([BIN, *args, "--config", str(srv.config)], input=input, capture_output=True, text=True,
                          timeout=60)


def test_domain_user_alias_group_lifecycle(make_server):
    srv = make_server(users=())
    assert run(srv, "domain", "list").stdout.split() == ["example.test"]
    assert run(srv, "domain", "add", "Other.TEST", "--no-anti-spoofing").returncode == 0
    assert "other.test  (no anti-spoofing)" in run(srv, "domain", "list").stdout
    r = run(srv, "domain", "add", "example.test")
    assert r.returncode == 1 and "already exists" in r.stderr

    assert run(srv, "user", "add", "Ann.Smith@Example.Test", "--password-stdin", input=PASSWORD + "\n").returncode == 0
    assert run(srv, "user", "list").stdout.split() == ["Ann.Smith@example.test"]  # local part case preserved
    r = run(srv, "user", "add", "ann.smith@example.test", "--password-stdin", input=PASSWORD + "\n")
    assert r.returncode == 1 and "already a user" in r.stderr  # lookups are case-insensitive
    r = run(srv, "user", "add", "bob@nowhere.test", "--password-stdin", input=PASSWORD + "\n")
    assert r.returncode == 1 and "not a local domain" in r.stderr and "bulwark domain add nowhere.test" in r.stderr
    r = run(srv, "user", "add", "not-an-address", "--password-stdin", input=PASSWORD + "\n")
    assert r.returncode == 2 and "not a valid address" in r.stderr
    r = run(srv, "user", "add", "carl@example.test", "--password-stdin", input="")
    assert r.returncode == 2 and "no password" in r.stderr

    assert run(srv, "alias", "add", "info@example.test", "ann.smith@example.test").returncode == 0
    assert run(srv, "alias", "add", "info@example.test", "someone@remote.test").returncode == 0
    assert run(srv, "alias", "list").stdout.splitlines() == ["info@example.test -> ann.smith@example.test",
                                                             "info@example.test -> someone@remote.test"]
    r = run(srv, "alias", "add", "ann.smith@example.test", "x@remote.test")
    assert r.returncode == 1 and "already a user" in r.stderr

    assert run(srv, "group", "add", "team@example.test", "--member", "ann.smith@example.test", "--member",
               "x@remote.test").returncode == 0
    assert "team@example.test: x@remote.test" in run(srv, "group", "list").stdout
    r = run(srv, "domain", "remove", "example.test")
    assert r.returncode == 1 and "remove them first" in r.stderr

    assert run(srv, "group", "remove", "team@example.test").returncode == 0
    assert run(srv, "alias", "remove", "info@example.test").returncode == 0
    assert run(srv, "user", "remove", "ann.smith@example.test").returncode == 0
    assert run(srv, "domain", "remove", "example.test").returncode == 0
    assert run(srv, "domain", "list").stdout.splitlines() == ["other.test  (no anti-spoofing)"]
    r = run(srv, "user", "remove", "ghost@other.test")
    assert r.returncode == 1 and "does not exist" in r.stderr


def test_password_not_from_argv_and_not_stored_in_clear(make_server):
    srv = make_server(users=())
    secret = "Very-Secret-Passw0rd-XYZ"
    # no terminal and no --password-stdin: refused, and the password is never an argument
    r = run(srv, "user", "add", "ann@example.test", input=secret + "\n")
    assert r.returncode == 2 and "--password-stdin" in r.stderr
    assert run(srv, "user", "add", "ann@example.test", "--password-stdin", input=secret + "\n").returncode == 0
    assert run(srv, "user", "passwd", "ann@example.test", "--password-stdin", input=secret + "2\n").returncode == 0
    for root, _, files in os.walk(srv.root):
        for f in files:
            data = open(os.path.join(root, f), "rb").read()
            assert secret.encode() not in data, f
    # what is stored is an Argon2id hash
    db = (srv.data / "directory.db").read_bytes()
    assert b"$argon2id$" in db


def test_queue_commands(make_server):
    from dns_server import DnsTestServer
    dns = DnsTestServer({})  # names under servfail.test fail: remote delivery defers
    try:
        srv = make_server(users=(), extra_config=f'[dns]\nservers = ["127.0.0.1:{dns.port}"]\n'
                                                 '[delivery]\nretry_interval = "1h"\n')
        srv.cli("alias", "add", "fwd@example.test", "far@servfail.test")
        srv.cli("alias", "add", "postmaster@example.test", "admin@remote.test")
        srv.start()
        import smtplib
        with smtplib.SMTP("127.0.0.1", srv.ports["smtp"]) as s:
            s.sendmail("a@remote.test", ["fwd@example.test"], b"Subject: queued\r\n\r\nx\r\n")
        srv.wait_log("mail.log", "deferred id=")
        # a deferred remote target stays in the queue and is listed with its schedule
        out = run(srv, "queue", "list").stdout
        assert "1 message(s) queued" in out and "remote <far@servfail.test>" in out and "attempts 1" in out
        qid = out.split()[0]
        shown = run(srv, "queue", "show", qid)
        assert shown.returncode == 0 and "Subject: queued" in shown.stdout
        assert run(srv, "queue", "show", "NOPE").returncode == 1
        assert run(srv, "queue", "retry", "NOPE").returncode == 1
        # retry now, although the next attempt is an hour away: a running server takes it
        assert run(srv, "queue", "retry", qid).returncode == 0
        deadline = time.time() + 10
        while "attempts 2" not in run(srv, "queue", "list").stdout:
            assert time.time() < deadline, "queue retry was not picked up"
            time.sleep(0.1)
        assert run(srv, "queue", "delete", qid).returncode == 0
    finally:
        dns.stop()
    assert "0 message(s) queued" in run(srv, "queue", "list").stdout


def test_audit(make_server):
    srv = make_server(users=())
    r = run(srv, "audit")
    # The test configuration is sound but for one thing: example.test has no postmaster.
    assert r.returncode == 1 and "warning: domain example.test has no postmaster@ address" in r.stdout
    assert "bulwark audit: 1 warning(s)" in r.stdout
    srv.cli("user", "add", "demo@example.test", "--password-stdin", input=PASSWORD + "\n")
    srv.cli("alias", "add", "postmaster@example.test", "demo@example.test")
    r = run(srv, "audit")
    assert r.returncode == 0 and "0 warning(s)" in r.stdout
    # DKIM: a domain without a key is noted; a key others can read is a warning.
    assert "notice:  domain example.test has no DKIM key: its mail leaves unsigned" in r.stdout
    srv.cli("dkim", "keygen", "example.test", "--selector", "a1")
    r = run(srv, "audit")
    assert r.returncode == 0 and "DKIM" not in r.stdout
    key = srv.data / "dkim" / "example.test" / "a1.pem"
    os.chmod(key, 0o644)
    r = run(srv, "audit")
    assert r.returncode == 1 and f"warning: DKIM key {key} is readable by other users" in r.stdout
    os.chmod(key, 0o600)
    # The directory holds password hashes: only its owner may read it.
    assert (srv.data / "directory.db").stat().st_mode & 0o077 == 0
    # Logs written by a server are 0640 (issue 8.17); one made readable by all is flagged.
    srv.start()
    srv.stop()
    for name in ("mail.log", "security.log", "bulwark.log"):
        assert (srv.logs / name).stat().st_mode & 0o777 == 0o640, name
    os.chmod(srv.logs / "security.log", 0o644)
    r = run(srv, "audit")
    assert r.returncode == 1 and "warning: the log " + str(srv.logs / "security.log") + " is readable" in r.stdout
    os.chmod(srv.logs / "security.log", 0o640)
    # A dangerous configuration: each problem is named.
    srv.write_config('[ip_groups]\nworld = ["0.0.0.0/0"]\n[relay]\nallow_ip_group = "world"\n'
                     '[policy]\nmode = "none"\nmax_auth_failures = 0\n'
                     '[limits]\nmax_unknown_recipients = 0\n[delivery]\ntls = "off"\n')
    srv.cli("domain", "add", "weak.test", "--no-anti-spoofing")
    r = run(srv, "audit")
    assert r.returncode == 1
    for needle in ('relay.allow_ip_group "world" contains every address: open relay',
                   'policy.mode = "none"', "policy.max_auth_failures = 0", "limits.max_unknown_recipients = 0",
                   'delivery.tls = "off"', "domain weak.test has anti-spoofing off"):
        assert "warning: " + needle in r.stdout, needle
    # A domain without its own postmaster is only noted while the server's postmaster takes its mail.
    assert "notice:  domain weak.test has no postmaster@ of its own" in r.stdout
