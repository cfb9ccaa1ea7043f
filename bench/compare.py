#!/usr/bin/python3
"""bulwark vs Postfix, side by side on this machine, with Postfix's smtp-source.

For each mode (one message per connection; connection reuse with -d) and each server,
sends N messages of 4 KiB over 20 concurrent sessions to a local Maildir user and
reports:
  acceptance  = N / time until smtp-source got every 250
  end to end  = N / time until all N files are in the Maildir
then the ratio bulwark/Postfix. Absolute figures vary on shared machines; the ratio of
one run is the figure. With bulwark's pid: its context switches per message (every
thread's, from /proc/PID/task/*/status: the hand-offs between its threads). With an
smtp-sink port: the protocol ceiling (the same load against smtp-sink, which writes
nothing) and the share of it bulwark's acceptance reaches.
Run: bench/compare.sh (sets up the servers; the filesystem is BENCH_ROOT's).
Usage: compare.py BULWARK_PORT POSTFIX_PORT [BULWARK_PID [SINK_PORT]]
"""
import os
import pathlib
import shutil
import subprocess
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from benchlib import context_switches  # noqa: E402

N = int(os.environ.get("BENCH_MESSAGES", "5000"))
SESSIONS = int(os.environ.get("BENCH_SESSIONS", "20"))
SIZE = 4096
ROOT = pathlib.Path(os.environ.get("BENCH_ROOT", "/tmp/bulwark-bench"))


def count(d):
    try:
        return len(os.listdir(d))
    except FileNotFoundError:
        return 0


def sink_rate(port, reuse):
    args = ["smtp-source", "-s", str(SESSIONS), "-l", str(SIZE), "-m", str(N), "-f", "sender@remote.test",
            "-t", "u@bench.test"] + (["-d"] if reuse else [])
    t0 = time.monotonic()
    subprocess.run(args + [f"127.0.0.1:{port}"], check=True, stdout=subprocess.DEVNULL)
    return N / (time.monotonic() - t0)


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
    bw_pid = int(sys.argv[3]) if len(sys.argv) > 3 else 0
    sink_port = int(sys.argv[4]) if len(sys.argv) > 4 else 0
    bw_maildir = ROOT / "bulwark" / "data" / "mail" / "bench.test" / "u" / "new"
    pf_maildir = ROOT / "postfix" / "mail" / "u" / "new"
    # warm-up: process pools, page cache
    for port, md in ((bw_port, bw_maildir), (pf_port, pf_maildir)):
        subprocess.run(["smtp-source", "-s", "5", "-l", str(SIZE), "-m", "200", "-f", "w@remote.test", "-t",
                        "u@bench.test", f"127.0.0.1:{port}"], check=True, stdout=subprocess.DEVNULL)
    time.sleep(2)
    print(f"{N} messages of {SIZE} bytes, {SESSIONS} concurrent sessions, durable (fsync) on both sides")
    print(f"{'mode':<28}{'server':<9}{'accept msg/s':>14}{'end-to-end msg/s':>18}{'ctx sw/msg':>12}")
    ratios = []
    for reuse in (False, True):
        mode = "connection reuse (-d)" if reuse else "one message/connection"
        res = {}
        for name, port, md in (("postfix", pf_port, pf_maildir), ("bulwark", bw_port, bw_maildir)):
            cs0 = context_switches(bw_pid) if name == "bulwark" and bw_pid else 0
            res[name] = run_one(name, port, md, reuse)
            cs = f"{(context_switches(bw_pid) - cs0) / N:12.1f}" if name == "bulwark" and bw_pid else ""
            print(f"{mode:<28}{name:<9}{res[name][0]:>14.0f}{res[name][1]:>18.0f}{cs}", flush=True)
            time.sleep(1)
        sink = sink_rate(sink_port, reuse) if sink_port else 0
        if sink:
            print(f"{mode:<28}{'sink':<9}{sink:>14.0f}{'(no disk)':>18}", flush=True)
        ra = res["bulwark"][0] / res["postfix"][0]
        re_ = res["bulwark"][1] / res["postfix"][1]
        ratios.append((mode, ra, re_, res["bulwark"][0] / sink if sink else 0))
    print()
    for mode, ra, re_, share in ratios:
        extra = f"   {share:4.0%} of smtp-sink" if share else ""
        print(f"ratio bulwark/postfix, {mode:<24} acceptance {ra:4.1f}x   end to end {re_:4.1f}x{extra}")


if __name__ == "__main__":
    main()
