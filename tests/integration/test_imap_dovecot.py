"""Differential test: the same generated corpus (mime_corpus.py: nested multiparts,
attachments, encoded words, 8-bit, broken MIME) APPENDed to a private Dovecot
(Debian's dovecot-imapd) and to bulwark, the same command script sent to both, the
answers compared item by item: ENVELOPE, BODYSTRUCTURE, BODY, BODY[section]<partial>,
RFC822.SIZE and SEARCH results. Where bulwark answers differently on purpose, the
difference is listed in KNOWN with the reason (docs/mailbox.md)."""
import imaplib
import re
import ssl

import pytest

from conftest import PASSWORD, free_port
from dovecot import Dovecot
from mime_corpus import corpus

USER = "demo@example.test"
DATE = '"05-Feb-2023 10:00:00 +0000"'
SECTIONS = ["HEADER", "TEXT", "1", "1.MIME", "2", "2.MIME", "3", "1.1", "1.2", "2.1", "2.2", "2.HEADER",
            "2.TEXT", "2.1.1", "1.2.1", "1.2.2", "3.HEADER", "HEADER.FIELDS (From Subject Date)",
            "HEADER.FIELDS.NOT (Subject Received)", "1.HEADER.FIELDS (Content-Type)"]
FETCHES = ["ENVELOPE", "BODYSTRUCTURE", "BODY", "RFC822.SIZE", "INTERNALDATE", "BODY.PEEK[]<0.50>", "BODY.PEEK[TEXT]<5.10>",
           "BODY.PEEK[1]<2.8>", "BINARY.PEEK[1]", "BINARY.PEEK[2]", "BINARY.PEEK[3]", "BINARY.PEEK[1.1]",
           "BINARY.PEEK[2.1]", "BINARY.SIZE[1]", "BINARY.SIZE[2]", "BINARY.PEEK[2]<3.7>",
           ] + [f"BODY.PEEK[{s}]" for s in SECTIONS]
SEARCHES = [
    "ALL", "FROM carol", "FROM example.org", "TO bob", "CC team", "CC b@example.com", "SUBJECT report",
    "SUBJECT long", "SUBJECT \"folded across\"", "HEADER Message-ID example.com", "HEADER References 2@",
    "HEADER X-Mailer \"\"", "BODY word299", "BODY \"no parts\"", "TEXT Newsletter", "TEXT \"the original\"",
    "BODY cid:logo", "LARGER 3000", "SMALLER 300", "NOT SMALLER 1000", "OR FROM alice FROM eve",
    "OR SUBJECT signed (FROM files TO bob)", "NOT FROM example.org", "UID 3:7", "2,4,6:8", "5:*",
    "SENTBEFORE 5-Jan-2023", "SENTON 3-Jan-2023", "SENTSINCE 14-Jan-2023", "BEFORE 6-Feb-2023",
    "ON 5-Feb-2023", "SINCE 6-Feb-2023", "SEEN", "UNSEEN", "FLAGGED", "ANSWERED", "DRAFT", "DELETED",
    "NOT DELETED UNSEEN", "HEADER Content-Type multipart", "HEADER \"Content-Transfer-Encoding\" base64",
    # non-ASCII keys (sent as literals, CHARSET UTF-8): encoded words in headers, and text
    # parts in quoted-printable, base64 and Latin-1 are searched decoded
    "SUBJECT Überprüfung", "FROM André", "FROM jörg", "SUBJECT café", "SUBJECT Ünïcödé", "BODY Grüße",
    "BODY \"Postfach voll\"", "BODY 100€", "TEXT Köln", "BODY \"report.pdf\"", "TEXT Rechnung",
    "SUBJECT überprüfung", "FROM ANDRÉ", "BODY GRÜSSE", "BODY grüße",
    "KEYWORD $Forwarded", "KEYWORD important", "UNKEYWORD $forwarded", "KEYWORD $Junk", "KEYWORD nowhere",
    "OR KEYWORD $Junk FLAGGED",
    # every address form a header holds (messages 21, 22): groups, quoted local parts,
    # comments, display names, encoded words
    "TO undisclosed-recipients", "CC anna", "CC team.example", "CC \"Team A\"", "CC \"Ben B\"", "BCC secret",
    "BCC \"Secret Person\"", "BCC hidden", "FROM \"john.q public\"", "FROM \"Quoted, Name\"", "FROM Quoted",
    "TO builder", "TO angle-only", "TO \"Plain Comment\"", "CC two@list", "CC list", "FROM Grüße", "FROM gruss",
    "TO bob@example.net", "FROM \"public@example.org\"",
]

