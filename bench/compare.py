#!/usr/bin/python3
"""bulwark vs Postfix, side by side on this machine, with Postfix's smtp-source.

For each mode (one message per connection; connection reuse with -d) and each server,
sends N messages of 4 KiB over 20 concurrent sessions to a local Maildir user and
reports:
  acceptance  = N / time until smtp-source got every 250
  end to end  = N / time until all N files are in the Maildir
then the ratio bulwark/Postfix. Absolute figures vary on shared machines; the ratio of
one run is the figure. Run: bench/compare.sh (sets up both servers).
"""
import os
import pathlib
import shutil
import subprocess
import sys
import time

N = int(os.environ.get("BENCH_MESSAGES", "5000"))
SESSIONS = int(os.environ.get("BENCH_SESSIONS", "20"))
SIZE = 4096
ROOT = pathlib.Path(os.environ.get("BENCH_ROOT", "/tmp/bulwark-bench"))


def count(d):
    try:
        return len(os.listdir(d))
    except FileNotFoundError:
        return 0


def run_one(name, port, maildir, reuse):
    base = count(maildir)
    args = ["smtp-source", "-s", str(SESSIONS), "-l", str(SIZE), "-m", str(N), "-f", "sender@remote.test",
            "-t", "u@bench.test"]
    if reuse:
        args.append("-d")
    t0 = time.monotonic()
    subprocess.run(args + [f"127.0.0.1:{port}"], check=True, stdout=subprocess.DEVNULL)
    t_accept = time.monotonic() - t0
    deadline = t0 + 300
    while count(maildir) < base + N:
        if time.monotonic() > deadline:
            raise SystemExit(f"{name}: only {count(maildir) - base} of {N} delivered after 300 s")
        time.sleep(0.005)
    t_e2e = time.monotonic() - t0
    return N / t_accept, N / t_e2e


def main():
    bw_port, pf_port = int(sys.argv[1]), int(sys.argv[2])
    bw_maildir = ROOT / "bulwark" / "data" / "mail" / "bench.test" / "u" / "new"
    pf_maildir = ROOT / "postfix" / "mail" / "u" / "new"
    # warm-up: process pools, page cache
    for port, md in ((bw_port, bw_maildir), (pf_port, pf_maildir)):
        subprocess.run(["smtp-source", "-s", "5", "-l", str(SIZE), "-m", "200", "-f", "w@remote.test", "-t",
                        "u@bench.test", f"127.0.0.1:{port}"], check=True, stdout=subprocess.DEVNULL)
    time.sleep(2)
    print(f"{N} messages of {SIZE} bytes, {SESSIONS} concurrent sessions, durable (fsync) on both sides")
    print(f"{'mode':<28}{'server':<9}{'accept msg/s':>14}{'end-to-end msg/s':>18}")
    ratios = []
    for reuse in (False, True):
        mode = "connection reuse (-d)" if reuse else "one message/connection"
        res = {}
        for name, port, md in (("postfix", pf_port, pf_maildir), ("bulwark", bw_port, bw_maildir)):
            res[name] = run_one(name, port, md, reuse)
            print(f"{mode:<28}{name:<9}{res[name][0]:>14.0f}{res[name][1]:>18.0f}", flush=True)
            time.sleep(1)
        ra = res["bulwark"][0] / res["postfix"][0]
        re_ = res["bulwark"][1] / res["postfix"][1]
        ratios.append((mode, ra, re_))
    print()
    for mode, ra, re_ in ratios:
        print(f"ratio bulwark/postfix, {mode:<24} acceptance {ra:4.1f}x   end to end {re_:4.1f}x")


if __name__ == "__main__":
    main()
