"""Shared by the bench scripts: start a bulwark server on loopback with a bench
domain and user, and measure acceptance with Postfix's smtp-source."""
import os
import pathlib
import socket
import subprocess
import time

PASSWORD = "Bench-Passw0rd-1"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(bin_, root, name, extra, services=("smtp",), prepare=None):
    """Starts `bulwark serve` under root/name; returns (process, {service: port}).
    prepare(dir), when given, runs once the directory exists, before any command."""
    d = pathlib.Path(root) / name
    d.mkdir(parents=True)
    if prepare:
        prepare(d)
    ports = {}
    listeners = ""
    for svc in services:
        ports[svc] = free_port()
        listeners += f'[[listener]]\nservice = "{svc}"\naddress = "127.0.0.1"\nport = {ports[svc]}\n'
    (d / "b.toml").write_text(f'[server]\nhostname = "bench.local"\ndata_dir = "data"\nlog_dir = "log"\nuser = ""\n'
                              f'{listeners}{extra}')
    cli = [bin_, "--config", str(d / "b.toml")]
    subprocess.run(cli + ["domain", "add", "bench.test"], check=True, capture_output=True)
    subprocess.run(cli + ["user", "add", "u@bench.test", "--password-stdin"], input=(PASSWORD + "\n").encode(),
                   check=True, capture_output=True)
    subprocess.run(cli + ["alias", "add", "postmaster@bench.test", "u@bench.test"], check=True, capture_output=True)
    proc = subprocess.Popen(cli + ["serve"], stderr=open(d / "serve.log", "wb"))
    first = next(iter(ports.values()))
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", first), timeout=1).close()
            break
        except OSError:
            time.sleep(0.1)
    return proc, ports


def rate(port, n, sender="sender@remote.test", message_file=None):
    """smtp-source, 20 sessions, 4 KiB messages (or the pre-formatted message_file), one
    per connection: messages/s."""
    body = ["-F", str(message_file)] if message_file else ["-l", "4096"]
    args = ["smtp-source", "-s", "20", *body, "-m", str(n), "-f", sender, "-t", "u@bench.test",
            f"127.0.0.1:{port}"]
    t = time.monotonic()
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL)
    return n / (time.monotonic() - t)


def settle(root, name, expected, timeout=120):
    """Waits until `expected` messages are in u@bench.test's Maildir of server `name`,
    then flushes the page cache, so one run's writes are not paid by the next run's
    syncs (both servers share the filesystem)."""
    new = pathlib.Path(root) / name / "data" / "mail" / "bench.test" / "u" / "new"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if new.exists() and sum(1 for _ in os.scandir(new)) >= expected:
            break
        time.sleep(0.05)
    os.sync()


def cpu_seconds(pid):
    """user + system CPU time of a process so far (/proc/PID/stat, fields 14 and 15)."""
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def context_switches(pid):
    """Every thread's voluntary + involuntary context switches so far
    (/proc/PID/task/*/status): the hand-offs between a server's threads."""
    total = 0
    for task in pathlib.Path(f"/proc/{pid}/task").iterdir():
        try:
            for line in (task / "status").read_text().splitlines():
                if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")):
                    total += int(line.split()[1])
        except FileNotFoundError:
            pass  # a thread that ended meanwhile
    return total
