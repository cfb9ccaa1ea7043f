"""Bad configurations are refused with FILE:LINE: key: problem and exit code 2."""
import pathlib
import subprocess

import pytest

from conftest import BIN

BAD = sorted((pathlib.Path(__file__).resolve().parents[1] / "configs" / "bad").glob("*.toml"))


@pytest.mark.parametrize("path", BAD, ids=[p.stem for p in BAD])
def test_bad_config_refused_with_line_and_key(path):
    expect = path.read_text().splitlines()[0].removeprefix("# expect: ")
    for cmd in (["check-config"], ["serve"]):
        r = subprocess.run([BIN, *cmd, "--config", str(path)], capture_output=True, text=True, timeout=30)
        assert r.returncode == 2, (cmd, r.stderr)
        first = r.stderr.splitlines()[0]
        assert first.startswith(str(path) + expect), first


def test_missing_config_file(tmp_path):
    missing = tmp_path / "nope.toml"
    r = subprocess.run([BIN, "check-config", "--config", str(missing)], capture_output=True, text=True)
    assert r.returncode == 2
    assert r.stderr.startswith(f"{missing}:1: config: cannot read the file")


def test_good_config_and_config_after_command(tmp_path):
    cfg = tmp_path / "ok.toml"
    cfg.write_text('[server]\nhostname = "mx.example.test"\nuser = ""\n[limits]\nmax_message_size = "10MB"\n'
                   'max_recipients = 0\n[timeouts]\ncommand = "5m"\n')
    for args in (["check-config", "--config", str(cfg)], ["--config", str(cfg), "check-config"]):
        r = subprocess.run([BIN, *args], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        assert "ok" in r.stdout


def test_demo_config_is_valid():
    demo = pathlib.Path(__file__).resolve().parents[2] / "demo" / "bulwark.toml"
    r = subprocess.run([BIN, "check-config", "--config", str(demo)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_usage_errors_exit_2():
    r = subprocess.run([BIN, "frobnicate"], capture_output=True, text=True)
    assert r.returncode == 2
    r = subprocess.run([BIN], capture_output=True, text=True)
    assert r.returncode == 2


@pytest.mark.skipif(__import__("os").geteuid() != 0, reason="serve checks server.user only when started as root")
def test_check_config_makes_the_start_up_checks_serve_makes(tmp_path):
    """check-config refuses what serve would refuse at start, beyond the file itself:
    a server.user that does not exist, a certificate that does not load."""
    cfg = tmp_path / "user.toml"
    cfg.write_text('[server]\nhostname = "mx.example.test"\nuser = "no-such-user-7f3a"\n')
    r = subprocess.run([BIN, "check-config", "--config", str(cfg)], capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.startswith(f"{cfg}:3: server.user:"), r.stderr
    (tmp_path / "bad.pem").write_text("not a certificate\n")
    (tmp_path / "key.pem").write_text("not a key\n")
    cfg.write_text(f'[server]\nhostname = "mx.example.test"\nuser = ""\ndata_dir = "{tmp_path}"\n'
                   '[tls]\ncertificate = "bad.pem"\nprivate_key = "key.pem"\n')
    r = subprocess.run([BIN, "check-config", "--config", str(cfg)], capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.startswith(f"{cfg}:6: tls.certificate:"), r.stderr
