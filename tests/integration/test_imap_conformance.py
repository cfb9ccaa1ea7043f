"""IMAP conformance found missing by an outside suite (RFC 3501 / RFC 9051), for what the
Dovecot differential test (test_imap_dovecot.py) cannot show: IMAP4rev2 sessions (the
Debian Dovecot speaks rev1 only), the FETCH macros, \\Recent through COPY and MOVE, and a
conformant client that gets many NO answers never being cut off."""
import re

from imap_raw import ImapRaw, fetch_items
from test_imap import message, send


def flags_line(lines, seq):
    for l in lines:
        got = fetch_items(l)
        if got and got[0] == seq and "FLAGS" in got[1]:
            return l
    raise AssertionError(f"no FLAGS for {seq} in {lines}")


def test_recent_is_for_rev1_sessions_one_per_message_and_follows_copy_and_move(server):
    send(server, [message(1), message(2)])
    server.wait_messages(2)
    rev2 = ImapRaw(server)
    assert b"IMAP4rev2" in rev2.ok("ENABLE IMAP4rev2")[0]
    lines = rev2.ok("SELECT INBOX")
    assert not any(b"RECENT" in l for l in lines), lines  # rev2 has no \Recent at all
    assert b"\\Recent" not in flags_line(rev2.ok("FETCH 1:* (FLAGS)"), 1)
    # the rev2 session took them (one session per message): a rev1 session sees none recent
    rev1 = ImapRaw(server)
    lines = rev1.ok("SELECT INBOX")
    assert b"* 0 RECENT" in lines, lines
    # a COPY's and a MOVE's messages are recent in the target, for the first session there
    rev1.ok("CREATE Target")
    rev1.ok("COPY 1 Target")
    rev2.ok("MOVE 2 Target")
    assert b'* STATUS "Target" (RECENT 2 MESSAGES 2)' in rev1.ok("STATUS Target (RECENT MESSAGES)")
    other = ImapRaw(server)
    assert b"* 2 RECENT" in other.ok("EXAMINE Target")  # looking does not take them
    lines = rev1.ok("SELECT Target")
    assert b"* 2 RECENT" in lines, lines
    fetched = rev1.ok("FETCH 1:2 (FLAGS)")
    assert all(b"\\Recent" in flags_line(fetched, q) for q in (1, 2)), fetched
    assert b"* SEARCH 1 2" in rev1.ok("SEARCH NEW")
    assert b"* 0 RECENT" in other.ok("SELECT Target")
    # new mail while selected: the session that hears of it first gets it recent
    told = rev1.ok("APPEND Target", literal=message(3)) + rev1.ok("NOOP")
    assert b"* 3 EXISTS" in told and b"* 3 RECENT" in told, told
    assert b"* SEARCH 1 2 3" in rev1.ok("SEARCH RECENT")
    told = other.ok("NOOP")
    assert b"* 3 EXISTS" in told and not any(b"RECENT" in l for l in told), told  # not for it
    assert b"* SEARCH" in other.ok("SEARCH RECENT")
    for s in (rev1, rev2, other):
        s.close()


def test_fetch_macros_all_fast_full(server):
    send(server, [message(1)])
    server.wait_messages(1)
    s = ImapRaw(server)
    s.ok("EXAMINE INBOX")
    items = lambda macro: set(re.findall(rb"(FLAGS|INTERNALDATE|RFC822\.SIZE|ENVELOPE|BODYSTRUCTURE|BODY) ",
                                         b"".join(s.ok(f"FETCH 1 {macro}"))))
    assert items("FAST") == {b"FLAGS", b"INTERNALDATE", b"RFC822.SIZE"}
    assert items("ALL") == {b"FLAGS", b"INTERNALDATE", b"RFC822.SIZE", b"ENVELOPE"}
    assert items("FULL") == {b"FLAGS", b"INTERNALDATE", b"RFC822.SIZE", b"ENVELOPE", b"BODY"}
    s.close()


def test_answers_no_never_cut_a_client_off_only_protocol_errors_count(make_server):
    srv = make_server(extra_config="[limits]\nmax_failed_commands = 3\n").start()
    s = ImapRaw(srv)
    for i in range(30):  # a client probing for folders, or a suite testing errors
        _, done = s.cmd(f"SELECT Missing{i}")
        assert done.split()[1] == b"NO" and b"[NONEXISTENT]" in done, done
    _, done = s.cmd("STATUS Nowhere (MESSAGES)")
    assert done.split()[1] == b"NO"
    s.ok("CREATE x[1")  # "[" in an atom is a mailbox name, not a syntax error
    s.ok("SELECT x[1")
    s.ok("LIST \"\" x[%")
    s.ok("NOOP")
    for i in range(2):  # protocol errors still count
        assert s.cmd("FETCH")[1].split()[1] == b"BAD"
    untagged, done = s.cmd("FOO")
    assert done.split()[1] == b"BAD"
    assert s.line().startswith(b"* BYE") and s.closed()


