"""scripts/demo.sh before it builds: its runtime configuration is a copy under the
ignored demo/run/, BULWARK_DEMO_PORT_BASE moves its eight ports, and a port another
process holds stops it at once, naming that process. Run on a copy of the script and the
template in a temporary directory (the checkout is not touched; nothing is built)."""
import os
import pathlib
import random
import shutil
import socket
import subprocess

ROOT = pathlib.Path(__file__).resolve().parents[2]


def demo_copy(tmp_path):
    (tmp_path / "scripts").mkdir()
    shutil.copy(ROOT / "scripts" / "demo.sh", tmp_path / "scripts" / "demo.sh")
    (tmp_path / "demo").mkdir()
    shutil.copy(ROOT / "demo" / "bulwark.toml", tmp_path / "demo" / "bulwark.toml")
    return tmp_path


def free_base():
    """A base with eight free consecutive loopback ports."""
    for _ in range(50):
        base = random.randrange(20000, 60000, 10)
        held = []
        try:
            for p in range(base, base + 8):
                s = socket.socket()
                s.bind(("127.0.0.1", p))
                held.append(s)
            return base
        except OSError:
            continue
        finally:
            for s in held:
                s.close()
    raise AssertionError("no eight free ports")


def test_a_taken_port_stops_the_demo_before_the_build_and_names_its_holder(tmp_path):
    root = demo_copy(tmp_path)
    base = free_base()
    holder = socket.socket()
    holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    holder.bind(("127.0.0.1", base + 5))  # the imap listener's
    holder.listen()
    try:
        r = subprocess.run(["bash", "scripts/demo.sh"], cwd=root, capture_output=True, text=True, timeout=60,
                           env={**os.environ, "BULWARK_DEMO_PORT_BASE": str(base)})
    finally:
        holder.close()
    assert r.returncode == 1, r
    assert f"port {base + 5} (imap) on 127.0.0.1 is taken by python" in r.stderr, r.stderr
    assert f"(pid {os.getpid()})" in r.stderr, r.stderr
    assert "BULWARK_DEMO_PORT_BASE" in r.stderr
    assert not (root / "build").exists()  # stopped before building
    # The runtime copy has the moved ports and the template's data and log directories.
    run = (root / "demo" / "run" / "bulwark.toml").read_text()
    ports = [int(line.split("=")[1]) for line in run.splitlines() if line.startswith("port")]
    assert ports == list(range(base, base + 8))
    assert 'data_dir = "../data"' in run and 'log_dir  = "../log"' in run
    assert (root / "demo" / "bulwark.toml").read_text() == (ROOT / "demo" / "bulwark.toml").read_text()


def test_a_bad_port_base_is_refused(tmp_path):
    root = demo_copy(tmp_path)
    r = subprocess.run(["bash", "scripts/demo.sh"], cwd=root, capture_output=True, text=True, timeout=60,
                       env={**os.environ, "BULWARK_DEMO_PORT_BASE": "99"})
    assert r.returncode == 1 and "BULWARK_DEMO_PORT_BASE must be a number from 1024 to 65528" in r.stderr
