"""Cluster mode (SPEC 16): three nodes on 127.0.0.2, .3 and .4 sharing a real
PostgreSQL 15 and a real Redis 7 (engines.py), talked to with smtplib, imaplib and
poplib as a user's clients would."""
import imaplib
import os
import pathlib
import poplib
import shutil
import smtplib
import ssl
import subprocess
import tempfile
import time

import pytest

from conftest import BIN, PASSWORD, Bulwark, free_ports, node_ports, wait
from engines import PG_PASSWORD, REDIS_PASSWORD, Postgres, Redis
from remote_mx import RemoteMx

NODE_ADDRESSES = ("127.0.0.2", "127.0.0.3", "127.0.0.4")


@pytest.fixture(scope="module")
def engines():
    pg_port, redis_port = free_ports(2)
    pg = Postgres(pg_port)
    try:
        redis = Redis(redis_port)
    except BaseException:
        pg.close()
        raise
    yield pg, redis
    redis.close()
    pg.close()


class Cluster:
    """Nodes sharing one database of their own (a test's)."""

    serial = 0

    def __init__(self, pg, redis, extra=""):
        Cluster.serial += 1
        self.extra = extra
        self.pg, self.redis = pg, redis
        self.db = f"bulwark_t{os.getpid()}_{Cluster.serial}"
        self.conninfo = pg.new_database(self.db)
        self.nodes = []

    def node_config(self, name, root):
        (root / "pg.pw").write_text(PG_PASSWORD + "\n")
        (root / "redis.pw").write_text(REDIS_PASSWORD + "\n")
        os.chmod(root / "pg.pw", 0o600)
        os.chmod(root / "redis.pw", 0o600)
        return f"""
[cluster]
node = "{name}"
postgres = "{self.conninfo}"
postgres_password_file = "pg.pw"
redis = "{self.redis.url}"
redis_password_file = "redis.pw"
lease = "10s"
""" + self.extra

    def add_node(self, start=True, extra="", **kw):
        i = len(self.nodes)
        root = pathlib.Path(tempfile.mkdtemp(prefix=f"bulwark-node{i + 1}-"))
        first = i == 0
        node = Bulwark(root, extra_config=self.node_config(f"n{i + 1}", root) + extra, address=NODE_ADDRESSES[i],
                       users=("demo@example.test",) if first else (), domain=first,
                       prepare=(lambda b: b.cli("cluster", "init")) if first else None, **kw)
        self.nodes.append(node)
        if start:
            node.start()
        return node

    def close(self):
        for n in self.nodes:
            n.stop()
            if not os.environ.get("BULWARK_KEEP"):
                shutil.rmtree(n.root, ignore_errors=True)


@pytest.fixture
def cluster(engines):
    c = Cluster(*engines)
    try:
        yield c
    finally:
        c.close()


@pytest.fixture
def three(cluster):
    for _ in range(3):
        cluster.add_node()
    return cluster


def tls(node):
    ctx = ssl.create_default_context(cafile=node.cert)
    ctx.check_hostname = False
    return ctx


def imap_login(node, user, password=PASSWORD):
    ctx = tls(node)
    m = imaplib.IMAP4(node.address, node.ports["imap"], timeout=10)
    m.starttls(ssl_context=ctx)
    try:
        return m, m.login(user, password)
    except imaplib.IMAP4.error as e:
        return m, ("NO", [str(e).encode()])


def pop_login(node, user, password=PASSWORD):
    ctx = tls(node)
    p = poplib.POP3(node.address, node.ports["pop3"], timeout=10)
    p.stls(context=ctx)
    p.user(user)
    try:
        return p, p.pass_(password)
    except poplib.error_proto as e:
        return p, e.args[0]


def smtp_auth(node, user, password=PASSWORD):
    ctx = tls(node)
    s = smtplib.SMTP(node.address, node.ports["submission"], timeout=10)
    s.starttls(context=ctx)
    try:
        return s, s.login(user, password)
    except smtplib.SMTPAuthenticationError as e:
        return s, (e.smtp_code, e.smtp_error)
    except smtplib.SMTPException as e:
        return s, (getattr(e, "smtp_code", 0), str(e).encode())


def rcpt(node, address):
    s = smtplib.SMTP(node.address, node.ports["smtp"], timeout=10)
    s.ehlo("client.remote.test")
    s.mail("someone@remote.test")
    code, text = s.rcpt(address)
    s.quit()
    return code, text


def test_user_added_on_one_node_logs_in_at_once_on_another(three):
    n1, n2, n3 = three.nodes
    n1.cli("user", "add", "alice@example.test", "--password-stdin", input=PASSWORD + "\n")
    # At once: no wait between the command and the logins on node 3.
    s, (code, _) = smtp_auth(n3, "alice@example.test")
    assert code == 235
    s.quit()
    m, (typ, _) = imap_login(n3, "alice@example.test")
    assert typ == "OK"
    m.logout()
    p, reply = pop_login(n3, "alice@example.test")
    assert reply.startswith(b"+OK"), reply
    p.quit()
    # Mail for her is taken on every node; an unknown address is refused everywhere.
    for n in three.nodes:
        assert rcpt(n, "alice@example.test")[0] == 250
        assert rcpt(n, "nobody@example.test")[0] == 550
    # A password changed on node 2 and a user removed there count everywhere at once.
    n2.cli("user", "passwd", "alice@example.test", "--password-stdin", input="Another-Horse-8-Battery\n")
    m, (typ, _) = imap_login(n1, "alice@example.test")
    assert typ == "NO"
    m.logout()
    m, (typ, _) = imap_login(n1, "alice@example.test", "Another-Horse-8-Battery")
    assert typ == "OK"
    m.logout()
    n2.cli("user", "remove", "alice@example.test")
    # A login checks the replica's version first: refused at once, no wait.
    s, (code, _) = smtp_auth(n1, "alice@example.test", "Another-Horse-8-Battery")
    s.close()
    assert code == 535
    p, reply = pop_login(n1, "alice@example.test", "Another-Horse-8-Battery")
    assert reply.startswith(b"-ERR"), reply
    p.close()
    # A recipient lookup answers from the replica, which hears of it by NOTIFY (milliseconds).
    wait(lambda: rcpt(n3, "alice@example.test")[0] == 550, timeout=5, what="the removal on node 3")
    # Every directory command works on any node and sees the same thing.
    n3.cli("alias", "add", "info@example.test", "demo@example.test")
    assert "info@example.test -> demo@example.test" in n1.cli("alias", "list").stdout
    assert n2.cli("user", "list").stdout.split() == ["demo@example.test"]
    r = n2.cli("alias", "add", "info@example.test", "demo@example.test", check=False)
    assert r.returncode == 0  # the same alias again: no change, no error (as on one machine)
    r = n2.cli("user", "add", "info@example.test", "--password-stdin", input=PASSWORD + "\n", check=False)
    assert r.returncode != 0 and "already an alias" in r.stderr


