"""Cluster mode under chaos, bounded in time: mail and APPENDs through three nodes for
60 s while a random node is killed with SIGKILL every 10 s and started again. What a
client was told was taken (250, APPEND OK) must be there afterwards: every
acknowledged message exactly once in its local mailbox, at least once at the remote
MX; no UID given twice; no observer sees a folder's MODSEQ or UIDNEXT go back.
The engines, helpers and fixtures are test_cluster.py's."""
import imaplib
import random
import re
import smtplib
import threading
import time

from conftest import free_port, wait
from remote_mx import RemoteMx
from test_cluster import Cluster, engines, imap  # noqa: F401 (engines: the fixture)

LOAD_SECONDS = 60
KILL_EVERY = 10
SINK = "127.0.0.70"


def test_kill_9_every_10s_under_load_loses_nothing_acknowledged(engines):  # noqa: F811
    port = free_port()
    sink = RemoteMx(SINK, port, starttls=False)
    c = Cluster(*engines, extra=(
        '[limits]\nmax_connections_per_ip = 0\nmax_messages_per_hour = 0\n'
        '[relay]\nallow_ip_group = "local"\n'
        f'[delivery]\nmode = "relay"\nrelay_host = "{SINK}"\nrelay_port = {port}\nretry_interval = "1s"\n'))
    try:
        for _ in range(3):
            c.add_node()
        nodes = c.nodes
        lock = threading.Lock()
        acked = {"local": [], "remote": [], "mixed": [], "append": []}
        seen_back = []  # (what, before, after) an observer saw go back
        stop = threading.Event()
        rng = random.Random(7)

        def sender(tag):
            i = 0
            while not stop.is_set():
                node = nodes[rng.randrange(3)]
                kind = ("local", "remote", "mixed")[i % 3]
                subject = f"chaos-{tag}-{i}-{kind}"
                i += 1
                rcpts = {"local": ["demo@example.test"], "remote": [f"r{i}@remote.test"],
                         "mixed": ["demo@example.test", f"m{i}@remote.test"]}[kind]
                try:
                    with smtplib.SMTP(node.address, node.ports["smtp"], timeout=10) as s:
                        s.sendmail("alice@example.test", rcpts, f"Subject: {subject}\r\n\r\nx\r\n".encode())
                    with lock:
                        acked[kind].append(subject)
                except (OSError, smtplib.SMTPException):
                    time.sleep(0.05)  # the node is down or refused: not acknowledged

        def appender(tag):
            i = 0
            while not stop.is_set():
                try:
                    m = imap(nodes[rng.randrange(3)])
                    while not stop.is_set():
                        subject = f"chaos-{tag}-{i}-append"
                        i += 1
                        typ, data = m.append("INBOX", None, None, f"Subject: {subject}\r\n\r\nx\r\n".encode())
                        if typ == "OK":
                            with lock:
                                acked["append"].append(subject)
                except (OSError, imaplib.IMAP4.error, AssertionError):
                    time.sleep(0.05)

        def observer():
            last = {}
            while not stop.is_set():
                try:
                    m = imap(nodes[rng.randrange(3)])
                    for _ in range(20):
                        typ, data = m.status("INBOX", "(UIDNEXT HIGHESTMODSEQ)")
                        if typ != "OK":
                            break
                        now = {k: int(v) for k, v in re.findall(rb"(UIDNEXT|HIGHESTMODSEQ) (\d+)", data[0])}
                        for k, v in now.items():
                            if v < last.get(k, 0):
                                seen_back.append((k, last[k], v))
                            last[k] = max(v, last.get(k, 0))
                        time.sleep(0.1)
                    m.logout()
                except (OSError, imaplib.IMAP4.error, AssertionError):
                    time.sleep(0.05)

        threads = [threading.Thread(target=sender, args=(f"s{k}",), daemon=True) for k in range(3)]
        threads += [threading.Thread(target=appender, args=("a",), daemon=True),
                    threading.Thread(target=observer, daemon=True)]
        for t in threads:
            t.start()
        killed = []
        deadline = time.time() + LOAD_SECONDS
        while time.time() < deadline:
            time.sleep(min(KILL_EVERY, max(0, deadline - time.time())))
            if time.time() >= deadline:
                break
            victim = nodes[rng.randrange(3)]
            victim.kill9()
            victim.proc.wait(10)
            killed.append(victim.address)
            time.sleep(0.5)
            victim.start()  # its spool still holds what it acknowledged and had not delivered
        stop.set()
        for t in threads:
            t.join(30)
        assert len(killed) >= LOAD_SECONDS // KILL_EVERY - 1, killed
        for kind, subjects in acked.items():
            assert subjects, f"no {kind} message was acknowledged in {LOAD_SECONDS} s"

        # Locally: every acknowledged message exactly once; UIDs distinct.
        want_local = acked["local"] + acked["mixed"] + acked["append"]
        m = imap(nodes[0])

        def inbox():
            m.select("INBOX")
            typ, data = m.uid("FETCH", "1:*", "(UID BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
            got = []
            for item in data:
                if isinstance(item, tuple):
                    uid = int(re.search(rb"UID (\d+)", item[0]).group(1))
                    subj = re.search(rb"Subject: (\S+)", item[1])
                    got.append((uid, subj.group(1).decode() if subj else ""))
            return got
        wait(lambda: {s for _, s in inbox()} >= set(want_local), timeout=60, what="every acknowledged local message")
        got = inbox()
        uids = [u for u, _ in got]
        assert len(uids) == len(set(uids))
        counts = {}
        for _, s in got:
            counts[s] = counts.get(s, 0) + 1
        twice = sorted(s for s in want_local if counts.get(s, 0) != 1)
        assert not twice, f"not exactly once: {twice[:10]} ({len(twice)})"
        m.logout()
        # Remotely: at least once.
        want_remote = set(acked["remote"] + acked["mixed"])

        def at_sink():
            return {re.search(rb"Subject: (\S+)", x["data"]).group(1).decode() for x in sink.messages}
        wait(lambda: at_sink() >= want_remote, timeout=60, what="every acknowledged remote message at the sink")
        assert not seen_back, seen_back[:5]
        for n in nodes:
            assert n.proc.poll() is None
        print(f"chaos: {sum(len(v) for v in acked.values())} acknowledged "
              f"({', '.join(f'{k} {len(v)}' for k, v in acked.items())}), nodes killed: {killed}")
    finally:
        c.close()
        sink.stop()
