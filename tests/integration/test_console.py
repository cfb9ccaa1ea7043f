"""The web console (SPEC 15) in a real headless browser: Debian's chromium driven by
chromedriver through python3-selenium. Log in, add a user and see it listed, change a
limit and see it in the configuration, look at the queue, read the security log --
with screenshots kept as artifacts and no error in the browser's console (a blocked
script or style under the Content-Security-Policy would be one)."""
import os
import pathlib

import pytest

from conftest import free_port

selenium = pytest.importorskip("selenium")
from selenium import webdriver  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support import expected_conditions as EC  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

ADMIN_PW = "Admin-Passw0rd-77"
ARTIFACTS = pathlib.Path(os.environ.get("BULWARK_ARTIFACTS", "/tmp/bulwark-console-artifacts"))


@pytest.fixture
def browser():
    opts = webdriver.ChromeOptions()
    opts.binary_location = "/usr/bin/chromium"
    for a in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--ignore-certificate-errors",
              "--window-size=1280,900", "--disable-gpu"):
        opts.add_argument(a)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    from selenium.webdriver.chrome.service import Service
    service = Service(executable_path="/usr/bin/chromedriver")
    d = webdriver.Chrome(service=service, options=opts)
    d.set_page_load_timeout(30)
    yield d
    d.quit()


