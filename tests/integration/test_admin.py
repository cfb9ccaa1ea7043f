"""Administration over HTTPS (SPEC 15), the parts that exist: the `admin` CLI, the
admin listener (implicit TLS), logins through the shared login machinery, sessions
with CSRF, API tokens, and the JSON API for status, domains, users, aliases, groups
and audit. Driven with Python's http.client over ssl, as any API client would."""
import http.client
import imaplib
import json
import socket
import ssl
import time

import pytest

from conftest import PASSWORD, free_port

ADMIN_PW = "Admin-Passw0rd-77"


@pytest.fixture
def admin_server(make_server):
    port = free_port()
    srv = make_server(extra_config=f'[[listener]]\nservice = "admin"\naddress = "127.0.0.1"\nport = {port}\n')
    srv.admin_port = port
    srv.cli("admin", "add", "root", "--password-stdin", input=ADMIN_PW + "\n")
    srv.cli("admin", "add", "viewer", "--read-only", "--password-stdin", input=ADMIN_PW + "\n")
    srv.start()
    return srv


def conn(srv):
    ctx = ssl.create_default_context(cafile=srv.cert)
    ctx.check_hostname = False
    return http.client.HTTPSConnection("127.0.0.1", srv.admin_port, context=ctx, timeout=20)


def call(srv, method, path, body=None, token=None, headers=None, raw=None):
    c = conn(srv)
    h = dict(headers or {})
    if token:
        h["Authorization"] = "Bearer " + token
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    if data is not None:
        h.setdefault("Content-Type", "application/json")
    c.request(method, path, body=data, headers=h)
    r = c.getresponse()
    text = r.read()
    c.close()
    return r, (json.loads(text) if text else None)


def login(srv, name="root", password=ADMIN_PW):
    r, j = call(srv, "POST", "/api/v1/login", {"name": name, "password": password})
    assert r.status == 200, (r.status, j)
    return j, r.getheader("Set-Cookie")


def test_admin_cli_add_list_token_remove(make_server):
    srv = make_server()
    srv.cli("admin", "add", "alice", "--password-stdin", input=ADMIN_PW + "\n")
    srv.cli("admin", "add", "bob", "--read-only", "--password-stdin", input=ADMIN_PW + "\n")
    assert srv.cli("admin", "list").stdout == "alice full\nbob read-only\n"
    token = srv.cli("admin", "token", "alice").stdout.strip()
    assert token.startswith("bwt_") and len(token) > 40
    assert srv.cli("admin", "list").stdout.splitlines()[0] == "alice full token"
    r = srv.cli("admin", "add", "alice", "--password-stdin", input=ADMIN_PW + "\n", check=False)
    assert r.returncode == 1 and "already exists" in r.stderr
    r = srv.cli("admin", "add", "Bad Name", "--password-stdin", input=ADMIN_PW + "\n", check=False)
    assert r.returncode == 1 and "cannot be an administrator" in r.stderr
    r = srv.cli("admin", "add", "carol", "--password-stdin", input="short\n", check=False)
    assert r.returncode == 2 and "password refused" in r.stderr
    srv.cli("admin", "remove", "bob")
    assert srv.cli("admin", "list").stdout == "alice full token\n"
    # Administrators are not mail users, and their hashes never reach the CLI's output.
    assert "alice" not in srv.cli("user", "list").stdout
    assert "argon2" not in srv.cli("admin", "list").stdout


