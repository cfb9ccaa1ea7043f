#!/usr/bin/python3
"""Cost of encryption at rest (issue 12): two bulwark servers, one plain and one whose
data dir holds a keyring (made with PyNaCl, as tests/integration/test_encryption.py
does), so it writes the queue, the mailbox, the index, the directory and the logs
sealed. Measured side by side, best of three interleaved runs:
  - SMTP accept + local delivery: smtp-source, 20 sessions, 4 KiB, one message per
    connection, into the Maildir, after a warm-up, the order alternating (target:
    within 15% of plain);
  - IMAP FETCH: every message's BODY.PEEK[] over one connection, best of five (target:
    within 15%).
Then the plain server is stopped and its data dir converted with `bulwark encryption
enable`, then back with `disable`: the conversion speed in MB/s as the commands report it.
Usage: encryption_cost.py BULWARK_BIN ROOT"""
import imaplib
import os
import pathlib
import subprocess
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "tests" / "integration"))
from test_encryption import make_keyring  # noqa: E402

import benchlib  # noqa: E402

N = int(os.environ.get("BENCH_MESSAGES", "5000"))
BIN, ROOT = sys.argv[1], pathlib.Path(sys.argv[2])
ROOT.mkdir(parents=True, exist_ok=True)
PW = "Bench-Encryption-1"


def sealed(d):
    (d / "data").mkdir()
    (d / "data" / "keyring").write_bytes(make_keyring(PW, os.urandom(32)))
    pw = d / "enc.pw"
    pw.write_text(PW + "\n")
    pw.chmod(0o600)


common = '[limits]\nmax_connections_per_ip = 0\n[relay]\nallow_ip_group = ""\n[policy]\nmode = "none"\n'  # LOGIN without TLS (loopback)
services = ("smtp", "imap")
procs = []
try:
    p1, ports1 = benchlib.start(BIN, ROOT, "plain", common, services)
    p2, ports2 = benchlib.start(BIN, ROOT, "sealed", common + '[encryption]\npassword_file = "enc.pw"\n', services,
                                prepare=sealed)
    procs = [p1, p2]
    smtp = {"plain": [], "sealed": []}
    servers = [("plain", ports1), ("sealed", ports2)]
    warm = 500  # not counted: the first runs on a fresh filesystem are slower for either
    for name, ports in servers:
        benchlib.rate(ports["smtp"], warm)
        benchlib.settle(ROOT, name, warm)
    delivered = warm
    for round_ in range(3):
        delivered += N
        for name, ports in (servers if round_ % 2 == 0 else servers[::-1]):  # alternate who goes first
            smtp[name].append(benchlib.rate(ports["smtp"], N))
            benchlib.settle(ROOT, name, delivered)
    newdir = ROOT / "sealed" / "data" / "mail" / "bench.test" / "u" / "new"
    first = next(newdir.iterdir()).read_bytes()[:8]
    assert first == b"BWSEAL2\n", first  # the sealed server did seal

    def fetch_all(port):
        m = imaplib.IMAP4("127.0.0.1", port, timeout=120)
        m.login("u@bench.test", benchlib.PASSWORD)
        m.select("INBOX", readonly=True)
        t = time.monotonic()
        typ, data = m.fetch("1:*", "(BODY.PEEK[])")
        took = time.monotonic() - t
        got = sum(len(d[1]) for d in data if isinstance(d, tuple))
        m.logout()
        return got / took / 1e6, sum(1 for d in data if isinstance(d, tuple))

    imap = {"plain": [], "sealed": []}
    for i in range(5):  # one FETCH takes ~0.15 s and varies by 20% run to run: best of five
        for name, ports in (("plain", ports1), ("sealed", ports2))[::1 if i % 2 == 0 else -1]:
            imap[name].append(fetch_all(ports["imap"]))
    b = {k: max(v) for k, v in smtp.items()}
    f = {k: max(v) for k, v in imap.items()}
    print(f"encryption at rest: {N} msgs of 4 KiB x3, accept + local delivery, best of three: "
          f"plain {b['plain']:.0f} msg/s, sealed {b['sealed']:.0f} msg/s: cost {(1 - b['sealed'] / b['plain']) * 100:.1f}% "
          f"(target < 15%)")
    print(f"  IMAP FETCH 1:* BODY.PEEK[] ({f['plain'][1]} messages), best of five: plain {f['plain'][0]:.1f} MB/s, "
          f"sealed {f['sealed'][0]:.1f} MB/s: cost {(1 - f['sealed'][0] / f['plain'][0]) * 100:.1f}% (target < 15%)")
    print("  (runs: accept plain " + ", ".join(f"{r:.0f}" for r in smtp["plain"]) + "; sealed " +
          ", ".join(f"{r:.0f}" for r in smtp["sealed"]) + ")")
    p1.terminate()
    p1.wait()
    cli = [BIN, "--config", str(ROOT / "plain" / "b.toml"), "encryption"]
    for what in ("enable", "disable"):
        t = time.monotonic()
        r = subprocess.run(cli + [what, "--password-stdin"], input=PW + "\n", capture_output=True, text=True,
                           check=True)
        print(f"  conversion, `encryption {what}` of the plain server's data ({time.monotonic() - t:.1f} s with "
              f"Argon2id): {r.stdout.splitlines()[0]}")
finally:
    for p in procs:
        p.terminate()
        p.wait()
