"""Signals and restarts: SIGTERM finishes what is in flight, SIGHUP reloads."""
import os
import pwd
import signal
import smtplib
import socket
import ssl
import time

import subprocess

import pytest

import conftest
from conftest import HOST, Raw


def test_sigterm_finishes_transaction_in_flight(server):
    busy = Raw(server.ports["smtp"])
    busy.reply()
    busy.cmd("EHLO client.test")
    busy.cmd("MAIL FROM:<a@remote.test>")
    busy.cmd("RCPT TO:<demo@example.test>")
    assert busy.cmd("DATA")[0] == 354
    busy.send(b"Subject: in flight\r\n\r\nfirst half\r\n")
    idle = Raw(server.ports["smtp"])
    idle.reply()
    idle.cmd("EHLO client.test")

    server.proc.send_signal(15)
    code, text = idle.reply()
    assert code == 421 and "4.3.2" in text
    assert idle.closed()
    time.sleep(0.2)
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", server.ports["smtp"]), timeout=2)

    busy.send(b"second half\r\n.\r\n")
    code, text = busy.reply()
    assert code == 250, text
    code, text = busy.cmd("NOOP")
    assert code == 421
    server.proc.wait(timeout=20)
    assert server.proc.returncode == 0
    [msg] = server.messages()
    assert b"first half\nsecond half\n" in msg
    assert "shutting down" in server.serve_output()


def test_sighup_reloads_config_and_certificate(server):
    def ehlo_size():
        with smtplib.SMTP("127.0.0.1", server.ports["smtp"]) as s:
            s.ehlo("client.test")
            return s.esmtp_features["size"]

    def cert_der():
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        with socket.create_connection(("127.0.0.1", server.ports["smtps"])) as sock:
            with ctx.wrap_socket(sock) as t:
                return t.getpeercert(binary_form=True)

    assert ehlo_size() == str(50 * 1024 * 1024)
    old_cert = cert_der()
    server.write_config('[limits]\nmax_message_size = "2MB"\n')
    (server.data / "cert.pem").unlink()
    (server.data / "key.pem").unlink()
    server.proc.send_signal(1)
    deadline = time.time() + 10
    while ehlo_size() != str(2 * 1024 * 1024) and time.time() < deadline:
        time.sleep(0.1)
    assert ehlo_size() == str(2 * 1024 * 1024)
    assert cert_der() != old_cert  # regenerated (self_signed) and loaded without restart

    # A broken config on SIGHUP is refused and the server keeps running as it was.
    server.write_config('[limits]\nmax_message_size = "2MB"\nbogus = 1\n')
    server.proc.send_signal(1)
    time.sleep(0.5)
    assert server.proc.poll() is None
    assert "reload failed" in server.log("bulwark.log") and "limits.bogus" in server.log("bulwark.log")
    assert ehlo_size() == str(2 * 1024 * 1024)


def test_restart_keeps_mailboxes_and_serves_again(server):
    with smtplib.SMTP("127.0.0.1", server.ports["smtp"]) as s:
        s.sendmail("a@remote.test", ["demo@example.test"], b"Subject: one\r\n\r\n1\r\n")
    server.wait_messages(1)
    assert server.stop() == 0
    server.start()
    with smtplib.SMTP("127.0.0.1", server.ports["smtp"]) as s:
        s.sendmail("a@remote.test", ["demo@example.test"], b"Subject: two\r\n\r\n2\r\n")
    assert len(server.wait_messages(2)) == 2
    # At each start, "ready" comes after every listener's "listening:" line.
    log = server.log("bulwark.log").splitlines()
    readies = [i for i, line in enumerate(log) if "ready: accepting connections" in line]
    assert len(readies) == 2
    for since, ready in zip([0] + readies, readies):
        listening = [line for line in log[since:ready] if "listening: " in line]
        assert len(listening) == len(server.ports), log[since:ready + 1]


@pytest.mark.skipif(os.geteuid() != 0, reason="binding as root and dropping privileges needs root")
def test_root_binds_then_drops_to_server_user(make_server):
    nobody = pwd.getpwnam("nobody")
    srv = make_server(run_as="nobody")
    os.chmod(srv.root, 0o755)  # the service user must reach data_dir
    srv.start()
    status = open(f"/proc/{srv.proc.pid}/status").read()
    uid_line = next(l for l in status.splitlines() if l.startswith("Uid:"))
    assert uid_line.split()[1:] == [str(nobody.pw_uid)] * 4  # real, effective, saved, fs
    with smtplib.SMTP("127.0.0.1", srv.ports["smtp"]) as s:
        s.sendmail("a@remote.test", ["demo@example.test"], b"Subject: as nobody\r\n\r\nx\r\n")
    srv.wait_messages(1)
    md = srv.maildir()
    assert all(p.stat().st_uid == nobody.pw_uid for p in md.iterdir())
    assert "running as user nobody" in srv.log("bulwark.log")


