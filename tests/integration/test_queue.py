"""The spool and local delivery under stress: damaged queue files, large messages that
stream through disk instead of memory, removed and unwritable mailboxes."""
import os
import shutil
import smtplib
import socket
import time

import pytest

from conftest import PASSWORD, Raw

SANITIZED = bool(os.environ.get("BULWARK_SANITIZED"))


def queue_files(srv):
    q = srv.data / "queue"
    return sorted(p.name for p in q.iterdir()) if q.exists() else []


def work_files(srv):
    """What queue.tmp/ holds besides the spool's commit record (.commit.0, .commit.1)."""
    return [p for p in (srv.data / "queue.tmp").iterdir() if not p.name.startswith(".commit.")]


def spool_file(msg_id, sender, rcpts, content, arrival=None, extra=""):
    """A queue file as bulwark writes it (docs/architecture.md, spool file format)."""
    arrival = int(time.time()) if arrival is None else arrival
    head = f"bulwark-spool 1\nid {msg_id}\narrival {arrival}\nclient 127.0.0.1\nhelo x\nsender {sender}\n"
    head += f"smtputf8 0\ntls %\nsize {len(content)}\n{extra}"
    head += "".join(f"rcpt L {r} {r}\n" for r in rcpts)
    return head.encode() + b"\n" + content


def test_damaged_queue_files_are_quarantined_and_the_server_starts(make_server):
    """Issue 8.3: one malformed file made every start crash (std::invalid_argument from
    the arrival time). Now each is moved aside, logged, and its sender told."""
    srv = make_server(users=("demo@example.test", "ann@example.test"))
    srv.expect_quarantine = True
    q = srv.data / "queue"
    q.mkdir(parents=True, exist_ok=True)
    good = b"Subject: fine\r\n\r\nstill delivered\r\n"
    (q / "00000000000A00001").write_bytes(spool_file("00000000000A00001", "x@remote.test", ["demo@example.test"], good))
    # An empty arrival time, as in the report.
    (q / "00000000000A00002").write_bytes(
        spool_file("00000000000A00002", "ann@example.test", ["demo@example.test"], good).replace(
            b"arrival ", b"arrival \n#", 1))
    # Content shorter than the envelope says (a torn write on a broken disk).
    (q / "00000000000A00003").write_bytes(
        spool_file("00000000000A00003", "ann@example.test", ["demo@example.test"], good)[:-10])
    (q / "00000000000A00004").write_bytes(b"\x00\x01 not a spool file at all")
    for _ in range(2):  # and it keeps starting
        srv.start()
        msgs = srv.wait_messages(1)
        assert srv.stop() == 0
    assert b"still delivered" in msgs[0]
    quarantine = srv.data / "quarantine"
    assert sorted(p.name for p in quarantine.iterdir()) == ["00000000000A00002", "00000000000A00003",
                                                              "00000000000A00004"]
    assert queue_files(srv) == []
    log = srv.log("mail.log")
    assert 'quarantined id=00000000000A00002 reason="bad arrival time"' in log
    assert "quarantined id=00000000000A00003 reason=\"truncated" in log
    assert "damaged" in srv.log("bulwark.log")
    # ann, the sender of the two readable-enough ones, got a report for each.
    reports = [m for m in srv.messages("ann") if b"multipart/report" in m]
    assert len(reports) == 2 and all(b"was damaged" in r for r in reports)


def test_a_large_message_streams_through_disk_byte_exact(make_server):
    """Issue 8.6: a body over the in-memory threshold goes to queue.tmp/ as it arrives
    and is committed in place; what lands in the mailbox is exactly what was sent."""
    srv = make_server().start()
    lines = [f"line {i} " + "x" * (i % 70) for i in range(60000)]
    lines[100] = ".a line that starts with a dot"
    body = ("Subject: big\r\n\r\n" + "\r\n".join(lines) + "\r\n").encode()
    assert len(body) > 2 * 1024 * 1024
    with smtplib.SMTP("127.0.0.1", srv.ports["smtp"], timeout=60) as s:
        s.sendmail("a@remote.test", ["demo@example.test"], body)
    [got] = srv.wait_messages(1)
    assert got.endswith(body.replace(b"\r\n", b"\n"))
    assert work_files(srv) == []


def test_an_abandoned_large_data_phase_leaves_no_file(make_server):
    srv = make_server().start()
    c = Raw(srv.ports["smtp"])
    c.reply()
    c.begin_data()
    c.send(b"Subject: never ends\r\n\r\n" + (b"y" * 998 + b"\r\n") * 1500)  # ~1.5 MB: on disk by now
    deadline = time.time() + 10
    while not work_files(srv) and time.time() < deadline:
        time.sleep(0.05)
    assert any(p.name.startswith("spill.") for p in work_files(srv))
    c.close()
    deadline = time.time() + 10
    while work_files(srv) and time.time() < deadline:
        time.sleep(0.05)
    assert work_files(srv) == []
    assert srv.messages() == []