SORTS = [f"SORT ({c}) UTF-8 ALL" for c in ("ARRIVAL", "DATE", "REVERSE DATE", "SUBJECT", "FROM", "TO", "CC", "SIZE",
                                              "REVERSE SIZE SUBJECT", "SUBJECT REVERSE ARRIVAL", "FROM DATE")] + [
    "UID SORT (SUBJECT DATE) UTF-8 SEEN", "SORT (DATE) UTF-8 FROM example.org", "SORT (SUBJECT) US-ASCII 20:*",
    "SORT RETURN (MIN MAX COUNT) (DATE) UTF-8 ALL", "SORT RETURN (ALL) (SUBJECT) UTF-8 ALL", "UID SORT RETURN () (FROM) UTF-8 ALL",
    "SORT (DATE) KOI8-R ALL", "SORT () UTF-8 ALL", "SORT (SUBJECT REVERSE) UTF-8 ALL",
    "THREAD ORDEREDSUBJECT UTF-8 ALL", "THREAD REFERENCES UTF-8 ALL", "UID THREAD REFERENCES UTF-8 ALL",
    "THREAD REFERENCES UTF-8 SUBJECT plans", "THREAD ORDEREDSUBJECT UTF-8 23:*", "THREAD REFERENCES UTF-8 NOT 24",
    "THREAD NOSUCH UTF-8 ALL"]

# Where bulwark answers differently on purpose (docs/mailbox.md, "Broken MIME"): a
# multipart whose boundary is missing or never appears. Dovecot shows one empty
# text/plain part inside it, so a client shows an empty message and a search finds
# nothing; bulwark shows the text as one text/plain part, so the user can read it.
BROKEN = (7, 8)
KNOWN_SEARCH = {'BODY "no parts"'}
# BINARY of a multipart part: Dovecot rewrites every part below it into binary (headers
# too); bulwark undoes the transfer encoding of single parts only and gives a multipart
# as it is (clients fetch BINARY of the leaf parts they show). And Dovecot's BINARY.SIZE
# of a base64 attachment is 8 bytes short of what its BINARY returns; bulwark's is the
# size of what BINARY returns.
KNOWN_FETCH = {(6, "BINARY.PEEK[1]"), (6, "BINARY.SIZE[1]"), (4, "BINARY.SIZE[2]")}
# SORT's charset: bulwark takes UTF-8 and US-ASCII, as its SEARCH does, and answers
# others NO [BADCHARSET (UTF-8 US-ASCII)] (RFC 5256 lets a server do so); Dovecot
# converts from any charset iconv knows.
KNOWN_SORT = {"SORT (DATE) KOI8-R ALL"}


def search_command(key):
    """SEARCH with non-ASCII strings as LITERAL+ literals, under CHARSET UTF-8."""
    if key.isascii():
        return f"SEARCH {key}".encode()
    words = key.split(" ", 1)
    value = words[1].strip('"').encode()
    return b"SEARCH CHARSET UTF-8 " + words[0].encode() + b" {%d+}\r\n" % len(value) + value


class Client:
    """Sends one command and reads the whole answer, literals included, over an imaplib
    connection (imaplib only logs in; reading is done here, raw)."""

    def __init__(self, conn):
        self.c = conn
        self.n = 0

    def command(self, text):
        self.n += 1
        tag = f"D{self.n:04d}"
        self.c.send(f"{tag} ".encode() + (text if isinstance(text, bytes) else text.encode()) + b"\r\n")
        untagged = []
        while True:
            line = self.read_response()
            if line.startswith(tag.encode() + b" "):
                return untagged, line[len(tag) + 1:].split(b" ", 1)[0]
            untagged.append(line)

    def read_response(self):
        out = b""
        while True:
            line = self.c.readline()
            assert line, "connection closed"
            out += line
            if line.endswith(b"}\r\n") and b"{" in line:
                n = int(line[line.rindex(b"{") + 1:-3])
                out += self.c.read(n)
                continue
            return out


