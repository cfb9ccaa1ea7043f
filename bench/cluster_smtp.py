#!/usr/bin/python3
"""Cluster mode, one node: SMTP to a local mailbox in PostgreSQL, two bulwark binaries
A/B in one run (alternating which goes first). Postfix's smtp-source, 20 sessions,
4 KiB messages, one per connection, to one local user. Prints acceptance (the last 250)
and end to end (every message in PostgreSQL's `messages`) in messages/s, and
PostgreSQL's statements per message (pg_stat_database's commits and rows).

PostgreSQL runs as the tests start it (tests/integration/engines.py: a private
cluster on loopback), with fsync on as in production, or off with --no-fsync (the
figures are then about round trips and CPU, not the disk). Usage:
/usr/bin/python3 bench/cluster_smtp.py OLD_BIN NEW_BIN [rounds] [messages] [--no-fsync]"""
import os
import pathlib
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = pathlib.Path(__file__).parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests" / "integration"))
import benchlib  # noqa: E402
from engines import PG_PASSWORD, Postgres  # noqa: E402


def one(pg, bin_, root, name, n):
    db = "bench_" + name
    conninfo = pg.new_database(db)

    cluster = f'[cluster]\nnode = "{name}"\npostgres = "{conninfo}"\npostgres_password_file = "pg.pw"\n'

    def prepare(d):  # the schema first: the admin commands only check it
        (d / "pg.pw").write_text(PG_PASSWORD + "\n")
        os.chmod(d / "pg.pw", 0o600)
        (d / "init.toml").write_text(f'[server]\ndata_dir = "data"\nlog_dir = "log"\nuser = ""\n{cluster}')
        subprocess.run([bin_, "--config", str(d / "init.toml"), "cluster", "init"], check=True, capture_output=True)
    extra = f'[limits]\nmax_connections_per_ip = 0\nmax_messages_per_hour = 0\n[relay]\nallow_ip_group = ""\n{cluster}'
    stats = lambda: [int(x) for x in pg.psql(
        f"SELECT xact_commit, tup_inserted + tup_updated + tup_deleted FROM pg_stat_database WHERE datname = '{db}'"
    ).split("|")]
    proc, ports = benchlib.start(bin_, root, name, extra, prepare=prepare)
    try:
        time.sleep(11)  # PostgreSQL 15 counts an idle backend's transactions up to 10 s late
        before = stats()
        t = time.monotonic()
        accept = benchlib.rate(ports["smtp"], n)
        deadline = time.monotonic() + 300
        while int(pg.psql("SELECT count(*) FROM messages", db=db)) < n and time.monotonic() < deadline:
            time.sleep(0.02)
        e2e = n / (time.monotonic() - t)
        time.sleep(11)
        after = stats()
        return accept, e2e, (after[0] - before[0]) / n, (after[1] - before[1]) / n
    finally:
        proc.terminate()
        proc.wait(timeout=60)
        shutil.rmtree(pathlib.Path(root) / name, ignore_errors=True)


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    old, new = args[0], args[1]
    rounds = int(args[2]) if len(args) > 2 else 3
    n = int(args[3]) if len(args) > 3 else 2000
    root = tempfile.mkdtemp(prefix="bulwark-cluster-bench-")
    pg = Postgres(benchlib.free_port(), fsync="--no-fsync" not in sys.argv)
    print(f"PostgreSQL fsync {'on' if pg.fsync else 'off'}, {n} messages, {rounds} rounds")
    try:
        res = {"old": [], "new": []}
        for r in range(rounds):
            order = [("old", old), ("new", new)] if r % 2 == 0 else [("new", new), ("old", old)]
            for label, b in order:
                res[label].append(one(pg, b, root, f"{label}{r}", n))
        for label in ("old", "new"):
            v = res[label]
            print(f"{label}: acceptance mean {statistics.mean(x[0] for x in v):6.0f} msg/s  "
                  f"end to end mean {statistics.mean(x[1] for x in v):6.0f} msg/s  "
                  f"commits/msg {statistics.mean(x[2] for x in v):.1f}  rows written/msg "
                  f"{statistics.mean(x[3] for x in v):.1f}  runs "
                  + " ".join(f"{x[0]:.0f}/{x[1]:.0f}" for x in v))
        for i, what in ((0, "acceptance"), (1, "end to end")):
            print(f"new/old {what}: {statistics.mean(x[i] for x in res['new']) / statistics.mean(x[i] for x in res['old']):.2f}")
    finally:
        pg.close()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
