"""Running the mail clients nobody here wrote (fetchmail, getmail6) against the server:
their config files, a Maildir getmail may deliver into, an MDA for fetchmail, and a
check that no password reached their output."""
import os
import pathlib
import shutil
import subprocess
import tempfile

from conftest import PASSWORD, HOST


def run_client(cmd, **kw):
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120, **kw)
    assert PASSWORD not in r.stdout + r.stderr
    return r


def getmail(tmp_path, retriever, port, cert, user, extra=""):
    """Runs getmail6 with `retriever` (e.g. SimplePOP3SSLRetriever) into a fresh
    Maildir; returns (CompletedProcess, the messages it delivered). getmail will not
    deliver as root: it delivers as nobody, into a directory nobody can reach."""
    top = pathlib.Path(tempfile.mkdtemp(prefix="bulwark-getmail-"))
    try:
        top.chmod(0o755)
        dest = top / "Maildir"
        for d in ("tmp", "new", "cur"):
            (dest / d).mkdir(parents=True)
            shutil.chown(dest / d, "nobody")
        shutil.chown(dest, "nobody")
        rc = tmp_path / "getmailrc"
        rc.write_text(f"[retriever]\ntype = {retriever}\nserver = 127.0.0.1\nport = {port}\n"
                      f"username = {user}\npassword = {PASSWORD}\nca_certs = {cert}\nssl_cert_hostname = {HOST}\n"
                      f"{extra}[destination]\ntype = Maildir\npath = {dest}/\nuser = nobody\n"
                      f"[options]\nread_all = true\ndelete = false\n")
        r = run_client(["getmail", "--getmaildir", str(tmp_path), "--rcfile", str(rc)])
        return r, [p.read_bytes() for p in (dest / "new").iterdir()]
    finally:
        shutil.rmtree(top, ignore_errors=True)


def fetchmail(tmp_path, protocol, port, cert, user, options=""):
    """Runs fetchmail (STARTTLS/STLS on the plain port, certificate checked) with an MDA
    that writes each message to a file; returns (CompletedProcess, the messages)."""
    out = tmp_path / "fetched"
    out.mkdir(exist_ok=True)
    mda = tmp_path / "mda.sh"
    mda.write_text(f'#!/bin/sh\ncat > "{out}/$(date +%s%N).$$"\n')
    mda.chmod(0o755)
    rc = tmp_path / "fetchmailrc"
    rc.write_text(f'poll 127.0.0.1 service {port} protocol {protocol} uidl\n'
                  f'  user "{user}" password "{PASSWORD}" sslproto "TLS1.2+" sslcertck {options}\n'
                  f'  sslcertfile "{cert}" sslcommonname "{HOST}"\n  mda "{mda}"\n')
    rc.chmod(0o600)
    env = dict(os.environ, HOME=str(tmp_path), FETCHMAILHOME=str(tmp_path))
    r = run_client(["fetchmail", "-f", str(rc), "--nosyslog", "-v"], env=env)
    return r, [p.read_bytes() for p in out.iterdir()]


def same_message(got, sent):
    """`got` (as a client stored it: LF line ends, maybe a header of its own added) holds
    every header line and exactly the body of `sent`."""
    got = got.replace(b"\r\n", b"\n")
    head, _, body = sent.replace(b"\r\n", b"\n").partition(b"\n\n")
    ghead, _, gbody = got.partition(b"\n\n")
    return gbody == body and all(line in ghead.split(b"\n") for line in head.split(b"\n"))