def test_login_session_and_changes_a_mail_client_then_sees(admin_server):
    srv = admin_server
    r, j = call(srv, "POST", "/api/v1/login", {"name": "root", "password": "wrong-one"})
    assert r.status == 401 and j == {"error": "wrong name or password"}
    j, cookie = login(srv)
    assert set(j) == {"token", "csrf", "name", "read_only"} and j["read_only"] is False
    for attr in ("Secure", "HttpOnly", "SameSite=Strict", "Path=/"):
        assert attr in cookie, cookie
    token = j["token"]
    r, st = call(srv, "GET", "/api/v1/status", token=token)
    assert r.status == 200 and st["users"] == 1 and st["domains"] == 1 and st["uptime_seconds"] >= 0
    assert r.getheader("Strict-Transport-Security").startswith("max-age=")
    assert "default-src 'self'" in r.getheader("Content-Security-Policy")
    assert r.getheader("X-Content-Type-Options") == "nosniff"

    r, j = call(srv, "POST", "/api/v1/domains", {"name": "Shop.Example"}, token=token)
    assert r.status == 201 and j == {"name": "shop.example"}
    r, j = call(srv, "GET", "/api/v1/domains", token=token)
    assert [d["name"] for d in j["domains"]] == ["example.test", "shop.example"]
    r, j = call(srv, "POST", "/api/v1/users", {"address": "ann@shop.example", "password": "short"}, token=token)
    assert r.status == 400 and j["error"].startswith("password refused:"), j
    r, j = call(srv, "POST", "/api/v1/users", {"address": "ann@shop.example", "password": "Blue-Kettle-42x"},
                token=token)
    assert r.status == 201, j
    r, j = call(srv, "POST", "/api/v1/users", {"address": "ann@shop.example", "password": "Blue-Kettle-42x"},
                token=token)
    assert r.status == 409, j
    r, j = call(srv, "POST", "/api/v1/aliases", {"alias": "sales@shop.example", "target": "ann@shop.example"},
                token=token)
    assert r.status == 201, j
    r, j = call(srv, "POST", "/api/v1/groups", {"address": "team@shop.example",
                                                  "members": ["ann@shop.example", "demo@example.test"]}, token=token)
    assert r.status == 201, j
    r, j = call(srv, "GET", "/api/v1/groups", token=token)
    assert j["groups"] == [{"address": "team@shop.example", "members": ["ann@shop.example", "demo@example.test"]}]
    r, j = call(srv, "GET", "/api/v1/users", token=token)
    assert {u["address"] for u in j["users"]} == {"ann@shop.example", "demo@example.test"}
    assert "argon2" not in json.dumps(j) and "Kettle" not in json.dumps(j)

    # What the API did, a mail client sees: ann logs in over IMAP, and her mailbox exists.
    ctx = ssl.create_default_context(cafile=srv.cert)
    ctx.check_hostname = False
    m = imaplib.IMAP4("127.0.0.1", srv.ports["imap"], timeout=20)
    m.starttls(ctx)
    m.login("ann@shop.example", "Blue-Kettle-42x")
    assert m.select("INBOX")[0] == "OK"
    m.logout()
    r, _ = call(srv, "PUT", "/api/v1/users/ann@shop.example/password", {"password": "Green-Kettle-57y"}, token=token)
    assert r.status == 204
    m = imaplib.IMAP4("127.0.0.1", srv.ports["imap"], timeout=20)
    m.starttls(ctx)
    with pytest.raises(imaplib.IMAP4.error):
        m.login("ann@shop.example", "Blue-Kettle-42x")
    m.login("ann@shop.example", "Green-Kettle-57y")
    m.logout()

    r, j = call(srv, "POST", "/api/v1/delegations", {"owner": "sales@shop.example", "user": "demo@example.test"},
                token=token)
    assert r.status == 201, j
    r, j = call(srv, "GET", "/api/v1/delegations", token=token)
    assert j["delegations"] == [{"owner": "sales@shop.example", "user": "demo@example.test"}]
    r, j = call(srv, "DELETE", "/api/v1/delegations/sales@shop.example/demo@example.test", token=token)
    assert r.status == 204, j
    r, j = call(srv, "DELETE", "/api/v1/delegations/sales@shop.example/demo@example.test", token=token)
    assert r.status == 404, j
    for path in ("/api/v1/groups/team@shop.example", "/api/v1/aliases/sales@shop.example",
                 "/api/v1/users/ann@shop.example", "/api/v1/domains/shop.example"):
        r, j = call(srv, "DELETE", path, token=token)
        assert r.status == 204, (path, j)
    r, j = call(srv, "DELETE", "/api/v1/domains/shop.example", token=token)
    assert r.status == 404, j
    r, j = call(srv, "GET", "/api/v1/audit", token=token)
    assert r.status == 200 and all(set(f) == {"severity", "text"} for f in j["findings"])
    # Changes are logged with who made them; the login with its source.
    assert "ADMIN root from 127.0.0.1: POST /api/v1/domains -> 201" in srv.log("bulwark.log")
    assert "ADMIN login from 127.0.0.1: root" in srv.log("security.log")
    assert "ADMIN password failed from 127.0.0.1: user <root>: wrong password" in srv.log("security.log")
    r, _ = call(srv, "POST", "/api/v1/logout", token=token)
    assert r.status == 204
    r, _ = call(srv, "GET", "/api/v1/status", token=token)
    assert r.status == 401