class Compressed(ImapRaw):
    """An ImapRaw that speaks COMPRESS=DEFLATE (RFC 4978) once asked to: raw deflate
    both ways (Python's zlib), flushed after every command."""

    z_out = z_in = None

    def start_compress(self):
        import zlib
        untagged, done = self.cmd("COMPRESS DEFLATE")
        assert done.split()[1] == b"OK", done
        self.z_out = zlib.compressobj(6, zlib.DEFLATED, -15)
        self.z_in = zlib.decompressobj(-15)

    def recv(self, n):
        while True:
            data = self.sock.recv(n)
            if not data or not self.z_in:
                return data
            plain = self.z_in.decompress(data)
            if plain:
                return plain

    def send(self, data):
        if self.z_out:
            import zlib
            data = self.z_out.compress(data) + self.z_out.flush(zlib.Z_SYNC_FLUSH)
        self.sock.sendall(data)


def test_compress_deflate_both_ways_with_large_answers_idle_and_errors(server):
    text = (b"z" * 200 + b"\r\n") * 500
    send(server, [message(1, text)])
    server.wait_messages(1)
    s = Compressed(server)
    s.start_compress()
    untagged, done = s.cmd("COMPRESS DEFLATE")
    assert b"[COMPRESSIONACTIVE]" in done, done
    s.ok("SELECT INBOX")
    fetched = s.ok("FETCH 1 (BODY.PEEK[])")[0]
    assert fetched.endswith(text + b")"), fetched[-80:]
    big = b"Subject: big append\r\n\r\n" + (b"compressible line\r\n" * 20000)
    s.ok("APPEND INBOX", literal=big)
    got = s.ok("FETCH 2 (BODY.PEEK[TEXT])")[0]
    assert got.endswith((b"compressible line\r\n" * 20000) + b")")
    # IDLE: the news of a delivery comes compressed too
    s.send(b"i1 IDLE\r\n")
    assert s.line().startswith(b"+")
    send(server, [message(3)])
    assert s.line() == b"* 3 EXISTS"
    s.send(b"DONE\r\n")
    while not (last := s.line()).startswith(b"i1 "):
        pass
    assert last.startswith(b"i1 OK"), last
    untagged, done = s.cmd("LOGOUT")
    assert any(b"BYE" in u for u in untagged) and done.split()[1] == b"OK"
    s.close()
    # not before login
    t = Compressed(server, login=False)
    _, done = t.cmd("COMPRESS DEFLATE")
    assert done.split()[1] == b"BAD"
    t.close()
    # a stream that is not deflate ends the connection
    u = Compressed(server)
    u.start_compress()
    u.sock.sendall(b"this is not deflate at all \xff\xfe" * 10)
    assert u.closed()


def test_multiappend_adds_several_messages_in_one_command(server):
    s = ImapRaw(server)
    s.ok("CREATE Multi")
    small1 = b"Subject: one\r\n\r\nfirst\r\n"
    big = b"Subject: two\r\n\r\n" + b"a long line of the second message\r\n" * 5000  # streamed to a file
    small3 = b"Subject: three\r\n\r\nthird\r\n"
    s.send(b"m1 APPEND Multi (\\Seen) {%d+}\r\n" % len(small1) + small1 +
           b' (\\Flagged $Work) "05-Feb-2023 10:00:00 +0000" {%d+}\r\n' % len(big) + big +
           b" {%d+}\r\n" % len(small3) + small3 + b"\r\n")
    while not (done := s.line()).startswith(b"m1 "):
        pass
    m = re.search(rb"\[APPENDUID (\d+) (\d+),(\d+),(\d+)\]", done)
    assert done.startswith(b"m1 OK") and m, done
    assert [int(x) for x in m.groups()[1:]] == [1, 2, 3]
    s.ok("EXAMINE Multi")
    lines = s.ok("FETCH 1:3 (FLAGS INTERNALDATE BODY.PEEK[])")
    assert lines[0].endswith(small1 + b")") and b"\\Seen" in lines[0]
    assert lines[1].endswith(big + b")") and b"$Work" in lines[1] and b"05-Feb-2023 10:00:00 +0000" in lines[1]
    assert lines[2].endswith(small3 + b")")
    # a syntax error in the third message adds none of them
    _, done = s.cmd(b"APPEND Multi {1+}\r\nx {1+}\r\ny (\\Bogus) {1+}\r\nz")
    assert done.split()[1] == b"BAD", done
    assert b"MESSAGES 3" in b"".join(s.ok("STATUS Multi (MESSAGES)"))
    s.close()
