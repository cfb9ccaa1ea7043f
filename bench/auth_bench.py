#!/usr/bin/python3
"""Authentication costs.
1. Logins per second: 8 client threads for 10 s, each connecting to submission,
   STARTTLS, AUTH, QUIT -- once with AUTH PLAIN (an Argon2id check on the server:
   libsodium INTERACTIVE, 2 passes, 64 MiB) and once with SCRAM-SHA-256 (the client
   does the PBKDF2 work; the server only HMACs).
2. The acceptance benchmark with anti-spoofing off and on (smtp-source, 4 KiB, 20
   sessions, six interleaved runs each in both orders, each run's deliveries finished
   and synced before the next; best throughput). Target: within 5%.
Usage: auth_bench.py BULWARK_BIN ROOT"""
import base64
import hashlib
import hmac
import os
import pathlib
import smtplib
import ssl
import sys
import threading
import time

import benchlib

N = int(os.environ.get("BENCH_MESSAGES", "5000"))
BIN, ROOT = sys.argv[1], pathlib.Path(sys.argv[2])
USER, SECONDS, THREADS = "u@bench.test", 10, 8
CTX = ssl.create_default_context()
CTX.check_hostname = False
CTX.verify_mode = ssl.CERT_NONE


def b64(b):
    return base64.b64encode(b).decode()


def scram(s):
    nonce = b64(os.urandom(18))
    bare = f"n={USER},r={nonce}"
    code, resp = s.docmd("AUTH", "SCRAM-SHA-256 " + b64(("n,," + bare).encode()))
    assert code == 334, resp
    first = base64.b64decode(resp).decode()
    attrs = dict(kv.split("=", 1) for kv in first.split(","))
    salted = hashlib.pbkdf2_hmac("sha256", benchlib.PASSWORD.encode(), base64.b64decode(attrs["s"]), int(attrs["i"]))
    ck = hmac.new(salted, b"Client Key", "sha256").digest()
    without = f"c=biws,r={attrs['r']}"
    msg = f"{bare},{first},{without}".encode()
    sig = hmac.new(hashlib.sha256(ck).digest(), msg, "sha256").digest()
    code, resp = s.docmd(b64(f"{without},p={b64(bytes(a ^ b for a, b in zip(ck, sig)))}".encode()))
    assert code == 334, resp
    code, resp = s.docmd("")
    return code


def plain(s):
    return s.docmd("AUTH", "PLAIN " + b64(f"\0{USER}\0{benchlib.PASSWORD}".encode()))[0]


def logins_per_second(port, mech):
    done, stop = [0] * THREADS, time.monotonic() + SECONDS

    def worker(i):
        while time.monotonic() < stop:
            with smtplib.SMTP("127.0.0.1", port, timeout=30) as s:
                s.starttls(context=CTX)
                s.ehlo("bench")
                assert mech(s) == 235
                done[i] += 1

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(THREADS)]
    t = time.monotonic()
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    return sum(done) / (time.monotonic() - t)


procs = []
try:
    p, ports = benchlib.start(BIN, ROOT, "auth", '[policy]\nmax_auth_failures = 0\n', services=("submission",))
    procs.append(p)
    for name, mech in () if os.environ.get("SKIP_LOGINS") else (("AUTH PLAIN (Argon2id check on the server)", plain), ("SCRAM-SHA-256", scram)):
        print(f"logins/s over STARTTLS, {THREADS} clients, {SECONDS}s, {name}: "
              f"{logins_per_second(ports['submission'], mech):.1f}")
    p1, off = benchlib.start(BIN, ROOT, "spoof-off", '[policy]\nanti_spoofing = false\n[limits]\nmax_connections_per_ip = 0\n')
    p2, on = benchlib.start(BIN, ROOT, "spoof-on", '[policy]\nanti_spoofing = true\n[limits]\nmax_connections_per_ip = 0\n')
    procs += [p1, p2]
    sent = {"spoof-off": 0, "spoof-on": 0}
    for name, port in (("spoof-off", off["smtp"]), ("spoof-on", on["smtp"])):
        benchlib.rate(port, 300)
        sent[name] += 300
        benchlib.settle(ROOT, name, sent[name])
    res = {"off": [], "on": []}
    rounds = [(("off", p1, off["smtp"]), ("on", p2, on["smtp"]))] * 3
    rounds += [(("on", p2, on["smtp"]), ("off", p1, off["smtp"]))] * 3
    # Interleaved, and each order three times: the first run of a pair is measurably
    # slower on this machine, whichever server it is.
    for pair in rounds:
        for name, proc, port in pair:
            res[name].append(benchlib.rate(port, N))
            sent["spoof-" + name] += N
            benchlib.settle(ROOT, "spoof-" + name, sent["spoof-" + name])
    best = {k: max(v) for k, v in res.items()}
    print(f"anti-spoofing cost: {N} msgs x6, best of six: off {best['off']:.0f} msg/s, on {best['on']:.0f} msg/s; "
          f"cost {(1 - best['on'] / best['off']) * 100:.1f}% (target <= 5%)")
finally:
    for p in procs:
        p.terminate()
        p.wait()
