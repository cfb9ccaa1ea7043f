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


def make_tls(dirpath, name="localhost"):
    """A CA and a server certificate for DNS name `name` (only: no IP address), made with
    the openssl CLI. Returns (ca, cert, key) paths."""
    d = pathlib.Path(dirpath)
    run = lambda *a: subprocess.run(["openssl", *a], check=True, capture_output=True, cwd=d)
    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
        "-subj", "/CN=bulwark test CA")
    run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr", "-subj", f"/CN={name}")
    (d / "ext.cnf").write_text(f"subjectAltName=DNS:{name}\n")
    run("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-out",
        "server.pem", "-days", "2", "-extfile", "ext.cnf")
    return d / "ca.pem", d / "server.pem", d / "server.key"


class Postgres:
    def __init__(self, port, tls=None, fsync=False, listen="127.0.0.1", options="", hba=()):
        """`tls`: (cert, key) to serve TLS with (ssl = on). `fsync`: as in production (the
        tests run without: they are about behaviour, not the disk). `listen`, `options`
        (more -c settings) and `hba` (networks allowed a password login besides
        loopback): for the benchmarks."""
        self.port = port
        self.listen, self.options = listen, options
        self.tls = tls
        self.fsync = fsync
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
        if tls:  # the server reads them as postgres; the key must be its own, mode 600
            for src, dst in zip(tls, ("server.pem", "server.key")):
                shutil.copy(src, self.root / dst)
                os.chmod(self.root / dst, 0o600)
                if os.geteuid() == 0:
                    shutil.chown(self.root / dst, "postgres", "postgres")
        r = _as_postgres([str(PG_BIN / "initdb"), "-D", str(self.data), "-U", "postgres", "--auth-local=trust",
                          "--auth-host=scram-sha-256", f"--pwfile={pw}", "-E", "UTF8", "--no-sync"], timeout=120)
        assert r.returncode == 0, r.stderr
        if hba:
            with open(self.data / "pg_hba.conf", "a") as f:
                f.writelines(f"host all all {net} scram-sha-256\n" for net in hba)
        self.start()
        self.psql("CREATE ROLE bulwark LOGIN PASSWORD '%s'" % PG_PASSWORD)

    def start(self):
        r = _as_postgres([str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-l", str(self.root / "pg.log"), "-w", "-t", "60",
                          "-o", f"-p {self.port} -k {self.sock} -c listen_addresses={self.listen} {self.options} "
                                f"-c fsync={'on' if self.fsync else 'off'} -c max_connections=200" + (f" -c ssl=on -c ssl_cert_file={self.root}/server.pem "
                                                            f"-c ssl_key_file={self.root}/server.key" if self.tls else ""),
                          "start"], timeout=90)
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
    def __init__(self, port, tls=None, bind="127.0.0.1"):
        """`tls`: (ca, cert, key): TLS only, on `port`. `bind`: addresses (spaces between)."""
        self.port = port
        self.bind = bind
        self.tls = tls
        self.root = pathlib.Path(tempfile.mkdtemp(prefix="bulwark-redis-"))
        self.proc = None
        self.start()

    def start(self):
        listen = ["--port", str(self.port)]
        if self.tls:
            ca, cert, key = self.tls
            listen = ["--port", "0", "--tls-port", str(self.port), "--tls-cert-file", str(cert), "--tls-key-file",
                      str(key), "--tls-ca-cert-file", str(ca), "--tls-auth-clients", "no"]
        self.proc = subprocess.Popen(
            ["redis-server", *listen, "--bind", *self.bind.split(), "--dir", str(self.root),
             "--requirepass", REDIS_PASSWORD, "--save", "", "--appendonly", "no", "--daemonize", "no"],
            stdout=open(self.root / "redis.log", "ab"), stderr=subprocess.STDOUT)
        deadline = time.time() + 20
        while time.time() < deadline:
            if self.cli("ping") == "PONG":
                return
            time.sleep(0.05)
        raise AssertionError("redis-server did not start")

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=20)

    def cli(self, *args):
        tls = ["--tls", "--cacert", str(self.tls[0])] if self.tls else []
        r = subprocess.run(["redis-cli", "-p", str(self.port), *tls, "--no-auth-warning", "-a", REDIS_PASSWORD, *args],
                           capture_output=True, text=True, timeout=20)
        return r.stdout.strip()

    @property
    def url(self):
        return f"redis://127.0.0.1:{self.port}/0"

    def close(self):
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)