def parse(data, i=0):
    """IMAP response syntax into nested lists of strings (atoms, quoted strings and
    literals all become str; NIL stays the atom "NIL")."""
    items = []
    while i < len(data):
        ch = data[i:i + 1]
        if ch in (b" ", b"\r", b"\n"):
            i += 1
        elif ch == b"(":
            sub, i = parse(data, i + 1)
            items.append(sub)
        elif ch == b")":
            return items, i + 1
        elif ch == b'"':
            j, s = i + 1, b""
            while data[j:j + 1] != b'"':
                if data[j:j + 1] == b"\\":
                    j += 1
                s += data[j:j + 1]
                j += 1
            items.append(("q", s))
            i = j + 1
        elif ch == b"{" or data[i:i + 2] == b"~{":  # a literal, or a literal8 (BINARY with NULs)
            i += ch == b"~"
            j = data.index(b"}", i)
            n = int(data[i + 1:j].rstrip(b"+"))
            start = data.index(b"\n", j) + 1
            items.append(("q", data[start:start + n]))
            i = start + n
        else:
            j = i
            while j < len(data) and data[j:j + 1] not in (b" ", b"(", b")", b"\r", b"\n"):
                if data[j:j + 1] == b"[":  # BODY[...] is one atom, brackets and spaces included
                    j = data.index(b"]", j)
                j += 1
            items.append(data[i:j])
            i = j
    return items, i


def fetch_items(untagged):
    """{item name: value} from the FETCH responses of one command."""
    got = {}
    for line in untagged:
        toks, _ = parse(line)
        if len(toks) >= 4 and toks[2] == b"FETCH":
            kv = toks[3]
            for k in range(0, len(kv) - 1, 2):
                name = kv[k].upper() if isinstance(kv[k], bytes) else kv[k]
                got[name] = kv[k + 1]
    return got


def search_result(untagged):
    for line in untagged:
        if line.startswith(b"* SEARCH"):
            return sorted(int(x) for x in line[8:].split())
    return None


def fold_case(v):
    """Body types, subtypes, parameter names and encodings are case-insensitive
    (RFC 2045): compare BODYSTRUCTURE atoms and strings case-folded, except values
    that are data (those are compared in ENVELOPE and BODY[...] exactly)."""
    if isinstance(v, list):
        return [fold_case(x) for x in v]
    if isinstance(v, tuple):
        return ("q", v[1].lower())
    return v.upper()


def open_both(server, dovecot_port):
    ctx = ssl.create_default_context(cafile=server.cert)
    ctx.check_hostname = False
    b = imaplib.IMAP4("127.0.0.1", server.ports["imap"], timeout=30)
    b.starttls(ctx)
    b.login(USER, PASSWORD)
    d = imaplib.IMAP4("127.0.0.1", dovecot_port, timeout=30)
    d.login(USER, PASSWORD)
    return b, d


@pytest.fixture
def dovecot():
    port = free_port()
    dc = Dovecot("127.0.0.1", port, USER, PASSWORD, "imap")
    yield port
    dc.stop()