def test_console_login_user_setting_queue_and_security_log(make_server, browser):
    port = free_port()
    srv = make_server(extra_config=f'[[listener]]\nservice = "admin"\naddress = "127.0.0.1"\nport = {port}\n')
    srv.cli("admin", "add", "root", "--password-stdin", input=ADMIN_PW + "\n")
    srv.start()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    d, wait = browser, WebDriverWait(browser, 20)

    def shot(name):
        d.save_screenshot(str(ARTIFACTS / f"{name}.png"))

    def message_is(text):
        wait.until(EC.text_to_be_present_in_element((By.ID, "message"), text))

    d.get(f"https://127.0.0.1:{port}/")
    wait.until(EC.visibility_of_element_located((By.ID, "login-form")))
    shot("01-login")
    d.find_element(By.NAME, "name").send_keys("root")
    d.find_element(By.NAME, "password").send_keys(ADMIN_PW)
    d.find_element(By.CSS_SELECTOR, "#login-form button").click()
    wait.until(EC.text_to_be_present_in_element((By.CSS_SELECTOR, "#view h2"), "Dashboard: mail.example.test"))
    assert d.find_element(By.CSS_SELECTOR, "svg.chart")
    cookie = d.get_cookie("bulwark_session")
    assert cookie and cookie["secure"] and cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    shot("02-dashboard")

    d.get(f"https://127.0.0.1:{port}/#users")
    wait.until(EC.text_to_be_present_in_element((By.CSS_SELECTOR, "#view h2"), "Users"))
    d.find_element(By.CSS_SELECTOR, "#view input[name=address]").send_keys("carol@example.test")
    d.find_element(By.CSS_SELECTOR, "#view input[name=password]").send_keys("Blue-Kettle-42x")
    d.find_element(By.CSS_SELECTOR, "#view form button").click()
    message_is("user carol@example.test added")
    wait.until(EC.text_to_be_present_in_element((By.CSS_SELECTOR, "#view table"), "carol@example.test"))
    assert "carol@example.test" in srv.cli("user", "list").stdout
    shot("03-users")
    # A refused password is shown as the server says it, nothing added.
    d.find_element(By.CSS_SELECTOR, "#view input[name=address]").send_keys("dave@example.test")
    d.find_element(By.CSS_SELECTOR, "#view input[name=password]").send_keys("short")
    d.find_element(By.CSS_SELECTOR, "#view form button").click()
    message_is("password refused")
    assert "dave@example.test" not in srv.cli("user", "list").stdout

    d.get(f"https://127.0.0.1:{port}/#settings")
    wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, "input[data-section=limits][name=max_recipients]")))
    field = d.find_element(By.CSS_SELECTOR, "input[data-section=limits][name=max_recipients]")
    field.clear()
    field.send_keys("42")
    field.find_element(By.XPATH, "./ancestor::form//button").click()
    message_is("Security options saved")
    assert "max_recipients = 42" in srv.config.read_text()
    shot("04-settings")
    # Saving a form with nothing changed changes nothing (an explicit "" stays "").
    d.find_element(By.XPATH, "//button[text()='Save relay control']").click()
    message_is("Relay control saved")
    assert "allow_ip_group = ''" in srv.config.read_text()

    # An IP group, set from the settings screen, lands in the configuration.
    d.find_element(By.CSS_SELECTOR, "#view input[name=group]").send_keys("office")
    d.find_element(By.CSS_SELECTOR, "#view input[name=addresses]").send_keys("192.0.2.0/24, 198.51.100.7")
    d.find_element(By.XPATH, "//button[text()='Set IP group']").click()
    message_is("IP group office set")
    assert "office = [ '192.0.2.0/24', '198.51.100.7' ]" in srv.config.read_text()

    d.get(f"https://127.0.0.1:{port}/#dkim")
    wait.until(EC.text_to_be_present_in_element((By.CSS_SELECTOR, "#view h2"), "DKIM keys"))
    d.find_element(By.CSS_SELECTOR, "#view input[name=domain]").send_keys("example.test")
    d.find_element(By.CSS_SELECTOR, "#view input[name=selector]").send_keys("web1")
    d.find_element(By.CSS_SELECTOR, "#view select[name=algorithm] option[value=ed25519]").click()
    d.find_element(By.XPATH, "//button[text()='Make key']").click()
    wait.until(EC.text_to_be_present_in_element((By.CSS_SELECTOR, "#view pre"), "web1._domainkey.example.test."))
    assert "web1" in srv.cli("dkim", "list").stdout
    shot("05-dkim")

    d.get(f"https://127.0.0.1:{port}/#audit")
    wait.until(EC.text_to_be_present_in_element((By.CSS_SELECTOR, "#view h2"), "Security audit"))

    d.get(f"https://127.0.0.1:{port}/#queue")
    wait.until(EC.text_to_be_present_in_element((By.CSS_SELECTOR, "#view h2"), "Queue (0)"))
    shot("06-queue")

    d.get(f"https://127.0.0.1:{port}/#logs")
    wait.until(EC.text_to_be_present_in_element((By.CSS_SELECTOR, "#view table"), "ADMIN login from 127.0.0.1: root"))
    shot("07-security-log")

    # One line a page: the newest is a relay refusal; "Older lines" pages back to the login.
    import smtplib
    with smtplib.SMTP("127.0.0.1", srv.ports["smtp"], timeout=20) as s:
        s.ehlo("client.test")
        s.mail("a@remote.test")
        assert s.rcpt("x@far-away.test")[0] == 554
    srv.wait_log("security.log", "SMTP relay denied")
    d.get(f"https://127.0.0.1:{port}/#logs?log=security&limit=1")
    wait.until(EC.text_to_be_present_in_element((By.CSS_SELECTOR, "#view table"), "x@far-away.test"))
    d.find_element(By.ID, "older").click()
    wait.until(EC.text_to_be_present_in_element((By.CSS_SELECTOR, "#view table"), "ADMIN login from 127.0.0.1: root"))
    assert "x@far-away.test" not in d.find_element(By.CSS_SELECTOR, "#view table").text

    # The one error expected: the browser's own note of the 400 to the refused password.
    errors = [e for e in d.get_log("browser") if e["level"] == "SEVERE"
              and not ("/api/v1/users" in e["message"] and "status of 400" in e["message"])]
    assert errors == [], errors

    d.find_element(By.ID, "logout").click()
    wait.until(EC.visibility_of_element_located((By.ID, "login-form")))
    d.get(f"https://127.0.0.1:{port}/#users")
    wait.until(EC.visibility_of_element_located((By.ID, "login-form")))  # the session is over
