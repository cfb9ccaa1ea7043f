#!/usr/bin/python3
"""Cost of checking inbound mail: bulwark's acceptance rate with DKIM verification,
SPF and DMARC off, then all on (the Authentication-Results field written), for a
message signed by dkimpy (RSA-2048, relaxed/relaxed) from a domain with SPF and DMARC
records -- answered by a dnslib server on loopback, then from bulwark's cache (the
"cached DNS" case of issue 11). Load: Postfix's smtp-source sending that pre-formatted
message (-F), 20 sessions, one message per connection; best of three interleaved runs.
Target: under 10% cost.
Usage: mailauth_cost.py BULWARK_BIN ROOT"""
import os
import pathlib
import subprocess
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "tests" / "integration"))
import dkim  # noqa: E402
from dns_server import TXT, DnsTestServer  # noqa: E402

import benchlib  # noqa: E402

N = int(os.environ.get("BENCH_MESSAGES", "5000"))
BIN, ROOT = sys.argv[1], pathlib.Path(sys.argv[2])
ROOT.mkdir(parents=True, exist_ok=True)

key = ROOT / "dkim.pem"
subprocess.run(["openssl", "genrsa", "-out", str(key), "2048"], check=True, capture_output=True)
pub = subprocess.run(["openssl", "rsa", "-in", str(key), "-pubout", "-outform", "DER"], check=True,
                     capture_output=True).stdout
import base64  # noqa: E402
record = f"v=DKIM1; k=rsa; p={base64.b64encode(pub).decode()}"
dns = DnsTestServer({
    ("remote.test", "TXT"): [(3600, TXT("v=spf1 ip4:127.0.0.0/8 -all"))],
    ("_dmarc.remote.test", "TXT"): [(3600, TXT("v=DMARC1; p=reject"))],
    ("sel._domainkey.remote.test", "TXT"): [(3600, TXT([record[i:i + 255] for i in range(0, len(record), 255)]))],
})
body = "".join(f"line {i:04d} of a message of about four kilobytes, signed once\r\n" for i in range(60))
msg = (f"From: Sender <sender@remote.test>\r\nTo: u@bench.test\r\nSubject: signed\r\n"
       f"Date: Tue, 24 Nov 2026 10:00:00 +0000\r\nMessage-ID: <bench@remote.test>\r\n\r\n{body}").encode()
signed = dkim.sign(msg, b"sel", b"remote.test", key.read_bytes(), canonicalize=(b"relaxed", b"relaxed")) + msg
msg_file = ROOT / "signed.eml"
msg_file.write_bytes(signed.replace(b"\r\n", b"\n"))  # smtp-source -F adds the CR

common = f'[dns]\nservers = ["127.0.0.1:{dns.port}"]\n[limits]\nmax_connections_per_ip = 0\n[relay]\nallow_ip_group = ""\n'
off = common + '[dkim]\nverify = false\n[spf]\nmode = "off"\n[dmarc]\nmode = "off"\n'
on = common  # the defaults: verify, spf and dmarc "tag"
procs = []
try:
    p1, ports1 = benchlib.start(BIN, ROOT, "off", off)
    p2, ports2 = benchlib.start(BIN, ROOT, "on", on)
    procs = [p1, p2]
    for port in (ports1["smtp"], ports2["smtp"]):
        benchlib.rate(port, 300, message_file=msg_file)  # warm-up (fills the DNS cache)
    results = {"off": [], "on": []}
    for _ in range(3):
        results["off"].append(benchlib.rate(ports1["smtp"], N, message_file=msg_file))
        results["on"].append(benchlib.rate(ports2["smtp"], N, message_file=msg_file))
    best = {k: max(v) for k, v in results.items()}
    cost = 1 - best["on"] / best["off"]
    # What the checks said about the last message delivered (they must have run).
    new = ROOT / "on" / "data" / "mail" / "bench.test" / "u" / "new"
    last = max(new.iterdir(), key=lambda p: p.stat().st_mtime).read_bytes()
    ar = b" ".join(last.split(b"\nReceived:")[0].split(b"Authentication-Results:")[1].split())
    print(f"mail authentication cost: {N} msgs x3, best of three: DKIM/SPF/DMARC off {best['off']:.0f} msg/s; "
          f"on {best['on']:.0f} msg/s; cost {cost * 100:.1f}% (target < 10%)")
    print(f"  verdicts on the last message: {ar.decode(errors='replace')}")
    print(f"  DNS queries answered by the test server: {sum(dns.resolver.queries.values())} (the rest from the cache)")
finally:
    for p in procs:
        p.terminate()
        p.wait()
    dns.stop()
