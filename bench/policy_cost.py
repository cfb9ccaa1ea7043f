#!/usr/bin/python3
"""Cost of the policy: bulwark's acceptance rate with default limits and DNS checks
off, then with every limit on and both DNS checks on (against a local DNS server that
answers for the sender domain and the client's PTR), side by side with Postfix's
smtp-source. Target: the policy costs under 10% of the acceptance rate.
Usage: policy_cost.py BULWARK_BIN ROOT"""
import os
import pathlib
import subprocess
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "tests" / "integration"))
from dns_server import PTR, DnsTestServer, mx  # noqa: E402

import benchlib  # noqa: E402

N = int(os.environ.get("BENCH_MESSAGES", "5000"))
BIN, ROOT = sys.argv[1], pathlib.Path(sys.argv[2])


def start(name, extra):
    proc, ports = benchlib.start(BIN, ROOT, name, extra)
    return proc, ports["smtp"]


rate = benchlib.rate


dns = DnsTestServer({("remote.test", "MX"): [(3600, mx("mx.remote.test"))],
                     ("1.0.0.127.in-addr.arpa", "PTR"): [(3600, PTR("localhost.bench"))]})
policy = (f'[dns]\nservers = ["127.0.0.1:{dns.port}"]\n'
          '[limits]\nmax_messages_per_hour = 10000000\nmax_connections_per_ip = 200\n'
          'max_unknown_recipients = 20\nmax_failed_commands = 10\nmax_recipients = 100\n'
          'require_sender_domain_in_dns = true\nrequire_client_ptr = true\n'
          '[relay]\nallow_ip_group = ""\n')
plain = '[limits]\nmax_connections_per_ip = 0\n[relay]\nallow_ip_group = ""\n'
procs = []
try:
    p1, port_plain = start("plain", plain)
    p2, port_policy = start("policy", policy)
    procs = [p1, p2]
    for port in (port_plain, port_policy):
        rate(port, 300)  # warm-up (and fills the DNS cache)
    results = {"plain": [], "policy": []}
    for _ in range(3):  # interleaved, to spread machine noise over both
        results["plain"].append(rate(port_plain, N))
        results["policy"].append(rate(port_policy, N))
    best = {k: max(v) for k, v in results.items()}
    cost = 1 - best["policy"] / best["plain"]
    print(f"policy cost: {N} msgs x3, best of three: limits off/DNS off {best['plain']:.0f} msg/s; "
          f"every limit + PTR + sender-domain checks {best['policy']:.0f} msg/s; cost {cost * 100:.1f}% (target < 10%)")
    print(f"DNS queries answered by the test server: {sum(dns.resolver.queries.values())} (the rest from the cache)")
finally:
    for p in procs:
        p.terminate()
        p.wait()
    dns.stop()