def test_cookie_needs_csrf_read_only_gets_403_and_api_tokens(admin_server):
    srv = admin_server
    j, cookie = login(srv)
    session = cookie.split(";")[0]
    r, _ = call(srv, "GET", "/api/v1/domains", headers={"Cookie": session})
    assert r.status == 200
    r, j2 = call(srv, "POST", "/api/v1/domains", {"name": "csrf.example"}, headers={"Cookie": session})
    assert r.status == 403 and "CSRF" in j2["error"]
    r, _ = call(srv, "POST", "/api/v1/domains", {"name": "csrf.example"},
                headers={"Cookie": session, "X-CSRF-Token": "0" * 64})
    assert r.status == 403
    r, _ = call(srv, "POST", "/api/v1/domains", {"name": "csrf.example"},
                headers={"Cookie": session, "X-CSRF-Token": j["csrf"]})
    assert r.status == 201
    assert "csrf.example" in srv.cli("domain", "list").stdout

    v, _ = login(srv, "viewer")
    assert v["read_only"] is True
    r, j = call(srv, "GET", "/api/v1/users", token=v["token"])
    assert r.status == 200
    for method, path, body in (("POST", "/api/v1/domains", {"name": "x.example"}),
                               ("DELETE", "/api/v1/domains/csrf.example", None),
                               ("POST", "/api/v1/users", {"address": "x@example.test", "password": "Xx-Passw0rd-99"}),
                               ("PUT", "/api/v1/users/demo@example.test/password", {"password": "Xx-Passw0rd-99"})):
        r, j = call(srv, method, path, body, token=v["token"])
        assert r.status == 403, (method, path, j)
    assert "csrf.example" in srv.cli("domain", "list").stdout  # nothing changed

    api = srv.cli("admin", "token", "root").stdout.strip()
    r, j = call(srv, "GET", "/api/v1/status", token=api)
    assert r.status == 200
    newer = srv.cli("admin", "token", "root").stdout.strip()
    r, _ = call(srv, "GET", "/api/v1/status", token=api)
    assert r.status == 401  # the old one stopped working
    r, _ = call(srv, "GET", "/api/v1/status", token=newer)
    assert r.status == 200
    srv.cli("admin", "remove", "root")  # a removed administrator's session and token end
    r, _ = call(srv, "GET", "/api/v1/status", token=newer)
    assert r.status == 401
    r, _ = call(srv, "GET", "/api/v1/status", headers={"Cookie": session})
    assert r.status == 401