def test_sigterm_while_a_client_stays_in_data_past_the_shutdown_timeout(make_server):
    """Issue 8.1: the session is told 421 and ends; the server exits cleanly (under the
    sanitizer pass this is where ~io_context used to touch destroyed tables)."""
    srv = make_server(extra_config='[timeouts]\nshutdown = "1s"\n').start()
    busy = Raw(srv.ports["smtp"])
    busy.reply()
    busy.begin_data()
    busy.send(b"Subject: never finished\r\n\r\nhalf\r\n")
    t0 = time.time()
    srv.proc.send_signal(15)
    code, text = busy.reply()
    assert code == 421 and "4.3.2" in text
    assert busy.closed()
    srv.proc.wait(timeout=20)
    assert srv.proc.returncode == 0
    assert time.time() - t0 < 8
    assert srv.messages() == []  # never acknowledged, never delivered
    out = srv.serve_output()
    assert "closing them" in out and "stopped" in out


def test_sigterm_as_soon_as_the_port_opens_is_a_clean_shutdown(make_server):
    """Issue 8.16: signal handlers exist before any port is open."""
    srv = make_server()
    for _ in range(8):
        proc = subprocess.Popen([conftest.BIN, "serve", "--config", str(srv.config)], stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE)
        deadline = time.time() + 20
        while time.time() < deadline:
            try:
                socket.create_connection(("127.0.0.1", srv.ports["smtp"]), timeout=1).close()
                break
            except OSError:
                time.sleep(0.001)
        proc.send_signal(15)
        _, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err.decode(errors="replace")[-2000:]
        assert conftest.sanitizer_report(err.decode(errors="replace")) is None


def _timeouts_server(make_server, **t):
    cfg = "[timeouts]\n" + "".join(f'{k} = {v!r}\n'.replace("'", '"') for k, v in t.items())
    return make_server(extra_config=cfg).start()


def _until_closed(conn, limit):
    """Reads until the server closes; returns (seconds, what it said)."""
    t0 = time.time()
    conn.sock.settimeout(limit)
    got = b""
    try:
        while True:
            chunk = conn.sock.recv(4096)
            if not chunk:
                break
            got += chunk
    except OSError:
        pass
    return time.time() - t0, got


def test_idle_after_a_slow_data_phase_gets_the_command_timeout(make_server):
    """Issue 8.9: a deadline that moves earlier is honoured (it used to wait for the
    later DATA deadline)."""
    srv = _timeouts_server(make_server, command="2s", data="12s")
    c = Raw(srv.ports["smtp"])
    c.reply()
    c.begin_data()
    for i in range(4):  # a slow but steady DATA phase
        c.send(b"line %d\r\n" % i)
        time.sleep(1)
    code, _ = c.cmd(".")
    assert code == 250
    took, said = _until_closed(c, 15)
    assert b"421 4.4.2" in said
    assert took < 4.5, f"idle client cut after {took:.1f}s, command timeout is 2s"


def test_a_command_dripped_byte_by_byte_is_cut_at_the_command_timeout(make_server):
    """Issue 8.9b: a command line must be complete within timeouts.command, however
    it is split."""
    srv = _timeouts_server(make_server, command="3s")
    c = Raw(srv.ports["smtp"])
    c.reply()
    t0 = time.time()
    cut = None
    for ch in b"NOOP NOOP NOOP NOOP NOOP":
        try:
            c.send(bytes([ch]))
        except OSError:
            cut = time.time() - t0
            break
        c.sock.settimeout(0.7)
        try:
            data = c.sock.recv(4096)
            if b"421" in data or not data:
                cut = time.time() - t0
                break
        except socket.timeout:
            pass
    assert cut is not None, "a dripping client kept its session"
    assert cut < 5.5, f"cut after {cut:.1f}s"


def test_data_dripped_byte_by_byte_is_cut_by_the_minimum_rate(make_server):
    """Issue 8.9b: inside DATA each byte arrives well within timeouts.data, but the
    phase must average min_data_rate after its first timeouts.data."""
    srv = _timeouts_server(make_server, command="30s", data="3s", min_data_rate=1000)
    c = Raw(srv.ports["smtp"])
    c.reply()
    c.begin_data()
    t0 = time.time()
    said = b""
    while time.time() - t0 < 20:
        try:
            c.send(b"x")
        except OSError:
            break
        c.sock.settimeout(0.5)
        try:
            data = c.sock.recv(4096)
            said += data
            if not data or b"421" in said:
                break
        except socket.timeout:
            pass
    took = time.time() - t0
    assert b"421 4.4.2" in said
    assert took < 6, f"dripping DATA cut after {took:.1f}s"
    assert srv.messages() == []


def test_the_whole_session_bound_holds_for_a_busy_client(make_server):
    srv = _timeouts_server(make_server, command="10s", session="3s")
    c = Raw(srv.ports["smtp"])
    c.reply()
    t0 = time.time()
    with pytest.raises((EOFError, OSError, AssertionError)):
        while time.time() - t0 < 15:
            code, _ = c.cmd("NOOP")
            assert code == 250
            time.sleep(0.3)
    assert time.time() - t0 < 5


