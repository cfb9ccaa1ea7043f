"""IMAP and IMAPS against the real server with Python's imaplib (and raw sessions):
login per policy, folders, SELECT/FETCH/STORE/SEARCH/COPY/MOVE/EXPUNGE/APPEND,
IDLE announcing an SMTP delivery, two sessions seeing each other's changes, UIDs
across restart, the failure block shared with POP3 and SMTP."""
import imaplib
import re
import smtplib
import socket
import ssl
import time

import pytest

from conftest import PASSWORD
from mail_clients import fetchmail, getmail, run_client, same_message

USER = "demo@example.test"
NO_DELAY = '[policy]\nauth_failure_delay = "0s"\n'


def tls_context(srv):
    ctx = ssl.create_default_context(cafile=srv.cert)
    ctx.check_hostname = False
    return ctx


def message(i, extra=b""):
    return (b"From: Sender <a@remote.test>\r\nTo: demo@example.test\r\nSubject: message %d\r\n"
            b"Message-ID: <%d@remote.test>\r\n\r\nline one of %d\r\n.a line with a leading dot\r\nlast\r\n"
            % (i, i, i)) + extra


def send(srv, msgs):
    with smtplib.SMTP("127.0.0.1", srv.ports["smtp"], timeout=20) as s:
        for m in msgs:
            s.sendmail("a@remote.test", [USER], m)


def imap(srv, service="imap", login=True, password=PASSWORD):
    if service == "imaps":
        m = imaplib.IMAP4_SSL("127.0.0.1", srv.ports["imaps"], ssl_context=tls_context(srv), timeout=20)
    else:
        m = imaplib.IMAP4("127.0.0.1", srv.ports["imap"], timeout=20)
        m.starttls(tls_context(srv))
    if login:
        m.login(USER, password)
    return m


