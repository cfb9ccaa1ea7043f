"""Cluster mode's outbound queue (SPEC 16): every queued message is in PostgreSQL under
a lease of the node that accepted it. Shown and acted on from any node; a killed node's
mail is delivered by another once the lease has passed; a node that comes back late
records nothing and drops its copy. Real PostgreSQL and Redis (test_cluster.py's
engines), aiosmtpd as the relay server, smtplib as the sender."""
import re
import signal
import smtplib
import time

import pytest

from conftest import free_port, wait
from remote_mx import RemoteMx
from test_cluster import Cluster, engines, imap  # noqa: F401 (engines: the fixture)

SINK = "127.0.0.71"
LATER = "451 4.3.0 not now"


@pytest.fixture
def relayed(engines):  # noqa: F811
    """Three nodes relaying to one aiosmtpd sink that says "not now" until told."""
    port = free_port()
    sink = RemoteMx(SINK, port, starttls=False)
    sink.handler.rcpt_replies["*"] = LATER
    c = Cluster(*engines, extra=(
        '[relay]\nallow_ip_group = "local"\n'
        f'[delivery]\nmode = "relay"\nrelay_host = "{SINK}"\nrelay_port = {port}\nretry_interval = "1h"\n'))
    try:
        for _ in range(3):
            c.add_node()
        yield c, sink
    finally:
        c.close()
        sink.stop()


def send(node, subject, rcpt="far@remote.test"):
    rcpts = rcpt if isinstance(rcpt, list) else [rcpt]
    with smtplib.SMTP(node.address, node.ports["smtp"], timeout=10) as s:
        s.sendmail("alice@example.test", rcpts, f"Subject: {subject}\r\n\r\nbody of {subject}\r\n".encode())


def queue_ids(node):
    """The cluster's queue as `bulwark queue list` on `node` shows it: id -> holder."""
    out = node.cli("queue", "list").stdout
    return dict(re.findall(r"^(\S+)  \d+ bytes  from <[^>]*>  node (\S+)", out, re.M))


def at_sink(sink, subject):
    return [m for m in sink.messages if f"Subject: {subject}".encode() in m["data"]]


def deferred_on(node, subject, rcpt="far@remote.test"):
    """Sends through `node` and waits until its first attempt was deferred."""
    before = node.log("mail.log").count("deferred id=")
    send(node, subject, rcpt)
    wait(lambda: node.log("mail.log").count("deferred id=") > before, timeout=10)
    ids = queue_ids(node)
    assert len(ids) == 1, ids
    return next(iter(ids))


def test_queue_is_seen_and_retried_from_any_node_and_a_killed_nodes_mail_is_taken_over(relayed):
    c, sink = relayed
    n1, n2, n3 = c.nodes
    # Held by the node that accepted it, seen from every node.
    qid = deferred_on(n1, "first")
    assert qid.endswith("-n1")
    for n in (n2, n3):
        assert queue_ids(n) == {qid: "n1"}
    assert n3.cli("queue", "show", qid).stdout.count("Subject: first") == 1
    status = [line.split("\t") for line in n2.cli("cluster", "status").stdout.splitlines()[2:]]
    assert {row[0]: row[7] for row in status}["n1"] == "1", status
    # `queue retry` through node 3 makes node 1 try again now (its next attempt is in an hour).
    sink.handler.rcpt_replies.clear()
    n3.cli("queue", "retry", qid)
    wait(lambda: at_sink(sink, "first"), timeout=15)
    wait(lambda: queue_ids(n2) == {}, timeout=10)

    # Node 1 dies with a deferred message: another node delivers it once the lease (10 s) passed.
    sink.handler.rcpt_replies["*"] = LATER
    qid = deferred_on(n1, "second")
    n1.kill9()
    killed = time.time()
    sink.handler.rcpt_replies.clear()
    wait(lambda: at_sink(sink, "second"), timeout=30)
    took = time.time() - killed
    assert took >= 5, took  # not before the lease ran out (renewed every 3 s until the kill)
    taker = [n for n in (n2, n3) if f"took over message {qid} from node n1" in n.log("bulwark.log")]
    assert len(taker) == 1, "exactly one node takes it over"
    wait(lambda: queue_ids(n2) == {}, timeout=10)
    # Node 1 comes back: its copy is not its own any more; nothing goes out twice.
    n1.start()
    n1.wait_log("bulwark.log", "1 message(s) of this spool dropped")
    time.sleep(4)
    assert len(at_sink(sink, "second")) == 1
    assert len(at_sink(sink, "first")) == 1
    assert queue_ids(n1) == {}
    print(f"taken over {took:.1f} s after the kill (lease 10 s)")


