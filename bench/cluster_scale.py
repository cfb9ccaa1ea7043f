#!/usr/bin/python3
"""Cluster mode, scale-out: 1, 2 and 3 nodes, each in its own network namespace (`ip
netns`, a veth pair to the host) and its own CPU quota (a cgroup v1 `cpu` group with
cpu.cfs_quota_us: 0.25 CPU by default), PostgreSQL (fsync on) and Redis on the host,
outside the quotas. Measures, with every node loaded at once:

- SMTP to a mailbox: Postfix's smtp-source, 10 sessions per node (5 processes of 2,
  each to its own user of 15: recipients spread as on an MX, not one hot mailbox),
  4 KiB messages, one per connection -- messages/s until every message is in
  PostgreSQL's `messages` (250 comes after that commit: acceptance is delivery);
- IMAP: logins + SELECT + FETCH of one message + LOGOUT over IMAPS, 3 client processes
  per node (each its own user), for a fixed time -- sessions/s.

Also printed: the nodes' CPU used against their quota and the machine's CPU busy, so
that what limits a run (the nodes, PostgreSQL, or the machine) shows.

For each, PostgreSQL's CPU (its processes' user + system time), its statements
(pg_stat_statements) and commits per message or session, and from them how many nodes
of this size one PostgreSQL core could feed. Needs root (netns, cgroups). Usage:
/usr/bin/python3 bench/cluster_scale.py BULWARK_BIN [--quota 0.25] [--messages 1500] [--seconds 15]"""
import argparse
import imaplib
import multiprocessing
import os
import pathlib
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import time

HERE = pathlib.Path(__file__).parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests" / "integration"))
import benchlib  # noqa: E402
from engines import PG_PASSWORD, REDIS_PASSWORD, Postgres, Redis  # noqa: E402

PASSWORD = benchlib.PASSWORD
CG = pathlib.Path("/sys/fs/cgroup/cpu")
MAX_NODES = 3
USERS = [f"u{k}@bench.test" for k in range(15)]
SOURCES = 5  # smtp-source processes per node, 2 sessions each


def machine_busy():
    """(busy, total) jiffies of every CPU so far (/proc/stat)."""
    f = [int(x) for x in open("/proc/stat").readline().split()[1:]]
    idle = f[3] + f[4]
    return sum(f) - idle, sum(f)


def sh(*args):
    subprocess.run(args, check=True, capture_output=True)


def host_ip(i):
    return f"10.231.{i}.1"


def node_ip(i):
    return f"10.231.{i}.2"


class Namespaces:
    """bwn1..3 with a veth pair each; bwn1..3 cgroups with the CPU quota. Always removed."""

    def __init__(self, quota):
        self.made = []
        for i in range(1, MAX_NODES + 1):
            ns = f"bwn{i}"
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
            subprocess.run(["ip", "link", "del", f"bwh{i}"], capture_output=True)
            sh("ip", "netns", "add", ns)
            self.made.append(ns)
            sh("ip", "link", "add", f"bwh{i}", "type", "veth", "peer", "name", f"bwp{i}")
            sh("ip", "link", "set", f"bwp{i}", "netns", ns)
            sh("ip", "addr", "add", host_ip(i) + "/24", "dev", f"bwh{i}")
            sh("ip", "link", "set", f"bwh{i}", "up")
            for cmd in (["ip", "addr", "add", node_ip(i) + "/24", "dev", f"bwp{i}"], ["ip", "link", "set", f"bwp{i}", "up"],
                        ["ip", "link", "set", "lo", "up"]):
                sh("ip", "netns", "exec", ns, *cmd)
            g = CG / ns
            g.mkdir(exist_ok=True)
            (g / "cpu.cfs_period_us").write_text("100000")
            (g / "cpu.cfs_quota_us").write_text(str(int(quota * 100000)))

    def close(self):
        for i, ns in enumerate(self.made, 1):
            subprocess.run(["ip", "link", "del", f"bwh{i}"], capture_output=True)
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
            try:
                (CG / ns).rmdir()
            except OSError:
                pass


def pg_cpu():
    """CPU seconds of every postgres process now, plus what exited children left."""
    total = 0.0
    for p in pathlib.Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        try:
            if (p / "comm").read_text().strip() != "postgres":
                continue
            f = (p / "stat").read_text().rsplit(")", 1)[1].split()
            total += (int(f[11]) + int(f[12]) + int(f[13]) + int(f[14])) / os.sysconf("SC_CLK_TCK")
        except OSError:
            continue
    return total


def pg_counts(pg, db):
    calls = int(pg.psql("SELECT coalesce(sum(calls), 0) FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid "
                        f"WHERE d.datname = '{db}'", db=db) or 0)
    commits = int(pg.psql(f"SELECT xact_commit FROM pg_stat_database WHERE datname = '{db}'"))
    return calls, commits


