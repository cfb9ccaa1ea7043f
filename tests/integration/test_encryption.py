"""Encryption at rest (SPEC 13), the parts that exist so far: the keyring on disk,
`serve` unlocking it before it writes anything, `encryption status` and `passwd`, the
server reading sealed messages over POP3 and IMAP, and writing new mail sealed (the
queue, local delivery, IMAP APPEND).

The keyring and the sealed messages here are made by PyNaCl (Debian's python3-nacl,
libsodium's Python binding: Argon2id, XChaCha20-Poly1305), python3-cryptography
(AES-256-GCM) and hashlib (BLAKE2b) from the formats written down in docs/encryption.md
-- an implementation independent of bulwark's, so these tests also pin the formats."""
import base64
import hashlib
import imaplib
import os
import poplib
import signal
import smtplib
import ssl
import struct

import nacl.bindings as nb
import nacl.pwhash
import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from conftest import PASSWORD, wait

USER = "demo@example.test"
ENC_PASSWORD = "Encryption-Pass-42"


def make_keyring(password, data_key, ops=1, mem=8 * 1024 * 1024):
    """docs/encryption.md: three lines; the first two are the associated data of the
    wrapping (XChaCha20-Poly1305 under Argon2id(password, salt))."""
    salt = os.urandom(16)
    ad = f"bulwark-keyring 1\nkdf argon2id13 ops={ops} mem={mem} salt={base64.b64encode(salt).decode()}\n".encode()
    kek = nacl.pwhash.argon2id.kdf(32, password.encode(), salt, opslimit=ops, memlimit=mem)
    nonce = os.urandom(24)
    wrapped = nb.crypto_aead_xchacha20poly1305_ietf_encrypt(data_key, ad, nonce, kek)
    return ad + b"key " + base64.b64encode(nonce + wrapped) + b"\n"


def file_key(key, header):
    """A sealed file's own key: keyed BLAKE2b-256 of its 28-byte header."""
    return hashlib.blake2b(header, key=key, digest_size=32).digest()


def chunk_nonce(i, last):
    return b"\0\0\0\0" + struct.pack(">Q", i | (1 << 63 if last else 0))


def seal(key, plain, chunk=65536):
    """A sealed file: magic, chunk size, 16-byte file id; each chunk AES-256-GCM under the
    file's key, nonce = its number (top bit: last), the header as associated data."""
    header = b"BWSEAL2\n" + struct.pack(">I", chunk) + os.urandom(16)
    gcm = AESGCM(file_key(key, header))
    pieces = [plain[i:i + chunk] for i in range(0, len(plain), chunk)] or [b""]
    out = header
    for i, piece in enumerate(pieces):
        out += gcm.encrypt(chunk_nonce(i, i == len(pieces) - 1), piece, header)
    return out


def open_sealed(key, data):
    """The plaintext of a sealed file (the reverse of seal); raises when it fails."""
    assert data[:8] == b"BWSEAL2\n", data[:40]
    header, chunk = data[:28], struct.unpack(">I", data[8:12])[0]
    gcm = AESGCM(file_key(key, header))
    body, out, i = data[28:], b"", 0
    while True:
        piece, body = body[:chunk + 16], body[chunk + 16:]
        out += gcm.decrypt(chunk_nonce(i, not body), piece, header)
        if not body:
            return out
        i += 1


def encrypted_server(make_server, password=ENC_PASSWORD, **kw):
    """A server whose data dir has a keyring; the password in a 0600 file."""
    srv = make_server(**kw)
    key = os.urandom(32)
    (srv.data / "keyring").write_bytes(make_keyring(password, key))
    srv.data_key = key
    pw = srv.root / "encryption.pw"
    pw.write_text(password + "\n")
    pw.chmod(0o600)
    srv.write_config(srv.extra_config + '\n[encryption]\npassword_file = "encryption.pw"\n')
    return srv, key


def log_show(srv, name):
    """A log as `bulwark log show` prints it (the files are sealed)."""
    return srv.cli("log", "show", name).stdout


def wait_log(srv, name, needle):
    return wait(lambda: needle in log_show(srv, name) and log_show(srv, name), what=f"{needle!r} in {name}")


def tls_context(srv):
    ctx = ssl.create_default_context(cafile=srv.cert)
    ctx.check_hostname = False
    return ctx