def test_same_answers_as_dovecot(server, dovecot):
    b, d = open_both(server, dovecot)
    msgs = corpus()
    for conn in (b, d):
        for raw in msgs:
            typ, data = conn.append("INBOX", None, DATE, raw)
            assert typ == "OK", data
        assert conn.select("INBOX")[0] == "OK"
    cb, cd = Client(b), Client(d)
    diffs = []
    compared = 0
    for n in range(1, len(msgs) + 1):
        if n in BROKEN:
            continue
        for item in FETCHES:
            cmd = f"FETCH {n} ({item})"
            if (n, item) in KNOWN_FETCH:
                assert fetch_items(cb.command(cmd)[0]) != fetch_items(cd.command(cmd)[0]), \
                    f"{cmd}: now the same as Dovecot, update KNOWN_FETCH"
                continue
            ub, sb = cb.command(cmd)
            ud, sd = cd.command(cmd)
            if sb != sd:
                diffs.append(f"msg {n} {cmd}: status bulwark {sb} dovecot {sd}")
                continue
            ib, id_ = fetch_items(ub), fetch_items(ud)
            for key in set(ib) | set(id_):
                vb, vd = ib.get(key), id_.get(key)
                if key in (b"BODYSTRUCTURE", b"BODY") and vb is not None and vd is not None:
                    vb, vd = fold_case(vb), fold_case(vd)
                compared += 1
                if vb != vd:
                    diffs.append(f"msg {n} {cmd} {key!r}:\n  bulwark {vb!r}\n  dovecot {vd!r}")
    # flags for the flag searches, set on both the same way
    before = {}  # the HIGHESTMODSEQ and UIDVALIDITY before the flag changes, for QRESYNC below
    for conn in (cb, cd):
        status = b"".join(conn.command("STATUS INBOX (HIGHESTMODSEQ UIDVALIDITY)")[0])
        before[conn] = (int(re.search(rb"UIDVALIDITY (\d+)", status).group(1)),
                        int(re.search(rb"HIGHESTMODSEQ (\d+)", status).group(1)))
        for cmd in ("STORE 1,3,5 +FLAGS (\\Seen)", "STORE 2 +FLAGS (\\Flagged \\Answered)",
                    "STORE 4 +FLAGS (\\Draft \\Deleted)", "STORE 6:7 +FLAGS ($Forwarded Important)",
                    "STORE 7 -FLAGS (important)", "STORE 8 +FLAGS ($Junk)"):
            assert conn.command(cmd)[1] == b"OK"
    for key in SEARCHES:
        ub, sb = cb.command(search_command(key))
        ud, sd = cd.command(search_command(key))
        compared += 1
        rb, rd = search_result(ub), search_result(ud)
        if key in KNOWN_SEARCH:
            assert rb != rd, f"SEARCH {key}: now the same as Dovecot, update KNOWN_SEARCH"
            continue
        if (sb, rb) != (sd, rd):
            diffs.append(f"SEARCH {key}: bulwark {sb} {rb} dovecot {sd} {rd}")
    # SEARCHRES (RFC 5182): results saved as "$" and used by FETCH, UID FETCH and SEARCH
    for cmd in ("SEARCH RETURN (SAVE) FROM example.org", "FETCH $ (UID)", "SEARCH RETURN (SAVE MIN MAX) SUBJECT e",
                "UID FETCH $ (UID)", "SEARCH RETURN (ALL) $ SEEN", "SEARCH RETURN (SAVE COUNT) UNSEEN",
                "SEARCH RETURN (ALL) NOT $", "SEARCH RETURN (SAVE) FROM nobody.invalid", "FETCH $ (UID)"):
        (ub, sb), (ud, sd) = cb.command(cmd), cd.command(cmd)
        compared += 1
        if (sb, sorted(ub)) != (sd, sorted(ud)):
            diffs.append(f"{cmd}: bulwark {sb} {ub} dovecot {sd} {ud}")
    # SORT, ESORT and THREAD (RFC 5256, RFC 5267) over the whole corpus and over searches
    for cmd in SORTS:
        (ub, sb), (ud, sd) = cb.command(cmd), cd.command(cmd)
        compared += 1
        pick = lambda u: [re.sub(rb'\(TAG "[^"]*"\) ', b"", x).strip() for x in u if x.startswith((b"* SORT", b"* THREAD", b"* ESEARCH"))]
        if cmd in KNOWN_SORT:
            assert (sb, pick(ub)) != (sd, pick(ud)), f"{cmd}: now the same as Dovecot, update KNOWN_SORT"
            continue
        if (sb, pick(ub)) != (sd, pick(ud)):
            diffs.append(f"{cmd}: bulwark {sb} {pick(ub)}\n  dovecot {sd} {pick(ud)}")
    # CONDSTORE's MODSEQ search key (RFC 7162 3.1.5), with an entry name, in SEARCH and
    # ESEARCH: the same messages and a MODSEQ result (its value is each server's own)
    for cmd in ("SEARCH MODSEQ 1", 'SEARCH RETURN (MIN) MODSEQ "/flags/\\\\seen" all 1',
                'SEARCH RETURN (MAX COUNT) MODSEQ "/flags/\\\\flagged" priv 1', "UID SEARCH RETURN (ALL) MODSEQ 1 SEEN",
                "SEARCH MODSEQ 99999999 SEEN", 'SEARCH MODSEQ "/flags/seen" 1'):
        (ub, sb), (ud, sd) = cb.command(cmd), cd.command(cmd)
        compared += 1
        norm = lambda u: sorted(re.sub(rb"MODSEQ \d+", b"MODSEQ n", re.sub(rb'\(TAG "[^"]*"\) ', b"", x)) for x in u)
        if (sb, norm(ub)) != (sd, norm(ud)):
            diffs.append(f"{cmd}: bulwark {sb} {ub} dovecot {sd} {ud}")
    # a copy keeps its INTERNALDATE (RFC 9051 6.4.7)
    for conn in (cb, cd):
        conn.command("CREATE Archive")
        assert conn.command("COPY 1:5 Archive")[1] == b"OK"
        assert conn.command("EXAMINE Archive")[1] == b"OK"
    ub, _ = cb.command("FETCH 1:* (INTERNALDATE)")
    ud, _ = cd.command("FETCH 1:* (INTERNALDATE)")
    assert ub == ud and len(ub) == 5, (ub, ud)
    # QRESYNC (RFC 7162): message 4 expunged, then a resynchronising SELECT and a UID
    # FETCH with VANISHED tell the same UIDs gone and the same UIDs with the same flags
    # changed since the modseq noted before the flag changes (modseq values differ)
    answers = []
    for conn in (cb, cd):
        assert conn.command("SELECT INBOX")[1] == b"OK"
        assert conn.command("EXPUNGE")[1] == b"OK"
        assert conn.command("UNSELECT")[1] == b"OK"
        assert conn.command("ENABLE QRESYNC")[1] == b"OK"
        validity, modseq = before[conn]
        got = []
        for cmd in (f"SELECT INBOX (QRESYNC ({validity} {modseq} 1:20))",
                    f"UID FETCH 1:* (FLAGS) (CHANGEDSINCE {modseq} VANISHED)"):
            untagged, status = conn.command(cmd)
            assert status == b"OK", (cmd, untagged)
            got.append(sorted(re.sub(rb" MODSEQ \(\d+\)", b"", re.sub(rb"^\* \d+ FETCH", b"* FETCH", u)).strip()
                              for u in untagged if b"VANISHED" in u or b"FETCH" in u))
        answers.append(got)
    assert answers[0] == answers[1] and answers[0][0], answers
    # \Recent in IMAP4rev1 sessions (RFC 3501 2.3.2): messages appended to a folder are
    # recent for the first session that selects it, and for no other; EXAMINE and
    # STATUS look without taking it; SEARCH RECENT/NEW/OLD follow
    for conn in (cb, cd):
        assert conn.command("CREATE Recent")[1] == b"OK"
        for raw in msgs[:3]:
            assert conn.command(b"APPEND Recent {%d+}\r\n" % len(raw) + raw)[1] == b"OK"
    second = [Client(c) for c in open_both(server, dovecot)]
    third = [Client(c) for c in open_both(server, dovecot)]

    def normal(line):
        """Order of flags and of STATUS items, and quoting of a plain mailbox name, as
        each server likes them: not compared."""
        line = line.strip()
        if m := re.match(rb"(\* \d+ FETCH \(FLAGS \()([^)]*)(\)\))$", line):
            return m.group(1) + b" ".join(sorted(m.group(2).split())) + m.group(3)
        if m := re.match(rb'\* STATUS "?([^" ]+)"? \((.*)\)$', line):
            items = m.group(2).split()
            return b"* STATUS " + m.group(1) + b" " + b" ".join(sorted(b" ".join(items[i:i + 2]) for i in range(0, len(items), 2)))
        return line

    def recent_view(conn, cmds):
        got = []
        for cmd in cmds:
            untagged, status = conn.command(cmd)
            label = cmd if isinstance(cmd, str) else cmd[:14]
            got.append((label, status, sorted(normal(u) for u in untagged
                                              if re.match(rb"\* (\d+ (RECENT|EXISTS|EXPUNGE)|SEARCH|STATUS|\d+ FETCH)", u))))
        return got

    script2 = ["STATUS Recent (RECENT MESSAGES)", "EXAMINE Recent", "SEARCH RECENT", "SELECT Recent",
               "FETCH 1:* (FLAGS)", "SEARCH RECENT", "SEARCH NEW", "SEARCH OLD", "STORE 1 +FLAGS (\\Seen)",
               "SEARCH NEW", "SEARCH UNSEEN RECENT"]
    script3 = ["SELECT Recent", "FETCH 1:* (FLAGS)", "SEARCH RECENT", "SEARCH OLD", "STATUS INBOX (RECENT)"]
    views = []
    for two, three in zip(second, third):
        views.append((recent_view(two, script2), recent_view(three, script3),
                      recent_view(two, [b"APPEND Recent {%d+}\r\n" % len(msgs[3]) + msgs[3], "NOOP", "SEARCH RECENT"]),
                      recent_view(three, ["NOOP", "SEARCH RECENT", "FETCH 4 (FLAGS)"])))
    compared += 1
    if views[0] != views[1]:
        diffs.append(f"\\Recent: bulwark {views[0]}\n  dovecot {views[1]}")
    # LIST-EXTENDED (RFC 5258) and LSUB over subscriptions: a subscribed child under an
    # unsubscribed parent, subscriptions whose folders are gone (one leaving no parent),
    # RECURSIVEMATCH and CHILDINFO, an atom name with "[", and LIST errors. (bulwark's
    # default special-use folders, which the test's Dovecot has not, are left out; the
    # CHILDREN attributes are compared where RETURN (CHILDREN) asks for them.)
    lists = []
    for conn in (cb, cd):
        for cmd in ("CREATE Fam", "CREATE Fam/Kids", "CREATE Fam/Pets", "CREATE Work", "CREATE Work/Old",
                    "CREATE Solo", "CREATE a[b", "CREATE Gone/Away", "CREATE Lost", "SUBSCRIBE Fam/Kids",
                    "SUBSCRIBE Solo", "SUBSCRIBE Work/Old", "SUBSCRIBE Gone/Away", "SUBSCRIBE Lost", "SUBSCRIBE a[b",
                    "DELETE Gone/Away", "DELETE Lost"):
            assert conn.command(cmd)[1] == b"OK", (cmd, conn is cb)
        conn.command("DELETE Gone")  # bulwark made it as Gone/Away's parent (RFC 3501 6.3.3); Dovecot did not
        got = []
        for cmd in ('LIST (SUBSCRIBED) "" "*"', 'LIST (SUBSCRIBED) "" "%"', 'LIST (SUBSCRIBED RECURSIVEMATCH) "" "%"',
                    'LIST (SUBSCRIBED RECURSIVEMATCH) "" "Fam/%"', 'LIST (RECURSIVEMATCH) "" "%"',
                    'LIST (REMOTE RECURSIVEMATCH) "" "%"', 'LSUB "" "%"', 'LSUB "" "*"', 'LSUB "" "Fam/%"',
                    'LIST "" "%" RETURN (SUBSCRIBED)', 'LIST "" "a[*"', 'LIST "" a[%', 'LIST "" "Fam/%" RETURN (CHILDREN)',
                    'LIST "" "%" RETURN (CHILDREN)', "SELECT a[b", "STATUS a[b (MESSAGES)"):
            untagged, status = conn.command(cmd)
            lines = []
            for u in untagged:
                if not u.startswith((b"* LIST", b"* LSUB", b"* STATUS")):
                    continue
                u = re.sub(rb'"([A-Za-z0-9/\[]+)"', rb"\1", u.strip())
                if re.search(rb" / (Archive|Drafts|Junk|Sent|Trash)\b", u):
                    continue
                if b"CHILDREN" not in cmd.encode():
                    u = re.sub(rb" ?\\Has(No)?Children ?", b" ", u).replace(b"( ", b"(").replace(b" )", b")")
                if m := re.match(rb"(\* \w+ \()([^)]*)(\).*)$", u):  # attribute order is free
                    u = m.group(1) + b" ".join(sorted(m.group(2).split())) + m.group(3)
                lines.append(u)
            got.append((cmd, status, sorted(lines)))
        lists.append(got)
    for (cmd, sb, lb), (_, sd, ld) in zip(*lists):
        compared += 1
        if (sb, lb) != (sd, ld):
            diffs.append(f"{cmd}: bulwark {sb} {lb}\n  dovecot {sd} {ld}")
    b.logout()
    d.logout()
    assert compared > 500
    assert not diffs, f"{len(diffs)} of {compared} answers differ:\n" + "\n".join(diffs)


