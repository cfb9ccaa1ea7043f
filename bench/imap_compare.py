#!/usr/bin/python3
"""bulwark's IMAP against Dovecot's (Debian's dovecot-imapd), side by side, over the same
Maildir content and the same Argon2id password hashes, plain text on loopback:

  logins/s        LOGIN/LOGOUT of 50 users from 4 client processes for 8 s
  FETCH FLAGS     login + SELECT + UID FETCH 1:* (FLAGS) of a 100,000-message folder
                  (seconds: the first time, then best of 3)
  FETCH MB/s      20 client processes, each its own user with 200 messages of 20 KiB,
                  UID FETCH 1:* BODY.PEEK[] (best of 3)
  SEARCH BODY     SEARCH BODY of a word in 1% of 10,000 messages (best of 3 seconds)
  IDLE memory     N connections logged in, INBOX selected, in IDLE: server memory per
                  connection (bulwark: its RSS; Dovecot: the RSS of all its processes)
  SORT / THREAD   a mailing list of 10,000 and of 100,000 messages (subjects with Re:,
                  Fwd: and [tags], 500 senders, a year of dates, 60% replies by
                  References): SORT (ARRIVAL), (DATE), (SUBJECT), (FROM) and THREAD
                  REFERENCES -- the first SORT after start (headers read), then best of 3

Usage: /usr/bin/python3 bench/imap_compare.py [--bin build/bulwark] [--idle 5000] [--only sort]"""
import argparse
import multiprocessing
import os
import resource
import pathlib
import pwd
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from benchlib import PASSWORD  # noqa: E402
import pop3_compare  # noqa: E402
from pop3_compare import bulwark_config, fill, start_bulwark, start_dovecot, stop  # noqa: E402

USERS = 50
MSGS = 200
MSG_SIZE = 20 * 1024
BIG = 100000
SEARCHED = 10000


class Imap:
    def __init__(self, port):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=300)
        self.buf = b""
        self.n = 0
        self.line()

    def line(self):
        while b"\r\n" not in self.buf:
            d = self.s.recv(1 << 20)
            if not d:
                raise EOFError
            self.buf += d
        line, _, self.buf = self.buf.partition(b"\r\n")
        return line

    def cmd(self, text):
        """Sends a command; returns the bytes of the whole answer (literals included).
        Reads by offset into the buffer: partitioning a large buffer once per line
        copies it each time, which made the client, not the server, the bottleneck of
        a 100,000-line answer."""
        self.n += 1
        tag = b"t%d" % self.n
        self.s.sendall(tag + b" " + text.encode() + b"\r\n")
        got = 0
        pos = 0
        buf = self.buf
        while True:
            eol = buf.find(b"\r\n", pos)
            while eol < 0:
                d = self.s.recv(1 << 20)
                if not d:
                    raise EOFError
                buf = buf[pos:] + d
                pos = 0
                eol = buf.find(b"\r\n")
            line = buf[pos:eol]
            pos = eol + 2
            got += len(line) + 2
            if line.endswith(b"}") and b"{" in line:  # a literal follows
                n = int(line[line.rindex(b"{") + 1:-1])
                while len(buf) - pos < n:
                    d = self.s.recv(1 << 20)
                    if not d:
                        raise EOFError
                    buf = buf[pos:] + d
                    pos = 0
                pos += n
                got += n
                continue
            if line.startswith(tag + b" "):
                assert line.startswith(tag + b" OK"), line
                self.buf = buf[pos:]
                return got

    def login(self, user):
        self.cmd(f"LOGIN {user} {PASSWORD}")


def imap_login(port, user):
    c = Imap(port)
    c.login(user)
    c.cmd("LOGOUT")
    c.s.close()


def logins_per_s(port, users, seconds=8):
    return pop3_compare.logins_per_s(port, users, seconds, one_login=imap_login)


def flags_time(port, user):
    t = time.monotonic()
    c = Imap(port)
    c.login(user)
    c.cmd("SELECT INBOX")
    c.cmd("UID FETCH 1:* (FLAGS)")
    c.cmd("LOGOUT")
    return time.monotonic() - t


