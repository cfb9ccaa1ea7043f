"""A real DNS server for the tests (python3-dnslib, UDP+TCP on a loopback port).

ZONE maps (name, type) to records; names under slow.test never get an answer,
names under servfail.test get SERVFAIL, anything else unknown is NXDOMAIN (or
NODATA when the name has other records). Every query is counted.
"""
import collections
import socket
import threading
import time

from dnslib import AAAA, MX, PTR, QTYPE, RCODE, RR, TXT, A
from dnslib.server import BaseResolver, DNSLogger, DNSServer
from dnslib.dns import DNSError


class ZoneResolver(BaseResolver):
    def __init__(self, zone):
        self.zone = zone
        self.queries = collections.Counter()
        self.lock = threading.Lock()

    def resolve(self, request, handler):
        qname = str(request.q.qname).rstrip(".").lower()
        qtype = QTYPE[request.q.qtype]
        with self.lock:
            self.queries[(qname, qtype)] += 1
        reply = request.reply()
        if qname.endswith("slow.test"):
            time.sleep(8)
            raise DNSError("deliberately silent")
        if qname.endswith("servfail.test"):
            reply.header.rcode = RCODE.SERVFAIL
            return reply
        records = self.zone.get((qname, qtype))
        if records:
            for ttl, rdata in records:
                reply.add_answer(RR(qname, getattr(QTYPE, qtype), rdata=rdata, ttl=ttl))
        elif not any(name == qname for name, _ in self.zone):
            reply.header.rcode = RCODE.NXDOMAIN
        return reply


class DnsTestServer:
    def __init__(self, zone, address="127.0.0.1", port=None):
        """port: a fixed port (53 for tools that read /etc/resolv.conf, which names no
        port; see resolv_conf_cmd); default a free one."""
        self.resolver = ZoneResolver(zone)
        self.address = address
        logger = DNSLogger(log="-request,-reply,-truncated,-error,-recv,-send,-data", prefix=False)
        if port is not None:
            self.port = port
            self.udp = DNSServer(self.resolver, address=address, port=port, logger=logger)
            self.tcp = DNSServer(self.resolver, address=address, port=port, tcp=True, logger=logger)
            self.udp.start_thread()
            self.tcp.start_thread()
            return
        # A port free for UDP may be taken for TCP (another test's listener): try again.
        for attempt in range(50):
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.bind(("127.0.0.1", 0))
                self.port = s.getsockname()[1]
            self.udp = None
            try:
                self.udp = DNSServer(self.resolver, address="127.0.0.1", port=self.port, logger=logger)
                self.tcp = DNSServer(self.resolver, address="127.0.0.1", port=self.port, tcp=True, logger=logger)
                break
            except OSError:
                if self.udp is not None:
                    self.udp.server.server_close()
                if attempt == 49:
                    raise
        self.udp.start_thread()
        self.tcp.start_thread()

    def count(self, name, qtype):
        with self.resolver.lock:
            return self.resolver.queries[(name, qtype)]

    def stop(self):
        self.udp.stop()
        self.tcp.stop()


def resolv_conf_cmd(tmp_path, dns, cmd):
    """`cmd` run with an /etc/resolv.conf that names only `dns` (which must listen on
    port 53): a private mount namespace (unshare -m, as root) with the file bound over.
    For tools with no way to name a DNS server (dkimverify, opendkim-testmsg)."""
    conf = tmp_path / "resolv.conf"
    conf.write_text(f"nameserver {dns.address}\noptions timeout:2 attempts:1\n")
    return ["unshare", "-m", "sh", "-c", f'mount --bind "{conf}" /etc/resolv.conf && exec "$@"', "sh", *cmd]


def mx(host, pref=10):
    return MX(host, pref)


__all__ = ["DnsTestServer", "A", "AAAA", "MX", "PTR", "TXT", "mx", "resolv_conf_cmd"]
