#!/usr/bin/python3
"""A 10-second flood from one address must not slow other clients.

Measures the latency of a full SMTP transaction from 127.0.0.3 (one every 50 ms):
first alone, then while 127.0.0.2 floods with 16 concurrent senders for 10 seconds
(bounded in time and count). The flooder meets the hourly limit (450 at MAIL) after
max_messages_per_hour. Prints p50/p99 for both phases.
Usage: flood.py BULWARK_BIN ROOT"""
import pathlib
import smtplib
import socket
import statistics
import subprocess
import sys
import threading
import time

BIN, ROOT = sys.argv[1], pathlib.Path(sys.argv[2]) / "flood"
FLOOD_SECONDS, FLOOD_THREADS, MAX_FLOOD = 10, 16, 200000
ROOT.mkdir(parents=True)
with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
(ROOT / "b.toml").write_text(f'[server]\nhostname = "bench.local"\ndata_dir = "data"\nlog_dir = "log"\nuser = ""\n'
                             f'[[listener]]\nservice = "smtp"\naddress = "127.0.0.1"\nport = {port}\n'
                             '[limits]\nmax_messages_per_hour = 500\nmax_connections_per_ip = 50\n'
                             '[relay]\nallow_ip_group = ""\n')
cli = [BIN, "--config", str(ROOT / "b.toml")]
subprocess.run(cli + ["domain", "add", "bench.test"], check=True, capture_output=True)
subprocess.run(cli + ["user", "add", "u@bench.test", "--password-stdin"], input=b"Bench-Passw0rd-1\n", check=True,
               capture_output=True)
subprocess.run(cli + ["alias", "add", "postmaster@bench.test", "u@bench.test"], check=True, capture_output=True)
proc = subprocess.Popen(cli + ["serve"], stderr=open(ROOT / "serve.log", "wb"))
time.sleep(0.5)
MSG = b"Subject: x\r\n\r\n" + b"y" * 76 + b"\r\n"


def one(src):
    t = time.monotonic()
    with smtplib.SMTP("127.0.0.1", port, source_address=(src, 0), timeout=30) as s:
        s.sendmail("a@remote.test", ["u@bench.test"], MSG)
    return time.monotonic() - t


def probe(seconds):
    lat = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        lat.append(one("127.0.0.3"))
        time.sleep(0.05)
    return lat


def pct(v, p):
    v = sorted(v)
    return v[min(len(v) - 1, int(len(v) * p))] * 1000


try:
    base = probe(3)
    stop = threading.Event()
    counts = {"sent": 0, "refused": 0}
    lock = threading.Lock()

    def flooder():
        while not stop.is_set():
            try:
                with smtplib.SMTP("127.0.0.1", port, source_address=("127.0.0.2", 0), timeout=30) as s:
                    for _ in range(20):
                        if stop.is_set():
                            break
                        try:
                            s.sendmail("flood@remote.test", ["u@bench.test"], MSG)
                            k = "sent"
                        except smtplib.SMTPSenderRefused:
                            k = "refused"
                        with lock:
                            counts[k] += 1
                            if counts["sent"] + counts["refused"] >= MAX_FLOOD:
                                stop.set()
            except (OSError, smtplib.SMTPException):
                time.sleep(0.01)

    threads = [threading.Thread(target=flooder) for _ in range(FLOOD_THREADS)]
    for t in threads:
        t.start()
    loaded = probe(FLOOD_SECONDS)
    stop.set()
    for t in threads:
        t.join()
    print(f"flood from 127.0.0.2 for {FLOOD_SECONDS}s: {counts['sent']} accepted, {counts['refused']} refused (450)")
    print(f"latency of a transaction from 127.0.0.3: alone p50 {statistics.median(base) * 1000:.1f} ms "
          f"p99 {pct(base, 0.99):.1f} ms; during the flood p50 {statistics.median(loaded) * 1000:.1f} ms "
          f"p99 {pct(loaded, 0.99):.1f} ms ({len(loaded)} samples)")
finally:
    proc.terminate()
    proc.wait()