def test_bad_input_gets_a_clear_4xx_and_changes_nothing(admin_server):
    srv = admin_server
    token = login(srv)[0]["token"]
    cases = [
        ("GET", "/api/v1/domains", None, {}, 401, None),  # no credentials
        ("GET", "/api/v1/nothing", None, {"Authorization": "Bearer " + token}, 404, None),
        ("GET", "/nothing.html", None, {}, 404, None),
        ("GET", "/../../etc/passwd", None, {}, 404, None),
        ("GET", "/api/v1/../../etc/passwd", None, {"Authorization": "Bearer " + token}, 404, None),
        ("POST", "/api/v1/domains", b"{not json", {"Authorization": "Bearer " + token}, 400, "not valid JSON"),
        ("POST", "/api/v1/domains", b"[1,2]", {"Authorization": "Bearer " + token}, 400, "JSON object"),
        ("POST", "/api/v1/domains", json.dumps({"name": "a.example", "evil": 1}).encode(),
         {"Authorization": "Bearer " + token}, 400, 'unknown field "evil"'),
        ("POST", "/api/v1/domains", json.dumps({}).encode(), {"Authorization": "Bearer " + token}, 400,
         'missing field "name"'),
        ("POST", "/api/v1/domains", json.dumps({"name": 5}).encode(), {"Authorization": "Bearer " + token}, 400,
         "must be a string"),
        ("POST", "/api/v1/domains", json.dumps({"name": "a.example"}).encode(),
         {"Authorization": "Bearer " + token, "Content-Type": "text/plain"}, 415, None),
        ("POST", "/api/v1/domains", json.dumps({"name": "bad domain!"}).encode(),
         {"Authorization": "Bearer " + token}, 400, "not a valid domain"),
        ("PATCH", "/api/v1/domains", b"{}", {"Authorization": "Bearer " + token}, 405, None),
        ("POST", "/api/v1/login", b'{"name": "root"}', {}, 400, 'missing field "password"'),
        ("POST", "/api/v1/login", json.dumps({"name": "root", "password": ADMIN_PW, "x": 1}).encode(), {}, 400,
         'unknown field "x"'),
        ("POST", "/api/v1/login", json.dumps({"name": "root", "password": ADMIN_PW}).encode(),
         {"Content-Type": "text/plain"}, 415, None),
    ]
    for method, path, raw, headers, status, needle in cases:
        r, j = call(srv, method, path, raw=raw, headers=headers)
        assert r.status == status, (method, path, r.status, j)
        assert j and "error" in j, (method, path, j)
        if needle:
            assert needle in j["error"], (method, path, j)
    assert srv.cli("domain", "list").stdout.split() == ["example.test"]

    def raw_exchange(data):
        ctx = ssl.create_default_context(cafile=srv.cert)
        ctx.check_hostname = False
        with socket.create_connection(("127.0.0.1", srv.admin_port), timeout=10) as s:
            with ctx.wrap_socket(s) as t:
                t.sendall(data)
                out = b""
                while True:
                    chunk = t.recv(65536)
                    if not chunk:
                        return out
                    out += chunk

    assert raw_exchange(b"GARBAGE\r\n\r\n").startswith(b"HTTP/1.1 400 ")
    assert raw_exchange(b"GET /api/v1/status HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n") \
        .startswith(b"HTTP/1.1 431 ")
    assert raw_exchange(b"POST /api/v1/domains HTTP/1.1\r\nHost: x\r\nContent-Length: 5000000\r\n\r\n") \
        .startswith(b"HTTP/1.1 413 ")
    assert raw_exchange(b"GET /api/v1/status HTTP/2.0\r\nHost: x\r\n\r\n").startswith(b"HTTP/1.1 505 ")
    # HTTPS only: plaintext HTTP gets no answer in HTTP.
    with socket.create_connection(("127.0.0.1", srv.admin_port), timeout=10) as s:
        s.sendall(b"GET /api/v1/status HTTP/1.1\r\nHost: x\r\n\r\n")
        try:
            got = s.recv(100)
        except OSError:
            got = b""
        assert not got.startswith(b"HTTP/")
    # Still serving after all that.
    r, _ = call(srv, "GET", "/api/v1/status", token=token)
    assert r.status == 200


def test_admin_logins_are_blocked_per_ip_after_repeated_failures(admin_server):
    srv = admin_server
    for _ in range(5):
        r, _ = call(srv, "POST", "/api/v1/login", {"name": "root", "password": "guess-" + "x" * 8})
        assert r.status == 401
    r, j = call(srv, "POST", "/api/v1/login", {"name": "root", "password": ADMIN_PW})
    assert r.status == 429 and "too many failed logins" in j["error"]
    assert "blocked for 15 minutes" in srv.log("security.log")
    assert "guess-" not in srv.log("security.log") and ADMIN_PW not in srv.log("security.log")