def test_a_lease_holder_back_late_records_nothing_and_drops_its_copy(relayed):
    c, sink = relayed
    n1, n2, n3 = c.nodes
    qid = deferred_on(n1, "late")
    # Node 1 stops (not dead: SIGSTOP, as a long pause or a cut link would); its lease passes.
    n1.proc.send_signal(signal.SIGSTOP)
    try:
        sink.handler.rcpt_replies.clear()
        wait(lambda: at_sink(sink, "late"), timeout=30)
        wait(lambda: queue_ids(n2) == {}, timeout=10)  # finished by the node that took it over
        # `queue retry` for everything: node 1 is told nothing (it holds nothing).
        n2.cli("queue", "retry")
    finally:
        n1.proc.send_signal(signal.SIGCONT)
    # Back, node 1 finds the message is no longer its: its copy goes, no state is
    # written back, the finished message does not come back into the cluster's queue.
    log = n1.wait_log("bulwark.log", f"message {qid} is no longer this node's", timeout=15)
    assert "took over" not in log
    time.sleep(4)
    assert queue_ids(n3) == {}
    assert not list((n1.data / "queue").glob(qid + "*"))
    assert 1 <= len(at_sink(sink, "late")) <= 2  # at least once; a late holder may have sent it again
    # The node is well: new mail through it goes out as ever.
    send(n1, "after")
    wait(lambda: at_sink(sink, "after"), timeout=15)


def test_a_taken_over_message_is_not_delivered_twice_to_a_local_mailbox(relayed, engines):  # noqa: F811
    """Local copies carry the queue id as their origin: a node that takes a message over
    and delivers it again locally finds the first node's copy and makes none."""
    c, sink = relayed
    n1, n2, n3 = c.nodes
    qid = deferred_on(n1, "mixed", ["demo@example.test", "far@remote.test"])
    n1.wait_log("mail.log", f"delivered id={qid} to=<demo@example.test>")
    # As if node 1 had died between the local copy's commit and its record: the cluster's
    # queue forgets the local delivery; then node 1 dies.
    pg = engines[0]
    pg.psql(f"UPDATE queue SET state = '{{}}' WHERE id = '{qid}'", db=c.db)
    n1.kill9()
    sink.handler.rcpt_replies.clear()
    wait(lambda: at_sink(sink, "mixed"), timeout=30)
    taker = next(n for n in (n2, n3) if f"took over message {qid}" in n.log("bulwark.log"))
    taker.wait_log("mail.log", f"delivered id={qid} to=<demo@example.test>")  # delivered again: found there
    m = imap(n2)
    m.select("INBOX")
    typ, data = m.search(None, "SUBJECT", '"mixed"')
    assert len(data[0].split()) == 1, data
    m.logout()


def test_mixed_mail_is_committed_with_its_local_copies_before_the_250(relayed):
    """Local and remote recipients: the local copies and the queue's row are one
    transaction before the 250, so the copy is readable on another node the moment the
    sender is told, and the queue already records it as delivered."""
    c, sink = relayed
    n1, n2, n3 = c.nodes
    send(n2, "both at once", ["demo@example.test", "far@remote.test"])
    m = imap(n3)  # no waiting: committed before the 250
    m.select("INBOX")
    typ, data = m.search(None, "SUBJECT", '"both at once"')
    assert len(data[0].split()) == 1, data
    m.logout()
    ids = queue_ids(n1)
    assert len(ids) == 1 and next(iter(ids.values())) == "n2", ids
    shown = n1.cli("queue", "show", next(iter(ids))).stdout
    assert "local  <demo@example.test>  delivered" in shown and "remote <far@remote.test>" in shown, shown
    # The local copy was made by the end of data's transaction, not by local delivery later.
    qid = next(iter(ids))
    assert f"delivered id={qid} to=<demo@example.test> relay=local mailbox=INBOX (PostgreSQL, at the end of data)" \
        in n2.log("mail.log")
    # The remote part goes out from node 2's spool once the relay takes it.
    sink.handler.rcpt_replies.clear()
    n2.cli("queue", "retry")
    wait(lambda: at_sink(sink, "both at once"), timeout=20)
    wait(lambda: queue_ids(n1) == {}, timeout=10)
