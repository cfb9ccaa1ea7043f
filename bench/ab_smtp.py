#!/usr/bin/python3
"""Two bulwark binaries, A/B, in one run: SMTP acceptance with Postfix's smtp-source
(20 sessions, 4 KiB messages, one message per connection and with connection reuse),
alternating which goes first in each round, each run's deliveries settled and synced
before the next; with each server's context switches per message (all threads, until
the messages are in the Maildir). For "this change must not make the SMTP benchmark
worse". The filesystem is TMPDIR's (bench/journaled_fs.sh for a journaled one).

Usage: /usr/bin/python3 bench/ab_smtp.py OLD_BIN NEW_BIN [rounds] [messages]"""
import pathlib
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, str(pathlib.Path(__file__).parent))
import benchlib  # noqa: E402


def one(bin_, root, name, n, reuse):
    proc, ports = benchlib.start(bin_, root, name, '[limits]\nmax_connections_per_ip = 0\n[relay]\nallow_ip_group = ""\n')
    try:
        args = ["smtp-source", "-s", "20", "-l", "4096", "-m", str(n), "-f", "sender@remote.test",
                "-t", "u@bench.test"] + (["-d"] if reuse else []) + [f"127.0.0.1:{ports['smtp']}"]
        cs = benchlib.context_switches(proc.pid)
        t = time.monotonic()
        subprocess.run(args, check=True, stdout=subprocess.DEVNULL)
        r = n / (time.monotonic() - t)
        benchlib.settle(root, name, n)
        return r, (benchlib.context_switches(proc.pid) - cs) / n
    finally:
        proc.terminate()
        proc.wait(timeout=60)
        shutil.rmtree(pathlib.Path(root) / name, ignore_errors=True)


def main():
    old, new = sys.argv[1], sys.argv[2]
    rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 3
    n = int(sys.argv[4]) if len(sys.argv) > 4 else 5000
    root = tempfile.mkdtemp(prefix="bulwark-ab-")
    try:
        for reuse in (False, True):
            res = {"old": [], "new": []}
            switches = {"old": [], "new": []}
            for r in range(rounds):
                order = [("old", old), ("new", new)] if r % 2 == 0 else [("new", new), ("old", old)]
                for label, b in order:
                    rate, cs = one(b, root, f"{label}{r}{int(reuse)}", n, reuse)
                    res[label].append(rate)
                    switches[label].append(cs)
            mode = "connection reuse" if reuse else "one message per connection"
            for label in ("old", "new"):
                v = res[label]
                print(f"{mode:28s} {label}: best {max(v):7.0f}  mean {statistics.mean(v):7.0f}  "
                      f"runs {' '.join(f'{x:.0f}' for x in v)} msg/s  "
                      f"context switches {statistics.mean(switches[label]):.1f}/msg")
            print(f"{mode:28s} new/old: best {max(res['new']) / max(res['old']):.2f}  "
                  f"mean {statistics.mean(res['new']) / statistics.mean(res['old']):.2f}")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
