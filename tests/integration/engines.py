"""Real PostgreSQL 15 and Redis 7 from Debian for the cluster tests (SPEC 16), started
on loopback ports in temporary directories and always stopped.

PostgreSQL: `initdb` refuses to run as root, so it and `pg_ctl` run as the `postgres`
user (runuser) when the tests run as root. Password authentication over TCP
(scram-sha-256) for the role bulwark uses; the socket in the temporary directory
(trust) is for the fixture's own psql.
"""
import os
import pathlib
import shutil
import subprocess
import tempfile
import time

PG_BIN = pathlib.Path("/usr/lib/postgresql/15/bin")
PG_PASSWORD = "pg-Secret-for-tests-7"
REDIS_PASSWORD = "redis-Secret-for-tests-7"


def _as_postgres(cmd, **kw):
    if os.geteuid() == 0:
        cmd = ["runuser", "-u", "postgres", "--", *cmd]
    return subprocess.run(cmd, capture_output=True, text=True, **kw)


class Postgres:
    def __init__(self, port):
        self.port = port
        self.root = pathlib.Path(tempfile.mkdtemp(prefix="bulwark-pg-"))
        self.data = self.root / "data"
        self.sock = self.root / "sock"
        self.sock.mkdir()
        os.chmod(self.root, 0o755)
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres", "postgres")
            shutil.chown(self.sock, "postgres", "postgres")
        pw = self.root / "superuser.pw"
        pw.write_text("unused-" + PG_PASSWORD + "\n")
        if os.geteuid() == 0:
            shutil.chown(pw, "postgres", "postgres")
        r = _as_postgres([str(PG_BIN / "initdb"), "-D", str(self.data), "-U", "postgres", "--auth-local=trust",
                          "--auth-host=scram-sha-256", f"--pwfile={pw}", "-E", "UTF8", "--no-sync"], timeout=120)
        assert r.returncode == 0, r.stderr
        self.start()
        self.psql("CREATE ROLE bulwark LOGIN PASSWORD '%s'" % PG_PASSWORD)

    def start(self):
        r = _as_postgres([str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-l", str(self.root / "pg.log"), "-w", "-t", "60",
                          "-o", f"-p {self.port} -k {self.sock} -c listen_addresses=127.0.0.1 -c fsync=off "
                                f"-c max_connections=200", "start"], timeout=90)
        assert r.returncode == 0, r.stderr + r.stdout + self.log()

    def stop(self, mode="fast"):
        _as_postgres([str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop"], timeout=90)

    def log(self):
        p = self.root / "pg.log"
        return p.read_text(errors="replace") if p.exists() else ""

    def psql(self, sql, db="postgres"):
        r = _as_postgres(["psql", "-h", str(self.sock), "-p", str(self.port), "-U", "postgres", "-d", db, "-v",
                          "ON_ERROR_STOP=1", "-Atc", sql], timeout=60)
        assert r.returncode == 0, r.stderr
        return r.stdout.strip()

    def new_database(self, name):
        self.psql(f"CREATE DATABASE {name} OWNER bulwark")
        return f"host=127.0.0.1 port={self.port} dbname={name} user=bulwark sslmode=disable"

    def close(self):
        self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)


class Redis:
    def __init__(self, port):
        self.port = port
        self.root = pathlib.Path(tempfile.mkdtemp(prefix="bulwark-redis-"))
        self.proc = None
        self.start()

    def start(self):
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.root),
             "--requirepass", REDIS_PASSWORD, "--save", "", "--appendonly", "no", "--daemonize", "no"],
            stdout=open(self.root / "redis.log", "ab"), stderr=subprocess.STDOUT)
        deadline = time.time() + 20
        while time.time() < deadline:
            r = subprocess.run(["redis-cli", "-p", str(self.port), "--no-auth-warning", "-a", REDIS_PASSWORD, "ping"],
                               capture_output=True, text=True)
            if r.stdout.strip() == "PONG":
                return
            time.sleep(0.05)
        raise AssertionError("redis-server did not start")

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=20)

    def cli(self, *args):
        r = subprocess.run(["redis-cli", "-p", str(self.port), "--no-auth-warning", "-a", REDIS_PASSWORD, *args],
                           capture_output=True, text=True, timeout=20)
        return r.stdout.strip()

    @property
    def url(self):
        return f"redis://127.0.0.1:{self.port}/0"

    def close(self):
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)