@pytest.mark.skipif(bool(os.environ.get("BULWARK_SANITIZED")),
                    reason="the sanitizer runtimes need descriptors too: at the limit UBSan's vptr check cannot "
                           "open the pipe it probes memory with and reports every object as invalid")
def test_accept_failures_are_logged_at_most_once_per_10_seconds(make_server):
    """Issue 8.21: out of file descriptors, accept() fails every 100 ms; the warning
    is not repeated each time."""
    import resource
    srv = make_server(extra_config="[limits]\nmax_connections_per_ip = 0\n")
    srv.start(preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (48, 48)))
    held = []
    try:
        for _ in range(60):
            try:
                s = socket.create_connection(("127.0.0.1", srv.ports["smtp"]), timeout=2)
            except OSError:
                break
            held.append(s)
        time.sleep(3)
        lines = [l for l in srv.log("bulwark.log").splitlines() if "accept on" in l]
        assert 1 <= len(lines) <= 2, lines
    finally:
        for s in held:
            s.close()
    # Descriptors back: it serves again.
    with smtplib.SMTP("127.0.0.1", srv.ports["smtp"], timeout=10) as s:
        assert s.noop()[0] == 250


@pytest.mark.skipif(os.environ.get("BULWARK_SANITIZED") == "1", reason="the sanitizer keeps its own fault handler")
def test_a_fault_says_so_with_a_backtrace_on_stderr_then_dies_of_it(make_server):
    """A crash that cannot be made to happen again is found from its one report."""
    srv = make_server()
    proc = subprocess.Popen([conftest.BIN, "serve", "--config", str(srv.config)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    conftest.wait(lambda: "ready: accepting connections" in srv.log("bulwark.log"), what="the server ready")
    os.kill(proc.pid, signal.SIGSEGV)
    _, err = proc.communicate(timeout=30)
    text = err.decode(errors="replace")
    assert proc.returncode == -signal.SIGSEGV, text[-2000:]
    assert "bulwark: fatal signal 11 (SEGV); backtrace" in text, text[-2000:]
    frames = text.split("backtrace", 1)[1].splitlines()[1:]
    assert len(frames) >= 3 and any("bulwark(" in f or "libc.so" in f for f in frames), text[-2000:]


def test_sighup_after_logrotate_renamed_the_logs_starts_new_files_losing_no_line(make_server):
    """What logrotate does: rename the files, then `kill -HUP`; the server writes new ones."""
    srv = make_server().start()

    def send(subject):
        with smtplib.SMTP("127.0.0.1", srv.ports["smtp"], timeout=20) as s:
            s.sendmail("a@remote.test", ["demo@example.test"], f"Subject: {subject}\r\n\r\nbody\r\n".encode())
            s.mail("a@remote.test")
            assert s.rcpt(f"{subject}@far-away.test")[0] == 554  # a line in security.log
            s.rset()

    send("first")
    srv.wait_log("security.log", "first@far-away.test")
    conftest.wait(lambda: srv.log("mail.log").count("relay=local") == 1, what="the first delivery")
    follower = subprocess.Popen([conftest.BIN, "--config", str(srv.config), "log", "show", "security", "--follow"],
                                stdout=subprocess.PIPE, text=True)
    seen = follower.stdout.readline()  # it has the file open and read before the rename
    for name in ("mail.log", "security.log", "bulwark.log"):
        os.rename(srv.logs / name, srv.logs / (name + ".1"))
    send("between")  # written to the renamed files: nothing is lost before the signal
    srv.wait_log("security.log.1", "between@far-away.test")
    srv.proc.send_signal(signal.SIGHUP)
    srv.wait_log("bulwark.log", "reload: configuration and certificate reloaded")
    send("after")
    srv.wait_log("security.log", "after@far-away.test")
    conftest.wait(lambda: "relay=local" in srv.log("mail.log"), what="the last delivery in the new mail.log")
    old, new = srv.log("security.log.1"), srv.log("security.log")
    assert "first@" in old and "between@" in old and "after@" not in old
    assert "after@" in new and "first@" not in new and "between@" not in new
    assert srv.log("mail.log").count("accepted id=") == 1 and srv.log("mail.log.1").count("accepted id=") == 2
    for name in ("mail.log", "security.log", "bulwark.log"):
        assert (srv.logs / name).stat().st_mode & 0o777 == 0o640, name
    # `log show --follow` went on in the new file.
    try:
        deadline = time.time() + 20
        while "after@far-away.test" not in seen and time.time() < deadline:
            seen += follower.stdout.readline()
        assert "first@far-away.test" in seen and "after@far-away.test" in seen, seen
    finally:
        follower.kill()
        follower.wait()
    assert srv.stop() == 0
