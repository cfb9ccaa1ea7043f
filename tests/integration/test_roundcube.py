"""Roundcube (Debian's roundcube-core 1.6, served by `php -S` on loopback) against the
real server, in headless Chromium through python3-selenium, as a new user would use
it: log in, see the list, sort by date and by subject (Roundcube asks the server: UID
SORT), turn threads on (UID THREAD REFERENCES), open a message, move it to Archive,
write and send one (SMTPS with AUTH, the copy APPENDed to Sent). Screenshots of each
step are kept as test artifacts; Roundcube's own error log must stay empty."""
import os
import pathlib
import shutil
import sqlite3
import subprocess
import time

import pytest

from conftest import PASSWORD, free_port, wait
from imap_raw import ImapRaw

selenium = pytest.importorskip("selenium")
from selenium import webdriver  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support import expected_conditions as EC  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

ARTIFACTS = pathlib.Path(os.environ.get("BULWARK_ARTIFACTS", "/tmp/bulwark-console-artifacts")) / "roundcube"
ROUNDCUBE = pathlib.Path("/var/lib/roundcube/public_html")
USER = "demo@example.test"

pytestmark = pytest.mark.skipif(not ROUNDCUBE.exists(), reason="Debian's roundcube-core is not installed")

# A small conversation: 1 <- 2 <- 4 by References, 3 and 5 alone; dates 6..10 Feb.
MESSAGES = [("Plans", "<p1@x>", ""), ("Re: Plans", "<p2@x>", "<p1@x>"), ("Budget", "<b1@x>", ""),
            ("Re: Plans", "<p3@x>", "<p1@x> <p2@x>"), ("Another topic", "<a1@x>", "")]


def conversation():
    out = []
    for i, (subj, mid, refs) in enumerate(MESSAGES):
        h = (f"From: Sender {i} <s{i}@remote.test>\r\nTo: {USER}\r\nSubject: {subj}\r\nMessage-ID: {mid}\r\n"
             f"Date: Mon, {6 + i} Feb 2023 10:00:00 +0000\r\n")
        if refs:
            h += f"References: {refs}\r\n"
        out.append((h + f"\r\nbody of message {i + 1}\r\n").encode())
    return out


@pytest.fixture
def roundcube(server, tmp_path):
    """Roundcube with its own configuration, SQLite database, logs and temp dir, talking
    IMAPS and SMTPS to the test server (its self-signed certificate accepted)."""
    cfg = tmp_path / "config"
    cfg.mkdir()
    for f in ("defaults.inc.php", "mimetypes.php"):
        shutil.copy(f"/etc/roundcube/{f}", cfg / f)
    (tmp_path / "temp").mkdir()
    (tmp_path / "logs").mkdir()
    db = tmp_path / "roundcube.db"
    con = sqlite3.connect(db)
    con.executescript(pathlib.Path("/usr/share/roundcube/SQL/sqlite.initial.sql").read_text())
    con.close()
    insecure = "['ssl' => ['verify_peer' => false, 'verify_peer_name' => false]]"
    (cfg / "config.inc.php").write_text(f"""<?php
$config = [];
$config['db_dsnw'] = 'sqlite:///{db}?mode=0640';
$config['imap_host'] = 'ssl://127.0.0.1:{server.ports["imaps"]}';
$config['imap_conn_options'] = {insecure};
$config['smtp_host'] = 'ssl://127.0.0.1:{server.ports["smtps"]}';
$config['smtp_conn_options'] = {insecure};
$config['smtp_user'] = '%u';
$config['smtp_pass'] = '%p';
$config['des_key'] = 'bulwark-test-des-key-24!';
$config['temp_dir'] = '{tmp_path}/temp/';
$config['log_dir'] = '{tmp_path}/logs/';
$config['skin'] = 'elastic';
$config['plugins'] = [];
$config['enable_installer'] = false;
$config['imap_debug'] = true;
""")
    port = free_port()
    php = subprocess.Popen(["php", "-S", f"127.0.0.1:{port}", "-t", str(ROUNDCUBE)],
                           env=dict(os.environ, ROUNDCUBE_CONFIG_DIR=str(cfg)),
                           stdout=open(tmp_path / "php.log", "wb"), stderr=subprocess.STDOUT)
    try:
        import urllib.request
        wait(lambda: _up(urllib.request, port), what="php -S serving Roundcube")
        yield f"http://127.0.0.1:{port}/", tmp_path / "logs"
    finally:
        php.terminate()
        php.wait(10)


def _up(urllib_request, port):
    try:
        return urllib_request.urlopen(f"http://127.0.0.1:{port}/", timeout=2).status == 200
    except OSError:
        return False


@pytest.fixture
def browser():
    opts = webdriver.ChromeOptions()
    opts.binary_location = "/usr/bin/chromium"
    for a in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,900", "--disable-gpu",
              "--disable-background-networking", "--disable-component-update", "--disable-sync"):
        opts.add_argument(a)
    from selenium.webdriver.chrome.service import Service
    d = webdriver.Chrome(service=Service(executable_path="/usr/bin/chromedriver"), options=opts)
    d.set_page_load_timeout(30)
    yield d
    d.quit()


