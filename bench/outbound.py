#!/usr/bin/python3
"""Outbound throughput, side by side: bulwark and a private Postfix both relay N
messages (4 KiB) to Postfix's smtp-sink on loopback, 20 concurrent sessions each, no
TLS. Each server first takes the N messages while its way out is blocked (bulwark: the
relay port is closed; Postfix: defer_transports = smtp), then the way out opens and
the clock runs until its queue is empty. Prints msgs/s for both and the ratio, and
bulwark again with every message DKIM-signed (an RSA-2048 key, then an Ed25519 key for
the From: domain); bulwark's runs are interleaved, best of BENCH_ROUNDS (3) each, with
the CPU time bulwark spent per message while its queue drained.
Then: bulwark's memory with BENCH_QUEUED (default 100,000) messages in its queue.
Usage: outbound.py BULWARK_BIN ROOT"""
import os
import pathlib
import subprocess
import sys
import time

import benchlib

N = int(os.environ.get("BENCH_MESSAGES", "5000"))
QUEUED = int(os.environ.get("BENCH_QUEUED", "100000"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
BIN, ROOT = sys.argv[1], pathlib.Path(sys.argv[2])
HERE = pathlib.Path(__file__).resolve().parent


def inject(port, n, rcpt="r@remote.test", sender="sender@remote.test"):
    subprocess.run(["smtp-source", "-s", "20", "-l", "4096", "-m", str(n), "-f", sender, "-t", rcpt,
                    f"127.0.0.1:{port}"], check=True, stdout=subprocess.DEVNULL)


def wait_for(pred, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.05)
    raise SystemExit(f"timed out: {what}")


def files(d):
    return sum(1 for p in pathlib.Path(d).rglob("*") if p.is_file()) if pathlib.Path(d).exists() else 0


def bulwark_queue(root):
    q = root / "data" / "queue"
    return sum(1 for p in q.iterdir() if not p.name.endswith(".done"))


def rss_kib(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def bulwark_config(relay_port):
    return ('[relay]\nallow_ip_group = "local"\n[limits]\nmax_connections_per_ip = 0\n'
            f'[delivery]\nmode = "relay"\nrelay_host = "127.0.0.1"\nrelay_port = {relay_port}\ntls = "off"\n'
            'retry_interval = "1h"\nmax_delivery_threads = 20\nmax_per_destination = 20\n')


sink_port, closed_port, pf_port = benchlib.free_port(), benchlib.free_port(), benchlib.free_port()
sink = subprocess.Popen(["smtp-sink", "-u", "postfix", f"127.0.0.1:{sink_port}", "1024"])
procs = [sink]
pf_dir = ROOT / "postfix-out"
try:
    # --- bulwark: unsigned, then DKIM-signed (RSA-2048 or Ed25519 key for the From: domain) ---
    def bulwark_run(name, sender, algorithm):
        """msgs/s and bulwark's CPU microseconds per message while the queue drains."""
        bw, ports = benchlib.start(BIN, ROOT, name, bulwark_config(closed_port))
        procs.append(bw)
        bw_root = ROOT / name
        cfg = bw_root / "b.toml"
        if algorithm:
            subprocess.run([BIN, "--config", str(cfg), "dkim", "keygen", "bench.test", "--selector", "b",
                            "--algorithm", algorithm], check=True, capture_output=True)
        inject(ports["smtp"], N, sender=sender)
        wait_for(lambda: (bw_root / "log" / "mail.log").read_text().count("deferred id=") >= N, 300,
                 "bulwark deferrals")
        bw.terminate()
        bw.wait()
        cfg.write_text(cfg.read_text().replace(f"relay_port = {closed_port}", f"relay_port = {sink_port}"))
        bw = subprocess.Popen([BIN, "--config", str(cfg), "serve"], stderr=open(bw_root / "serve2.log", "wb"))
        procs.append(bw)
        time.sleep(1.0)  # listening and the queue indexed
        t, cpu = time.monotonic(), benchlib.cpu_seconds(bw.pid)
        subprocess.run([BIN, "--config", str(cfg), "queue", "retry"], check=True, stdout=subprocess.DEVNULL)
        wait_for(lambda: bulwark_queue(bw_root) == 0, 600, "bulwark queue to empty")
        rate, us = N / (time.monotonic() - t), (benchlib.cpu_seconds(bw.pid) - cpu) * 1e6 / N
        bw.terminate()
        bw.wait()
        return rate, us

    # Unsigned and signed interleaved, best of ROUNDS each: one run swings +-25% here.
    variants = {"unsigned": None, "RSA-2048": "rsa2048", "Ed25519": "ed25519"}
    runs = {v: [] for v in variants}
    for i in range(ROUNDS):
        for v, algorithm in variants.items():
            runs[v].append(bulwark_run(f"bw-out-{v}-{i}", "sender@bench.test" if algorithm else "sender@remote.test",
                                       algorithm))
    best = {v: max(r) for v, r in runs.items()}
    bw_rate = best["unsigned"][0]

    # --- Postfix ---
    subprocess.run([str(HERE / "postfix_instance.sh"), "start", str(pf_dir), str(pf_port)], check=True)
    pc = ["postconf", "-c", str(pf_dir / "etc"), "-e"]
    subprocess.run(pc + [f"relayhost = [127.0.0.1]:{sink_port}", "defer_transports = smtp",
                         "default_destination_concurrency_limit = 20",
                         "smtpd_recipient_restrictions = permit_mynetworks, reject_unauth_destination"], check=True)
    subprocess.run(["postfix", "-c", str(pf_dir / "etc"), "reload"], check=True, capture_output=True)
    time.sleep(1)
    inject(pf_port, N)
    wait_for(lambda: files(pf_dir / "queue" / "deferred") >= N, 300, "postfix deferrals")
    subprocess.run(pc + ["defer_transports ="], check=True)
    subprocess.run(["postfix", "-c", str(pf_dir / "etc"), "reload"], check=True, capture_output=True)
    t = time.monotonic()
    subprocess.run(["postqueue", "-c", str(pf_dir / "etc"), "-f"], check=True)
    wait_for(lambda: sum(files(pf_dir / "queue" / q) for q in ("incoming", "active", "deferred")) == 0, 600,
             "postfix queue to empty")
    pf_rate = N / (time.monotonic() - t)
    print(f"outbound: {N} messages of 4096 bytes relayed to smtp-sink, 20 sessions, no TLS")
    print(f"  postfix {pf_rate:7.0f} msg/s")
    print(f"  bulwark {bw_rate:7.0f} msg/s")
    print(f"  ratio bulwark/postfix {bw_rate / pf_rate:.1f}x (target >= 3x)")
    print(f"  bulwark unsigned: CPU {best['unsigned'][1]:.0f} us per message")
    for v in ("RSA-2048", "Ed25519"):
        rate, us = best[v]
        print(f"  bulwark DKIM-signing every message ({v}, From: sender@bench.test) {rate:7.0f} msg/s: "
              f"{(1 - rate / bw_rate) * 100:.1f}% below unsigned (target < 10%); CPU {us:.0f} us per message "
              f"(+{us - best['unsigned'][1]:.0f})")
    print(f"  (bulwark best of {ROUNDS} interleaved runs; " +
          "; ".join(f"{v} " + ", ".join(f"{r:.0f}" for r, _ in runs[v]) for v in variants) + ")")

    # --- memory with a big queue ---
    mem_root = ROOT / "bw-queue"
    bw, ports = benchlib.start(BIN, ROOT, "bw-queue", bulwark_config(closed_port))
    procs.append(bw)
    base = rss_kib(bw.pid)
    points = []
    done = 0
    for target in (QUEUED // 10, QUEUED):
        inject(ports["smtp"], target - done)
        done = target
        wait_for(lambda: (mem_root / "log" / "mail.log").read_text().count("deferred id=") >= done, 1200,
                 "deferrals")
        points.append((done, rss_kib(bw.pid)))
    print(f"memory with a full queue (relay unreachable, every message deferred): start {base} KiB; " +
          "; ".join(f"{n} queued {r} KiB" for n, r in points) +
          f"; {(points[1][1] - points[0][1]) * 1024 / (points[1][0] - points[0][0]):.0f} bytes per extra message")
finally:
    for p in procs:
        if p.poll() is None:
            p.terminate()
            p.wait()
    subprocess.run([str(HERE / "postfix_instance.sh"), "stop", str(pf_dir)], capture_output=True)
