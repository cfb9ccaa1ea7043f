"""Several IMAP sessions writing one mailbox at once, as a phone and a desktop do: flag
changes merge (+FLAGS in one and -FLAGS of another flag in a second both hold), a
message's MODSEQ only grows (RFC 7162 3.1), sequence numbers stay consistent, no UID
ever names two messages. A randomized storm of STOREs is checked against a model, and
a bounded random stress of ten clients against the invariants."""
import os
import random
import re
import threading
import time

from conftest import wait
from imap_raw import ImapRaw, fetch_items
from test_imap import message, send

STRESS_SECONDS = float(os.environ.get("BULWARK_STRESS_SECONDS", "15"))


def flags_of(s, seq):
    """The flags of message `seq` as the session's FETCH leaves them: the last FETCH
    response for it counts (news of another session's change may follow the answer)."""
    found = None
    for line in s.ok(f"FETCH {seq} (FLAGS)"):
        got = fetch_items(line)
        if got and got[0] == seq and "FLAGS" in got[1]:
            found = got[1]["FLAGS"]
    assert found is not None, f"no FLAGS for {seq}"
    return found


def test_two_sessions_plus_and_minus_of_different_flags_both_hold(server):
    send(server, [message(1)])
    server.wait_messages(1)
    a, b = ImapRaw(server), ImapRaw(server)
    a.ok("SELECT INBOX")
    b.ok("SELECT INBOX")
    a.ok("STORE 1 +FLAGS (\\Seen)")
    assert any(b"\\Seen" in l for l in b.ok("NOOP"))  # b has heard of \Seen
    a.ok("STORE 1 +FLAGS (\\Answered)")
    # b, before hearing of \Answered, takes \Seen away: \Answered must survive
    told = b.ok("STORE 1 -FLAGS (\\Seen)")
    assert [fetch_items(l)[1]["FLAGS"] for l in told if fetch_items(l)] == [["\\Answered"]], told
    assert flags_of(a, 1) == ["\\Answered"]
    c = ImapRaw(server)
    c.ok("EXAMINE INBOX")
    assert flags_of(c, 1) == ["\\Answered"]
    # FLAGS replaces with exactly what the client said, also over a stale view
    a.ok("STORE 1 +FLAGS (\\Flagged)")
    b.ok("STORE 1 FLAGS (\\Draft)")
    assert flags_of(c, 1) == ["\\Draft"]
    for s in (a, b, c):
        s.close()


def test_three_sessions_with_keywords_and_silent_stores_lose_nothing(server):
    send(server, [message(i) for i in range(3)])
    server.wait_messages(3)
    s = [ImapRaw(server) for _ in range(3)]
    for x in s:
        x.ok("SELECT INBOX (CONDSTORE)")
    s[0].ok("STORE 1:3 +FLAGS.SILENT (\\Seen)")
    s[1].ok("STORE 1:3 +FLAGS.SILENT ($Work)")
    s[2].ok("STORE 2 +FLAGS.SILENT (\\Flagged)")
    s[0].ok("STORE 2 -FLAGS.SILENT (\\Seen)")
    # s[2] never heard of \Seen or $Work on message 2: its silent change must still tell
    # it the real flags (it cannot know them), with a MODSEQ
    told = s[2].ok("STORE 2 +FLAGS.SILENT (\\Answered)")
    got = [fetch_items(l)[1] for l in told if fetch_items(l) and fetch_items(l)[0] == 2]
    assert got and got[-1]["FLAGS"] == sorted(["$Work", "\\Answered", "\\Flagged"]), told
    fresh = ImapRaw(server)
    fresh.ok("EXAMINE INBOX")
    assert flags_of(fresh, 1) == sorted(["$Work", "\\Seen"])
    assert flags_of(fresh, 2) == sorted(["$Work", "\\Answered", "\\Flagged"])
    assert flags_of(fresh, 3) == sorted(["$Work", "\\Seen"])
    # UNCHANGEDSINCE is checked against the stored modseq, not a stale view
    line = [l for l in fresh.ok("FETCH 3 (MODSEQ)") if b"MODSEQ" in l][0]
    ms = fetch_items(line)[1]["MODSEQ"]
    s[1].ok("STORE 3 +FLAGS.SILENT (\\Flagged)")
    _, done = s[0].cmd(f"STORE 3 (UNCHANGEDSINCE {ms}) -FLAGS (\\Seen)")
    assert done.startswith(b"t") and b"[MODIFIED 3]" in done, done
    assert flags_of(fresh, 3) == sorted(["$Work", "\\Flagged", "\\Seen"])
    for x in s + [fresh]:
        x.close()