def fetch_worker(port, user, q):
    c = Imap(port)
    c.login(user)
    c.cmd("EXAMINE INBOX")
    q.put(c.cmd("UID FETCH 1:* BODY.PEEK[]"))
    c.cmd("LOGOUT")


def fetch_mb_s(port, users):
    q = multiprocessing.Queue()
    ps = [multiprocessing.Process(target=fetch_worker, args=(port, u, q)) for u in users]
    t = time.monotonic()
    for p in ps:
        p.start()
    got = sum(q.get() for _ in ps)
    wall = time.monotonic() - t
    for p in ps:
        p.join()
    return got / wall / 1e6


def search_time(port, user):
    c = Imap(port)
    c.login(user)
    c.cmd("EXAMINE INBOX")
    t = time.monotonic()
    c.cmd("SEARCH BODY needleword")
    took = time.monotonic() - t
    c.cmd("LOGOUT")
    return took


def fill_list(maildir, n, owner=None, seed=5256):
    """A mailing list's folder: what SORT and THREAD read is in the headers."""
    import random
    rnd = random.Random(seed)
    topics = [f"topic {k} about {w}" for k, w in enumerate(rnd.choices(["builds", "lunch", "the release", "café",
                                                                        "Ünïcode", "backups", "plans"], k=2000))]
    for d in ("tmp", "new", "cur"):
        (maildir / d).mkdir(parents=True, exist_ok=True)
    for i in range(n):
        subj = rnd.choice(["", "", "Re: ", "RE: ", "Re: Re: ", "Fwd: ", "[list] Re: "]) + rnd.choice(topics)
        day = rnd.randrange(365)
        date = time.strftime("%a, %d %b %Y %H:%M:%S +0000", time.gmtime(1672531200 + day * 86400 + rnd.randrange(86400)))
        head = (f"From: Sender {rnd.randrange(500)} <s{rnd.randrange(500)}@example.org>\nTo: list@bench.test\n"
                f"Subject: {subj}\nDate: {date}\nMessage-ID: <{i}@list.bench>\n")
        if i and rnd.random() < 0.6:
            parents = sorted(rnd.sample(range(max(0, i - 500), i), min(i, rnd.randrange(1, 5))))
            head += "References: " + " ".join(f"<{p}@list.bench>" for p in parents) + "\n"
        b = (head + "\n" + "a short reply line\n" * 20).encode()
        lines = b.count(b"\n")
        name = f"{1700000000 + i}.M{i}P1Q1.bench,S={len(b)},W={len(b) + lines}"
        (maildir / "new" / name).write_bytes(b)
    if owner:
        for dirpath, dirs, files in os.walk(maildir):
            os.chown(dirpath, owner.pw_uid, owner.pw_gid)
            for f in files:
                os.chown(os.path.join(dirpath, f), owner.pw_uid, owner.pw_gid)


SORTS = ["SORT (ARRIVAL) UTF-8 ALL", "SORT (DATE) UTF-8 ALL", "SORT (SUBJECT) UTF-8 ALL", "SORT (FROM) UTF-8 ALL",
         "THREAD REFERENCES UTF-8 ALL"]


def sort_times(port, user):
    """The first SORT (DATE) of the folder (headers read), then the best of 3 of each."""
    c = Imap(port)
    c.login(user)
    c.cmd("EXAMINE INBOX")
    t = time.monotonic()
    c.cmd("SORT (DATE) UTF-8 ALL")
    out = {"first": time.monotonic() - t}
    for cmd in SORTS:
        best = None
        for _ in range(3):
            t = time.monotonic()
            c.cmd(cmd)
            took = time.monotonic() - t
            best = took if best is None else min(best, took)
        out[cmd] = best
    c.cmd("LOGOUT")
    return out