def test_sort_and_thread_of_a_random_conversation_match_dovecot(server, dovecot):
    """300 messages of a made-up mailing list -- replies by References and In-Reply-To,
    parents missing or duplicated, "Re:"/"Fwd:"/"[tag]" prefixes, same dates, no dates,
    loops -- threaded and sorted by both servers: the same answers."""
    import random
    rnd = random.Random(5256)
    subjects = ["Plans", "Budget 2023", "Lunch?", "café ordering", "[team] Release", "Ünïcode"]
    msgs, ids = [], []
    for n in range(300):
        mid = f"<m{n}@list.example>" if rnd.random() > 0.05 else (rnd.choice(ids) if ids else "")
        subj = rnd.choice(subjects)
        prefix = rnd.choice(["", "", "Re: ", "RE: ", "Re: Re: ", "Fwd: ", "[team] Re: ", "Re[2]: "])
        head = f"From: u{rnd.randrange(20)}@example.org\nTo: {rnd.choice(['a', 'b', 'Zed', 'émile'])}@example.net\n"
        head += f"Subject: {prefix}{subj}" + (" (fwd)" if rnd.random() < 0.05 else "") + "\n"
        if mid:
            head += f"Message-ID: {mid}\n"
        if ids and rnd.random() < 0.7:
            chain = rnd.sample(ids, min(len(ids), rnd.randrange(1, 4)))
            if rnd.random() < 0.1:
                chain.insert(0, f"<gone{rnd.randrange(5)}@list.example>")
            head += ("References: " + " ".join(chain) + "\n") if rnd.random() < 0.7 else f"In-Reply-To: {chain[-1]}\n"
        if rnd.random() > 0.03:
            head += f"Date: {1 + rnd.randrange(5)} Mar 2023 {rnd.randrange(24):02d}:{rnd.choice([0, 30]):02d}:00 +0000\n"
        msgs.append(_crlf_bytes(head + "\nbody\n"))
        if mid and mid not in ids:
            ids.append(mid)
    b, d = open_both(server, dovecot)
    for conn in (b, d):
        conn.create("List")
        for raw in msgs:
            assert conn.append("List", None, DATE, raw)[0] == "OK"
        assert conn.select("List")[0] == "OK"
    cb, cd = Client(b), Client(d)
    diffs = []
    for cmd in ("THREAD REFERENCES UTF-8 ALL", "THREAD ORDEREDSUBJECT UTF-8 ALL", "SORT (SUBJECT) UTF-8 ALL",
                "SORT (DATE) UTF-8 ALL", "SORT (REVERSE DATE SUBJECT) UTF-8 ALL", "SORT (TO FROM) UTF-8 ALL",
                "THREAD REFERENCES UTF-8 NOT SUBJECT lunch", "UID THREAD REFERENCES UTF-8 1:150"):
        (ub, sb), (ud, sd) = cb.command(cmd), cd.command(cmd)
        if (sb, ub) != (sd, ud):
            diffs.append(f"{cmd}:\n  bulwark {sb} {ub}\n  dovecot {sd} {ud}")
    b.logout()
    d.logout()
    assert not diffs, "\n".join(diffs)


def _crlf_bytes(text):
    return text.encode().replace(b"\n", b"\r\n")