def test_a_storm_of_stores_from_several_sessions_matches_the_model(server):
    """Each session owns some flags and changes only those, at random, over a view it
    never refreshes: afterwards every message holds exactly what the model says, and
    every STORE answered with the session's own flags as it had just set them."""
    n = 24
    send(server, [message(i) for i in range(n)])
    server.wait_messages(n)
    owners = [["\\Seen"], ["\\Answered", "\\Flagged"], ["$Work", "\\Draft"]]
    models = [{seq: set() for seq in range(1, n + 1)} for _ in owners]
    problems = []

    def storm(i, seed):
        rnd = random.Random(seed)
        s = ImapRaw(server)
        s.ok("SELECT INBOX")
        for _ in range(60):
            seqs = sorted(rnd.sample(range(1, n + 1), rnd.randint(1, 5)))
            flag = rnd.choice(owners[i])
            add = rnd.random() < 0.6
            told = s.ok(f"STORE {','.join(map(str, seqs))} {'+' if add else '-'}FLAGS ({flag})")
            for seq in seqs:
                (models[i][seq].add if add else models[i][seq].discard)(flag)
            for line in told:
                got = fetch_items(line)
                if not got or got[0] not in seqs:
                    continue
                mine = sorted(f for f in got[1]["FLAGS"] if f in owners[i])
                if mine != sorted(models[i][got[0]]):
                    problems.append((i, got[0], mine, sorted(models[i][got[0]])))
        s.close()

    threads = [threading.Thread(target=storm, args=(i, 1000 + i)) for i in range(len(owners))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not problems, problems[:5]
    check = ImapRaw(server)
    check.ok("EXAMINE INBOX")
    for line in check.ok(f"FETCH 1:{n} (FLAGS)"):
        seq, items = fetch_items(line)
        want = sorted(set().union(*(m[seq] for m in models)))
        assert items["FLAGS"] == want, (seq, items["FLAGS"], want)
    check.close()


class Tracker:
    """What one client was told, checked as it goes: sequence numbers map to the UIDs
    they mapped to (EXPUNGE and EXISTS followed), a message's MODSEQ never goes back,
    HIGHESTMODSEQ never goes back."""

    def __init__(self, name, problems):
        self.name, self.problems = name, problems
        self.view, self.modseq, self.highest = [], {}, 0

    def problem(self, what):
        self.problems.append(f"{self.name}: {what}")

    def feed(self, lines, selecting=False):
        if selecting:
            self.view = []
        for l in lines:
            if m := re.match(rb"\* (\d+) EXPUNGE$", l):
                k = int(m.group(1))
                if not 1 <= k <= len(self.view):
                    self.problem(f"EXPUNGE {k} of {len(self.view)}")
                else:
                    del self.view[k - 1]
            elif m := re.match(rb"\* (\d+) EXISTS$", l):
                k = int(m.group(1))
                if k < len(self.view):
                    self.problem(f"EXISTS {k} below {len(self.view)} without EXPUNGE")
                self.view.extend([None] * (k - len(self.view)))
            elif m := re.search(rb"\[HIGHESTMODSEQ (\d+)\]", l):
                h = int(m.group(1))
                if h < self.highest:
                    self.problem(f"HIGHESTMODSEQ {h} after {self.highest}")
                self.highest = max(self.highest, h)
            elif got := fetch_items(l):
                seq, it = got
                if not 1 <= seq <= len(self.view):
                    self.problem(f"FETCH of {seq} with {len(self.view)} messages")
                    continue
                uid = it.get("UID")
                if uid is None:
                    continue
                if self.view[seq - 1] is None:
                    self.view[seq - 1] = uid
                elif self.view[seq - 1] != uid:
                    self.problem(f"sequence {seq} was UID {self.view[seq - 1]}, now UID {uid}")
                if "MODSEQ" in it:
                    before = self.modseq.get(uid, 0)
                    if it["MODSEQ"] < before:
                        self.problem(f"UID {uid} MODSEQ {it['MODSEQ']} after {before}")
                    self.modseq[uid] = max(before, it["MODSEQ"])
                    self.highest_seen = max(getattr(self, "highest_seen", 0), it["MODSEQ"])
        known = [u for u in self.view if u is not None]
        if known != sorted(set(known)):
            self.problem(f"UIDs out of order in the view: {known[:20]}")


def test_ten_clients_random_operations_keep_uids_modseqs_and_sequence_numbers_consistent(server):
    """The standard IMAP stress run, bounded in time: random SELECT, FETCH, STORE,
    EXPUNGE, APPEND and NOOP from ten clients on one mailbox."""
    send(server, [message(i) for i in range(30)])
    server.wait_messages(30)
    problems, ids, ids_lock = [], {}, threading.Lock()
    counter = iter(range(10**9))
    counts = {}
    deadline = time.time() + STRESS_SECONDS
    flags = ["\\Seen", "\\Answered", "\\Flagged", "\\Draft", "$Label1", "$Label2"]

    def note_ids(lines):
        for l in lines:
            got = fetch_items(l)
            m = re.search(rb"Message-ID: <([^>]+)>", l, re.I)
            if got and m and "UID" in got[1]:
                with ids_lock:
                    uid, mid = got[1]["UID"], m.group(1).decode()
                    if ids.setdefault(uid, mid) != mid:
                        problems.append(f"UID {uid} is {ids[uid]} and {mid}")

    def client(k):
        rnd = random.Random(k)
        s = ImapRaw(server)
        t = Tracker(f"client {k}", problems)
        t.feed(s.ok("SELECT INBOX (CONDSTORE)"), selecting=True)
        ops = 0
        while time.time() < deadline and len(problems) < 20:
            n = len(t.view)
            r = rnd.random()
            if r < 0.05:
                t.feed(s.ok("SELECT INBOX (CONDSTORE)"), selecting=True)
            elif r < 0.30 and n:
                lo = rnd.randint(1, n)
                hi = rnd.randint(lo, min(n, lo + 10))
                lines = s.ok(f"FETCH {lo}:{hi} (UID FLAGS MODSEQ BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])")
                t.feed(lines)
                note_ids(lines)
            elif r < 0.40:
                t.feed(s.ok("UID FETCH 1:* (FLAGS MODSEQ)"))
            elif r < 0.65 and n:
                seqs = sorted(set(rnd.randint(1, n) for _ in range(rnd.randint(1, 4))))
                op = rnd.choice(["+FLAGS", "-FLAGS", "FLAGS", "+FLAGS.SILENT"])
                t.feed(s.ok(f"STORE {','.join(map(str, seqs))} {op} ({rnd.choice(flags)})"))
            elif r < 0.72 and n > 20:
                t.feed(s.ok(f"STORE {rnd.randint(1, n)} +FLAGS.SILENT (\\Deleted)"))
                t.feed(s.ok(rnd.choice(["EXPUNGE", "NOOP"])))
            elif r < 0.85:
                i = next(counter)
                body = (b"From: <a@remote.test>\r\nSubject: stress %d\r\nMessage-ID: <stress-%d@test>\r\n\r\nbody\r\n"
                        % (i, i))
                t.feed(s.ok("APPEND INBOX", literal=body))
            else:
                t.feed(s.ok("NOOP"))
            ops += 1
        counts[k] = (ops, t)
        s.close()

    threads = [threading.Thread(target=client, args=(k,)) for k in range(10)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(STRESS_SECONDS + 120)
    assert not problems, problems[:10]
    assert len(counts) == 10 and sum(c[0] for c in counts.values()) > 100, counts
    # afterwards: each UID still names the message it named, and no MODSEQ anybody was
    # shown is above what is stored now
    check = ImapRaw(server)
    lines = check.ok("EXAMINE INBOX (CONDSTORE)")
    highest = int(re.search(rb"\[HIGHESTMODSEQ (\d+)\]", b"\n".join(lines)).group(1))
    lines = check.ok("UID FETCH 1:* (MODSEQ BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])")
    note_ids(lines)
    final = {fetch_items(l)[1]["UID"]: fetch_items(l)[1]["MODSEQ"] for l in lines if fetch_items(l)}
    for _, t in counts.values():
        for uid, ms in t.modseq.items():
            if uid in final:
                assert final[uid] >= ms, (uid, final[uid], ms)
        assert highest >= t.highest
    assert not problems, problems[:10]
    assert len(set(ids.values())) == len(ids)  # no message under two UIDs
    check.close()
