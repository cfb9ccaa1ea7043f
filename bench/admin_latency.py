#!/usr/bin/python3
"""Admin API under load (issue 13): one bulwark server with an admin listener.
  1. SMTP alone: smtp-source, 20 sessions, 4 KiB, one message per connection.
  2. The same SMTP load while 20 API clients (each its own keep-alive HTTPS
     connection, an API token) alternate GET /api/v1/status and GET /api/v1/users,
     each one every 50 ms (400 requests/s: a busy console is a request a second):
     the API's p50/p99 latency, and the SMTP rate beside the idle run's.
  3. The API clients as fast as they can beside the SMTP load: p99 at saturation (on
     2 cores the 20 Python clients then take most of a core themselves, so the SMTP
     rate of this phase says more about the load generator than about bulwark).
Best of three for the SMTP rates (alternating idle/busy). Target: p99 under 100 ms
and the SMTP rate of phase 2 within noise of phase 1.
Usage: admin_latency.py BULWARK_BIN ROOT"""
import http.client
import os
import pathlib
import ssl
import subprocess
import sys
import threading
import time

import benchlib

N = int(os.environ.get("BENCH_MESSAGES", "5000"))
BIN, ROOT = sys.argv[1], pathlib.Path(sys.argv[2])
ROOT.mkdir(parents=True, exist_ok=True)
admin_port = benchlib.free_port()
common = ('[limits]\nmax_connections_per_ip = 0\n[relay]\nallow_ip_group = ""\n'
          f'[[listener]]\nservice = "admin"\naddress = "127.0.0.1"\nport = {admin_port}\n')
proc = None
try:
    proc, ports = benchlib.start(BIN, ROOT, "srv", common)
    cli = [BIN, "--config", str(ROOT / "srv" / "b.toml")]
    subprocess.run(cli + ["admin", "add", "bench", "--read-only", "--password-stdin"], input=b"Quiet-River-Stone-9\n",
                   check=True, capture_output=True)
    token = subprocess.run(cli + ["admin", "token", "bench"], check=True, capture_output=True, text=True).stdout.strip()
    ctx = ssl.create_default_context(cafile=str(ROOT / "srv" / "data" / "cert.pem"))
    ctx.check_hostname = False
    for _ in range(50):  # the admin listener is up once it answers
        try:
            c = http.client.HTTPSConnection("127.0.0.1", admin_port, context=ctx, timeout=5)
            c.request("GET", "/api/v1/status", headers={"Authorization": "Bearer " + token})
            assert c.getresponse().status == 200
            break
        except OSError:
            time.sleep(0.1)

    benchlib.rate(ports["smtp"], 500)  # warm-up
    lat, stop = [], threading.Event()

    def client(pace):
        c = http.client.HTTPSConnection("127.0.0.1", admin_port, context=ctx, timeout=30)
        mine, i = [], 0
        while not stop.is_set():
            if pace:
                time.sleep(pace)
            path = "/api/v1/status" if i % 2 == 0 else "/api/v1/users"
            t = time.monotonic()
            c.request("GET", path, headers={"Authorization": "Bearer " + token})
            r = c.getresponse()
            r.read()
            assert r.status == 200, r.status
            mine.append(time.monotonic() - t)
            i += 1
        lat.extend(mine)

    benchlib.rate(ports["smtp"], N)  # the first full run after start is slower for anyone

    def with_clients(pace):
        stop.clear()
        threads = [threading.Thread(target=client, args=(pace,)) for _ in range(20)]
        for t in threads:
            t.start()
        time.sleep(0.5)
        r = benchlib.rate(ports["smtp"], N)
        stop.set()
        for t in threads:
            t.join()
        return r

    def pct(q):
        lat.sort()
        return lat[min(len(lat) - 1, int(q * len(lat)))] * 1000

    idle, busy = [], []
    for round_ in range(3):
        if round_ % 2 == 0:
            idle.append(benchlib.rate(ports["smtp"], N))
            busy.append(with_clients(0.05))
        else:
            busy.append(with_clients(0.05))
            idle.append(benchlib.rate(ports["smtp"], N))
    print(f"admin API, 20 clients at 400 requests/s beside the SMTP load: {len(lat)} requests, p50 {pct(0.5):.1f} ms, "
          f"p99 {pct(0.99):.1f} ms, max {lat[-1] * 1000:.1f} ms (target: p99 < 100 ms)")
    print(f"  SMTP {N} msgs x3, best of three: admin idle {max(idle):.0f} msg/s, admin busy {max(busy):.0f} msg/s "
          f"({(1 - max(busy) / max(idle)) * 100:.1f}% lower)")
    print("  (runs: idle " + ", ".join(f"{r:.0f}" for r in idle) + "; busy " + ", ".join(f"{r:.0f}" for r in busy) + ")")
    lat.clear()
    saturated = with_clients(0)
    print(f"  saturation (20 clients as fast as they go, beside the SMTP load): {len(lat)} requests, "
          f"p50 {pct(0.5):.1f} ms, p99 {pct(0.99):.1f} ms; SMTP meanwhile {saturated:.0f} msg/s")
finally:
    if proc:
        proc.terminate()
        proc.wait()
