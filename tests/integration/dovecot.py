"""A real Dovecot (Debian's dovecot-pop3d / dovecot-imapd) as a private instance on a
loopback address: the POP3 server of the POP-before-SMTP tests (STLS with the test CA's
certificate) and the IMAP server the differential test compares bulwark with. One user
from a passwd file, mail in ~/Maildir."""
import pathlib
import pwd
import shutil
import socket
import subprocess
import tempfile
import time


class Dovecot:
    def __init__(self, ip, port, user, password, protocol="pop3", ca=None):
        self.root = pathlib.Path(tempfile.mkdtemp(prefix=f"bulwark-dovecot-{protocol}-"))
        self.user = user
        r = self.root
        r.chmod(0o755)  # Dovecot's auth process (user dovecot) reads the passwd file
        for d in ("run", "state", "home"):
            (r / d).mkdir()
        nobody = pwd.getpwnam("nobody")
        shutil.chown(r / "home", nobody.pw_uid, nobody.pw_gid)
        (r / "passwd").write_text(f"{user}:{{PLAIN}}{password}\n")
        self.log = r / "dovecot.log"
        tls = (f"ssl = yes\nssl_cert = <{ca.dir}/server.pem\nssl_key = <{ca.dir}/server.key\n"
               "ssl_min_protocol = TLSv1.2\ndisable_plaintext_auth = yes\n") if ca else \
            "ssl = no\ndisable_plaintext_auth = no\n"
        pop_port, imap_port = (port, 0) if protocol == "pop3" else (0, port)
        (r / "dovecot.conf").write_text(f"""
base_dir = {r}/run
state_dir = {r}/state
log_path = {self.log}
info_log_path = {self.log}
protocols = {protocol}
listen = {ip}
{tls}
auth_mechanisms = plain
passdb {{
  driver = passwd-file
  args = scheme=PLAIN {r}/passwd
}}
userdb {{
  driver = static
  args = uid={nobody.pw_uid} gid={nobody.pw_gid} home={r}/home/%u
}}
first_valid_uid = {nobody.pw_uid}
mail_location = maildir:~/Maildir
namespace inbox {{
  inbox = yes
  separator = /
}}
service pop3-login {{
  inet_listener pop3 {{
    port = {pop_port}
  }}
  inet_listener pop3s {{
    port = 0
  }}
}}
service imap-login {{
  inet_listener imap {{
    port = {imap_port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
""")
        self.proc = subprocess.Popen(["/usr/sbin/dovecot", "-F", "-c", str(r / "dovecot.conf")],
                                     stdout=subprocess.DEVNULL, stderr=open(r / "stderr", "wb"))
        deadline = time.time() + 15
        while time.time() < deadline:
            try:
                socket.create_connection((ip, port), timeout=1).close()
                return
            except OSError:
                if self.proc.poll() is not None:
                    break
                time.sleep(0.1)
        raise AssertionError("dovecot did not start: " + (r / "stderr").read_text() +
                             (self.log.read_text() if self.log.exists() else ""))

    def logins(self):
        return [line for line in self.log.read_text().splitlines() if "-login" in line and "Login: user=" in line] \
            if self.log.exists() else []

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=15)
        shutil.rmtree(self.root, ignore_errors=True)
