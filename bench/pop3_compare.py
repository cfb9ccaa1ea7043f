#!/usr/bin/python3
"""bulwark's POP3 against Dovecot's (Debian's dovecot-pop3d), side by side, over the
same Maildir content and the same password hashes (bulwark's Argon2id strings, which
Dovecot verifies with libsodium too), both in plain text on loopback:

  logins/s   repeated USER/PASS/QUIT of 50 users from 4 client processes, for 8 s;
             bulwark with its login cache, bulwark without it (every login pays
             Argon2id: "today"), Dovecot with its auth cache on (auth_cache_size)
  RETR MB/s  20 client processes, each its own user with 200 messages of 20 KiB,
             every message RETRieved (pipelined), best of 3
  UIDL 100k  login + UIDL of a 100,000-message mailbox: the first time (index built)
             and then (best of 3)

Usage: /usr/bin/python3 bench/pop3_compare.py [--bin build/bulwark]
Prints each figure and bulwark/Dovecot ratios (higher is better for bulwark; for
times, Dovecot's time / bulwark's)."""
import argparse
import multiprocessing
import os
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
from benchlib import PASSWORD, free_port  # noqa: E402

USERS = 50
MSGS = 200
MSG_SIZE = 20 * 1024
BIG = 100000


def body(i, size):
    head = f"From: a@remote.test\nTo: u@bench.test\nSubject: bench {i}\nMessage-ID: <{i}@bench>\n\n".encode()
    line = b"x" * 76 + b"\n"
    n = max(0, (size - len(head)) // len(line))
    return head + line * n


def fill(maildir, n, size, owner=None):
    for d in ("tmp", "new", "cur"):
        (maildir / d).mkdir(parents=True, exist_ok=True)
    for i in range(n):
        b = body(i, size)
        lines = b.count(b"\n")
        name = f"{1700000000 + i}.M{i}P1Q1.bench,S={len(b)},W={len(b) + lines}"
        (maildir / "new" / name).write_bytes(b)
    if owner:
        for dirpath, dirs, files in os.walk(maildir):
            os.chown(dirpath, owner.pw_uid, owner.pw_gid)
            for f in files:
                os.chown(os.path.join(dirpath, f), owner.pw_uid, owner.pw_gid)


class Conn:
    def __init__(self, port):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=120)
        self.buf = b""
        self.line()

    def line(self):
        while b"\r\n" not in self.buf:
            d = self.s.recv(65536)
            if not d:
                raise EOFError
            self.buf += d
        line, _, self.buf = self.buf.partition(b"\r\n")
        return line

    def cmd(self, c):
        self.s.sendall(c.encode() + b"\r\n")
        return self.line()

    def multiline(self):
        while True:
            i = self.buf.find(b"\r\n.\r\n")
            if i >= 0:
                out, self.buf = self.buf[:i], self.buf[i + 5:]
                return out
            d = self.s.recv(1 << 20)
            if not d:
                raise EOFError
            self.buf += d

    def login(self, user):
        assert self.cmd("USER " + user).startswith(b"+OK")
        r = self.cmd("PASS " + PASSWORD)
        assert r.startswith(b"+OK"), r

    def close(self):
        self.cmd("QUIT")
        self.s.close()


def pop3_login(port, user):
    c = Conn(port)
    c.login(user)
    c.close()


def login_worker(port, users, seconds, q, one_login):
    n = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        for u in users:
            one_login(port, u)
            n += 1
            if time.monotonic() >= end:
                break
    q.put(n)


def logins_per_s(port, users, seconds=8, procs=4, one_login=pop3_login):
    """Logins per second from `procs` client processes, each looping over its share of
    `users` with `one_login(port, user)` (connect, log in, log out)."""
    q = multiprocessing.Queue()
    share = [users[i::procs] for i in range(procs)]
    ps = [multiprocessing.Process(target=login_worker, args=(port, s, seconds, q, one_login)) for s in share]
    t = time.monotonic()
    for p in ps:
        p.start()
    total = sum(q.get() for _ in ps)
    for p in ps:
        p.join()
    return total / (time.monotonic() - t)


