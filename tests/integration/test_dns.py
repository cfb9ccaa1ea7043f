"""DNS checks against a real DNS server on a loopback port (python3-dnslib)."""
import smtplib
import socket
import threading
import time

import pytest

from conftest import Raw
from dns_server import AAAA, PTR, TXT, A, DnsTestServer, mx

ZONE = {
    ("good.test", "MX"): [(300, mx("mx.good.test"))],
    ("aonly.test", "A"): [(300, A("192.0.2.10"))],
    ("v6only.test", "AAAA"): [(300, AAAA("2001:db8::10"))],
    ("nodata.test", "TXT"): [(300, TXT("no mail here"))],
    ("shortttl.test", "MX"): [(1, mx("mx.shortttl.test"))],
    ("2.0.0.127.in-addr.arpa", "PTR"): [(300, PTR("client2.good.test"))],
    ("5.0.0.127.in-addr.arpa", "PTR"): [(300, PTR("client5.good.test"))],
    # 127.0.0.3: no PTR (NXDOMAIN); 127.0.0.4: the PTR lookup fails (SERVFAIL zone below)
}


@pytest.fixture
def dns():
    d = DnsTestServer(ZONE)
    yield d
    d.stop()


def dns_server(make_server, dns, limits, extra=""):
    cfg = f'[dns]\nservers = ["127.0.0.1:{dns.port}"]\ntimeout = "1s"\n[limits]\n{limits}\n{extra}'
    return make_server(extra_config=cfg).start()


def mail_from(srv, src, sender):
    r = Raw.__new__(Raw)
    r.sock = socket.create_connection(("127.0.0.1", srv.ports["smtp"]), timeout=20, source_address=(src, 0))
    r.buf = b""
    assert r.reply()[0] == 220
    r.cmd("EHLO client.test")
    return r.cmd(f"MAIL FROM:<{sender}>")


def test_sender_domain_checks(make_server, dns):
    srv = dns_server(make_server, dns, "require_sender_domain_in_dns = true")
    assert mail_from(srv, "127.0.0.2", "a@good.test")[0] == 250        # MX
    assert mail_from(srv, "127.0.0.2", "a@aonly.test")[0] == 250       # no MX, A
    assert mail_from(srv, "127.0.0.2", "a@v6only.test")[0] == 250      # no MX, AAAA
    code, text = mail_from(srv, "127.0.0.2", "a@nowhere.test")         # NXDOMAIN
    assert code == 550 and "5.1.8" in text
    code, text = mail_from(srv, "127.0.0.2", "a@nodata.test")          # exists, but no MX/A/AAAA
    assert code == 550 and "5.1.8" in text
    code, text = mail_from(srv, "127.0.0.2", "a@servfail.test")        # DNS failure
    assert code == 451 and "4.4.3" in text
    t = time.time()
    code, text = mail_from(srv, "127.0.0.2", "a@slow.test")            # timeout
    assert code == 451 and "4.4.3" in text
    assert time.time() - t < 6
    assert mail_from(srv, "127.0.0.2", "")[0] == 250                   # null sender: nothing to check
    log = srv.wait_log("security.log", "nowhere.test")
    assert "refused: domain nowhere.test has no MX, A or AAAA record" in log


def test_client_ptr_checks(make_server, dns):
    srv = dns_server(make_server, dns, "require_client_ptr = true")
    assert mail_from(srv, "127.0.0.2", "a@x.test")[0] == 250
    code, text = mail_from(srv, "127.0.0.3", "a@x.test")
    assert code == 550 and "5.7.25" in text
    assert "SMTP client 127.0.0.3 refused: no PTR record" in srv.wait_log("security.log", "no PTR")


def test_ptr_failure_is_temporary(make_server, dns):
    # Point the reverse zone at a name the server answers with SERVFAIL.
    dns.resolver.zone[("4.0.0.127.in-addr.arpa", "PTR")] = []
    srv = dns_server(make_server, dns, "require_client_ptr = true")
    orig = dns.resolver.resolve

    def failing(request, handler):
        if str(request.q.qname).startswith("4.0.0.127"):
            reply = request.reply()
            reply.header.rcode = 2  # SERVFAIL
            return reply
        return orig(request, handler)

    dns.resolver.resolve = failing
    code, text = mail_from(srv, "127.0.0.4", "a@x.test")
    assert code == 450 and "4.7.25" in text


def test_trusted_and_exempt_groups_skip_dns(make_server, dns):
    srv = dns_server(make_server, dns, "require_client_ptr = true\nrequire_sender_domain_in_dns = true\n"
                                       'exempt_ip_group = "free"',
                     extra='[ip_groups]\nbackup = ["127.0.0.6"]\nfree = ["127.0.0.7"]\n'
                           '[relay]\nallow_ip_group = ""\ntrusted_ip_group = "backup"\n')
    assert mail_from(srv, "127.0.0.6", "a@nowhere.test")[0] == 250
    assert mail_from(srv, "127.0.0.7", "a@nowhere.test")[0] == 250
    assert mail_from(srv, "127.0.0.5", "a@nowhere.test")[0] == 550  # has a PTR, sender domain missing
    assert dns.count("6.0.0.127.in-addr.arpa", "PTR") == 0


def test_results_are_cached_by_ttl(make_server, dns):
    srv = dns_server(make_server, dns, "require_sender_domain_in_dns = true")
    for _ in range(3):
        assert mail_from(srv, "127.0.0.2", "a@good.test")[0] == 250
    assert dns.count("good.test", "MX") == 1  # TTL 300: asked once
    assert mail_from(srv, "127.0.0.2", "a@shortttl.test")[0] == 250
    time.sleep(1.5)
    assert mail_from(srv, "127.0.0.2", "a@shortttl.test")[0] == 250
    assert dns.count("shortttl.test", "MX") == 2  # TTL 1: asked again


def test_both_checks_answered_from_cache(make_server, dns):
    # PTR and sender domain both cached: the second MAIL is answered from the cache
    # for both checks in a row (this once deadlocked the server).
    srv = dns_server(make_server, dns, "require_client_ptr = true\nrequire_sender_domain_in_dns = true")
    for _ in range(3):
        assert mail_from(srv, "127.0.0.2", "a@good.test")[0] == 250
    assert dns.count("2.0.0.127.in-addr.arpa", "PTR") == 1
    assert dns.count("good.test", "MX") == 1


def test_slow_dns_does_not_stall_other_sessions(make_server, dns):
    srv = dns_server(make_server, dns, "require_sender_domain_in_dns = true")
    result = {}

    def slow():
        result["slow"] = mail_from(srv, "127.0.0.2", "a@slow.test")

    threads = [threading.Thread(target=slow) for _ in range(5)]
    for t in threads:
        t.start()
    time.sleep(0.2)
    t0 = time.time()
    with smtplib.SMTP("127.0.0.1", srv.ports["smtp"], source_address=("127.0.0.3", 0)) as s:
        s.sendmail("a@good.test", ["demo@example.test"], b"Subject: fast\r\n\r\nx\r\n")
    fast = time.time() - t0
    for t in threads:
        t.join()
    assert fast < 0.9, f"a session took {fast:.2f}s while others waited on a silent DNS server"
    assert result["slow"][0] == 451
