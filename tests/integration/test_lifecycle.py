"""Signals and restarts: SIGTERM finishes what is in flight, SIGHUP reloads."""
import os
import pwd
import smtplib
import socket
import ssl
import time

import pytest

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