def retr_worker(port, user, q):
    c = Conn(port)
    c.login(user)
    n = int(c.cmd("STAT").split()[1])
    t = time.monotonic()
    c.s.sendall(b"".join(b"RETR %d\r\n" % i for i in range(1, n + 1)))
    got = 0
    for _ in range(n):
        got += len(c.multiline())
    q.put((got, time.monotonic() - t))
    c.close()


def retr_mb_s(port, users):
    q = multiprocessing.Queue()
    ps = [multiprocessing.Process(target=retr_worker, args=(port, u, q)) for u in users]
    t = time.monotonic()
    for p in ps:
        p.start()
    got = sum(q.get()[0] for _ in ps)
    wall = time.monotonic() - t
    for p in ps:
        p.join()
    return got / wall / 1e6


def uidl_time(port, user):
    t = time.monotonic()
    c = Conn(port)
    c.login(user)
    c.s.sendall(b"UIDL\r\n")
    c.line()
    lines = c.multiline().count(b"\r\n") + 1
    c.close()
    assert lines == BIG, lines
    return time.monotonic() - t


def bulwark_config(root, extra, service="pop3"):
    d = root / "bulwark"
    d.mkdir(exist_ok=True)
    port = free_port()
    (d / "b.toml").write_text(
        f'[server]\nhostname = "bench.local"\ndata_dir = "data"\nlog_dir = "log"\nuser = ""\n'
        f'[[listener]]\nservice = "{service}"\naddress = "127.0.0.1"\nport = {port}\n'
        f'[policy]\nmode = "none"\nauth_failure_delay = "0s"\n{extra}\n'
        f'[limits]\nmax_mailbox_connections_per_ip = 10000\nmax_connections_per_ip = 10000\n')
    return port


def start_bulwark(bin_, root, extra, service="pop3"):
    d = root / "bulwark"
    port = bulwark_config(root, extra, service)
    proc = subprocess.Popen([bin_, "--config", str(d / "b.toml"), "serve"], stderr=open(d / "serve.log", "ab"))
    wait_port(port, proc)
    return proc, port


def wait_port(port, proc):
    for _ in range(300):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if proc.poll() is not None:
                raise SystemExit(f"server exited with {proc.returncode}")
            time.sleep(0.1)
    raise SystemExit("server did not start")


def start_dovecot(root, hashes, protocol="pop3"):
    """A private Dovecot on loopback serving `protocol` (pop3 or imap) in its
    high-performance login mode, auth cache on."""
    d = root / "dovecot"
    port = free_port()
    pop_port, imap_port = (port, 0) if protocol == "pop3" else (0, port)
    nobody = pwd.getpwnam("nobody")
    (d / "passwd").write_text("".join(f"{u}:{{ARGON2ID}}{h}\n" for u, h in hashes))
    for sub in ("run", "state"):
        (d / sub).mkdir(exist_ok=True)
    (d / "dovecot.conf").write_text(f"""
base_dir = {d}/run
state_dir = {d}/state
log_path = {d}/dovecot.log
protocols = {protocol}
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
auth_cache_size = 10M
auth_cache_ttl = 1 hour
passdb {{
  driver = passwd-file
  args = {d}/passwd
}}
userdb {{
  driver = static
  args = uid={nobody.pw_uid} gid={nobody.pw_gid} home={d}/home/%n
}}
mail_location = maildir:~/Maildir
first_valid_uid = {nobody.pw_uid}
mail_max_userip_connections = 10000
pop3_uidl_format = %08Xv%08Xu
service pop3-login {{
  inet_listener pop3 {{
    port = {pop_port}
  }}
  inet_listener pop3s {{
    port = 0
  }}
  service_count = 0
  process_min_avail = 2
}}
service pop3 {{
  process_limit = 1024
}}
service imap-login {{
  inet_listener imap {{
    port = {imap_port}
  }}
  inet_listener imaps {{
    port = 0
  }}
  service_count = 0
  process_min_avail = 2
}}
service imap {{
  process_limit = 6000
}}
default_client_limit = 12000
default_vsz_limit = 1G
""")
    proc = subprocess.Popen(["/usr/sbin/dovecot", "-F", "-c", str(d / "dovecot.conf")],
                            stdout=subprocess.DEVNULL, stderr=open(d / "stderr", "wb"))
    wait_port(port, proc)
    return proc, port