def tree_pss_kib(pid):
    """Proportional set size of a process and all its descendants: shared pages (the
    libraries of Dovecot's one process per connection) counted once, not per process."""
    children = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                ppid = int(open(f"/proc/{d}/stat").read().rsplit(")", 1)[1].split()[1])
                children.setdefault(ppid, []).append(int(d))
            except (OSError, ValueError, IndexError):
                pass
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            for line in open(f"/proc/{p}/smaps_rollup"):
                if line.startswith("Pss:"):
                    total += int(line.split()[1])
        except OSError:
            pass
        todo += children.get(p, [])
    return total


def idle_kib_each(port, pid, users, n):
    """Memory per IDLE connection: the slope between a tenth of the connections and all
    of them (each logged in, INBOX selected, IDLE), so that what a server allocates once
    (caches, pools, heap already grown by the earlier runs) does not count."""
    conns = []

    def open_until(k):
        while len(conns) < k:
            c = Imap(port)
            c.login(users[len(conns) % len(users)])
            c.cmd("SELECT INBOX")
            c.n += 1
            c.s.sendall(b"i IDLE\r\n")
            assert c.line().startswith(b"+")
            conns.append(c)
        time.sleep(3)
        return tree_pss_kib(pid)

    first = max(1, n // 10)
    low = open_until(first)
    high = open_until(n)
    for c in conns:
        c.s.close()
    return (high - low) / (n - first)


def run(bin_, root, idle_n, only=None):
    d = root / "bulwark"
    bulwark_config(root, "", "imap")
    cli = [bin_, "--config", str(d / "b.toml")]
    subprocess.run(cli + ["domain", "add", "bench.test"], check=True, capture_output=True)
    users = [f"u{i}@bench.test" for i in range(USERS)] + ["big@bench.test", "search@bench.test", "list10k@bench.test",
                                                         "list100k@bench.test"]
    for u in users:
        subprocess.run(cli + ["user", "add", u, "--password-stdin"], input=(PASSWORD + "\n").encode(), check=True,
                       capture_output=True)
    subprocess.run(cli + ["alias", "add", "postmaster@bench.test", "u0@bench.test"], check=True, capture_output=True)
    db = next((d / "data").rglob("*.db"))
    hashes = sqlite3.connect(db).execute("SELECT key, password_hash FROM users").fetchall()
    nobody = pwd.getpwnam("nobody")
    (root / "dovecot").mkdir()
    print(f"content: {USERS} users x {MSGS} messages of {MSG_SIZE // 1024} KiB, a {BIG:,}-message folder, "
          f"{SEARCHED:,} messages to search, mailing lists of 10,000 and 100,000 messages to sort")
    for name, n in (("list10k", 10000), ("list100k", 100000)):
        fill_list(d / "data" / "mail" / "bench.test" / name, n)
        fill_list(root / "dovecot" / "home" / name / "Maildir", n, nobody)
    for i in range(USERS if only != "sort" else 0):
        fill(d / "data" / "mail" / "bench.test" / f"u{i}", MSGS, MSG_SIZE)
        fill(root / "dovecot" / "home" / f"u{i}" / "Maildir", MSGS, MSG_SIZE, nobody)
    if only != "sort":
        fill(d / "data" / "mail" / "bench.test" / "big", BIG, 300)
        fill(root / "dovecot" / "home" / "big" / "Maildir", BIG, 300, nobody)
    for base, owner in ((d / "data" / "mail" / "bench.test" / "search", None),
                        (root / "dovecot" / "home" / "search" / "Maildir", nobody)) if only != "sort" else ():
        fill(base, SEARCHED, 3000, owner)
        for k, f in enumerate(sorted((base / "new").iterdir())):
            if k % 100 == 0:  # 1% carry the word (the name's sizes stay right: same length)
                b = f.read_bytes()
                f.write_bytes(b[:-12] + b"needleword \n")
    os.chown(root / "dovecot" / "home", nobody.pw_uid, nobody.pw_gid)
    os.sync()
    res = {}
    bproc, bport = start_bulwark(bin_, root, "", "imap")
    dproc, dport = start_dovecot(root, hashes, "imap")
    try:
        ul = users[:USERS]
        for name in ("list10k", "list100k"):
            res[f"sort_{name}_b"] = sort_times(bport, f"{name}@bench.test")
            res[f"sort_{name}_d"] = sort_times(dport, f"{name}@bench.test")
        if only == "sort":
            return report_sort(res)
        res["flags_first_b"] = flags_time(bport, "big@bench.test")
        res["flags_first_d"] = flags_time(dport, "big@bench.test")
        res["flags_b"] = min(flags_time(bport, "big@bench.test") for _ in range(3))
        res["flags_d"] = min(flags_time(dport, "big@bench.test") for _ in range(3))
        search_time(bport, "search@bench.test")
        search_time(dport, "search@bench.test")
        res["search_b"] = min(search_time(bport, "search@bench.test") for _ in range(3))
        res["search_d"] = min(search_time(dport, "search@bench.test") for _ in range(3))
        logins_per_s(bport, ul, seconds=1)
        logins_per_s(dport, ul, seconds=1)
        res["login_b"] = logins_per_s(bport, ul)
        res["login_d"] = logins_per_s(dport, ul)
        res["fetch_b"] = max(fetch_mb_s(bport, ul[:20]) for _ in range(3))
        res["fetch_d"] = max(fetch_mb_s(dport, ul[:20]) for _ in range(3))
        res["idle_b"] = idle_kib_each(bport, bproc.pid, ul, idle_n)
        res["idle_d"] = idle_kib_each(dport, dproc.pid, ul, idle_n)
    finally:
        stop(bproc)
        stop(dproc)
    print(f"logins/s          bulwark {res['login_b']:8.0f}   Dovecot {res['login_d']:8.0f}   "
          f"ratio {res['login_b'] / res['login_d']:.1f}x")
    print(f"FETCH FLAGS 100k  bulwark {res['flags_b']:8.2f}s  Dovecot {res['flags_d']:8.2f}s  "
          f"ratio {res['flags_d'] / res['flags_b']:.1f}x   (first: {res['flags_first_b']:.2f}s / "
          f"{res['flags_first_d']:.2f}s)")
    print(f"FETCH bodies MB/s bulwark {res['fetch_b']:8.1f}   Dovecot {res['fetch_d']:8.1f}   "
          f"ratio {res['fetch_b'] / res['fetch_d']:.1f}x")
    print(f"SEARCH BODY 10k   bulwark {res['search_b']:8.3f}s  Dovecot {res['search_d']:8.3f}s  "
          f"ratio {res['search_d'] / res['search_b']:.1f}x")
    print(f"IDLE, {idle_n} conns  bulwark {res['idle_b']:8.1f}   Dovecot {res['idle_d']:8.1f} KiB each   "
          f"ratio {res['idle_d'] / max(res['idle_b'], 0.1):.1f}x")
    report_sort(res)


def report_sort(res):
    for name in ("list10k", "list100k"):
        b, d = res[f"sort_{name}_b"], res[f"sort_{name}_d"]
        label = name.replace("list", "")
        print(f"first SORT {label:>5}  bulwark {b['first']:8.3f}s  Dovecot {d['first']:8.3f}s  "
              f"ratio {d['first'] / b['first']:.1f}x")
        for cmd in SORTS:
            what = cmd.split(" UTF-8")[0]
            print(f"{what + ' ' + label:28} bulwark {b[cmd]:8.4f}s  Dovecot {d[cmd]:8.4f}s  ratio {d[cmd] / b[cmd]:.1f}x")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=str(pathlib.Path(__file__).resolve().parent.parent / "build" / "bulwark"))
    ap.add_argument("--idle", type=int, default=5000)
    ap.add_argument("--only", choices=["sort"], help="only the SORT/THREAD comparison")
    args = ap.parse_args()
    # 5,000 connections: the client and both servers (which inherit it) need the fds
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    want = 65536 if hard == resource.RLIM_INFINITY else min(65536, hard)
    resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    if want < 2 * args.idle + 1000:
        raise SystemExit(f"open files limit {want} is too low for --idle {args.idle}")
    root = pathlib.Path(tempfile.mkdtemp(prefix="bulwark-imap-bench-"))
    root.chmod(0o755)
    try:
        run(args.bin, root, args.idle, args.only)
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