def pop(srv):
    p = poplib.POP3("127.0.0.1", srv.ports["pop3"], timeout=20)
    p.stls(tls_context(srv))
    p.user(USER)
    p.pass_(PASSWORD)
    return p


def retr(p, i):
    return b"\r\n".join(p.retr(i)[1]) + b"\r\n"


def test_status_is_off_and_passwd_refuses_without_a_keyring(make_server):
    srv = make_server()
    assert srv.cli("encryption", "status").stdout == "off\n"
    r = srv.cli("encryption", "passwd", "--password-stdin", input="a\nb\n", check=False)
    assert r.returncode == 1 and "encryption is off" in r.stderr, r.stderr


def test_serve_unlocks_and_reads_sealed_messages_byte_exact_over_pop3_and_imap(make_server):
    srv, key = encrypted_server(make_server)
    assert srv.cli("encryption", "status").stdout == "on\n"
    srv.start()
    # Two sealed messages put into the Maildir (LF line ends on disk, as Maildir has
    # them), one of them over several chunks, and one plain message arriving by SMTP.
    small = b"From: a@remote.test\nTo: demo@example.test\nSubject: sealed one\n\nsecret body one\n"
    big = (b"From: a@remote.test\nTo: demo@example.test\nSubject: sealed two\n\n" +
           b"".join(b"line %06d of a long sealed message\n" % i for i in range(5000)))
    new = srv.maildir()
    new.mkdir(parents=True, exist_ok=True)
    (new / "1700000000.sealed1.host").write_bytes(seal(key, small))
    (new / "1700000001.sealed2.host").write_bytes(seal(key, big, chunk=4096))
    with smtplib.SMTP("127.0.0.1", srv.ports["smtp"], timeout=20) as s:
        s.sendmail("a@remote.test", [USER], b"Subject: plain three\r\n\r\nplain body\r\n")
    srv.wait_messages(3)
    crlf = [small.replace(b"\n", b"\r\n"), big.replace(b"\n", b"\r\n")]

    p = pop(srv)
    sizes = [int(x.split()[1]) for x in p.list()[1]]
    assert sizes[:2] == [len(crlf[0]), len(crlf[1])]  # LIST: the plaintext's size, not the file's
    assert retr(p, 1) == crlf[0]
    assert retr(p, 2) == crlf[1]
    assert b"plain body" in retr(p, 3)
    top = p.top(2, 2)[1]
    assert top[-2:] == [b"line 000000 of a long sealed message", b"line 000001 of a long sealed message"]
    p.quit()

    m = imaplib.IMAP4("127.0.0.1", srv.ports["imap"], timeout=20)
    m.starttls(tls_context(srv))
    m.login(USER, PASSWORD)
    m.select("INBOX")
    typ, data = m.fetch("1:2", "(RFC822.SIZE BODY.PEEK[])")
    assert typ == "OK"
    bodies = [d[1] for d in data if isinstance(d, tuple)]
    assert bodies == crlf
    assert b"RFC822.SIZE %d" % len(crlf[1]) in data[2][0]
    typ, data = m.fetch("2", "(BODY.PEEK[TEXT]<100.40>)")
    assert data[0][1] == crlf[1][crlf[1].index(b"\r\n\r\n") + 4:][100:140]
    typ, hits = m.search(None, "BODY", "000042")
    assert hits[0].split() == [b"2"]
    m.logout()