class Node:
    def __init__(self, bin_, root, run, i, conninfo, redis_port):
        self.i = i
        self.dir = pathlib.Path(root) / f"run{run}" / f"n{i}"
        self.dir.mkdir(parents=True)
        (self.dir / "pg.pw").write_text(PG_PASSWORD + "\n")
        (self.dir / "redis.pw").write_text(REDIS_PASSWORD + "\n")
        os.chmod(self.dir / "pg.pw", 0o600)
        os.chmod(self.dir / "redis.pw", 0o600)
        self.ports = {"smtp": 2525, "imaps": 9930}
        listeners = "".join(f'[[listener]]\nservice = "{s}"\naddress = "{node_ip(i)}"\nport = {p}\n'
                            for s, p in self.ports.items())
        conninfo = conninfo.replace("host=127.0.0.1", f"host={host_ip(i)}")
        (self.dir / "b.toml").write_text(
            f'[server]\nhostname = "n{i}.bench.local"\ndata_dir = "data"\nlog_dir = "log"\nuser = ""\n{listeners}'
            '[limits]\nmax_connections_per_ip = 0\nmax_messages_per_hour = 0\n[relay]\nallow_ip_group = ""\n'
            # No resolver in the namespaces: the checks that need DNS (SPF, DMARC) are
            # off, so that what is measured is SMTP, the store and PostgreSQL.
            f'[dns]\nservers = ["{host_ip(i)}:53"]\n[spf]\nmode = "off"\n[dmarc]\nmode = "off"\n'
            f'[cluster]\nnode = "n{i}"\npostgres = "{conninfo}"\npostgres_password_file = "pg.pw"\n'
            f'redis = "redis://{host_ip(i)}:{redis_port}/0"\nredis_password_file = "redis.pw"\n')
        self.cli = [bin_, "--config", str(self.dir / "b.toml")]
        self.proc = None

    def run(self, *args, input=None):
        return subprocess.run(self.cli + list(args), input=input, check=True, capture_output=True, text=True)

    def start(self):
        group = CG / f"bwn{self.i}" / "cgroup.procs"

        def enter():  # into the node's CPU group, then (ip netns exec) its namespace
            group.write_text(str(os.getpid()))
        self.proc = subprocess.Popen(["ip", "netns", "exec", f"bwn{self.i}", *self.cli, "serve"], preexec_fn=enter,
                                     stderr=open(self.dir / "serve.log", "wb"))
        deadline = time.time() + 60
        while time.time() < deadline:
            if b"ready: accepting" in (self.dir / "log" / "bulwark.log").read_bytes() \
                    if (self.dir / "log" / "bulwark.log").exists() else False:
                return
            if self.proc.poll() is not None:
                raise RuntimeError(f"node {self.i} exited: " + (self.dir / "serve.log").read_text())
            time.sleep(0.1)
        raise RuntimeError(f"node {self.i} did not start")

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def imap_worker(args):
    ip, port, cafile, seconds, user = args
    ctx = ssl.create_default_context(cafile=cafile)
    ctx.check_hostname = False
    n = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        m = imaplib.IMAP4_SSL(ip, port, ssl_context=ctx, timeout=30)
        m.login(user, PASSWORD)
        m.select("INBOX", readonly=True)
        typ, data = m.fetch("1", "(BODY.PEEK[])")
        assert typ == "OK" and data and data[0], data
        m.logout()
        n += 1
    return n


