#!/usr/bin/python3
"""Holds N unfinished large DATA phases against bulwark and prints the server's RSS
(issue 8.6: ten unfinished 30 MB phases took the server from 84 MB to 706 MB). Each
client sends EHLO/MAIL/RCPT/DATA and then SIZE_MB of body, never the final dot.
With a second binary (the version before streaming) both are run side by side.

Usage: bench/unfinished_data.py [BIN] [BASE_BIN]   env: CLIENTS (10), SIZE_MB (30),
MESSAGE_MEMORY (limits.message_memory, "256MB")"""
import os
import pathlib
import shutil
import socket
import sys
import tempfile
import time

sys.path.insert(0, str(pathlib.Path(__file__).parent))
import benchlib  # noqa: E402

root = pathlib.Path(__file__).resolve().parents[1]
bins = sys.argv[1:] or [str(root / "build" / "bulwark")]
clients = int(os.environ.get("CLIENTS", "10"))
size_mb = int(os.environ.get("SIZE_MB", "30"))
budget = os.environ.get("MESSAGE_MEMORY", "256MB")


def rss_mb(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024


def run(bin_, name, tmp):
    extra = f'[limits]\nmax_connections_per_ip = 0\nmax_message_size = "{size_mb * 2}MB"\n'
    if name == "bulwark":
        extra += f'message_memory = "{budget}"\n'
    proc, ports = benchlib.start(bin_, tmp, name, extra)
    try:
        time.sleep(0.5)
        before = rss_mb(proc.pid)
        conns = []
        for _ in range(clients):
            s = socket.create_connection(("127.0.0.1", ports["smtp"]), timeout=30)
            f = s.makefile("rb")
            f.readline()
            s.sendall(b"EHLO bench.test\r\nMAIL FROM:<a@remote.test>\r\nRCPT TO:<u@bench.test>\r\nDATA\r\n")
            for _ in range(3):
                while f.readline()[3:4] == b"-":
                    pass
            assert f.readline().startswith(b"354")
            conns.append(s)
        chunk = (b"x" * 1022 + b"\r\n") * 1024  # 1 MiB
        for _ in range(size_mb):
            for s in conns:
                s.sendall(chunk)
        time.sleep(1)
        peak = rss_mb(proc.pid)
        print(f"{name:8s} {clients} unfinished DATA phases x {size_mb} MB: RSS {before:.0f} MB -> {peak:.0f} MB "
              f"(+{peak - before:.0f} MB, {(peak - before) / clients:.1f} MB per client)")
        for s in conns:
            s.close()
        return peak - before
    finally:
        proc.terminate()
        proc.wait()


tmp = tempfile.mkdtemp(prefix="bulwark-bench-mem-")
try:
    grew = run(bins[0], "bulwark", tmp)
    print(f"limits.message_memory = {budget}; bodies over 256 KiB stream to the spool disk")
    if len(bins) > 1:
        base = run(bins[1], "before", tmp)
        print(f"ratio: the version before streaming grew {base / max(grew, 1):.0f}x as much")
finally:
    shutil.rmtree(tmp, ignore_errors=True)