def test_roundcube_logs_in_sorts_threads_opens_moves_and_sends(server, roundcube, browser):
    from test_imap import send
    send(server, conversation())
    server.wait_messages(len(MESSAGES))
    url, logs = roundcube
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    d, waiter = browser, WebDriverWait(browser, 30)
    until = waiter.until

    def shot(name):
        d.save_screenshot(str(ARTIFACTS / f"{name}.png"))

    def listed():
        """(uid, subject, depth) of the list's rows, in the order shown."""
        return d.execute_script("""
            const l = rcmail.message_list, out = [];
            for (const tr of document.querySelectorAll('#messagelist tbody tr')) {
              if (tr.offsetParent === null) continue;  // hidden: not shown to the user
              const uid = tr.uid || rcmail.html_identifier_decode(tr.id.replace('rcmrow', ''));
              const row = l.rows[uid] || {};
              out.push([String(uid), tr.querySelector('span.subject').textContent.trim(), row.depth || 0]);
            }
            return out;""")

    def list_options(sort, order, threads):
        before = d.execute_script("return rcmail.env.sort_col + rcmail.env.sort_order + rcmail.env.threading")
        d.execute_script(f"rcmail.set_list_options(null, '{sort}', '{order}', {threads})")
        until(lambda _: d.execute_script("return rcmail.env.sort_col + rcmail.env.sort_order + "
                                         "rcmail.env.threading + !rcmail.busy") != before + "true" and
              not d.execute_script("return rcmail.busy"))
        if threads:
            d.execute_script("rcmail.command('expand-all')")  # as the list menu's "Expand all"
        until(lambda _: len(listed()) == len(MESSAGES))

    # log in as a new user would: the form, then the INBOX list
    d.get(url)
    until(EC.visibility_of_element_located((By.ID, "rcmloginuser")))
    shot("01-login")
    d.find_element(By.ID, "rcmloginuser").send_keys(USER)
    d.find_element(By.ID, "rcmloginpwd").send_keys(PASSWORD)
    d.find_element(By.ID, "rcmloginsubmit").click()
    until(lambda _: len(d.find_elements(By.CSS_SELECTOR, "#messagelist tbody tr")) == len(MESSAGES))
    shot("02-inbox")
    # sorted by date, newest first; by subject (base subjects: "Re:" does not count)
    list_options("date", "DESC", 0)
    assert [s for _, s, _ in listed()] == ["Another topic", "Re: Plans", "Budget", "Re: Plans", "Plans"]
    list_options("subject", "ASC", 0)
    assert [u for u, _, _ in listed()] == ["5", "3", "1", "2", "4"]
    shot("03-by-subject")
    # threads: Plans with its two replies below it
    list_options("date", "ASC", 1)
    rows = listed()
    assert [(u, depth) for u, _, depth in rows] == [("1", 0), ("2", 1), ("4", 2), ("3", 0), ("5", 0)], rows
    shot("04-threads")
    # open a message
    d.get(url + "?_task=mail&_mbox=INBOX&_uid=3&_action=show")
    until(lambda _: "body of message 3" in d.page_source)
    assert "Budget" in d.page_source
    shot("05-message")
    # move it to Archive (the list's own command, as the toolbar's Move does)
    d.get(url + "?_task=mail&_mbox=INBOX")
    until(lambda _: len(d.find_elements(By.CSS_SELECTOR, "#messagelist tbody tr")) >= 4)
    d.execute_script("rcmail.message_list.select('3'); rcmail.move_messages('Archive');")
    until(lambda _: "3" not in [u for u, _, _ in listed()])
    shot("06-moved")
    imap = ImapRaw(server)
    fetched = b"".join(imap.ok("EXAMINE Archive") + imap.ok("FETCH 1:* (BODY.PEEK[HEADER.FIELDS (SUBJECT)])"))
    assert b"* 1 EXISTS" in fetched and b"Subject: Budget" in fetched, fetched
    # write and send one: to the user's own address, over SMTPS with AUTH; a copy in Sent
    d.get(url + "?_task=mail&_action=compose")
    until(EC.visibility_of_element_located((By.ID, "compose-subject")))
    to = next(e for e in d.find_elements(By.CSS_SELECTOR, "ul.recipient-input input") if e.is_displayed())
    to.send_keys(USER + ",")
    d.find_element(By.ID, "compose-subject").send_keys("Sent from Roundcube")
    d.find_element(By.ID, "composebody").send_keys("Hello from a browser.")
    shot("07-compose")
    d.find_element(By.CSS_SELECTOR, "button.send").click()

    def arrived():  # delivered to INBOX (after the four left there), and copied to Sent
        inbox = b"".join(imap.ok("EXAMINE INBOX") + imap.ok("SEARCH SUBJECT \"Sent from Roundcube\""))
        sent = b"".join(imap.ok("EXAMINE Sent") + imap.ok("FETCH 1:* (BODY.PEEK[HEADER.FIELDS (SUBJECT)])"))
        return b"* SEARCH 5" in inbox and b"Subject: Sent from Roundcube" in sent
    wait(arrived, timeout=30, what="the sent message in INBOX and Sent")
    shot("08-sent")
    imap.close()
    # Roundcube spoke SORT and THREAD to the server, and logged no error
    imap_log = (logs / "imap.log").read_text(errors="replace")
    assert " UID SORT (SUBJECT)" in imap_log and " UID THREAD REFERENCES" in imap_log
    errors = (logs / "errors.log").read_text(errors="replace") if (logs / "errors.log").exists() else ""
    assert not errors.strip(), errors