def test_a_streamed_message_with_an_envelope_too_large_for_its_header_room(make_server):
    """The fallback of the in-place commit: more recipients than fit in the room kept
    before a streamed body (64 KiB) -- the spool copies the body into a new file."""
    srv = make_server(extra_config='[limits]\nmax_recipients = 0\n[dns]\nservers = ["127.0.0.1:9"]\n'
                                   'timeout = "1s"\n[delivery]\nretry_interval = "1h"\n')
    members = []
    for i in range(1500):
        members += ["--member", f"someone-with-a-long-name-{i:05d}@far-away.test"]
    srv.cli("group", "add", "everyone@example.test", "--member", "demo@example.test", *members)
    srv.start()
    body = b"Subject: to many\r\n\r\n" + (b"z" * 500 + b"\r\n") * 1200
    with smtplib.SMTP("127.0.0.1", srv.ports["smtp"], timeout=60) as s:
        s.sendmail("a@remote.test", ["everyone@example.test"], body)
    [got] = srv.wait_messages(1)
    assert got.endswith(body.replace(b"\r\n", b"\n"))
    [qid] = queue_files(srv)[:1]  # the remote copies wait (nowhere to resolve)
    size = (srv.data / "queue" / qid).stat().st_size
    assert size > len(body) + 64 * 1024  # envelope + content, in one file


@pytest.mark.skipif(SANITIZED, reason="AddressSanitizer's own memory makes RSS meaningless")
def test_unfinished_large_data_phases_do_not_grow_memory(make_server):
    """Issue 8.6: ten unfinished 30 MB DATA phases took the server from 84 MB to 706 MB."""
    srv = make_server(extra_config='[limits]\nmax_connections_per_ip = 0\nmax_message_size = "60MB"\n').start()

    def rss_mb():
        for line in open(f"/proc/{srv.proc.pid}/status"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024

    before = rss_mb()
    conns = []
    chunk = (b"w" * 998 + b"\r\n") * 1024  # 1 MB
    for _ in range(10):
        c = Raw(srv.ports["smtp"])
        c.reply()
        c.begin_data()
        conns.append(c)
    for _ in range(30):
        for c in conns:
            c.send(chunk)
    time.sleep(1)
    after = rss_mb()
    for c in conns:
        c.close()
    assert after - before < 40, f"RSS grew from {before:.0f} to {after:.0f} MB"


def test_a_removed_maildir_is_created_again(make_server):
    """Issue 8.13: the directory cache never forgot, so deliveries failed forever."""
    srv = make_server().start()
    with smtplib.SMTP("127.0.0.1", srv.ports["smtp"]) as s:
        s.sendmail("a@remote.test", ["demo@example.test"], b"Subject: one\r\n\r\n1\r\n")
    srv.wait_messages(1)
    shutil.rmtree(srv.data / "mail" / "example.test" / "demo")
    with smtplib.SMTP("127.0.0.1", srv.ports["smtp"]) as s:
        s.sendmail("a@remote.test", ["demo@example.test"], b"Subject: two\r\n\r\n2\r\n")
    [msg] = srv.wait_messages(1, timeout=10)
    assert b"Subject: two" in msg
    for sub in ("cur", "new", "tmp"):
        assert (srv.data / "mail" / "example.test" / "demo" / sub).is_dir()


def test_a_mailbox_that_cannot_be_written_is_retried_then_bounced(make_server):
    """Issue 8.13: local failures used to be retried forever, never reported."""
    srv = make_server(users=("demo@example.test", "ann@example.test"),
                      extra_config='[delivery]\nbounce_after = "3s"\nretry_interval = "1s"\n')
    blocked = srv.data / "mail" / "example.test" / "demo"
    shutil.rmtree(blocked)  # `user add` made it
    blocked.write_text("a file where the Maildir should be\n")
    srv.start()
    with smtplib.SMTP("127.0.0.1", srv.ports["submission"]) as s:
        s.starttls()
        s.login("ann@example.test", PASSWORD)
        s.sendmail("ann@example.test", ["demo@example.test"],
                   b"From: ann@example.test\r\nSubject: for demo\r\n\r\nhello\r\n")
    srv.wait_log("mail.log", "relay=local reason=")
    [report] = srv.wait_messages(1, user="ann", timeout=20)
    assert b"multipart/report" in report and b"local delivery failed" in report
    assert b"Subject: for demo" in report  # the original header is attached
    srv.wait_log("mail.log", "bounced id=")
    deadline = time.time() + 10
    while queue_files(srv) and time.time() < deadline:
        time.sleep(0.1)
    assert queue_files(srv) == []


def test_mail_directory_that_cannot_be_opened_stops_the_start(make_server):
    """Issue 8.12: without the mail directory no delivery can be synced; the server
    used to skip syncing silently."""
    srv = make_server()
    shutil.rmtree(srv.data / "mail")  # `user add` made it
    (srv.data / "mail").write_text("not a directory\n")
    with pytest.raises(AssertionError) as e:
        srv.start()
    assert "cannot open the mailbox directory" in str(e.value)
    assert srv.proc.returncode == 1
    srv.proc = None  # its exit code was checked here