def test_a_tampered_sealed_message_is_refused_and_logged_not_sent_as_garbage(make_server):
    srv, key = encrypted_server(make_server)
    srv.start()
    new = srv.maildir()
    new.mkdir(parents=True, exist_ok=True)
    good = b"Subject: intact\n\nintact body\n"
    sealed = bytearray(seal(key, b"Subject: tampered\n\n" + b"x" * 3000 + b"\n"))
    sealed[len(sealed) // 2] ^= 0x01
    (new / "1700000000.a.host").write_bytes(seal(key, good))
    (new / "1700000001.b.host").write_bytes(bytes(sealed))
    p = pop(srv)
    with pytest.raises(poplib.error_proto, match="cannot be read"):
        p.retr(2)
    assert retr(p, 1) == good.replace(b"\n", b"\r\n")  # the session goes on
    p.quit()
    wait_log(srv, "main", "sealed file altered")
    m = imaplib.IMAP4("127.0.0.1", srv.ports["imap"], timeout=20)
    m.starttls(tls_context(srv))
    m.login(USER, PASSWORD)
    m.select("INBOX")
    typ, data = m.fetch("2", "(BODY.PEEK[])")
    assert typ == "NO" and b"SERVERBUG" in data[-1], (typ, data)
    typ, data = m.fetch("1", "(BODY.PEEK[])")
    assert data[0][1] == good.replace(b"\n", b"\r\n")
    m.logout()


def test_a_wrong_or_missing_password_stops_serve_before_it_writes_anything(make_server):
    srv, _ = encrypted_server(make_server, password="the-right-one-77")
    (srv.root / "encryption.pw").write_text("a-wrong-one-77\n")
    before = sorted((str(p), p.stat().st_mtime_ns) for p in srv.root.rglob("*") if p.name != "serve.stderr")
    with pytest.raises(AssertionError, match="exited with 1"):
        srv.start()
    srv.proc = None
    assert "wrong password" in srv.serve_output()
    after = sorted((str(p), p.stat().st_mtime_ns) for p in srv.root.rglob("*") if p.name != "serve.stderr")
    assert after == before  # no log, no queue, no database touched
    # No password file and no terminal: a clear refusal, not a hang.
    srv.write_config(srv.extra_config.replace('password_file = "encryption.pw"', 'password_file = ""'))
    with pytest.raises(AssertionError, match="exited with 1"):
        srv.start()
    srv.proc = None
    assert "set encryption.password_file" in srv.serve_output()


def test_password_file_readable_by_others_is_refused_with_key_and_line(make_server):
    srv, _ = encrypted_server(make_server)
    (srv.root / "encryption.pw").chmod(0o644)
    r = srv.cli("check-config", check=False)
    assert r.returncode == 2
    assert "encryption.password_file" in r.stderr and "readable by others" in r.stderr
    line = srv.config.read_text().splitlines().index('password_file = "encryption.pw"') + 1
    assert f"bulwark.toml:{line}:" in r.stderr, r.stderr


def test_passwd_rewraps_the_same_key_old_password_then_fails(make_server):
    srv, key = encrypted_server(make_server)
    new = srv.maildir()
    new.mkdir(parents=True, exist_ok=True)
    (new / "1700000000.s.host").write_bytes(seal(key, b"Subject: kept\n\nstill readable\n"))
    ring = (srv.data / "keyring").read_bytes()
    r = srv.cli("encryption", "passwd", "--password-stdin", input="not-the-password-1\nNew-Password-2024\n", check=False)
    assert r.returncode == 1 and "wrong password" in r.stderr and "nothing changed" in r.stderr
    assert (srv.data / "keyring").read_bytes() == ring
    r = srv.cli("encryption", "passwd", "--password-stdin", input=f"{ENC_PASSWORD}\nshort\n", check=False)
    assert r.returncode == 2 and "new password refused" in r.stderr
    srv.cli("encryption", "passwd", "--password-stdin", input=f"{ENC_PASSWORD}\nNew-Password-2024\n")
    assert (srv.data / "keyring").stat().st_mode & 0o777 == 0o600
    assert ENC_PASSWORD.encode() not in (srv.data / "keyring").read_bytes()
    with pytest.raises(AssertionError, match="exited with 1"):
        srv.start()  # the file still holds the old password
    assert "wrong password" in srv.serve_output()
    (srv.root / "encryption.pw").write_text("New-Password-2024\n")
    srv.start()
    p = pop(srv)
    assert retr(p, 1) == b"Subject: kept\r\n\r\nstill readable\r\n"  # same data key: nothing rewritten
    p.quit()


def test_new_mail_is_written_sealed_queue_mailbox_and_append(make_server):
    # A group with a remote member whose domain cannot be resolved: that copy waits in
    # the queue, so the queue file can be looked at.
    srv, key = encrypted_server(make_server, extra_config='[dns]\nservers = ["127.0.0.1:9"]\ntimeout = "1s"\n'
                                                          '[delivery]\nretry_interval = "1h"\n')
    srv.cli("group", "add", "team@example.test", "--member", "demo@example.test", "--member", "x@far-away.test")
    srv.start()
    small = b"Subject: small\r\n\r\nMARKER-small-7f3a body\r\n"
    large = b"Subject: large\r\n\r\n" + b"".join(b"MARKER-large-7f3a line %06d\r\n" % i for i in range(20000))
    with smtplib.SMTP("127.0.0.1", srv.ports["smtp"], timeout=30) as s:
        s.sendmail("a@remote.test", [USER], small)
        s.sendmail("a@remote.test", ["team@example.test"], large)  # > 256 KiB: streamed to disk
    wait_log(srv, "mail", "deferred id=")
    m = imaplib.IMAP4("127.0.0.1", srv.ports["imap"], timeout=20)
    m.starttls(tls_context(srv))
    m.login(USER, PASSWORD)
    appended = b"Subject: appended\r\n\r\nMARKER-append-7f3a\r\n"
    assert m.append("INBOX", None, None, appended)[0] == "OK"
    m.logout()

    files = [p for p in (srv.data / "mail").rglob("*") if p.is_file() and p.parent.name in ("new", "cur")]
    assert len(files) == 3, files
    plain = sorted(open_sealed(key, p.read_bytes()) for p in files)  # each one sealed, and opens
    assert any(x.endswith(small.replace(b"\r\n", b"\n")) for x in plain)
    assert any(x.endswith(large.replace(b"\r\n", b"\n")) for x in plain)
    assert appended.replace(b"\r\n", b"\n") in plain
    [queued] = [p for p in (srv.data / "queue").iterdir() if "." not in p.name]
    spool = open_sealed(key, queued.read_bytes())
    assert spool.startswith(b"bulwark-spool 1\n") and spool.endswith(large)
    # The delivery state of the queued copy and the mailbox's UID index: sealed records.
    done = queued.with_name(queued.name + ".done").read_bytes()
    index = (srv.mailbox() / "bulwark-uidlist").read_bytes()
    assert done.startswith(b"BWRECS1\n") and index.startswith(b"BWRECS1\n")
    # Nothing of the messages or the addresses in the clear anywhere under the data dir
    # and the logs: the directory too is a sealed snapshot (directory.db is gone).
    assert not (srv.data / "directory.db").exists()
    assert open_sealed(key, (srv.data / "directory.sealed").read_bytes()).startswith(b"SQLite format 3\0")
    for p in list(srv.data.rglob("*")) + list(srv.logs.rglob("*")):
        if p.is_file():
            data = p.read_bytes()
            for needle in (b"MARKER-", b"far-away", b"a@remote.test", b"demo@example", b"example.test"):
                assert needle not in data, (p, needle)
    # The logs are sealed records, readable through `log show`; nothing of them on stderr.
    for name in ("mail.log", "security.log", "bulwark.log"):
        assert (srv.logs / name).read_bytes()[:8] in (b"BWRECS1\n", b""), name
    assert "to=<x@far-away.test>" in log_show(srv, "mail") and "deferred id=" in log_show(srv, "mail")
    assert "bulwark started" in log_show(srv, "main")
    assert "far-away" not in srv.serve_output() and "the logs are encrypted" in srv.serve_output()

    # Read back byte-exact, also after a restart (the same key).
    srv.stop()
    srv.start()
    p = pop(srv)
    got = [retr(p, i) for i in (1, 2, 3)]
    p.quit()
    assert got[0].endswith(small) and got[1].endswith(large) and got[2] == appended
    # The CLI unlocks too (from the password file): the queued copy is listed.
    out = srv.cli("queue", "list").stdout
    assert "x@far-away.test" in out and "1 message(s) queued" in out


def test_log_show_follow_prints_new_lines_as_they_come(make_server):
    srv, _ = encrypted_server(make_server)
    srv.start()
    import subprocess, time
    from conftest import BIN
    f = subprocess.Popen([BIN, "--config", str(srv.config), "log", "show", "mail", "--follow"],
                         stdout=subprocess.PIPE, text=True)
    try:
        with smtplib.SMTP("127.0.0.1", srv.ports["smtp"], timeout=20) as s:
            s.sendmail("a@remote.test", [USER], b"Subject: followed\r\n\r\nx\r\n")
        deadline = time.time() + 20
        seen = ""
        while "relay=local" not in seen and time.time() < deadline:
            seen += f.stdout.readline()
        assert "relay=local" in seen, seen
    finally:
        f.kill()
        f.wait()


def test_rotated_sealed_logs_stay_sealed_and_log_show_reads_them_by_path(make_server):
    srv, key = encrypted_server(make_server)
    srv.start()
    with smtplib.SMTP("127.0.0.1", srv.ports["smtp"], timeout=20) as s:
        s.sendmail("a@remote.test", [USER], b"Subject: before the rotation\r\n\r\nx\r\n")
    wait_log(srv, "mail", "relay=local")
    os.rename(srv.logs / "mail.log", srv.logs / "mail.log.1")
    srv.proc.send_signal(signal.SIGHUP)
    wait_log(srv, "main", "reload: configuration")
    with smtplib.SMTP("127.0.0.1", srv.ports["smtp"], timeout=20) as s:
        s.sendmail("b@remote.test", [USER], b"Subject: after the rotation\r\n\r\nx\r\n")
    new = wait_log(srv, "mail", "relay=local")
    assert "from=<b@remote.test>" in new and "from=<a@remote.test>" not in new
    old = log_show(srv, str(srv.logs / "mail.log.1"))
    assert "from=<a@remote.test>" in old and "from=<b@remote.test>" not in old
    for f in ("mail.log", "mail.log.1"):  # both sealed: no address in the clear
        data = (srv.logs / f).read_bytes()
        assert data.startswith(b"BWRECS1") and b"remote.test" not in data, f
    r = srv.cli("log", "show", "mail.log.1", check=False)
    assert r.returncode == 2 and "mail, security, main or a path" in r.stderr


def test_dkim_keys_subscriptions_and_keywords_are_sealed(make_server):
    srv, key = encrypted_server(make_server)
    record = srv.cli("dkim", "keygen", "example.test", "--selector", "s1").stdout
    [pem] = list((srv.data / "dkim").rglob("*.pem"))
    assert b"PRIVATE KEY" in open_sealed(key, pem.read_bytes())
    assert srv.cli("dkim", "list").stdout.count("v=DKIM1") == 1  # read back through the seal
    assert record.split("p=")[1][:40] in srv.cli("dkim", "list").stdout
    srv.start()
    m = imaplib.IMAP4("127.0.0.1", srv.ports["imap"], timeout=20)
    m.starttls(tls_context(srv))
    m.login(USER, PASSWORD)
    assert m.create("Projects")[0] == "OK" and m.subscribe("Projects")[0] == "OK"
    m.select("INBOX")
    m.append("INBOX", None, None, b"Subject: k\r\n\r\nk\r\n")
    assert m.store("1", "+FLAGS", "(Customerkeyword)")[0] == "OK"
    m.logout()
    box = srv.mailbox()
    assert b"Projects" in open_sealed(key, (box / "subscriptions").read_bytes())
    assert b"Customerkeyword" in open_sealed(key, (box / "dovecot-keywords").read_bytes())
    m = imaplib.IMAP4("127.0.0.1", srv.ports["imap"], timeout=20)
    m.starttls(tls_context(srv))
    m.login(USER, PASSWORD)
    assert b"Projects" in b"".join(m.lsub()[1])
    m.select("INBOX")
    assert b"Customerkeyword" in m.fetch("1", "FLAGS")[1][0]
    m.logout()


def test_kill_9_under_load_loses_no_acknowledged_sealed_message(make_server):
    """test_crash.py's proof, with every file sealed: a 250 still means on disk."""
    import re
    import threading
    import time
    import test_crash
    srv, key = encrypted_server(make_server)
    srv.start()

    def delivered():
        out = []
        for d in ("new", "cur"):
            p = srv.mailbox() / d
            for f in (p.iterdir() if p.exists() else []):
                found = re.search(rb"Subject: (crash-[0-9-]+)", open_sealed(key, f.read_bytes()))
                if found:
                    out.append(found.group(1).decode())
        return out

    acked = []
    for round_no in range(2):
        stop = threading.Event()
        threads = test_crash.load(srv, round_no, acked, stop)
        time.sleep(test_crash.LOAD_SECONDS)
        sending = sum(t.is_alive() for t in threads)
        srv.kill9()
        assert sending == test_crash.SENDERS, "senders finished before the kill"
        stop.set()
        for t in threads:
            t.join(timeout=30)
        srv.start()
    assert acked
    wait(lambda: set(acked) <= set(delivered()), timeout=60, what="every acknowledged message delivered")
    for q in (srv.data / "queue").iterdir():  # whatever is still queued is sealed too
        assert q.read_bytes()[:8] in (b"BWSEAL2\n", b"BWRECS1\n"), q


def mailbox_over_pop3_and_imap(srv):
    """Every message as POP3 RETR and IMAP FETCH BODY.PEEK[] give it, sorted."""
    p = pop(srv)
    popped = sorted(retr(p, i) for i in range(1, len(p.list()[1]) + 1))
    p.quit()
    m = imaplib.IMAP4("127.0.0.1", srv.ports["imap"], timeout=30)
    m.starttls(tls_context(srv))
    m.login(USER, PASSWORD)
    m.select("INBOX", readonly=True)
    typ, data = m.fetch("1:*", "(BODY.PEEK[])")
    assert typ == "OK"
    fetched = sorted(d[1] for d in data if isinstance(d, tuple))
    m.logout()
    return popped, fetched


def convert_killed(srv, command, password, kills, what):
    """Runs `encryption enable|disable` and kill -9s it up to `kills` times, each time a
    little later after it started converting (twice as late while a kill found no new
    file done: the walk comes first, and a sanitized build is slower); returns the
    "n of m" that `encryption status` saw after each kill."""
    import re
    import subprocess
    import time
    seen, delay, best = [], 0.002, -1
    for k in range(kills):
        err = srv.root / f"{command}.{k}.stderr"
        with open(err, "wb") as e:
            proc = subprocess.Popen([srv_bin(), "--config", str(srv.config), "encryption", command, "--password-stdin"],
                                    stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=e)
            proc.stdin.write(password.encode() + b"\n")
            proc.stdin.close()
            deadline = time.time() + 30  # the password's Argon2id first, then the conversion
            while b"converting the data" not in err.read_bytes() and proc.poll() is None:
                assert time.time() < deadline, what
                time.sleep(0.001)
            time.sleep(delay)
            proc.kill()
            proc.wait()
        status = srv.cli("encryption", "status").stdout.strip()
        if proc.returncode == 0:  # finished before the kill
            break
        found = re.match(r"converting \((\d+) of (\d+) done\)", status)
        assert found, (k, status, err.read_text())
        n = int(found.group(1))
        seen.append((n, int(found.group(2))))
        delay *= 1.3 if n > best else 2
        best = max(best, n)
    return seen


def srv_bin():
    from conftest import BIN
    return BIN


def test_enable_and_disable_killed_at_many_points_resume_and_lose_nothing(make_server):
    # Mail present before encryption: 400 small messages and 12 of 300 KB, a queued
    # copy for an unresolvable domain, a DKIM key, an IMAP subscription.
    srv = make_server(extra_config='[dns]\nservers = ["127.0.0.1:9"]\ntimeout = "1s"\n'
                                   '[delivery]\nretry_interval = "1h"\n')
    srv.cli("group", "add", "team@example.test", "--member", "demo@example.test", "--member", "x@far-away.test")
    srv.cli("dkim", "keygen", "example.test", "--selector", "s1")
    srv.start()
    with smtplib.SMTP("127.0.0.1", srv.ports["smtp"], timeout=30) as s:
        for i in range(400):
            s.sendmail("a@remote.test", [USER], b"Subject: small %d\r\n\r\nMARKER-conv-7f3a body %d\r\n" % (i, i))
        for i in range(12):
            s.sendmail("a@remote.test", ["team@example.test"] if i == 0 else [USER],
                       b"Subject: large %d\r\n\r\n" % i + b"MARKER-conv-7f3a large line\r\n" * 10000)
    srv.wait_messages(412)
    srv.wait_log("mail.log", "deferred id=")
    m = imaplib.IMAP4("127.0.0.1", srv.ports["imap"], timeout=20)
    m.starttls(tls_context(srv))
    m.login(USER, PASSWORD)
    assert m.create("Projects-7f3a")[0] == "OK" and m.subscribe("Projects-7f3a")[0] == "OK"
    m.logout()
    before = mailbox_over_pop3_and_imap(srv)
    assert len(before[0]) == 412 and before[0] == before[1]

    # The conversion runs with the server stopped: enable refuses beside a running serve.
    r = srv.cli("encryption", "enable", "--password-stdin", input=ENC_PASSWORD + "\n", check=False)
    assert r.returncode == 1 and "serve is running" in r.stderr, r.stderr
    assert srv.cli("encryption", "status").stdout == "off\n"
    srv.stop()

    seen = convert_killed(srv, "enable", ENC_PASSWORD, 10, "enable to start converting")
    assert sum(1 < n < m for n, m in seen) >= 2, seen  # kills landed mid-way, and a rerun went on
    print("enable: n of m at each kill", seen)
    # Other commands refuse while it is unfinished; a wrong password on the rerun changes nothing.
    if srv.cli("encryption", "status").stdout.startswith("converting"):
        r = srv.cli("user", "list", check=False)
        assert r.returncode == 1 and "did not finish" in r.stderr, r.stderr
        status = srv.cli("encryption", "status").stdout
        r = srv.cli("encryption", "enable", "--password-stdin", input="Not-The-Password-1\n", check=False)
        assert r.returncode == 1 and "wrong password" in r.stderr, r.stderr
        assert srv.cli("encryption", "status").stdout == status
    if srv.cli("encryption", "status").stdout.startswith("converting"):
        r = srv.cli("encryption", "enable", "--password-stdin", input=ENC_PASSWORD + "\n")
        assert r.stdout.endswith("encryption on\n") and "MB/s" in r.stdout, r.stdout
    assert srv.cli("encryption", "status").stdout == "on\n"

    # Nothing readable left: messages, addresses, domain, the directory's hashes -- and
    # no file or directory name tells a domain or a user (mailboxes under keyed hashes).
    assert not (srv.data / "directory.db").exists() and (srv.data / "directory.sealed").exists()
    names = [str(p.relative_to(srv.data / "mail")) for p in (srv.data / "mail").rglob("*") if p.is_dir()]
    assert not [n for n in names if "example.test" in n or "demo" in n or "far-away" in n], names[:20]
    boxes = sorted(p.name for p in (srv.data / "mail").iterdir())
    assert boxes and all(b.startswith("=") and len(b) == 33 for b in boxes), boxes
    for p in list(srv.data.rglob("*")) + list(srv.logs.rglob("*")):
        if p.is_file() and p.name not in ("cert.pem", "key.pem"):
            data = p.read_bytes()
            for needle in (b"MARKER-conv", b"far-away", b"a@remote.test", b"demo@example", b"example.test",
                           b"argon2id$", b"BEGIN PRIVATE KEY", b"Projects-7f3a"):
                assert needle not in data, (p, needle)

    pw = srv.root / "encryption.pw"
    pw.write_text(ENC_PASSWORD + "\n")
    pw.chmod(0o600)
    srv.write_config(srv.extra_config + '\n[encryption]\npassword_file = "encryption.pw"\n')
    srv.start()
    assert mailbox_over_pop3_and_imap(srv) == before
    assert "x@far-away.test" in srv.cli("queue", "list").stdout  # the queued copy survived
    assert "s1" in srv.cli("dkim", "list").stdout
    srv.stop()

    # Back: killed at many points, then one interruption left for `serve` to finish.
    seen = convert_killed(srv, "disable", ENC_PASSWORD, 6, "disable to start converting")
    print("disable: n of m at each kill", seen)
    if srv.cli("encryption", "status").stdout.startswith("converting"):
        srv.start()
        assert "finishing an interrupted `encryption disable`" in srv.serve_output()
    else:
        srv.start()
    assert srv.cli("encryption", "status").stdout == "off\n"
    assert not (srv.data / "keyring").exists() and (srv.data / "directory.db").exists()
    assert sorted(p.name for p in (srv.data / "mail").iterdir()) == ["example.test"]  # the names are back
    assert not list((srv.data / "mail").rglob("bulwark-owner"))
    assert mailbox_over_pop3_and_imap(srv) == before
    new_files = [p for p in (srv.data / "mail").rglob("*") if p.is_file() and p.parent.name in ("new", "cur")]
    assert len(new_files) == 412 and all(p.read_bytes()[:8] != b"BWSEAL2\n" for p in new_files)
    assert "to=<x@far-away.test>" in srv.log("mail.log")  # the log is plain text again
