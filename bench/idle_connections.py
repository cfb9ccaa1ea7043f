#!/usr/bin/python3
"""Holds 5,000 idle SMTP connections to a running bulwark and reports its memory per
connection (RSS growth / connections). Target: <= 32 KiB each.
Usage: idle_connections.py PID PORT [COUNT]"""
import resource
import socket
import sys
import time

pid, port = int(sys.argv[1]), int(sys.argv[2])
count = int(sys.argv[3]) if len(sys.argv) > 3 else 5000
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, count + 1000), hard))


def rss_kib():
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])


before = rss_kib()
socks = []
for i in range(count):
    # spread over 200 loopback source addresses: per-IP connection limits stay on
    src = f"127.0.1.{1 + i % 200}"
    s = socket.create_connection(("127.0.0.1", port), timeout=30, source_address=(src, 0))
    socks.append(s)
for s in socks:  # every connection got its greeting: it is a live session
    assert s.recv(512).startswith(b"220 ")
time.sleep(1)
after = rss_kib()
per = (after - before) * 1024 / count
print(f"idle connections: {count} held; server RSS {before} KiB -> {after} KiB; "
      f"{per / 1024:.1f} KiB per connection (target <= 32 KiB)")
for s in socks:
    s.close()
