"""kill -9 under load, restart: every message that got 250 is delivered.

Both ways a message is committed: local recipients only (written once, straight into
the mailbox at the commit: queue/direct.hpp) and a local plus a remote recipient (a
spool file, then local delivery from it; the relay is down so the remote part waits).
Bounded: per way, 3 rounds of about 1.5 s of load from 8 concurrent senders.
The kill must land while senders are still sending (checked).
"""
import contextlib
import os
import pathlib
import re
import shutil
import smtplib
import subprocess
import threading
import time

import pytest

from conftest import free_port

ROUNDS = 3
SENDERS = 8
LOAD_SECONDS = 1.5
MAX_PER_SENDER = 3000


def load(server, round_no, acked, stop, rcpts=("demo@example.test",)):
    def sender(n):
        i = 0
        while not stop.is_set() and i < MAX_PER_SENDER:
            subject = f"crash-{round_no}-{n}-{i}"
            try:
                with smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=10) as s:
                    # several messages per connection, as real clients do
                    for _ in range(5):
                        subject = f"crash-{round_no}-{n}-{i}"
                        s.sendmail("load@remote.test", list(rcpts), (
                                   f"Subject: {subject}\r\n\r\n" + ("x" * 78 + "\r\n") * 25).encode())
                        acked.append(subject)  # only after the 250 to DATA
                        i += 1
            except (OSError, smtplib.SMTPException):
                return  # the server died under us: whatever was not acked may be lost

    threads = [threading.Thread(target=sender, args=(n,)) for n in range(SENDERS)]
    for t in threads:
        t.start()
    return threads


def delivered_subjects(server):
    subjects = []
    for m in server.messages():
        found = re.search(rb"Subject: (crash-[0-9-]+)", m)
        if found:
            subjects.append(found.group(1).decode())
    return subjects


@contextlib.contextmanager
def journaled_ext4(directory):
    """`directory`'s contents moved onto a fresh journaled ext4 (a loop-mounted image)
    mounted over it, for the test's duration: where the spool commits with one fsync
    of its commit record (queue/commit_record.hpp), not syncfs as on /tmp here."""
    if os.geteuid() != 0 or not shutil.which("mkfs.ext4"):
        pytest.skip("a loop-mounted ext4 needs root and mkfs.ext4")
    image = pathlib.Path(str(directory) + ".img")
    subprocess.run(["truncate", "-s", "512M", str(image)], check=True)
    subprocess.run(["mkfs.ext4", "-q", "-F", str(image)], check=True)
    saved = pathlib.Path(str(directory) + ".saved")
    directory.rename(saved)
    directory.mkdir()
    mounted = subprocess.run(["mount", "-o", "loop", str(image), str(directory)], capture_output=True, text=True)
    if mounted.returncode != 0:
        directory.rmdir()
        saved.rename(directory)
        image.unlink()
        pytest.skip(f"cannot loop-mount an image here: {mounted.stderr.strip()}")
    try:
        for item in saved.iterdir():
            shutil.move(str(item), str(directory / item.name))
        yield
    finally:
        subprocess.run(["umount", "-l", str(directory)], check=False)
        shutil.rmtree(saved, ignore_errors=True)
        image.unlink()


@pytest.mark.parametrize("way", ["write-once", "write-once-journaled", "spool"])
def test_kill_9_under_load_loses_no_acknowledged_message(make_server, way):
    if way == "write-once-journaled":
        server = make_server()
        with journaled_ext4(server.data):
            try:
                server.start()
                assert "one journal commit per batch (ext4 with a journal" in server.log("bulwark.log")
                kill_and_count(server, way, ["demo@example.test"])
            finally:
                server.stop()  # before the filesystem goes
        return
    if way == "write-once":
        server, rcpts = make_server().start(), ["demo@example.test"]
    else:
        server = make_server(extra_config=(
            '[relay]\nallow_ip_group = "local"\n'
            f'[delivery]\nmode = "relay"\nrelay_host = "127.0.0.1"\nrelay_port = {free_port()}\n'
            'retry_interval = "1h"\n')).start()
        rcpts = ["demo@example.test", "far@remote.test"]
    kill_and_count(server, way, rcpts)


def kill_and_count(server, way, rcpts):
    acked = []
    for round_no in range(ROUNDS):
        stop = threading.Event()
        before = len(acked)
        threads = load(server, round_no, acked, stop, rcpts)
        time.sleep(LOAD_SECONDS)
        sending = sum(t.is_alive() for t in threads)
        server.kill9()  # no warning, mid-transaction
        assert sending == SENDERS, "senders finished before the kill: raise MAX_PER_SENDER"
        stop.set()
        for t in threads:
            t.join(timeout=30)
        assert len(acked) > before, "no message was acknowledged under load"
        server.start()  # the restart must pick up the spool
    deadline = time.time() + 60
    while time.time() < deadline:
        got = set(delivered_subjects(server))
        if all(a in got for a in acked):
            break
        time.sleep(0.2)
    got = delivered_subjects(server)
    missing = [a for a in acked if a not in set(got)]
    assert not missing, f"{len(missing)} acknowledged messages lost, e.g. {missing[:5]}"
    dupes = len(got) - len(set(got))
    print(f"{way}: acknowledged {len(acked)}, delivered {len(set(got))} distinct, {dupes} duplicates, "
          f"{len(got) - dupes - len(acked)} unacknowledged extra")
    # At least once, but not twice for a wide window: a copy's delivery state follows it
    # at once (was ~6% with one sync per message's state record).
    assert dupes <= len(acked) // 100, f"{dupes} of {len(acked)} delivered twice"
    # Each way was the one taken (mail.log says where a copy was written).
    log = server.log("mail.log")
    at_commit = log.count(" (at the end of data)")
    assert (at_commit > 0) == way.startswith("write-once"), (way, at_commit)
