"""A real POP3 server for the POP-before-SMTP tests: a private Dovecot instance
(Debian's dovecot-pop3d) on a loopback address, STLS with the test CA's certificate,
one user from a passwd file."""
import pathlib
import pwd
import shutil
import subprocess
import tempfile
import time


class Pop3Server:
    def __init__(self, ip, port, ca, user, password):
        self.root = pathlib.Path(tempfile.mkdtemp(prefix="bulwark-pop3-"))
        r = self.root
        r.chmod(0o755)  # Dovecot's auth process (user dovecot) reads the passwd file
        for d in ("run", "state", "home"):
            (r / d).mkdir()
        nobody = pwd.getpwnam("nobody")
        shutil.chown(r / "home", nobody.pw_uid, nobody.pw_gid)
        (r / "passwd").write_text(f"{user}:{{PLAIN}}{password}\n")
        self.log = r / "dovecot.log"
        (r / "dovecot.conf").write_text(f"""
base_dir = {r}/run
state_dir = {r}/state
log_path = {self.log}
info_log_path = {self.log}
protocols = pop3
listen = {ip}
ssl = yes
ssl_cert = <{ca.dir}/server.pem
ssl_key = <{ca.dir}/server.key
ssl_min_protocol = TLSv1.2
disable_plaintext_auth = yes
auth_mechanisms = plain
passdb {{
  driver = passwd-file
  args = scheme=PLAIN {r}/passwd
}}
userdb {{
  driver = static
  args = uid={nobody.pw_uid} gid={nobody.pw_gid} home={r}/home/%u
}}
mail_location = maildir:~/Maildir
service pop3-login {{
  inet_listener pop3 {{
    port = {port}
  }}
  inet_listener pop3s {{
    port = 0
  }}
}}
service imap-login {{
  inet_listener imap {{
    port = 0
  }}
}}
""")
        self.proc = subprocess.Popen(["/usr/sbin/dovecot", "-F", "-c", str(r / "dovecot.conf")],
                                     stdout=subprocess.DEVNULL, stderr=open(r / "stderr", "wb"))
        import socket
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
        return [line for line in self.log.read_text().splitlines() if "pop3-login" in line and "Login: user=" in line] \
            if self.log.exists() else []

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=15)
        shutil.rmtree(self.root, ignore_errors=True)