def test_queue_dkim_and_logs_through_the_api(make_server):
    import smtplib
    port = free_port()
    srv = make_server(extra_config=f'[[listener]]\nservice = "admin"\naddress = "127.0.0.1"\nport = {port}\n'
                                   '[dns]\nservers = ["127.0.0.1:9"]\ntimeout = "1s"\n'
                                   '[delivery]\nretry_interval = "1h"\n')
    srv.admin_port = port
    srv.cli("admin", "add", "root", "--password-stdin", input=ADMIN_PW + "\n")
    srv.cli("group", "add", "team@example.test", "--member", "demo@example.test", "--member", "x@far-away.test")
    srv.start()
    token = login(srv)[0]["token"]
    with smtplib.SMTP("127.0.0.1", srv.ports["smtp"], timeout=20) as s:
        s.sendmail("a@remote.test", ["team@example.test"], b"Subject: for the queue\r\n\r\nbody\r\n")
    srv.wait_log("mail.log", "deferred id=")

    from conftest import wait

    def listed():  # the local copy's delivery and the remote deferral are recorded apart
        r, j = call(srv, "GET", "/api/v1/queue", token=token)
        assert r.status == 200 and len(j["messages"]) == 1, j
        states = {x["address"]: x["state"] for x in j["messages"][0]["recipients"]}
        return j if states.get("demo@example.test") == "delivered" else None

    q = wait(listed, what="the local copy delivered")["messages"][0]
    assert q["sender"] == "a@remote.test" and q["attempts"] >= 1
    states = {x["address"]: x["state"] for x in q["recipients"]}
    assert states == {"demo@example.test": "delivered", "x@far-away.test": "waiting"}, q
    r, one = call(srv, "GET", "/api/v1/queue/" + q["id"], token=token)
    assert r.status == 200 and "Subject: for the queue" in one["headers"] and one["client_ip"] == "127.0.0.1"
    r, _ = call(srv, "POST", f"/api/v1/queue/{q['id']}/retry", token=token)
    assert r.status == 202
    assert q["id"] in (srv.data / "retry-now").read_text() or srv.wait_log("mail.log", "retry")
    for bad in ("../keyring", "..", "x.done", "nonexistent"):
        r, j = call(srv, "GET", "/api/v1/queue/" + bad, token=token)
        assert r.status == 404, (bad, j)
    r, _ = call(srv, "DELETE", "/api/v1/queue/" + q["id"], token=token)
    assert r.status == 204
    r, j = call(srv, "GET", "/api/v1/queue", token=token)
    assert j["messages"] == []
    assert "0 message(s) queued" in srv.cli("queue", "list").stdout

    r, j = call(srv, "POST", "/api/v1/dkim", {"domain": "example.test", "selector": "api1", "algorithm": "ed25519"},
                token=token)
    assert r.status == 201 and j["record"].startswith("api1._domainkey.example.test.") and "k=ed25519" in j["record"]
    assert "PRIVATE" not in json.dumps(j)
    r, j = call(srv, "POST", "/api/v1/dkim", {"domain": "example.test", "selector": "api1"}, token=token)
    assert r.status == 409, j
    r, j = call(srv, "POST", "/api/v1/dkim", {"domain": "elsewhere.test"}, token=token)
    assert r.status == 400 and "not a local domain" in j["error"]
    r, j = call(srv, "POST", "/api/v1/dkim", {"domain": "example.test", "algorithm": "dsa"}, token=token)
    assert r.status == 400
    r, j = call(srv, "GET", "/api/v1/dkim", token=token)
    assert [(k["domain"], k["selector"], k["algorithm"]) for k in j["keys"]] == [("example.test", "api1", "ed25519")]
    assert "api1" in srv.cli("dkim", "list").stdout
    r, _ = call(srv, "DELETE", "/api/v1/dkim/example.test/api1", token=token)
    assert r.status == 204
    r, _ = call(srv, "DELETE", "/api/v1/dkim/example.test/api1", token=token)
    assert r.status == 404
    r, _ = call(srv, "DELETE", "/api/v1/dkim/..%2F..%2Fetc/passwd", token=token)
    assert r.status in (404, 405)

    # Logs: newest first, filtered by address, IP and time; a bad filter is a 400.
    call(srv, "POST", "/api/v1/login", {"name": "root", "password": "wrong-password-1"})
    r, j = call(srv, "GET", "/api/v1/logs/mail?address=X@FAR-AWAY.TEST", token=token)
    assert r.status == 200 and j["lines"] and all("x@far-away.test" in line for line in j["lines"])
    r, j = call(srv, "GET", "/api/v1/logs/mail?limit=2", token=token)
    assert len(j["lines"]) == 2 and j["lines"][0][:24] >= j["lines"][1][:24]  # newest first
    r, j = call(srv, "GET", "/api/v1/logs/security?ip=127.0.0.1", token=token)
    assert any("ADMIN password failed" in line for line in j["lines"]), j
    r, j = call(srv, "GET", "/api/v1/logs/security?ip=127.0.0.2", token=token)
    assert j["lines"] == []
    r, j = call(srv, "GET", "/api/v1/logs/mail?since=2999-01-01T00:00:00Z", token=token)
    assert j["lines"] == []
    # Paging: before= a line's time gives the lines older than it. Lines may share a
    # millisecond (a fast machine logs accepted, delivered and deferred in one), so a
    # later message makes sure there is an older one.
    time.sleep(0.01)
    with smtplib.SMTP("127.0.0.1", srv.ports["smtp"], timeout=20) as s:
        s.sendmail("b@remote.test", ["demo@example.test"], b"Subject: later\r\n\r\nbody\r\n")
    from conftest import wait
    wait(lambda: srv.log("mail.log").count("to=<demo@example.test> relay=local") == 2, what="the later delivery")
    r, everything = call(srv, "GET", "/api/v1/logs/mail?limit=10000", token=token)
    assert "next" not in everything
    newest = everything["lines"][0][:24]
    r, older = call(srv, "GET", "/api/v1/logs/mail?before=" + newest, token=token)
    assert older["lines"] and older["lines"] == [line for line in everything["lines"] if line[:24] < newest]
    # Walking back page by page with `next` (before= and skip=) gives every line once,
    # in order, however many share a millisecond.
    walked, query = [], "limit=1"
    while query and len(walked) <= len(everything["lines"]):
        r, page = call(srv, "GET", "/api/v1/logs/mail?" + query, token=token)
        assert r.status == 200, page
        walked += page["lines"]
        query = page.get("next")
        if query:
            assert len(page["lines"]) == 1 and query.startswith("before=" + page["lines"][0][:24] + "&skip=")
    assert walked == everything["lines"]
    for bad in ("since=yesterday", "limit=0", "limit=abc", "before=2026-13", "skip=1", "before=2026-11-24&skip=1",
                "before=2026-11-24T10:00:00.000Z&skip=x"):
        r, j = call(srv, "GET", "/api/v1/logs/mail?" + bad, token=token)
        assert r.status == 400, (bad, j)
    r, _ = call(srv, "GET", "/api/v1/logs/../../etc/passwd", token=token)
    assert r.status == 404