def test_login_select_fetch_byte_identical_over_starttls_and_imaps(server):
    msgs = [message(1), message(2, (b"y" * 998 + b"\r\n") * 200)]
    send(server, msgs)
    server.wait_messages(2)
    m = imap(server)
    typ, data = m.select("INBOX")
    assert typ == "OK" and data == [b"2"]
    typ, data = m.uid("FETCH", "1:*", "(UID RFC822.SIZE BODY.PEEK[])")
    bodies = [d[1] for d in data if isinstance(d, tuple)]
    assert len(bodies) == 2
    for got, sent in zip(bodies, msgs):
        assert got.endswith(sent) and got.startswith(b"Return-Path: <a@remote.test>\r\n")
    sizes = [int(re.search(rb"RFC822.SIZE (\d+)", d[0]).group(1)) for d in data if isinstance(d, tuple)]
    assert sizes == [len(b) for b in bodies]
    m.logout()
    m = imap(server, "imaps")
    m.select("INBOX", readonly=True)
    typ, data = m.fetch("2", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    assert data[0][1] == b"Subject: message 2\r\n\r\n"
    m.logout()


def test_folders_flags_search_copy_move_expunge_append(server):
    # `user add` made the mailbox with its special-use folders (SPEC 12), before any login
    box = server.data / "mail" / "example.test" / "demo"
    assert all((box / f".{n}" / "cur").is_dir() for n in ("Sent", "Drafts", "Trash", "Junk", "Archive"))
    send(server, [message(i) for i in range(4)])
    server.wait_messages(4)
    m = imap(server)
    typ, folders = m.list()
    names = [f.decode() for f in folders]
    assert any('\\Sent) "/" "Sent"' in f for f in names) and any('"INBOX"' in f for f in names)
    assert m.create("Work/2026")[0] == "OK"
    assert any('"Work/2026"' in f.decode() for f in m.list('""', "Work/*")[1])
    m.select("INBOX")
    assert m.store("1", "+FLAGS", "(\\Flagged)")[0] == "OK"
    assert m.search(None, "FLAGGED")[1] == [b"1"]
    assert m.search(None, "UNSEEN")[1] == [b"1 2 3 4"]
    assert m.search(None, 'SUBJECT "message 2"')[1] == [b"3"]
    m.fetch("2", "(BODY[])")  # not PEEK: \Seen
    assert m.search(None, "SEEN")[1] == [b"2"]
    typ, data = m.uid("COPY", "1:2", "Work/2026")
    assert typ == "OK" and re.fullmatch(rb"\d+ 1,2 1,2", m.response("COPYUID")[1][0])  # UIDPLUS
    typ, data = m._simple_command("MOVE", "3", "Work/2026")
    assert typ == "OK"
    m.store("1", "+FLAGS", "(\\Deleted)")
    typ, data = m.expunge()
    assert data[-1] == b"1"  # (imaplib also keeps the EXPUNGE that MOVE caused)
    typ, data = m.select("INBOX")
    assert data == [b"2"]
    typ, data = m.select("Work/2026")
    assert data == [b"3"]
    typ, data = m.append("Work/2026", "(\\Seen)", None, message(9))
    assert typ == "OK" and m.response("APPENDUID")[1][0].endswith(b" 4")
    typ, data = m.uid("FETCH", "4", "(FLAGS BODY.PEEK[])")
    assert data[0][1] == message(9) and b"\\Seen" in data[0][0]
    assert m.status("Work/2026", "(MESSAGES UIDNEXT)")[1] == [b'"Work/2026" (MESSAGES 4 UIDNEXT 5)']
    m.logout()
    # the same on disk, for standard Maildir tools
    box = server.data / "mail" / "example.test" / "demo" / ".Work.2026" / "cur"
    assert len(list(box.iterdir())) == 4


def test_idle_announces_a_delivery_and_sessions_see_each_others_changes(server):
    send(server, [message(1)])
    server.wait_messages(1)
    a = imap(server)
    b = imap(server, "imaps")
    a.select("INBOX")
    b.select("INBOX")
    b.store("1", "+FLAGS", "(\\Answered)")
    typ, data = a.noop()
    fetches = a.untagged_responses.get("FETCH", [])
    assert any(b"\\Answered" in d for d in fetches), fetches
    tag = a._new_tag()
    a.send(tag + b" IDLE\r\n")
    assert a.readline().startswith(b"+")
    t = time.time()
    send(server, [message(2)])
    line = a.readline()
    assert line == b"* 2 EXISTS\r\n", line
    assert time.time() - t < 2.5
    assert a.readline() == b"* 2 RECENT\r\n"  # IMAP4rev1: both are recent for this session (it took them)
    a.send(b"DONE\r\n")
    assert a.readline().startswith(tag + b" OK")
    a.logout()
    b.logout()


def test_uids_survive_restart(server):
    send(server, [message(1), message(2)])
    server.wait_messages(2)
    m = imap(server)
    m.select("INBOX")
    before = m.uid("SEARCH", None, "ALL")[1]
    validity = m.response("UIDVALIDITY")
    m.logout()
    server.stop()
    server.start()
    m = imap(server)
    m.select("INBOX")
    assert m.uid("SEARCH", None, "ALL")[1] == before
    m.logout()


def test_logindisabled_without_tls_and_shared_failure_block(make_server):
    srv = make_server(extra_config=NO_DELAY + "max_auth_failures = 3\n").start()
    m = imaplib.IMAP4("127.0.0.1", srv.ports["imap"], timeout=20)
    assert "LOGINDISABLED" in m.capabilities and "STARTTLS" in m.capabilities
    with pytest.raises(imaplib.IMAP4.error, match="PRIVACYREQUIRED"):
        m.login(USER, PASSWORD)
    m.starttls(tls_context(srv))
    assert "LOGINDISABLED" not in m.capabilities or True  # re-read after STARTTLS below
    typ, caps = m.capability()
    assert b"LOGINDISABLED" not in caps[0] and b"AUTH=PLAIN" in caps[0]
    for i in range(3):
        with pytest.raises(imaplib.IMAP4.error, match="AUTHENTICATIONFAILED"):
            m.login(USER, f"Wrong-{i}")
    with pytest.raises(imaplib.IMAP4.error, match="UNAVAILABLE"):
        m.login(USER, PASSWORD)
    sec = srv.log("security.log")
    assert "IMAP from 127.0.0.1 blocked" in sec and "Wrong-" not in sec


def test_bad_input_and_the_failure_limit(make_server):
    srv = make_server(extra_config="[limits]\nmax_failed_commands = 3\n").start()
    s = socket.create_connection(("127.0.0.1", srv.ports["imap"]), timeout=10)
    f = s.makefile("rb")
    assert f.readline().startswith(b"* OK [CAPABILITY")
    s.sendall(b"a FOO\r\nb SELECT INBOX\r\n\"unterminated\r\n")
    assert f.readline() == b"a BAD Unknown command\r\n"
    assert f.readline() == b"b BAD Log in first\r\n"
    assert f.readline() == b"* BAD Missing or bad tag\r\n"
    assert f.readline() == b"* BYE Too many errors, closing connection\r\n"
    assert f.readline() == b""


def test_mbsync_two_way_sync_with_folders_flags_and_deletions(server, tmp_path):
    import os
    send(server, [message(i) for i in range(3)])
    server.wait_messages(3)
    m = imap(server)
    m.create("Work")
    m.logout()
    local = tmp_path / "mail"
    local.mkdir()
    rc = tmp_path / "mbsyncrc"
    rc.write_text(f"""IMAPAccount bw
Host 127.0.0.1
Port {server.ports['imaps']}
User {USER}
Pass {PASSWORD}
SSLType IMAPS
CertificateFile {server.cert}

IMAPStore remote
Account bw

MaildirStore local
Path {local}/
Inbox {local}/INBOX
SubFolders Verbatim

Channel all
Far :remote:
Near :local:
Patterns *
Create Both
Expunge Both
SyncState *
""")
    env = dict(os.environ, HOME=str(tmp_path))
    r = run_client(["mbsync", "-c", str(rc), "-a"], env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    inbox = local / "INBOX"
    files = sorted((inbox / "cur").iterdir()) + sorted((inbox / "new").iterdir())
    assert len(files) == 3 and (local / "Work").is_dir() and (local / "Sent").is_dir()
    got = sorted(f.read_bytes() for f in files)
    assert all(any(same_message(g, message(i)) for g in got) for i in range(3)), got
    # local changes: flag one as seen, delete another, add a message to Work
    first, second = files[0], files[1]
    first.rename(first.parent.parent / "cur" / (first.name.split(":2,")[0] + ":2,S"))
    second.rename(second.parent.parent / "cur" / (second.name.split(":2,")[0] + ":2,T"))
    (local / "Work" / "cur").mkdir(parents=True, exist_ok=True)
    (local / "Work" / "cur" / "1700000000.local.x:2,").write_bytes(b"Subject: from the laptop\n\nhi\n")
    r = run_client(["mbsync", "-c", str(rc), "-a"], env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    m = imap(server, "imaps")
    m.select("INBOX")
    assert m.search(None, "ALL")[1] == [b"1 2"]
    assert len(m.search(None, "SEEN")[1][0].split()) == 1
    m.select("Work")
    typ, data = m.fetch("1", "(BODY.PEEK[])")
    assert same_message(data[0][1], b"Subject: from the laptop\r\n\r\nhi\r\n")  # mbsync adds X-TUID
    # a server-side change goes the other way
    m.select("INBOX")
    m.store("1:*", "+FLAGS", "(\\Flagged)")
    m.logout()
    r = run_client(["mbsync", "-c", str(rc), "-a"], env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    names = [f.name for f in (inbox / "cur").iterdir()]
    assert len(names) == 2 and all("F" in n.split(":2,")[1] for n in names), names


def test_getmail6_over_imaps_and_fetchmail_over_imap(server, tmp_path):
    msgs = [message(i) for i in range(2)]
    send(server, msgs)
    server.wait_messages(2)
    r, got = getmail(tmp_path, "SimpleIMAPSSLRetriever", server.ports["imaps"], server.cert, USER,
                     'mailboxes = ("INBOX",)\n')
    assert r.returncode == 0, r.stdout + r.stderr
    assert len(got) == 2 and all(any(same_message(g, m) for g in got) for m in msgs), got
    # fetchmail over IMAP with STARTTLS, keeping the mail
    r, got = fetchmail(tmp_path, "imap", server.ports["imap"], server.cert, USER, "keep fetchall")
    assert r.returncode == 0, r.stdout + r.stderr
    assert len(got) == 2 and all(any(same_message(g, m) for g in got) for m in msgs), got


def test_envelope_bodystructure_and_part_sections(server):
    mime = (b"From: \"Ann Example\" <ann@remote.test>\r\nTo: demo@example.test\r\nSubject: parts\r\n"
            b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n"
            b"--b1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nthe text\r\n"
            b"--b1\r\nContent-Type: application/octet-stream; name=x.bin\r\n"
            b"Content-Disposition: attachment; filename=x.bin\r\nContent-Transfer-Encoding: base64\r\n\r\nAAEC\r\n"
            b"--b1--\r\n")
    send(server, [mime])
    server.wait_messages(1)
    m = imap(server)
    m.select("INBOX", readonly=True)
    typ, data = m.fetch("1", "(ENVELOPE BODYSTRUCTURE BODY.PEEK[1] BODY.PEEK[2.MIME])")
    head = data[0][0]
    assert b'ENVELOPE (' in head and b'"parts" (("Ann Example" NIL "ann" "remote.test"))' in head
    assert b'BODYSTRUCTURE (("text" "plain" ("charset" "utf-8") NIL NIL "7bit" 8 0' in head  # line ends, as Dovecot
    assert b'("attachment" ("filename" "x.bin"))' in head and b'"mixed" ("boundary" "b1")' in head
    assert b"the text" in data[0][1]
    m.logout()


def folder_contents(m, folder):
    """{subject: uid} of a folder, and its UIDVALIDITY."""
    typ, data = m.select(folder)
    assert typ == "OK", data
    validity = int(m.response("UIDVALIDITY")[1][0])
    typ, data = m.uid("FETCH", "1:*", "(UID BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    got = {}
    for d in data:
        if isinstance(d, tuple):
            uid = int(re.search(rb"UID (\d+)", d[0]).group(1))
            subject = d[1].decode().split(":", 1)[1].strip()
            assert subject not in got, f"{subject} twice in {folder}"
            got[subject] = uid
    return got, validity


def test_kill_9_during_append_move_expunge_loses_nothing_and_reuses_no_uid(server):
    """Three sessions APPEND to INBOX, MOVE from INBOX to Work and EXPUNGE from Work
    while the server is killed (-9) at a random moment, three times. After each restart:
    every acknowledged message is where the last acknowledged command put it, under the
    same UID and UIDVALIDITY; a message whose MOVE was in flight is in at least one of the
    two folders; an acknowledged EXPUNGE stays done; and no UID is ever given twice."""
    import random
    import threading
    m = imap(server)
    assert m.create("Work")[0] == "OK"
    m.logout()
    lock = threading.Lock()
    where = {}      # subject -> (folder, uid) after the last acknowledged command; None: expunged
    pending = {}    # subject -> what was in flight at the kill
    seen_uids = {"INBOX": set(), "Work": set()}
    validity = {}
    counter = [0]

    def note(folder, uid):
        assert uid not in seen_uids[folder], f"UID {uid} given twice in {folder}"
        seen_uids[folder].add(uid)

    def appender(stop):
        c = imap(server)
        while not stop.is_set():
            with lock:
                counter[0] += 1
                subject = f"crash-{counter[0]}"
                pending[subject] = "append"
            typ, data = c.append("INBOX", None, None, b"Subject: %s\r\n\r\nbody\r\n" % subject.encode())
            code = re.search(rb"APPENDUID (\d+) (\d+)", data[0])
            with lock:
                note("INBOX", int(code.group(2)))
                where[subject] = ("INBOX", int(code.group(2)))
                del pending[subject]

    def mover(stop):
        c = imap(server)
        c.select("INBOX")
        while not stop.is_set():
            with lock:
                movable = [s for s, w in where.items() if w and w[0] == "INBOX" and s not in pending]
                if not movable:
                    subject = None
                else:
                    subject = movable[0]
                    pending[subject] = "move"
            if subject is None:
                time.sleep(0.01)
                continue
            c.noop()
            typ, data = c.uid("MOVE", str(where[subject][1]), "Work")
            assert typ == "OK", data
            code = c.response("COPYUID")[1][-1]
            new_uid = int(code.split()[-1])
            with lock:
                note("Work", new_uid)
                where[subject] = ("Work", new_uid)
                del pending[subject]

    def expunger(stop):
        c = imap(server)
        c.select("Work")
        while not stop.is_set():
            with lock:
                gone = [s for s, w in where.items() if w and w[0] == "Work" and s not in pending]
                subject = gone[0] if len(gone) > 3 else None
                if subject:
                    pending[subject] = "expunge"
            if subject is None:
                time.sleep(0.01)
                continue
            uid = str(where[subject][1])
            c.noop()  # a client knows a UID once the session announced it
            c.untagged_responses.pop("EXPUNGE", None)
            assert c.uid("STORE", uid, "+FLAGS", "(\\Deleted)")[0] == "OK"
            typ, data = c.uid("EXPUNGE", uid)
            assert typ == "OK", data
            assert c.untagged_responses.pop("EXPUNGE", None), f"UID EXPUNGE {uid} expunged nothing"
            with lock:
                where[subject] = None
                del pending[subject]

    rng = random.Random(9)
    errors = []
    for round_no in range(3):
        stop = threading.Event()

        def run(f):
            try:
                f(stop)
            except (OSError, imaplib.IMAP4.abort):
                pass  # the server went away under us
            except Exception as e:  # a refused command or a wrong answer fails the test
                errors.append(f"{f.__name__}: {e!r}")

        threads = [threading.Thread(target=run, args=(f,)) for f in (appender, mover, expunger)]
        for t in threads:
            t.start()
        time.sleep(rng.uniform(1.0, 2.5))
        server.kill9()
        stop.set()
        for t in threads:
            t.join(timeout=30)
        assert not errors, errors
        server.start()
        m = imap(server)
        boxes = {}
        for folder in ("INBOX", "Work"):
            boxes[folder], v = folder_contents(m, folder)
            assert validity.setdefault(folder, v) == v, f"UIDVALIDITY of {folder} changed"
        acked = [s for s in where if s not in pending]
        assert len(acked) > 10, f"round {round_no}: too little done before the kill"
        print(f"round {round_no}: {len(acked)} acknowledged, in flight {pending}, "
              f"expunged {sum(1 for w in where.values() if w is None)}, in Work {len(boxes['Work'])}")
        for s in acked:
            w = where[s]
            if w is None:
                assert all(s not in b for b in boxes.values()), f"{s}: expunged, yet back"
            else:
                assert boxes[w[0]].get(s) == w[1], f"{s}: acknowledged in {w}, found {[b.get(s) for b in boxes.values()]}"
                other = "Work" if w[0] == "INBOX" else "INBOX"
                assert s not in boxes[other], f"{s}: in both folders"
        for s, what in pending.items():
            if what == "move":  # a move is copy then removal: never in neither folder
                assert s in boxes["INBOX"] or s in boxes["Work"], f"{s}: lost in a MOVE"
        # settle the in-flight ones to what the store now says, and remember every UID
        for s in list(pending):
            found = [(f, b[s]) for f, b in boxes.items() if s in b]
            where[s] = found[-1] if found else None
            if len(found) == 2:  # a MOVE cut between copy and removal: the next round moves the INBOX copy
                where[s] = found[0]
                where[s + "-copy"] = found[1]
            del pending[s]
        for f, b in boxes.items():
            for uid in b.values():
                seen_uids[f].add(uid)
        # a new message gets a UID above every UID ever shown in that folder
        for f in ("INBOX", "Work"):
            typ, data = m.append(f, None, None, b"Subject: probe-%d-%s\r\n\r\nx\r\n" % (round_no, f.encode()))
            uid = int(re.search(rb"APPENDUID \d+ (\d+)", data[0]).group(1))
            assert uid > max(seen_uids[f], default=0), f"{f}: UID {uid} not above {max(seen_uids[f])}"
            seen_uids[f].add(uid)
            where[f"probe-{round_no}-{f}"] = (f, uid)
        m.logout()


def test_qresync_vanished_and_resynchronising_select(server):
    send(server, [message(i) for i in range(1, 6)])
    server.wait_messages(5)
    a = imap(server)
    typ, data = a._simple_command("ENABLE", "QRESYNC")
    assert typ == "OK" and b"QRESYNC" in a.untagged_responses.pop("ENABLED", [b""])[0]
    a.select("INBOX")
    validity = int(a.response("UIDVALIDITY")[1][0])
    modseq = int(a.response("HIGHESTMODSEQ")[1][0])
    b = imap(server, "imaps")
    b.select("INBOX")
    b.store("2", "+FLAGS", "(\\Flagged)")
    b.store("3:4", "+FLAGS", "(\\Deleted)")
    b.expunge()
    b.logout()
    # the QRESYNC session hears UIDs, not sequence numbers, for the expunges
    a.noop()
    assert a.untagged_responses.pop("VANISHED", None) == [b"3:4"]
    assert "EXPUNGE" not in a.untagged_responses
    a.logout()
    # a client coming back with what it knew: the expunged UIDs and the changed flags
    c = imap(server)
    tag = c._new_tag()
    c.send(tag + b" ENABLE QRESYNC\r\n")
    while not c.readline().startswith(tag):
        pass
    tag = c._new_tag()
    c.send(tag + b" SELECT INBOX (QRESYNC (%d %d 1:5))\r\n" % (validity, modseq))
    lines = []
    while True:
        line = c.readline()
        lines.append(line)
        if line.startswith(tag):
            break
    assert lines[-1].startswith(tag + b" OK"), lines
    assert b"* VANISHED (EARLIER) 3:4\r\n" in lines, lines
    changed = [ln for ln in lines if b"FETCH" in ln]
    assert len(changed) == 1 and b"UID 2 FLAGS (\\Flagged) MODSEQ (" in changed[0], lines
    # UID FETCH ... (CHANGEDSINCE m VANISHED): the same, for a set
    c.state = "SELECTED"  # selected above by hand
    typ, data = c.uid("FETCH", "1:*", "(FLAGS) (CHANGEDSINCE %d VANISHED)" % modseq)
    assert typ == "OK" and c.untagged_responses.pop("VANISHED", None) == [b"(EARLIER) 3:4"], data
    c.logout()
    # without ENABLE QRESYNC the parameter is refused
    d = imap(server)
    with pytest.raises(imaplib.IMAP4.error, match="QRESYNC is not enabled"):
        d._simple_command("SELECT", "INBOX", "(QRESYNC (%d %d))" % (validity, modseq))
    d.logout()


def test_rename_inbox_moves_its_messages_and_leaves_it_empty(server):
    send(server, [message(i) for i in range(1, 4)])
    server.wait_messages(3)
    m = imap(server)
    m.select("INBOX")
    m.store("2", "+FLAGS", "(\\Flagged)")
    m.unselect()
    typ, data = m.rename("INBOX", '"Old/Inbox 2026"')
    assert typ == "OK", data
    assert m.select("INBOX")[1] == [b"0"]
    typ, data = m.select('"Old/Inbox 2026"')
    assert typ == "OK" and data == [b"3"], data
    typ, data = m.fetch("1:*", "(FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    subjects = [d[1] for d in data if isinstance(d, tuple)]
    assert subjects == [b"Subject: message %d\r\n\r\n" % i for i in range(1, 4)], subjects
    assert b"\\Flagged" in data[2][0] and b"\\Flagged" not in data[0][0], data
    # new mail goes to INBOX as before
    send(server, [message(9)])
    deadline = time.time() + 10
    while time.time() < deadline and m.select("INBOX")[1] != [b"1"]:
        time.sleep(0.1)
    assert m.select("INBOX")[1] == [b"1"]
    assert m.rename("INBOX", '"Old/Inbox 2026"')[0] == "NO"  # the target exists
    m.logout()


def test_keywords_are_kept_copied_searched_and_seen_by_other_sessions(server):
    send(server, [message(1), message(2)])
    server.wait_messages(2)
    a = imap(server)
    a.select("INBOX")
    assert b"\\*" in a.response("PERMANENTFLAGS")[1][0]
    b = imap(server, "imaps")
    b.select("INBOX")
    typ, data = a.store("1", "+FLAGS", "($Forwarded Work)")
    assert typ == "OK" and b"$Forwarded Work" in data[0], data
    assert b"$Forwarded Work" in a.untagged_responses.get("FLAGS", [b""])[-1]
    # the other session hears of the new keywords and the change
    b.noop()
    assert b"$Forwarded" in b.untagged_responses.get("FLAGS", [b""])[-1]
    assert any(b"$Forwarded Work" in f for f in b.untagged_responses.get("FETCH", []))
    assert a.search(None, "KEYWORD", "work") == ("OK", [b"1"])
    assert a.search(None, "UNKEYWORD", "$forwarded") == ("OK", [b"2"])
    # on disk the Maildir way, as Dovecot keeps them
    box = server.data / "mail" / "example.test" / "demo"
    assert (box / "dovecot-keywords").read_text() == "0 $Forwarded\n1 Work\n"
    assert any(p.name.endswith(":2,ab") for p in (box / "cur").iterdir())
    # a copy keeps them (the target folder gets its own letters), APPEND sets them
    a.create("Kept")
    assert a.append("Kept", "(Other)", None, message(3))[0] == "OK"
    assert a.copy("1", "Kept")[0] == "OK"
    a.select("Kept")
    typ, data = a.fetch("1:*", "(FLAGS)")
    # (both are \Recent for this first session in Kept: IMAP4rev1)
    assert b"FLAGS (\\Recent Other)" in data[0] and b"FLAGS (\\Recent $Forwarded Work)" in data[1], data
    assert (box / ".Kept" / "dovecot-keywords").read_text() == "0 Other\n1 $Forwarded\n2 Work\n"
    a.store("2", "-FLAGS", "(work)")
    assert b"FLAGS (\\Recent $Forwarded)" in a.fetch("2", "(FLAGS)")[1][0]
    # 26 per folder (Maildir's letters): the 27th is refused with [LIMIT]
    for i in range(23):
        assert a.store("1", "+FLAGS", f"(k{i})")[0] == "OK"
    typ, data = a.store("1", "+FLAGS", "(onetoomany)")
    assert typ == "NO" and b"[LIMIT]" in data[0], data
    a.logout()
    # a letter no name stands for (left by another tool) is ignored, and quietly: an
    # IDLE session is not told FLAGS over and over
    f = next(p for p in (box / "cur").iterdir() if p.name.endswith(":2,ab"))
    f.rename(f.with_name(f.name + "z"))
    b.noop()
    tag = b._new_tag()
    b.send(tag + b" IDLE\r\n")
    assert b.readline().startswith(b"+")
    import select
    assert select.select([b.sock], [], [], 3.5)[0] == [], "IDLE told something for nothing"
    b.send(b"DONE\r\n")
    assert b.readline().startswith(tag + b" OK")
    b.logout()


def raw_command(m, line):
    """Sends one command line (bytes, literals included) over an imaplib connection and
    returns (untagged lines, tagged line)."""
    tag = m._new_tag()
    m.send(tag + b" " + line + b"\r\n")
    untagged = []
    while True:
        got = m.readline()
        if got.startswith(tag + b" "):
            return untagged, got
        if got.endswith(b"}\r\n"):
            got += m.read(int(got[got.rindex(b"{") + 1:-3]))
        untagged.append(got)


def test_every_listed_extension_with_imaplib(make_server):
    server = make_server(extra_config='[limits]\nmax_message_size = "64KB"\n').start()
    send(server, [message(1), message(2)])
    server.wait_messages(2)
    m = imap(server, login=False)
    caps = set(m.capabilities)
    for cap in ("IMAP4REV1", "IMAP4REV2", "SASL-IR", "ENABLE", "IDLE", "NAMESPACE", "ID", "UIDPLUS", "MOVE",
                "UNSELECT", "CHILDREN", "LITERAL+", "LIST-EXTENDED", "LIST-STATUS", "SPECIAL-USE", "ESEARCH",
                "STATUS=SIZE", "CONDSTORE", "QRESYNC", "SEARCHRES"):
        assert cap in caps, (cap, caps)
    assert any(c.startswith("APPENDLIMIT=") for c in caps)
    # SASL-IR: the initial response on the AUTHENTICATE line, no continuation
    import base64
    ir = base64.b64encode(f"\0{USER}\0{PASSWORD}".encode())
    untagged, tagged = raw_command(m, b"AUTHENTICATE PLAIN " + ir)
    assert tagged.split()[1] == b"OK", (untagged, tagged)
    m.state = "AUTH"
    # ID and NAMESPACE
    untagged, tagged = raw_command(m, b'ID ("name" "imaplib")')
    assert b"OK" in tagged and any(u.startswith(b'* ID ("name" "bulwark"') for u in untagged), untagged
    assert m.namespace() == ("OK", [b'(("" "/")) NIL NIL'])
    # CHILDREN, LIST-EXTENDED, SPECIAL-USE, LIST-STATUS with STATUS=SIZE
    assert m.create("Projects/2026")[0] == "OK"
    untagged, tagged = raw_command(m, b'LIST "" "*" RETURN (CHILDREN SPECIAL-USE STATUS (MESSAGES SIZE))')
    text = b"".join(untagged)
    assert b'(\\HasChildren) "/" "Projects"' in text and b'(\\HasNoChildren) "/" "Projects/2026"' in text, text
    assert b'\\Sent' in text and b'\\Trash' in text and b'\\Junk' in text, text
    assert re.search(rb'\* STATUS "INBOX" \(MESSAGES 2 SIZE \d+\)', text), text
    untagged, tagged = raw_command(m, b'LIST (SPECIAL-USE) "" "*"')
    assert len(untagged) == 5 and all(b"\\Has" in u or b"\\" in u for u in untagged), untagged
    untagged, tagged = raw_command(m, b"STATUS INBOX (MESSAGES UIDNEXT UIDVALIDITY UNSEEN SIZE HIGHESTMODSEQ)")
    assert re.search(rb"MESSAGES 2 UIDNEXT 3 UIDVALIDITY \d+ UNSEEN 2 SIZE \d+ HIGHESTMODSEQ \d+", untagged[0])
    # UTF8=ACCEPT: folder names in UTF-8 after ENABLE, modified UTF-7 before
    assert m.create("&AMQ-rger")[0] == "OK"  # "Ärger" in modified UTF-7
    assert any(b"&AMQ-rger" in f for f in m.list()[1])
    untagged, tagged = raw_command(m, b"ENABLE UTF8=ACCEPT")
    assert untagged == [b"* ENABLED UTF8=ACCEPT\r\n"], untagged
    untagged, tagged = raw_command(m, b'LIST "" "*rger"')
    assert untagged == ['* LIST (\\HasNoChildren) "/" "Ärger"\r\n'.encode()], untagged
    # ESEARCH, CONDSTORE
    m.select("INBOX")
    untagged, tagged = raw_command(m, b"SEARCH RETURN (MIN MAX COUNT ALL) ALL")
    assert untagged[0].startswith(b'* ESEARCH (TAG "') and b"MIN 1 MAX 2 COUNT 2 ALL 1:2" in untagged[0], untagged
    untagged, tagged = raw_command(m, b"STORE 1 (UNCHANGEDSINCE 1) +FLAGS (\\Seen)")
    assert b"[MODIFIED 1]" in tagged, tagged
    untagged, tagged = raw_command(m, b"STORE 2 +FLAGS (\\Seen)")
    changed = re.search(rb"MODSEQ \((\d+)\)", untagged[0])
    assert changed, untagged
    untagged, tagged = raw_command(m, b"FETCH 1:* (FLAGS) (CHANGEDSINCE %d)" % (int(changed.group(1)) - 1))
    assert len(untagged) == 1 and untagged[0].startswith(b"* 2 FETCH"), untagged
    # LITERAL+ (no continuation wait) and APPENDLIMIT: over the limit is refused with
    # [TOOBIG] and the literal is read and discarded, the session goes on
    small = message(7)
    untagged, tagged = raw_command(m, b"APPEND INBOX {%d+}\r\n" % len(small) + small)
    assert b"OK [APPENDUID" in tagged, tagged
    big = b"x" * 70000
    untagged, tagged = raw_command(m, b"APPEND INBOX {%d+}\r\n" % len(big) + big)
    assert b"NO [TOOBIG]" in tagged or b"BAD" in tagged, tagged
    assert m.noop()[0] == "OK"
    assert m.select("INBOX")[1] == [b"3"]
    # UNSELECT leaves without expunging
    m.store("1", "+FLAGS", "(\\Deleted)")
    assert m.unselect()[0] == "OK"
    assert m.select("INBOX")[1] == [b"3"]
    m.logout()


def test_a_large_append_goes_to_disk_as_it_comes_and_an_abandoned_one_leaves_nothing(server):
    box = server.data / "mail" / "example.test" / "demo"
    m = imap(server)
    body = b"".join(b"line %06d of a large message with a CRLF end\r\n" % i for i in range(120000))  # ~5.6 MB
    big = b"From: a@remote.test\r\nSubject: large\r\n\r\n" + body
    typ, data = m.append("INBOX", "(\\Seen $Work)", '"05-Feb-2023 10:00:00 +0000"', big)
    assert typ == "OK" and b"APPENDUID" in data[0], data
    m.select("INBOX")
    typ, data = m.fetch("1", "(RFC822.SIZE FLAGS INTERNALDATE BODY.PEEK[])")
    assert data[0][1] == big
    assert b"RFC822.SIZE %d" % len(big) in data[0][0] and b"\\Seen $Work" in data[0][0], data[0][0]
    assert b'"05-Feb-2023 10:00:00 +0000"' in data[0][0]
    on_disk = [p for p in (box / "cur").iterdir()]
    assert len(on_disk) == 1 and on_disk[0].read_bytes() == big.replace(b"\r\n", b"\n")
    m.logout()
    # a client that goes away in the middle of a literal: no message, no file left
    s = socket.create_connection(("127.0.0.1", server.ports["imaps"]))
    t = tls_context(server).wrap_socket(s)
    t.recv(4096)
    t.sendall(b"a LOGIN %s %s\r\n" % (USER.encode(), PASSWORD.encode()))
    while b"a OK" not in t.recv(4096):
        pass
    t.sendall(b"b APPEND INBOX {3000000+}\r\n" + b"x" * 1000000)
    time.sleep(0.5)
    assert any(p.name.endswith(".part") for p in (box / "tmp").iterdir())
    t.close()
    deadline = time.time() + 10
    while time.time() < deadline and any((box / "tmp").iterdir()):
        time.sleep(0.1)
    assert not any((box / "tmp").iterdir())
    m = imap(server)
    assert m.select("INBOX")[1] == [b"1"]
    m.logout()