def measure(bin_, pg, redis_port, root, nodes, messages, seconds):
    db = f"scale{nodes}"
    conninfo = pg.new_database(db)
    pg.psql("CREATE EXTENSION IF NOT EXISTS pg_stat_statements", db=db)
    ns = [Node(bin_, root, nodes, i, conninfo, redis_port) for i in range(1, nodes + 1)]
    try:
        first = ns[0]
        first.run("cluster", "init")
        first.run("domain", "add", "bench.test")
        for u in USERS:
            first.run("user", "add", u, "--password-stdin", input=PASSWORD + "\n")
        first.run("alias", "add", "postmaster@bench.test", USERS[0])
        for n in ns:
            n.start()
        time.sleep(11)  # PostgreSQL 15 counts an idle backend's transactions up to 10 s late
        # SMTP: every node loaded at once.
        cpu0, (calls0, commits0) = pg_cpu(), pg_counts(pg, db)
        node0 = [benchlib.cpu_seconds(n.proc.pid) for n in ns]
        busy0 = machine_busy()
        t = time.monotonic()
        each = messages // SOURCES
        src = [subprocess.Popen(["smtp-source", "-s", "2", "-l", "4096", "-m", str(each), "-f", "s@remote.test",
                                 "-t", USERS[((n.i - 1) * SOURCES + k) % len(USERS)],
                                 f"{node_ip(n.i)}:{n.ports['smtp']}"], stdout=subprocess.DEVNULL)
               for n in ns for k in range(SOURCES)]
        for p in src:
            p.wait()
        total = each * SOURCES * nodes
        while int(pg.psql("SELECT count(*) FROM messages", db=db)) < total:
            time.sleep(0.02)
        smtp_wall = time.monotonic() - t
        smtp_rate = total / smtp_wall
        cpu1 = pg_cpu()
        node_use = sum(benchlib.cpu_seconds(n.proc.pid) - c0 for n, c0 in zip(ns, node0)) / smtp_wall / nodes
        busy1 = machine_busy()
        machine = (busy1[0] - busy0[0]) / max(1, busy1[1] - busy0[1])
        time.sleep(11)
        calls1, commits1 = pg_counts(pg, db)
        smtp = {"rate": smtp_rate, "node_use": node_use, "machine": machine, "pg_cores": (cpu1 - cpu0) / smtp_wall, "pg_cpu_per_k": (cpu1 - cpu0) / total * 1000,
                "statements": (calls1 - calls0) / total, "commits": (commits1 - commits0) / total}
        # IMAP: 3 client processes per node for `seconds`.
        cpu0, (calls0, commits0) = pg_cpu(), pg_counts(pg, db)
        jobs = [(node_ip(n.i), n.ports["imaps"], str(n.dir / "data" / "cert.pem"), seconds,
                 USERS[((n.i - 1) * 3 + k) % len(USERS)]) for n in ns for k in range(3)]
        t = time.monotonic()
        pool = multiprocessing.Pool(len(jobs))
        done = sum(pool.map(imap_worker, jobs))
        pool.close()
        pool.join()
        wall = time.monotonic() - t
        cpu1 = pg_cpu()
        time.sleep(11)
        calls1, commits1 = pg_counts(pg, db)
        imap = {"rate": done / wall, "pg_cores": (cpu1 - cpu0) / wall, "statements": (calls1 - calls0) / max(done, 1),
                "commits": (commits1 - commits0) / max(done, 1)}
        return smtp, imap
    finally:
        for n in ns:
            n.stop()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("bin")
    ap.add_argument("--quota", type=float, default=0.25)
    ap.add_argument("--messages", type=int, default=1500, help="per node")
    ap.add_argument("--seconds", type=int, default=15, help="of IMAP sessions")
    a = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("needs root: network namespaces and cgroups")
    main_pid = os.getpid()
    # SIGTERM: the cleanup below still runs (in this process only, not in a forked client).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("terminated") if os.getpid() == main_pid else os._exit(1))
    root = tempfile.mkdtemp(prefix="bulwark-scale-")
    os.chmod(root, 0o755)
    spaces = Namespaces(a.quota)
    listen = ",".join(["127.0.0.1"] + [host_ip(i) for i in range(1, MAX_NODES + 1)])
    pg = Postgres(benchlib.free_port(), fsync=True, listen=listen,
                  options="-c shared_preload_libraries=pg_stat_statements", hba=["10.231.0.0/16"])
    redis = Redis(benchlib.free_port(), bind=listen.replace(",", " "))
    try:
        print(f"nodes at {a.quota} CPU each (cgroup cpu.cfs_quota_us), each in its own netns; PostgreSQL (fsync on) "
              f"and Redis on the host, uncapped; {os.cpu_count()} cores")
        res = {}
        for n in range(1, MAX_NODES + 1):
            res[n] = measure(a.bin, pg, redis.port, root, n, a.messages, a.seconds)
            s, i = res[n]
            print(f"{n} node(s): SMTP {s['rate']:6.0f} msg/s ({s['rate'] / res[1][0]['rate']:.2f}x)  "
                  f"nodes at {s['node_use'] / a.quota:.0%} of their quota, machine {s['machine']:.0%} busy, "
                  f"PostgreSQL {s['pg_cores']:.2f} cores, {s['pg_cpu_per_k']:.2f} CPU s per 1000 msg, "
                  f"{s['statements']:.1f} statements and {s['commits']:.1f} commits per msg | "
                  f"IMAP {i['rate']:5.1f} sessions/s ({i['rate'] / res[1][1]['rate']:.2f}x)  PostgreSQL "
                  f"{i['pg_cores']:.2f} cores, {i['statements']:.1f} statements per session", flush=True)
        s = res[MAX_NODES][0]
        per_node = s["pg_cores"] / MAX_NODES
        print(f"SMTP, {MAX_NODES} nodes: {res[MAX_NODES][0]['rate'] / res[1][0]['rate']:.2f}x one node (target >= 2.5x); "
              f"IMAP {res[MAX_NODES][1]['rate'] / res[1][1]['rate']:.2f}x")
        if per_node > 0:
            print(f"PostgreSQL per loaded node: {per_node:.3f} cores -> one PostgreSQL core feeds ~{1 / per_node:.0f} "
                  f"nodes of {a.quota} CPU at this rate")
    finally:
        redis.close()
        pg.close()
        spaces.close()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
