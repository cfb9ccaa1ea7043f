#!/usr/bin/python3
"""Cost of checking inbound mail: bulwark's acceptance rate with DKIM verification,
SPF and DMARC off, then all on (the Authentication-Results field written), for a
message signed by dkimpy (RSA-2048, relaxed/relaxed) from a domain with SPF and DMARC
records -- answered by a dnslib server on loopback, then from bulwark's cache (the
"cached DNS" case of issue 11). Load: Postfix's smtp-source sending that pre-formatted
message (-F), 20 sessions, one message per connection; best of three interleaved runs
(BENCH_ROUNDS, the order swapped each round), each followed by the wait for its delivery; bulwark's CPU time per
message (user + system) is printed beside the rates, a figure less at the mercy of the
scheduler than the rate.
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
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
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
    cpu = {"off": [], "on": []}  # bulwark's CPU time per message, accepting and delivering it
    delivered = {"off": 300, "on": 300}
    servers = [("off", p1, ports1["smtp"]), ("on", p2, ports2["smtp"])]
    for round_ in range(ROUNDS):
        # Each round in the other order (off, on / on, off / ...): a run pays for the
        # files the run before it deleted (ext4 without a journal skips inodes freed in
        # the last minute when it allocates, at a cost that grows with their number).
        for name, proc, port in servers if round_ % 2 == 0 else servers[::-1]:
            before = benchlib.cpu_seconds(proc.pid)
            results[name].append(benchlib.rate(port, N, message_file=msg_file))
            delivered[name] += N
            benchlib.settle(ROOT, name, delivered[name])
            cpu[name].append((benchlib.cpu_seconds(proc.pid) - before) * 1e6 / N)
    best = {k: max(v) for k, v in results.items()}
    cost = 1 - best["on"] / best["off"]
    least = {k: min(v) for k, v in cpu.items()}
    # What the checks said about the last message delivered (they must have run).
    new = ROOT / "on" / "data" / "mail" / "bench.test" / "u" / "new"
    last = max(new.iterdir(), key=lambda p: p.stat().st_mtime).read_bytes()
    ar = b" ".join(last.split(b"\nReceived:")[0].split(b"Authentication-Results:")[1].split())
    print(f"mail authentication cost: {N} msgs x{ROUNDS}, best of {ROUNDS}: DKIM/SPF/DMARC off {best['off']:.0f} msg/s; "
          f"on {best['on']:.0f} msg/s; cost {cost * 100:.1f}% (target < 10%)")
    print(f"  runs: off {' / '.join(f'{r:.0f}' for r in results['off'])}; on {' / '.join(f'{r:.0f}' for r in results['on'])} msg/s")
    print(f"  bulwark CPU per message (accept + deliver, least of the runs): off {least['off']:.0f} us; "
          f"on {least['on']:.0f} us (+{least['on'] - least['off']:.0f} us)")
    print(f"  verdicts on the last message: {ar.decode(errors='replace')}")
    print(f"  DNS queries answered by the test server: {sum(dns.resolver.queries.values())} (the rest from the cache)")
finally:
    for p in procs:
        p.terminate()
        p.wait()
    dns.stop()