def test_metrics_in_prometheus_format_and_status_counters(admin_server):
    import smtplib
    import subprocess
    from prometheus_client.parser import text_string_to_metric_families
    srv = admin_server
    token = login(srv)[0]["token"]
    with smtplib.SMTP("127.0.0.1", srv.ports["smtp"], timeout=20) as s:
        s.sendmail("a@remote.test", ["demo@example.test"], b"Subject: counted\r\n\r\nbody\r\n")
        with pytest.raises(smtplib.SMTPRecipientsRefused):
            s.sendmail("a@remote.test", ["nobody@example.test"], b"Subject: refused\r\n\r\nbody\r\n")
    srv.wait_messages(1)
    srv.wait_log("mail.log", "delivered id=")
    call(srv, "POST", "/api/v1/login", {"name": "root", "password": "not-the-password"})

    r, _ = call(srv, "GET", "/metrics")
    assert r.status == 401  # metrics need an administrator too (a read-only one will do)
    # As a scraper would: curl, the certificate checked against the server's name.
    r = subprocess.run(["curl", "-sS", "--fail", "--cacert", srv.cert, "--resolve",
                        f"mail.example.test:{srv.admin_port}:127.0.0.1", "-H", "Authorization: Bearer " + token,
                        "-D", "-", f"https://mail.example.test:{srv.admin_port}/metrics"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    head, text = r.stdout.split("\n\n", 1)  # (text mode: CRLF read as LF)
    assert "content-type: text/plain; version=0.0.4" in head.lower(), head
    # promtool (Debian's prometheus package) lints the exposition format.
    lint = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    got = {}
    for fam in text_string_to_metric_families(text):
        for sample in fam.samples:
            got[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    assert got[("bulwark_messages_accepted_total", (("service", "smtp"),))] == 1
    assert got[("bulwark_smtp_refusals_total", (("code", "550"), ("status", "5.1.1")))] == 1
    assert got[("bulwark_deliveries_total", (("result", "delivered"), ("route", "local")))] == 1
    assert got[("bulwark_auth_failures_total", (("proto", "ADMIN"),))] == 1
    assert got[("bulwark_tls_handshakes_total", (("version", "TLSv1.3"),))] >= 2
    assert got[("bulwark_connections_total", (("service", "smtp"),))] == 1
    assert got[("bulwark_connections", (("service", "admin"),))] >= 1
    assert got[("bulwark_smtp_accept_seconds_count", ())] == 1
    assert got[("bulwark_queue_messages", ())] == 0
    assert got[("bulwark_uptime_seconds", ())] > 0

    r, st = call(srv, "GET", "/api/v1/status", token=token)
    assert st["messages"]["accepted_24h"] == 1 and st["messages"]["refused_24h"] == 1
    assert len(st["messages"]["per_hour"]) == 24 and st["messages"]["per_hour"][-1] == {"accepted": 1, "refused": 1}
    assert st["connections"]["admin"] >= 1 and st["connections"]["smtp"] == 0


def test_settings_patch_is_checked_written_and_applied_at_once(admin_server):
    import smtplib
    srv = admin_server
    token = login(srv)[0]["token"]
    r, j = call(srv, "GET", "/api/v1/settings", token=token)
    assert r.status == 200 and j["server"]["hostname"] == "mail.example.test" and j["listener"][0]["service"]

    for u in ("u1", "u2"):
        r, _ = call(srv, "POST", "/api/v1/users", {"address": f"{u}@example.test", "password": "Blue-Kettle-42x"},
                    token=token)
        assert r.status == 201

    def recipients_taken():
        with smtplib.SMTP("127.0.0.1", srv.ports["smtp"], timeout=20) as s:
            s.ehlo("client.test")
            s.mail("a@remote.test")
            return [s.rcpt(f"{u}@example.test")[0] for u in ("demo", "u1", "u2")]

    assert recipients_taken() == [250, 250, 250]
    before = srv.config.read_text()
    r, j = call(srv, "PATCH", "/api/v1/settings", {"limits": {"max_recipients": "lots"}}, token=token)
    assert r.status == 400 and j["error"].startswith("limits.max_recipients:"), j
    r, j = call(srv, "PATCH", "/api/v1/settings", {"limits": {"no_such_key": 1}}, token=token)
    assert r.status == 400 and "no_such_key" in j["error"], j
    r, j = call(srv, "PATCH", "/api/v1/settings", {"listener": [{"service": "smtp"}]}, token=token)
    assert r.status == 400 and "edit them in" in j["error"], j
    r, j = call(srv, "PATCH", "/api/v1/settings", [1], token=token)
    assert r.status == 400
    viewer = login(srv, "viewer")[0]["token"]
    r, j = call(srv, "PATCH", "/api/v1/settings", {"limits": {"max_recipients": 2}}, token=viewer)
    assert r.status == 403
    assert srv.config.read_text() == before  # nothing refused changed the file
    assert not list(srv.root.glob("*.api-*"))

    r, j = call(srv, "PATCH", "/api/v1/settings", {"limits": {"max_recipients": 2}}, token=token)
    assert r.status == 200 and j["limits"]["max_recipients"] == 2, j
    assert (srv.root / "bulwark.toml.bak").read_text() == before
    assert srv.cli("check-config").returncode == 0
    # Applied like SIGHUP: the next SMTP session has the new limit.
    from conftest import wait
    wait(lambda: recipients_taken() == [250, 250, 452], what="the new max_recipients in force")
    assert "ADMIN root from 127.0.0.1: PATCH /api/v1/settings -> 200" in srv.log("bulwark.log")
    r, j = call(srv, "PATCH", "/api/v1/settings", {"limits": {"max_recipients": None}}, token=token)
    assert r.status == 200 and "max_recipients" not in j.get("limits", {})
    wait(lambda: recipients_taken() == [250, 250, 250], what="the default back")