def stop(proc):
    proc.terminate()
    proc.wait(timeout=60)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=str(pathlib.Path(__file__).resolve().parent.parent / "build" / "bulwark"))
    args = ap.parse_args()
    root = pathlib.Path(tempfile.mkdtemp(prefix="bulwark-pop3-bench-"))
    root.chmod(0o755)
    try:
        run(args.bin, root)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def run(bin_, root):
    d = root / "bulwark"
    bulwark_config(root, "")
    cli = [bin_, "--config", str(d / "b.toml")]
    subprocess.run(cli + ["domain", "add", "bench.test"], check=True, capture_output=True)
    users = [f"u{i}@bench.test" for i in range(USERS)] + ["big@bench.test"]
    for u in users:
        subprocess.run(cli + ["user", "add", u, "--password-stdin"], input=(PASSWORD + "\n").encode(), check=True,
                       capture_output=True)
    subprocess.run(cli + ["alias", "add", "postmaster@bench.test", "u0@bench.test"], check=True, capture_output=True)
    db = next((d / "data").rglob("*.db"))
    hashes = sqlite3.connect(db).execute("SELECT key, password_hash FROM users").fetchall()
    print(f"content: {USERS} users x {MSGS} messages of {MSG_SIZE // 1024} KiB, one user with {BIG:,} messages")
    nobody = pwd.getpwnam("nobody")
    (root / "dovecot").mkdir()
    for i in range(USERS):
        fill(d / "data" / "mail" / "bench.test" / f"u{i}", MSGS, MSG_SIZE)
        fill(root / "dovecot" / "home" / f"u{i}" / "Maildir", MSGS, MSG_SIZE, nobody)
    fill(d / "data" / "mail" / "bench.test" / "big", BIG, 300)
    fill(root / "dovecot" / "home" / "big" / "Maildir", BIG, 300, nobody)
    os.chown(root / "dovecot" / "home", nobody.pw_uid, nobody.pw_gid)
    os.sync()

    res = {}
    bproc, bport = start_bulwark(bin_, root, "")
    dproc, dport = start_dovecot(root, hashes)
    try:
        res["uidl_first_b"] = uidl_time(bport, "big@bench.test")
        res["uidl_first_d"] = uidl_time(dport, "big@bench.test")
        res["uidl_b"] = min(uidl_time(bport, "big@bench.test") for _ in range(3))
        res["uidl_d"] = min(uidl_time(dport, "big@bench.test") for _ in range(3))
        ul = users[:USERS]
        logins_per_s(bport, ul, seconds=1)  # warm: indexes built, caches filled
        logins_per_s(dport, ul, seconds=1)
        res["login_b"] = logins_per_s(bport, ul)
        res["login_d"] = logins_per_s(dport, ul)
        res["retr_b"] = max(retr_mb_s(bport, ul[:20]) for _ in range(3))
        res["retr_d"] = max(retr_mb_s(dport, ul[:20]) for _ in range(3))
    finally:
        stop(bproc)
        stop(dproc)
    bproc, bport = start_bulwark(bin_, root, 'login_cache_ttl = "0s"')
    try:
        res["login_b_nocache"] = logins_per_s(bport, users[:USERS])
    finally:
        stop(bproc)

    print(f"logins/s      bulwark {res['login_b']:8.0f}   Dovecot {res['login_d']:8.0f}   "
          f"ratio {res['login_b'] / res['login_d']:.1f}x")
    print(f"  bulwark without its login cache (every login pays Argon2id): {res['login_b_nocache']:.0f}/s; "
          f"the cache gives {res['login_b'] / res['login_b_nocache']:.0f}x")
    print(f"RETR MB/s     bulwark {res['retr_b']:8.1f}   Dovecot {res['retr_d']:8.1f}   "
          f"ratio {res['retr_b'] / res['retr_d']:.1f}x")
    print(f"UIDL 100k (s) bulwark {res['uidl_b']:8.2f}   Dovecot {res['uidl_d']:8.2f}   "
          f"ratio {res['uidl_d'] / res['uidl_b']:.1f}x")
    print(f"  first access (index built): bulwark {res['uidl_first_b']:.2f} s, Dovecot {res['uidl_first_d']:.2f} s")


if __name__ == "__main__":
    main()