def test_concurrent_directory_changes_from_every_node_all_land(three):
    # Each node's CLI adds its own users at the same time: the version row serialises
    # them, each catches its replica up first, nothing is lost or duplicated.
    procs = []
    for i, n in enumerate(three.nodes):
        for j in range(4):
            procs.append(subprocess.Popen(
                [BIN, "--config", str(n.config), "user", "add", f"u{i}{j}@example.test", "--password-stdin"],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    for p in procs:
        out, err = p.communicate(PASSWORD + "\n", timeout=60)
        assert p.returncode == 0, err
    want = sorted(["demo@example.test"] + [f"u{i}{j}@example.test" for i in range(3) for j in range(4)])
    for n in three.nodes:
        assert sorted(n.cli("user", "list").stdout.split()) == want
    for i in range(3):
        for j in range(4):
            wait(lambda: rcpt(three.nodes[(i + 1) % 3], f"u{i}{j}@example.test")[0] == 250, timeout=5,
                 what="the user on another node")


def test_schema_init_status_and_a_node_of_another_version(cluster, engines):
    pg, _ = engines
    n1 = cluster.add_node()
    n2 = cluster.add_node()
    r = n1.cli("cluster", "init")
    assert "schema is current (version " in r.stdout
    version = int(r.stdout.split("(version ")[1].split(")")[0])
    status = n2.cli("cluster", "status").stdout
    lines = [l.split("\t") for l in status.splitlines()[2:]]
    assert [(l[0], l[1]) for l in lines] == [("n1", "up"), ("n2", "up")], status
    assert lines[0][3].endswith("/127.0.0.2") and lines[1][3].endswith("/127.0.0.3")
    # A name already beating elsewhere is refused.
    root = pathlib.Path(tempfile.mkdtemp(prefix="bulwark-dup-"))
    try:
        dup = Bulwark(root, extra_config=cluster.node_config("n1", root), address="127.0.0.5", users=(), domain=False)
        with pytest.raises(AssertionError, match='cluster.node "n1" is in use by a live node'):
            dup.start()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    # The database upgraded by a newer bulwark: this one refuses to start, naming both.
    n2.stop()
    pg.psql("UPDATE bulwark_schema SET version = 99", db=cluster.db)
    with pytest.raises(AssertionError, match=r"schema is version 99, this bulwark's is \d+"):
        n2.start()
    r = n1.cli("user", "list", check=False)
    assert r.returncode != 0 and "version 99" in r.stderr
    r = n1.cli("audit", check=False)  # the audit says so as a finding, and goes on
    assert r.returncode == 1, r.stderr
    assert f"warning: the cluster's schema is version 99, this bulwark's is {version}: this node refuses to start" in r.stdout
    assert "bulwark audit:" in r.stdout
    pg.psql(f"UPDATE bulwark_schema SET version = {version}", db=cluster.db)
    r = n1.cli("audit", check=False)
    assert "schema is version" not in r.stdout, r.stdout


def test_config_refuses_passwords_in_the_file_and_open_password_files(tmp_path):
    (tmp_path / "pw").write_text("x\n")
    os.chmod(tmp_path / "pw", 0o644)
    cases = [
        ('postgres = "host=db password=hunter2"', "cluster.postgres", "must not hold a password"),
        ('postgres = "host=db"\npostgres_password_file = "pw"', "cluster.postgres_password_file", "readable by others"),
        ('postgres = "host=db"\nredis = "redis://:hunter2@r:6379/0"', "cluster.redis", "must not hold a password"),
        ('postgres = "host=db"\nredis = "http://r"', "cluster.redis", "must be a URL"),
        ('postgres = "host=db"\nnode = "Mx 1"', "cluster.node", "must be 1-64"),
        ('postgres = "host=db"\nlease = "1s"', "cluster.lease", "at least 10s"),
    ]
    for body, key, why in cases:
        if "node =" not in body:
            body += '\nnode = "mx1"'
        cfg = tmp_path / "b.toml"
        cfg.write_text(f'[server]\nhostname = "mail.example.test"\ndata_dir = "d"\n[cluster]\n{body}\n')
        r = subprocess.run([BIN, "--config", str(cfg), "check-config"], capture_output=True, text=True)
        assert r.returncode == 2, (body, r.stdout, r.stderr)
        assert key in r.stderr and why in r.stderr, (body, r.stderr)
        assert "hunter2" not in r.stderr


def test_postgres_down_means_try_later_and_recovery_without_restart(three, engines):
    pg, _ = engines
    n1, n2, n3 = three.nodes
    # A transaction whose recipients were taken before PostgreSQL went: 451 at the end
    # of data, never 250 for what is not committed.
    s = smtplib.SMTP(n1.address, n1.ports["smtp"], timeout=30)
    s.ehlo("client.remote.test")
    s.mail("a@remote.test")
    assert s.rcpt("demo@example.test")[0] == 250
    pg.stop()
    try:
        code, text = s.data(b"Subject: lost?\r\n\r\nnot acknowledged\r\n")
        assert code == 451 and text.startswith(b"4.3.0"), (code, text)
        s.close()
        # Within a few seconds every node knows (its follower's connection ended).
        def down():
            return rcpt(n2, "demo@example.test")[0] == 451
        wait(down, timeout=15, what="451 at RCPT with PostgreSQL down")
        code, text = rcpt(n2, "demo@example.test")
        assert code == 451 and text.startswith(b"4.3.0"), (code, text)
        s, (code, text) = smtp_auth(n3, "demo@example.test")
        assert code == 454 and b"4.7.0" in text, (code, text)
        s.close()
        m, (typ, data) = imap_login(n1, "demo@example.test")
        assert typ == "NO" and b"[UNAVAILABLE]" in data[0], data
        m.logout()
        p, reply = pop_login(n3, "demo@example.test")
        assert b"[SYS/TEMP]" in reply, reply
        p.quit()
        # Not a failed login: nobody gets blocked by an outage.
        for _ in range(8):
            s, (code, _) = smtp_auth(n3, "demo@example.test")
            assert code == 454
            s.close()
        # One log line per 10 s, not one per session.
        assert n2.log("bulwark.log").count("PostgreSQL unreachable") <= 2
        r = n1.cli("user", "add", "late@example.test", "--password-stdin", input=PASSWORD + "\n", check=False)
        assert r.returncode != 0 and "PostgreSQL" in r.stderr and PG_PASSWORD not in r.stderr
    finally:
        pg.start()
    # Back by itself: no node restarted.
    wait(lambda: rcpt(n2, "demo@example.test")[0] == 250, timeout=20, what="recovery on node 2")
    wait(lambda: smtp_auth(n3, "demo@example.test")[1][0] == 235, timeout=20, what="logins on node 3 again")
    n1.wait_log("bulwark.log", "PostgreSQL reachable again")
    for n in three.nodes:
        assert n.proc.poll() is None
    m = imap(n2)
    m.select("INBOX")
    assert m.search(None, "SUBJECT", "lost?")[1][0] == b""  # refused, so not delivered either
    m.logout()


# Small limits, so that a few events from one address reach them; each check below
# comes from an address of its own.
LIMITS = """
[limits]
max_connections_per_ip = 2
max_unknown_recipients = 3
max_messages_per_hour = 3
[policy]
max_auth_failures = 3
auth_failure_delay = "0s"
[relay]
allow_ip_group = ""
pop_before_smtp = "10m"
"""


@pytest.fixture
def limited(engines):
    c = Cluster(*engines, extra=LIMITS)
    try:
        for _ in range(3):
            c.add_node()
        for n in c.nodes:
            n.wait_log("bulwark.log", "cluster: Redis reachable")
        yield c
    finally:
        c.close()


def smtp_from(node, src, service="smtp"):
    s = smtplib.SMTP(node.address, node.ports[service], timeout=10, source_address=(src, 0))
    s.ehlo("client.remote.test")
    if service == "submission":
        s.starttls(context=tls(node))
        s.ehlo("client.remote.test")
    return s


def auth_code(node, src, password):
    try:
        s = smtp_from(node, src, "submission")
    except smtplib.SMTPConnectError as e:
        return e.smtp_code
    try:
        s.user, s.password = "demo@example.test", password
        return s.auth("PLAIN", s.auth_plain)[0]  # one mechanism: one attempt (login() tries several)
    except smtplib.SMTPException as e:
        return getattr(e, "smtp_code", 0)
    finally:
        s.close()


def greeting(node, src):
    """The first reply of a new SMTP connection from `src` (220, or 421 when refused)."""
    try:
        s = smtplib.SMTP(node.address, node.ports["smtp"], timeout=10, source_address=(src, 0))
    except smtplib.SMTPConnectError as e:
        return e.smtp_code
    s.close()
    return 220


def test_limits_and_blocks_count_across_nodes(limited):
    n1, n2, n3 = limited.nodes
    # Failed logins: two on node 1 and one on node 2 -- none of them reached 3 alone.
    assert auth_code(n1, "127.0.0.21", "Wrong-Guess-1") == 535
    assert auth_code(n1, "127.0.0.21", "Wrong-Guess-2") == 535
    assert auth_code(n2, "127.0.0.21", "Wrong-Guess-3") == 535
    wait(lambda: auth_code(n3, "127.0.0.21", PASSWORD) == 454, timeout=5, what="the login block on node 3")
    assert auth_code(n1, "127.0.0.21", PASSWORD) == 454
    assert auth_code(n3, "127.0.0.31", PASSWORD) == 235  # another address is not affected
    # Directory harvest: one unknown recipient through each node.
    for n in (n1, n2, n3):
        s = smtp_from(n, "127.0.0.22")
        s.mail("a@remote.test")
        assert s.rcpt("nobody-" + n.address + "@example.test")[0] in (550, 421)
        s.close()
    wait(lambda: greeting(n1, "127.0.0.22") == 421, timeout=5, what="the harvest block on node 1")
    assert greeting(n2, "127.0.0.32") == 220
    # Messages per hour: two through node 1, one through node 2; the fourth is refused on node 3.
    for n in (n1, n1, n2):
        s = smtp_from(n, "127.0.0.23")
        s.sendmail("a@remote.test", ["demo@example.test"], b"Subject: rate\r\n\r\nx\r\n")
        s.quit()

    def fourth_refused():
        try:
            s = smtp_from(n3, "127.0.0.23")
        except smtplib.SMTPConnectError:
            return False  # the limit of 2 connections, until the last ones' ends reach every node
        try:
            code, _ = s.mail("a@remote.test")
            return code == 450
        finally:
            s.quit()
    wait(fourth_refused, timeout=5, what="the hourly limit on node 3")
    # Connections per address: one open on node 1 and one on node 2 fill the limit of 2.
    a = smtp_from(n1, "127.0.0.24")
    b = smtp_from(n2, "127.0.0.24")
    wait(lambda: greeting(n3, "127.0.0.24") == 421, timeout=5, what="the connection limit on node 3")
    a.quit()
    wait(lambda: greeting(n3, "127.0.0.24") == 220, timeout=5, what="a free slot on node 3")
    b.quit()


class POP3From(poplib.POP3):
    src = "127.0.0.1"

    def _create_socket(self, timeout):
        import socket
        return socket.create_connection((self.host, self.port), timeout, source_address=(self.src, 0))


def test_pop_before_smtp_window_opened_on_one_node_relays_on_another(limited):
    n1, n2, n3 = limited.nodes
    src = "127.0.0.25"
    s = smtp_from(n3, src)
    assert s.mail("demo@example.test")[0] == 550  # no window yet: an anonymous session may not use our domain
    s.close()
    POP3From.src = src
    p = POP3From(n2.address, n2.ports["pop3"], timeout=10)
    p.stls(context=tls(n2))
    p.user("demo@example.test")
    assert p.pass_(PASSWORD).startswith(b"+OK")
    p.quit()

    def relays():
        try:
            s = smtp_from(n3, src)
        except smtplib.SMTPConnectError:
            return False
        try:
            s.mail("demo@example.test")
            return s.rcpt("friend@remote.test")[0] == 250
        finally:
            s.close()
    wait(relays, timeout=5, what="the window on node 3")
    # As the user who opened it (SPEC 9): not as somebody else.
    s = smtp_from(n1, src)
    code, _ = s.mail("other@example.test")
    if code == 250:
        assert s.rcpt("friend@remote.test")[0] in (550, 553, 554)
    s.close()


def test_redis_down_each_node_counts_alone_then_shares_again(limited, engines):
    _, redis = engines
    n1, n2, n3 = limited.nodes
    redis.stop()
    try:
        for n in limited.nodes:
            n.wait_log("bulwark.log", "cluster: Redis unreachable, limits and blocks count on this node only")
        # Mail and logins go on; a node's own count still blocks a guesser there.
        assert auth_code(n2, "127.0.0.41", PASSWORD) == 235
        for i in range(3):
            assert auth_code(n1, "127.0.0.42", f"Wrong-Guess-{i}") == 535
        assert auth_code(n1, "127.0.0.42", PASSWORD) == 454
        assert auth_code(n2, "127.0.0.42", PASSWORD) == 235  # not told: Redis is away
    finally:
        redis.start()
    for n in limited.nodes:
        wait(lambda: n.log("bulwark.log").count("cluster: Redis reachable") >= 2, timeout=20, what="Redis again")
    assert auth_code(n1, "127.0.0.43", "Wrong-Guess-1") == 535
    assert auth_code(n2, "127.0.0.43", "Wrong-Guess-2") == 535
    assert auth_code(n3, "127.0.0.43", "Wrong-Guess-3") == 535
    wait(lambda: auth_code(n1, "127.0.0.43", PASSWORD) == 454, timeout=5, what="a shared block again")


def test_a_killed_nodes_connections_expire_after_lease(limited):
    n1, n2, n3 = limited.nodes
    held = [smtp_from(n1, "127.0.0.26"), smtp_from(n1, "127.0.0.26")]
    wait(lambda: greeting(n3, "127.0.0.26") == 421, timeout=5, what="the connection limit on node 3")
    n1.kill9()
    t = time.time()
    wait(lambda: greeting(n3, "127.0.0.26") == 220, timeout=25, what="node 1's connections forgotten")
    assert time.time() - t >= 5  # not before its lease (10 s, renewed every 3 s) ran out
    for s in held:
        s.close()


# --- the mail store in PostgreSQL -------------------------------------------------

def imap(node, user="demo@example.test"):
    m, (typ, _) = imap_login(node, user)
    assert typ == "OK"
    return m


def test_mail_through_one_node_is_read_on_the_others_byte_exact(three):
    n1, n2, n3 = three.nodes
    body = ("From: Alice <alice@remote.test>\r\nTo: demo@example.test\r\nSubject: across the cluster\r\n"
            "Message-ID: <c1@remote.test>\r\n\r\nline one\r\n.leading dot\r\n\r\nlast line\r\n")
    s = smtplib.SMTP(n1.address, n1.ports["smtp"], timeout=10)
    s.sendmail("alice@remote.test", ["demo@example.test"], body.encode())
    s.quit()
    # Mail for local recipients only is in PostgreSQL when the 250 comes: no spool file,
    # nothing to wait for.
    assert "relay=local mailbox=INBOX (PostgreSQL, at the end of data)" in n1.log("mail.log")
    assert not [f for f in (n1.data / "queue").iterdir() if f.is_file()]
    m = imap(n2)
    m.select("INBOX")
    uids = m.uid("SEARCH", None, "ALL")[1][0].split()
    assert len(uids) == 1
    typ, data = m.uid("FETCH", uids[0], "(BODY.PEEK[] RFC822.SIZE FLAGS)")
    raw = data[0][1]
    assert raw.endswith(body.encode()), raw
    assert raw.startswith(b"Return-Path: <alice@remote.test>\r\nDelivered-To: demo@example.test\r\n")
    typ, data = m.uid("FETCH", uids[0], "(RFC822.SIZE)")
    assert f"RFC822.SIZE {len(raw)}".encode() in data[0], data
    m.logout()
    # Over POP3 on node 3: the same bytes.
    p, reply = pop_login(n3, "demo@example.test")
    assert reply.startswith(b"+OK"), reply
    count, size = p.stat()
    assert count == 1 and size == len(raw)
    resp, lines, octets = p.retr(1)
    assert b"\r\n".join(lines) + b"\r\n" == raw
    # A second POP3 session on another node finds the mailbox in use (RFC 2449 [IN-USE]).
    p2 = poplib.POP3(n1.address, n1.ports["pop3"], timeout=10)
    p2.stls(context=tls(n1))
    p2.user("demo@example.test")
    with pytest.raises(poplib.error_proto, match=r"IN-USE"):
        p2.pass_(PASSWORD)
    p2.close()
    p.dele(1)
    p.quit()  # the deletion is made, and the hold released
    p2, reply = pop_login(n1, "demo@example.test")
    assert reply.startswith(b"+OK") and p2.stat()[0] == 0
    p2.quit()
    # A body over the memory threshold (256 KiB, kept in a file while it arrives) takes
    # the same way: committed in PostgreSQL before the 250, no spool file, the same bytes.
    big = ("From: alice@remote.test\r\nTo: demo@example.test\r\nSubject: large\r\n\r\n" +
           "".join(f"line {i:06d} of a large body, padded to a fair length ........\r\n" for i in range(9000)))
    assert len(big) > 512 * 1024
    s = smtplib.SMTP(n3.address, n3.ports["smtp"], timeout=20)
    s.sendmail("alice@remote.test", ["demo@example.test"], big.encode())
    s.quit()
    assert "relay=local mailbox=INBOX (PostgreSQL, at the end of data)" in n3.log("mail.log")
    assert not [f for f in (n3.data / "queue").iterdir() if f.is_file()]
    m = imap(n1)
    m.select("INBOX")
    typ, data = m.fetch("1", "(BODY.PEEK[])")
    assert data[0][1].endswith(big.encode())
    m.logout()


def seconds_until_idle_hears(idler, sender):
    """Seconds from a delivery through `sender` until a session in IDLE on `idler` is
    told EXISTS."""
    m = imap(idler)
    m.select("INBOX")
    tag = m._new_tag().decode()
    m.send(f"{tag} IDLE\r\n".encode())
    assert m.readline().startswith(b"+")
    m.sock.settimeout(15)
    t = time.time()
    s = smtplib.SMTP(sender.address, sender.ports["smtp"], timeout=10)
    s.sendmail("alice@remote.test", ["demo@example.test"], b"Subject: wake up\r\n\r\nx\r\n")
    s.quit()
    line = m.readline()
    assert b"EXISTS" in line, line
    took = time.time() - t
    m.send(b"DONE\r\n")
    while not m.readline().startswith(tag.encode()):
        pass
    m.logout()
    return took


def test_idle_on_one_node_hears_of_a_delivery_through_another(three):
    n1, n2, n3 = three.nodes
    assert seconds_until_idle_hears(n3, n1) < 2


def test_flags_from_two_nodes_at_once_both_survive(three):
    n1, n2, _ = three.nodes
    m = imap(n1)
    m.append("INBOX", None, None, b"Subject: flags\r\n\r\nx\r\n")
    a, b = imap(n1), imap(n2)
    a.select("INBOX")
    b.select("INBOX")
    a.store("1", "+FLAGS", "(\\Seen)")
    b.noop()
    a.store("1", "+FLAGS", "(\\Answered)")
    b.store("1", "-FLAGS", "(\\Seen)")  # B has not heard of \Answered yet
    typ, data = m.select("INBOX") and m.fetch("1", "(FLAGS)")
    assert b"\\Answered" in data[0] and b"\\Seen" not in data[0], data
    # A storm of keyword changes from three sessions on two nodes: each keyword's last
    # change wins, none is lost.
    import random
    sessions = [imap(n1), imap(n2), imap(n2)]
    for s in sessions:
        s.select("INBOX")
    model = set()
    for i in range(60):
        s = random.choice(sessions)
        kw = f"k{random.randrange(6)}"
        if random.random() < 0.5:
            s.store("1", "+FLAGS", f"({kw})")
            model.add(kw)
        else:
            s.store("1", "-FLAGS", f"({kw})")
            model.discard(kw)
    m.select("INBOX")  # a fresh view
    typ, data = m.fetch("1", "(FLAGS)")
    got = {f for f in data[0].decode().split("FLAGS (")[1].split(")")[0].split() if f.startswith("k")}
    assert got == model
    for s in sessions + [a, b, m]:
        s.logout()


def test_appends_through_three_nodes_get_distinct_rising_uids_and_modseq_never_goes_back(three):
    import threading
    per_node = 15
    results, errors = [], []

    def appender(node, n):
        try:
            m = imap(node)
            for i in range(per_node):
                typ, data = m.append("INBOX", None, None, f"Subject: {n}-{i}\r\n\r\nx\r\n".encode())
                assert typ == "OK", data
                # APPENDUID (UIDPLUS): "[APPENDUID validity uid]"
                uid = int(data[0].decode().split("APPENDUID ")[1].split()[1].rstrip("]"))
                results.append((n, i, uid))
            m.logout()
        except Exception as e:  # reported below
            errors.append(repr(e))

    observed = []
    stop = threading.Event()

    def observer():
        # HIGHESTMODSEQ never goes back, and no UID shows up below one already seen
        # (UIDs are committed in the order they are given: a client that remembers
        # "everything up to UID n" never misses one).
        m = imap(three.nodes[1])
        last, seen = 0, set()
        while not stop.is_set():
            typ, data = m.status("INBOX", "(HIGHESTMODSEQ)")
            hm = int(data[0].decode().split("HIGHESTMODSEQ ")[1].rstrip(")"))
            observed.append(hm >= last)
            last = hm
            m.select("INBOX", readonly=True)
            typ, data = m.uid("SEARCH", None, "ALL")
            now = {int(u) for u in data[0].split()}
            new = now - seen
            if seen and new:
                observed.append(min(new) > max(seen))
            seen |= now
        m.logout()

    threads = [threading.Thread(target=appender, args=(n, i)) for i, n in enumerate(three.nodes)]
    obs = threading.Thread(target=observer)
    obs.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    stop.set()
    obs.join(20)
    assert not errors, errors
    uids = [u for _, _, u in results]
    assert len(uids) == 3 * per_node and len(set(uids)) == len(uids)
    for n in range(3):  # each client's own appends rise
        mine = [u for node, _, u in sorted(results, key=lambda r: r[1]) if node == n]
        assert mine == sorted(mine)
    assert observed and all(observed)
    m = imap(three.nodes[2])
    typ, data = m.select("INBOX")
    assert int(data[0]) == 3 * per_node
    m.logout()


def test_bodies_are_sealed_before_they_reach_postgres_under_encryption_at_rest(cluster, engines):
    pg, _ = engines
    n1 = cluster.add_node(start=False)
    pw = n1.root / "enc.pw"
    pw.write_text("Enc-Password-77\n")
    os.chmod(pw, 0o600)
    n1.cli("encryption", "enable", "--password-stdin", input="Enc-Password-77\n")
    n1.write_config(n1.extra_config + '\n[encryption]\npassword_file = "enc.pw"\n')
    n1.start()
    s = smtplib.SMTP(n1.address, n1.ports["smtp"], timeout=10)
    s.sendmail("alice@remote.test", ["demo@example.test"], b"Subject: sealed\r\n\r\nthe-secret-words-in-the-body\r\n")
    s.quit()
    m = imap(n1)

    def arrived():
        m.select("INBOX")
        return m.uid("SEARCH", None, "ALL")[1][0].split()
    uid = wait(arrived, timeout=10, what="the message")[0]
    assert b"the-secret-words-in-the-body" in m.uid("FETCH", uid, "(BODY.PEEK[])")[1][0][1]
    m.append("INBOX", None, None, b"Subject: appended\r\n\r\nanother-secret-in-an-append\r\n")
    m.logout()
    # In the database: sealed bodies and heads, no plaintext.
    assert pg.psql("SELECT count(*), bool_and(sealed) FROM blobs", db=cluster.db) == "2|t"
    for needle in ("the-secret-words", "another-secret", "Subject:"):
        assert pg.psql(f"SELECT count(*) FROM blobs WHERE position('{needle}' in encode(data, 'escape')) > 0",
                       db=cluster.db) == "0"
    assert pg.psql("SELECT count(*) FROM messages WHERE position('Delivered-To' in encode(head, 'escape')) > 0",
                   db=cluster.db) == "0"
    # DKIM keys too: sealed in PostgreSQL and in each node's files.
    record = n1.cli("dkim", "keygen", "example.test", "--selector", "enc1").stdout
    assert "enc1._domainkey.example.test" in record
    assert pg.psql("SELECT count(*), bool_and(sealed), bool_or(position('PRIVATE' in encode(pem, 'escape')) > 0) "
                   "FROM dkim_keys", db=cluster.db) == "1|t|f"
    # A second node given the same keyring (and password) reads the mail and the key.
    n2 = cluster.add_node(start=False)
    n2.data.mkdir(parents=True, exist_ok=True)
    shutil.copy(n1.data / "keyring", n2.data / "keyring")
    os.chmod(n2.data / "keyring", 0o600)
    shutil.copy(pw, n2.root / "enc.pw")
    os.chmod(n2.root / "enc.pw", 0o600)
    n2.write_config(n2.extra_config + '\n[encryption]\npassword_file = "enc.pw"\n')
    n2.start()
    wait(lambda: "enc1" in n2.cli("dkim", "list").stdout, timeout=15, what="the key on node 2")
    files = [f for f in (n2.data / "dkim").rglob("*") if f.is_file()]
    assert files and not any(b"PRIVATE" in f.read_bytes() for f in files)
    m = imap(n2)
    m.select("INBOX")
    assert b"the-secret-words-in-the-body" in m.uid("FETCH", uid, "(BODY.PEEK[])")[1][0][1]
    typ, data = m.uid("SORT", "(SUBJECT)", "UTF-8", "ALL")  # keys from sealed heads and bodies
    assert typ == "OK" and len(data[0].split()) == 2 and data[0].split()[0] != uid, data
    m.logout()


def test_sort_and_thread_on_a_cluster_folder_read_headers_only_and_see_new_mail(three):
    n1, n2, _ = three.nodes
    m = imap(n1)
    subjects = ["delta", "Re: alpha", "charlie", "alpha", "bravo", "Fwd: bravo"]
    for i, subj in enumerate(subjects):
        refs = "References: <m1@x>\r\n" if i == 3 else ""
        body = ("x" * 300000) if i == 2 else "short"  # a long body: read only to the header's end
        m.append("INBOX", None, None,
                 f"Subject: {subj}\r\nFrom: u{5 - i}@remote.test\r\nMessage-ID: <m{i}@x>\r\n{refs}"
                 f"Date: Mon, 0{i + 1} Jun 2026 10:00:00 +0000\r\n\r\n{body}\r\n".encode())
    m.select("INBOX")
    uids = m.uid("SEARCH", None, "ALL")[1][0].split()
    assert len(uids) == 6

    def sort(sess, key):
        typ, data = sess.uid("SORT", f"({key})", "UTF-8", "ALL")
        assert typ == "OK", data
        return [uids.index(u) for u in data[0].split()]
    # Base subjects: alpha (3, 1), bravo (4, 5), charlie, delta; ties by arrival.
    assert sort(m, "SUBJECT") == [1, 3, 4, 5, 2, 0]
    assert sort(m, "REVERSE DATE") == [5, 4, 3, 2, 1, 0]
    assert sort(m, "FROM") == [5, 4, 3, 2, 1, 0]
    typ, data = m.uid("THREAD", "REFERENCES", "UTF-8", "ALL")
    assert typ == "OK" and f"({uids[1].decode()} {uids[3].decode()})".encode() in data[0], data
    # Kept keys do not hide a message that arrives through another node.
    m2 = imap(n2)
    m2.append("INBOX", None, None, b"Subject: aardvark\r\nFrom: a@remote.test\r\n\r\nx\r\n")
    m2.logout()
    m.noop()
    uids = m.uid("SEARCH", None, "ALL")[1][0].split()
    assert sort(m, "SUBJECT")[0] == 6
    m.logout()


def test_bodies_no_message_refers_to_are_purged_and_shared_ones_kept(cluster, engines):
    pg, _ = engines
    n1 = cluster.add_node()
    n1.cli("user", "add", "bob@example.test", "--password-stdin", input=PASSWORD + "\n")
    s = smtplib.SMTP(n1.address, n1.ports["smtp"], timeout=10)
    s.sendmail("a@remote.test", ["demo@example.test", "bob@example.test"], b"Subject: shared\r\n\r\nto two\r\n")
    s.sendmail("a@remote.test", ["demo@example.test"], b"Subject: alone\r\n\r\nto one\r\n")
    s.quit()
    q = lambda sql: pg.psql(sql, db=cluster.db)
    wait(lambda: q("SELECT count(*) FROM messages") == "3", timeout=10, what="the deliveries")
    assert q("SELECT count(*) FROM blobs") == "2"  # the shared body once
    m = imap(n1)
    m.select("INBOX")
    m.uid("STORE", "1:*", "+FLAGS.SILENT", r"(\Deleted)")  # demo drops both
    m.expunge()
    m.logout()
    # Not yet: a body stays an hour after its last message went (a put's commit may be under way).
    assert "removed 0 " in n1.cli("cluster", "purge").stdout
    q("UPDATE blob_gc SET at = now() - interval '2 hours'; UPDATE blobs SET used = now() - interval '2 hours'")
    out = n1.cli("cluster", "purge").stdout
    assert "removed 1 unreferenced message bodies" in out, out
    assert q("SELECT count(*) FROM blobs") == "1" and q("SELECT count(*) FROM blob_gc") == "0"
    b = imap(n1, "bob@example.test")  # bob's copy of the shared body is whole
    b.select("INBOX")
    assert b"to two" in b.uid("FETCH", "1", "(BODY.PEEK[])")[1][0][1]
    # The same body delivered again after the purge is stored anew; the node's own
    # housekeeping (at its first heartbeat, then every 10 minutes) purges too.
    b.uid("STORE", "1", "+FLAGS.SILENT", r"(\Deleted)")
    b.expunge()
    b.logout()
    q("UPDATE blob_gc SET at = now() - interval '2 hours'; UPDATE blobs SET used = now() - interval '2 hours'")
    n1.stop()
    n1.start()
    n1.wait_log("bulwark.log", "cluster: removed 1 unreferenced message bodies", timeout=20)
    assert q("SELECT count(*) FROM blobs") == "0"


def test_a_session_on_a_node_that_loses_postgres_is_told_to_try_later(three, engines):
    pg, _ = engines
    n1 = three.nodes[0]
    m = imap(n1)
    m.select("INBOX")
    pg.stop()
    try:
        typ, data = m.append("INBOX", None, None, b"Subject: x\r\n\r\nx\r\n")
        assert typ == "NO" and b"[UNAVAILABLE]" in data[0], data
        typ, data = m.create("Elsewhere")
        assert typ == "NO" and b"[UNAVAILABLE]" in data[0], data
        assert n1.proc.poll() is None
    finally:
        pg.start()
    typ, data = m.append("INBOX", None, None, b"Subject: x\r\n\r\nx\r\n")
    assert typ == "OK", data
    m.logout()


def test_kill_9_of_a_node_during_deliveries_and_appends_loses_nothing_acknowledged(three):
    import threading
    n1, n2, n3 = three.nodes
    acked_appends, acked_mail, stop = [], [], threading.Event()

    def appender(node, tag):
        i = 0
        while not stop.is_set():
            try:
                m = imap(node)
                while not stop.is_set():
                    subject = f"append-{tag}-{i}"
                    i += 1
                    typ, data = m.append("INBOX", None, None, f"Subject: {subject}\r\n\r\nx\r\n".encode())
                    if typ == "OK":
                        uid = int(data[0].decode().split("APPENDUID ")[1].split()[1].rstrip("]"))
                        acked_appends.append((subject, uid))
            except Exception:
                time.sleep(0.1)  # the node died under us: reconnect (to the same node: it comes back)

    def sender(node, tag):
        i = 0
        while not stop.is_set():
            try:
                s = smtplib.SMTP(node.address, node.ports["smtp"], timeout=10)
                while not stop.is_set():
                    subject = f"mail-{tag}-{i}"
                    i += 1
                    s.sendmail("alice@remote.test", ["demo@example.test"], f"Subject: {subject}\r\n\r\nx\r\n".encode())
                    acked_mail.append(subject)
            except Exception:
                time.sleep(0.1)

    threads = [threading.Thread(target=appender, args=(n1, "a1"), daemon=True),
               threading.Thread(target=appender, args=(n2, "a2"), daemon=True),
               threading.Thread(target=sender, args=(n1, "m1"), daemon=True),
               threading.Thread(target=sender, args=(n3, "m3"), daemon=True)]
    for t in threads:
        t.start()
    time.sleep(3)
    n1.kill9()
    time.sleep(1)
    n1.start()  # its spool still holds what it acknowledged and had not delivered
    time.sleep(2)
    stop.set()
    for t in threads:
        t.join(30)
    assert acked_appends and acked_mail
    m = imap(n2)

    def subjects():
        m.select("INBOX")
        typ, data = m.uid("FETCH", "1:*", "(UID BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        out = {}
        for item in data:
            if isinstance(item, tuple):
                uid = int(item[0].decode().split("UID ")[1].split()[0])
                out.setdefault(item[1].decode().split(":", 1)[1].strip(), []).append(uid)
        return out
    want = set(acked_mail)
    wait(lambda: want <= set(subjects()), timeout=30, what="every acknowledged message delivered")
    got = subjects()
    for subject, uid in acked_appends:
        assert uid in got.get(subject, []), (subject, uid)
    all_uids = [u for uids in got.values() for u in uids]
    assert len(all_uids) == len(set(all_uids))  # no UID for two messages
    for subject in acked_appends:
        assert len(got[subject[0]]) == 1  # an APPEND is one transaction: once
    m.logout()


def imap_state(m, folder):
    """UIDVALIDITY, HIGHESTMODSEQ and {uid: (flags, modseq, body)} of a folder."""
    typ, data = m.select(f'"{folder}"')
    assert typ == "OK", data
    validity = int(m.response("UIDVALIDITY")[1][0])
    typ, data = m.status(f'"{folder}"', "(HIGHESTMODSEQ)")
    highest = int(data[0].decode().split("HIGHESTMODSEQ ")[1].rstrip(")"))
    msgs = {}
    typ, data = m.uid("FETCH", "1:*", "(UID FLAGS MODSEQ BODY.PEEK[TEXT])")
    for item in data:
        if isinstance(item, tuple):
            head = item[0].decode()
            uid = int(head.split("UID ")[1].split()[0])
            # \Recent is one session's (RFC 3501 2.3.2), not the message's
            flags = tuple(sorted(f for f in head.split("FLAGS (")[1].split(")")[0].split() if f != "\\Recent"))
            modseq = int(head.split("MODSEQ (")[1].split(")")[0])
            msgs[uid] = (flags, modseq, item[1])
    return validity, highest, msgs


def test_cluster_import_of_a_single_machine_killed_half_way_and_rerun(make_server, cluster, engines):
    pg, _ = engines
    # The old installation: a few thousand messages in INBOX, a folder with flagged and
    # keyworded mail, some expunged (UIDs with gaps); a message for a remote recipient
    # waiting in its queue (the relay server is down).
    sink_ip, sink_port = "127.0.0.72", free_ports(1)[0]
    delivery = f'[delivery]\nmode = "relay"\nrelay_host = "{sink_ip}"\nrelay_port = {sink_port}\nretry_interval = "1h"\n'
    relay = '[relay]\nallow_ip_group = "local"\n' + delivery  # the old server relays for loopback
    old = make_server(extra_config=relay)
    old_key = old.cli("dkim", "keygen", "example.test", "--selector", "old1").stdout.strip()
    new = old.maildir()
    new.mkdir(parents=True, exist_ok=True)
    for i in range(2500):
        (new / f"{1700000000 + i}.M{i}P1.old").write_bytes(f"Subject: old {i}\n\nbody {i}\n".encode())
    old.start()
    ctx = tls(old)
    m = imaplib.IMAP4("127.0.0.1", old.ports["imap"], timeout=30)
    m.starttls(ssl_context=ctx)
    m.login("demo@example.test", PASSWORD)
    m.enable("CONDSTORE")
    m.create("Work/2026")
    m.subscribe("Work/2026")
    for i in range(20):
        m.append("Work/2026", "(\\Flagged $Important)" if i % 3 == 0 else None, None,
                 f"Subject: work {i}\r\n\r\nwork body {i}\r\n".encode())
    m.select("INBOX")
    m.uid("STORE", "1:10", "+FLAGS", "(\\Seen Project-X)")
    m.uid("STORE", "11:15", "+FLAGS", "(\\Deleted)")
    m.expunge()
    before = {f: imap_state(m, f) for f in ("INBOX", "Work/2026")}
    m.logout()
    with smtplib.SMTP("127.0.0.1", old.ports["smtp"], timeout=10) as s:
        s.sendmail("alice@example.test", ["far@remote.test"], b"Subject: queued before the move\r\n\r\nx\r\n")
    old.wait_log("mail.log", "deferred id=")
    old.stop()
    # Its greylisting: one passed triplet in its file (what a running server writes).
    now = int(time.time())
    (old.data / "greylist").write_text(f"{now - 600} {now - 60} 127.0.0.0/sender@remote.test/demo@example.test\n")
    assert len(before["INBOX"][2]) == 2495 and len(before["Work/2026"][2]) == 20

    n1 = cluster.add_node(start=False, extra=delivery + '[greylisting]\nenabled = true\ndelay = "1h"\n')
    cmd = [BIN, "--config", str(n1.config), "cluster", "import", "--from-config", str(old.config)]
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    count = lambda: int(pg.psql("SELECT count(*) FROM messages", db=cluster.db) or 0)
    killed = False
    deadline = time.time() + 60
    while p.poll() is None and time.time() < deadline:
        if count() >= 200:
            p.kill()
            killed = True
            break
        time.sleep(0.02)
    p.wait()
    assert killed, "the import ended before it could be killed half-way: " + p.stdout.read() + p.stderr.read()
    part = count()
    assert 200 <= part < 2515, part
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert f"{part} message(s) were there already" in r.stdout, r.stdout
    assert "DKIM keys: 0 added" in r.stdout  # the killed run had put it up already
    assert "queue: 1 message(s) added" in r.stdout, r.stdout
    assert "greylisting: 1 passed triplet(s) added" in r.stdout, r.stdout
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)  # idempotent
    assert "imported: 3 folder(s), 0 message(s)" in r.stdout or "0 message(s);" in r.stdout, r.stdout
    assert "queue: 0 message(s) added" in r.stdout, r.stdout
    assert count() == 2515
    sink = RemoteMx(sink_ip, sink_port, starttls=False)
    try:
        n1.start()  # takes the imported queue over at its first heartbeat, and delivers it
        wait(lambda: [x for x in sink.messages if b"queued before the move" in x["data"]], timeout=20,
             what="the imported queue's message at the relay server")
    finally:
        sink.stop()
    # The imported pass holds on the node; a triplet it never saw is greylisted.
    for src, code in (("127.0.0.51", 250), ("127.0.3.9", 451)):
        s = smtp_from(n1, src)
        s.mail("sender@remote.test")
        assert s.rcpt("demo@example.test")[0] == code, src
        s.close()
    wait(lambda: old_key in n1.cli("dkim", "list").stdout, timeout=15, what="the old DKIM key on the node")
    m = imap(n1)
    m.enable("CONDSTORE")
    for folder, state in before.items():
        got = imap_state(m, folder)
        assert got[:2] == state[:2], (folder, got[:2], state[:2])
        diff = {u: (got[2].get(u), v) for u, v in state[2].items() if got[2].get(u) != v}
        assert not diff and set(got[2]) == set(state[2]), (folder, list(diff.items())[:3])  # same UIDVALIDITY, UIDs, flags, keywords, modseqs, bytes
    typ, data = m.lsub('""', "*")
    assert any(b"Work/2026" in d for d in data)
    # A client that knew the old server goes on without a resync: new mail gets the next UID.
    m.select("INBOX")
    typ, data = m.append("INBOX", None, None, b"Subject: after\r\n\r\nx\r\n")
    uid = int(data[0].decode().split("APPENDUID ")[1].split()[1].rstrip("]"))
    assert uid > max(before["INBOX"][2])
    m.logout()


def test_copy_and_move_through_three_nodes_into_one_folder(three):
    """Sessions on three nodes COPY and MOVE from their own folders into one target at
    once: every message arrives once, UIDs distinct, and the COPYUIDs they were told
    are the UIDs the messages have."""
    import threading
    nodes = three.nodes
    setup = imap(nodes[0])
    setup.create("Target")
    for i in range(3):
        setup.create(f"Src{i}")
        for j in range(12):
            setup.append(f"Src{i}", None, None, f"Subject: s{i}-{j}\r\n\r\nx\r\n".encode())
    setup.logout()
    told, errors = [], []

    def mover(i):
        try:
            m = imap(nodes[i])
            m.select(f"Src{i}")
            for j in range(1, 13, 2):
                cmd = "MOVE" if j % 4 == 1 else "COPY"
                typ, data = m.uid(cmd, f"{j}:{j + 1}", "Target")
                assert typ == "OK", data
                code = m.response("COPYUID")[1] if cmd == "COPY" else None
                told.append((i, cmd, data, code))
            m.logout()
        except Exception as e:
            errors.append(repr(e))

    threads = [threading.Thread(target=mover, args=(i,), daemon=True) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    m = imap(nodes[1])
    m.select("Target")
    typ, data = m.uid("FETCH", "1:*", "(UID BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    subjects = {}
    for item in data:
        if isinstance(item, tuple):
            uid = int(item[0].decode().split("UID ")[1].split()[0])
            subjects[item[1].decode().split(":", 1)[1].strip()] = uid
    assert sorted(subjects) == sorted(f"s{i}-{j}" for i in range(3) for j in range(12))
    assert len(set(subjects.values())) == 36
    for i in range(3):  # what was moved is gone from the source; what was copied stays
        m.select(f"Src{i}")
        typ, data = m.uid("SEARCH", None, "ALL")
        left = {int(u) for u in data[0].split()}
        moved = {j for j in range(1, 13) if ((j - 1) // 2 * 2 + 1) % 4 == 1}
        assert left == set(range(1, 13)) - moved, (i, left)
    m.logout()


def test_idle_hears_of_a_delivery_within_10s_with_redis_stopped(three, engines):
    _, redis = engines
    n1, _, n3 = three.nodes
    redis.stop()
    try:
        assert seconds_until_idle_hears(n3, n1) < 10
    finally:
        redis.start()


def node_with_admin_api(cluster):
    """The cluster's first node with an admin listener: (node, port, bearer token, TLS context)."""
    port = node_ports(1, "127.0.0.2")[0]
    n1 = cluster.add_node(extra=f'[[listener]]\nservice = "admin"\naddress = "127.0.0.2"\nport = {port}\n')
    n1.cli("admin", "add", "root", "--password-stdin", input="Admin-Pass-1234x\n")
    token = n1.cli("admin", "token", "root").stdout.strip()
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return n1, port, token, ctx


def test_cluster_in_the_api_metrics_and_console(cluster):
    import http.client
    import json
    n1, port, token, ctx = node_with_admin_api(cluster)
    cluster.add_node()

    def get(path):
        c = http.client.HTTPSConnection("127.0.0.2", port, context=ctx, timeout=20)
        c.request("GET", path, headers={"Authorization": "Bearer " + token})
        r = c.getresponse()
        return r.status, r.read().decode()
    status, body = get("/api/v1/cluster")
    assert status == 200, body
    view = json.loads(body)
    assert view["cluster"] and view["node"] == "n1" and view["redis_up"] in (True, False)
    assert [(n["name"], n["state"]) for n in view["nodes"]] == [("n1", "up"), ("n2", "up")]
    assert view["postgres_roundtrip_seconds"] < 1
    status, text = get("/metrics")
    assert "bulwark_cluster_postgres_up 1" in text and "bulwark_cluster_nodes_up 2" in text
    assert "bulwark_cluster_postgres_roundtrip_seconds" in text and "bulwark_cluster_redis_up" in text
    # The console's dashboard shows the nodes.
    selenium = pytest.importorskip("selenium")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait
    opts = webdriver.ChromeOptions()
    opts.binary_location = "/usr/bin/chromium"
    for a in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--ignore-certificate-errors",
              "--window-size=1280,900", "--disable-gpu"):
        opts.add_argument(a)
    d = webdriver.Chrome(service=Service(executable_path="/usr/bin/chromedriver"), options=opts)
    try:
        d.set_page_load_timeout(30)
        w = WebDriverWait(d, 20)
        d.get(f"https://127.0.0.2:{port}/")
        w.until(EC.visibility_of_element_located((By.ID, "login-form")))
        d.find_element(By.NAME, "name").send_keys("root")
        d.find_element(By.NAME, "password").send_keys("Admin-Pass-1234x")
        d.find_element(By.CSS_SELECTOR, "#login-form button").click()
        w.until(EC.text_to_be_present_in_element((By.CSS_SELECTOR, "#view"), "Cluster: this is node n1"))
        text = d.find_element(By.CSS_SELECTOR, "#view").text
        assert "n2" in text and "up" in text
        artifacts = pathlib.Path(os.environ.get("BULWARK_ARTIFACTS", "/tmp/bulwark-console-artifacts"))
        artifacts.mkdir(parents=True, exist_ok=True)
        d.execute_script("[...document.querySelectorAll('#view h3')].find(h => h.textContent.startsWith('Cluster'))"
                         ".scrollIntoView()")
        d.save_screenshot(str(artifacts / "cluster-dashboard.png"))
    finally:
        d.quit()


def test_dkim_keys_made_on_one_node_reach_every_node_and_removal_reaches_a_node_that_was_down(three):
    n1, n2, n3 = three.nodes
    record = n1.cli("dkim", "keygen", "example.test", "--selector", "s1").stdout.strip()
    assert "s1._domainkey.example.test" in record
    wait(lambda: record in n2.cli("dkim", "list").stdout, timeout=15, what="the key on node 2")
    wait(lambda: record in n3.cli("dkim", "list").stdout, timeout=15, what="the key on node 3")
    n3.stop()
    n2.cli("dkim", "remove", "example.test", "--selector", "s1")
    wait(lambda: "s1" not in n1.cli("dkim", "list").stdout, timeout=15, what="the removal on node 1")
    assert "s1" in n3.cli("dkim", "list").stdout  # down: still has it
    n3.start()
    wait(lambda: "s1" not in n3.cli("dkim", "list").stdout, timeout=15, what="the removal on node 3 after its start")


def test_greylisting_across_nodes(engines):
    c = Cluster(*engines, extra='[greylisting]\nenabled = true\ndelay = "2s"\n')
    try:
        for _ in range(3):
            c.add_node()
        for n in c.nodes:
            n.wait_log("bulwark.log", "cluster: Redis reachable")
        n1, n2, n3 = c.nodes

        def rcpt_from(node, src):
            s = smtp_from(node, src)
            s.mail("sender@remote.test")
            code = s.rcpt("demo@example.test")[0]
            s.close()
            return code
        assert rcpt_from(n1, "127.0.0.51") == 451  # first attempt, through node 1
        time.sleep(2.5)
        assert rcpt_from(n2, "127.0.0.51") == 250  # the retry through node 2 passes
        assert rcpt_from(n3, "127.0.0.51") == 250  # and node 3 has heard of the pass
        assert rcpt_from(n2, "127.0.1.61") == 451  # another network (/24) is another triplet
        # The triplets are in PostgreSQL, keyed by a hash: no address in the table.
        pg = engines[0]
        wait(lambda: int(pg.psql("SELECT count(*) FROM greylist WHERE passed", db=c.db) or 0) >= 1, timeout=10)
        rows = pg.psql("SELECT key || ' ' || node FROM greylist", db=c.db)
        assert "remote.test" not in rows and "example.test" not in rows and "127.0." not in rows, rows
        assert all(len(r.split()[0]) == 32 for r in rows.split("\n") if r.strip()), rows
        # Without Redis, a node started later still knows the pass and the pending attempt
        # (it reads them from PostgreSQL at start), and a first attempt through it reaches
        # the others through PostgreSQL at their next heartbeat.
        wait(lambda: int(pg.psql("SELECT count(*) FROM greylist WHERE NOT passed", db=c.db) or 0) >= 1, timeout=10)
        engines[1].stop()
        try:
            n3.stop()
            n3.start()
            assert rcpt_from(n3, "127.0.0.51") == 250   # passed before it started
            time.sleep(2.5)
            assert rcpt_from(n3, "127.0.1.61") == 250   # retried after the delay: first seen on node 2
            assert rcpt_from(n3, "127.0.2.71") == 451   # a first attempt through node 3 ...
            wait(lambda: int(pg.psql("SELECT count(*) FROM greylist WHERE NOT passed AND node = 'n3'", db=c.db)) > 0,
                 timeout=10)
            time.sleep(4)  # ... is read by node 1 at its next heartbeat (every 3 s): node 1's first try passes
            assert rcpt_from(n1, "127.0.2.71") == 250
        finally:
            engines[1].start()
    finally:
        c.close()


def test_idle_sessions_ask_postgres_seldom_while_redis_carries_the_changes(three, engines):
    pg, _ = engines
    n1, _, n3 = three.nodes
    for n in three.nodes:
        n.wait_log("bulwark.log", "cluster: Redis reachable")
    commits = lambda: int(pg.psql(f"SELECT xact_commit FROM pg_stat_database WHERE datname = '{three.db}'"))

    def per_8s():
        before = commits()
        time.sleep(8)
        return commits() - before
    quiet = per_8s()  # heartbeats, the followers' checks, autovacuum: without any session
    sessions = []
    for _ in range(10):
        m = imap(n3)
        m.select("INBOX")
        tag = m._new_tag().decode()
        m.send(f"{tag} IDLE\r\n".encode())
        assert m.readline().startswith(b"+")
        sessions.append(m)
    # PostgreSQL 15 counts an idle backend's last transactions up to 10 s late
    # (PGSTAT_IDLE_INTERVAL): the logins' own queries must not fall into the window.
    time.sleep(11)
    idle = per_8s()
    # Polling, ten sessions would ask 80 times in 8 s; woken through Redis they ask when
    # told of a change, or every 10 s.
    assert idle - quiet < 30, (quiet, idle)
    took = seconds_until_idle_hears(n3, n1)  # and a change still arrives at once
    assert took < 2
    for m in sessions:
        m.sock.settimeout(5)
        line = m.readline()
        assert b"EXISTS" in line, line
        m.send(b"DONE\r\n")
        m.logout()


def test_engines_over_tls_with_their_certificates_checked(tmp_path):
    """PostgreSQL with ssl = on and sslmode=verify-full, Redis on a TLS port with
    rediss:// (our socket: TLS 1.2+, the system's CAs -- here SSL_CERT_FILE -- and the
    name checked); a certificate for another name, or from a CA nobody trusts, is refused."""
    from engines import make_tls
    ca, cert, key = make_tls(tmp_path)
    pg_port, redis_port = free_ports(2)
    pg = Postgres(pg_port, tls=(cert, key))
    redis = None
    old_env = os.environ.get("SSL_CERT_FILE")
    try:
        redis = Redis(redis_port, tls=(ca, cert, key))
        os.chmod(tmp_path, 0o755)
        os.chmod(ca, 0o644)
        c = Cluster(pg, redis)
        c.conninfo = c.conninfo.replace("host=127.0.0.1", "host=localhost").replace(
            "sslmode=disable", f"sslmode=verify-full sslrootcert={ca}")
        c.redis = type("TlsRedis", (), {"url": f"rediss://localhost:{redis_port}/0"})()
        os.environ["SSL_CERT_FILE"] = str(ca)  # what the node's OpenSSL trusts for Redis
        try:
            n1 = c.add_node()
            n1.wait_log("bulwark.log", "cluster: Redis reachable")
            s, (code, _) = smtp_auth(n1, "demo@example.test")
            assert code == 235
            s.quit()
            assert pg.psql(f"SELECT bool_and(ssl) FROM pg_stat_ssl JOIN pg_stat_activity USING (pid) "
                           f"WHERE datname = '{c.db}'") == "t"
            # Redis's certificate from a CA this node does not trust: refused, and said so.
            os.environ["SSL_CERT_FILE"] = "/etc/ssl/certs/ca-certificates.crt"
            n2 = c.add_node()
            n2.wait_log("bulwark.log", "TLS handshake failed")
            assert "cluster: Redis reachable" not in n2.log("bulwark.log")
            # PostgreSQL's certificate names localhost, not 127.0.0.1: verify-full refuses.
            r = subprocess.run([BIN, "--config", str(n2.config), "user", "list"], capture_output=True, text=True,
                               env={**os.environ, "PGSSLMODE": "verify-full"}, timeout=30)
            assert r.returncode == 0  # through the configured name it works
            bad = n2.config.read_text().replace("host=localhost", "host=127.0.0.1")
            n2.config.write_text(bad)
            r = subprocess.run([BIN, "--config", str(n2.config), "user", "list"], capture_output=True, text=True,
                               timeout=30)
            assert r.returncode != 0 and "127.0.0.1" in r.stderr and PG_PASSWORD not in r.stderr, r.stderr
        finally:
            c.close()
    finally:
        if old_env is None:
            os.environ.pop("SSL_CERT_FILE", None)
        else:
            os.environ["SSL_CERT_FILE"] = old_env
        if redis:
            redis.close()
        pg.close()


def test_settings_changed_through_one_node_reach_every_node_and_one_started_later(cluster, engines):
    import http.client
    import json
    pg, _ = engines
    n1, port, token, ctx = node_with_admin_api(cluster)
    n2 = cluster.add_node()
    n3 = cluster.add_node()

    def patch(body):
        c = http.client.HTTPSConnection("127.0.0.2", port, context=ctx, timeout=20)
        c.request("PATCH", "/api/v1/settings", body=json.dumps(body),
                  headers={"Authorization": "Bearer " + token, "Content-Type": "application/json"})
        r = c.getresponse()
        return r.status, json.loads(r.read().decode())

    def rcpts_taken(node):
        s = smtplib.SMTP(node.address, node.ports["smtp"], timeout=10)
        s.ehlo("client.remote.test")
        s.mail("a@remote.test")
        codes = [s.rcpt(f"{u}@example.test")[0] for u in ("demo", "u1", "u2")]
        s.close()
        return codes
    for u in ("u1", "u2"):
        n1.cli("user", "add", f"{u}@example.test", "--password-stdin", input=PASSWORD + "\n")
    assert rcpts_taken(n3) == [250, 250, 250]
    session = imap(n3)  # a session on node 3, open across the change
    n2.stop()  # down while the setting changes
    # A shared key, and a key of node 1's own (its greeting name), in one PATCH.
    status, body = patch({"limits": {"max_recipients": 2}, "server": {"hostname": "n1.example.test"}})
    assert status == 200, body
    assert body["limits"]["max_recipients"] == 2 and body["server"]["hostname"] == "n1.example.test"
    assert pg.psql("SELECT version, patch::text FROM shared_settings", db=cluster.db) == \
        '1|{"limits": {"max_recipients": 2}}'
    t0 = time.time()
    wait(lambda: rcpts_taken(n3)[2] == 452, timeout=10, what="the limit on node 3")
    assert time.time() - t0 < 10
    assert 'max_recipients = 2' in n3.config.read_text()
    assert "n1.example.test" not in n3.config.read_text()  # node 1's own key stayed there
    n3.wait_log("bulwark.log", "cluster: applied the shared settings, version 1")
    assert session.noop()[0] == "OK"  # the reload kept the session
    session.logout()
    # Node 2 was down: it has the setting from its start.
    n2.start()
    assert rcpts_taken(n2)[2] == 452
    # A value the other nodes refuse is refused here first; nothing is shared.
    status, body = patch({"limits": {"max_recipients": -5}})
    assert status == 400 and "limits.max_recipients" in body["error"], body
    assert pg.psql("SELECT version FROM shared_settings", db=cluster.db) == "1"
    # null: back to the default, everywhere.
    status, body = patch({"limits": {"max_recipients": None}})
    assert status == 200, body
    wait(lambda: rcpts_taken(n2) == [250, 250, 250], timeout=10, what="the default again on node 2")
