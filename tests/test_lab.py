"""``netconf-vrrp-agent lab up|status|down`` and ``tools/vrrp_demo.py`` on a real lab.

Every lab here has its own namespace prefix, state directory, loopback addresses and port,
and is torn down in the fixture even when a test fails (``lab down``, then a fallback that
deletes the prefix's namespaces and kills the agents by their pid files).
"""

from __future__ import annotations

import itertools
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ROLES = ("lan", "r1", "r2", "host")
_seq = itertools.count()


def cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "agent", *args], capture_output=True,
                          text=True, timeout=timeout, cwd=ROOT, env=env)


def netns_list() -> set[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return {line.split()[0] for line in out.splitlines() if line.strip()}


def netns_pids(ns: str) -> list[int]:
    out = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def pid_alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LabRun:
    """Names of one test lab and the CLI calls on it."""

    def __init__(self, tmp: Path) -> None:
        n = next(_seq)
        self.prefix = f"lab{os.getpid() % 100000}x{n}-"
        self.state_dir = tmp / "lab"
        pid = os.getpid()
        self.base = f"127.{100 + pid % 100}.{(pid // 100) % 250}.{10 + 4 * n}"
        self.port = free_port()
        self.namespaces = [f"{self.prefix}{r}" for r in ROLES]
        self.agent_pids: list[int] = []

    def up(self) -> subprocess.CompletedProcess[str]:
        p = cli("lab", "up", "--state-dir", str(self.state_dir), "--prefix", self.prefix,
                "--address-base", self.base, "--port", str(self.port))
        self.agent_pids += self.read_pids()
        return p

    def status(self, *extra: str) -> subprocess.CompletedProcess[str]:
        return cli("lab", "status", "--state-dir", str(self.state_dir), *extra)

    def down(self) -> subprocess.CompletedProcess[str]:
        return cli("lab", "down", "--state-dir", str(self.state_dir), "--prefix", self.prefix)

    def read_pids(self) -> list[int]:
        pids = []
        for r in ("r1", "r2"):
            try:
                pids.append(int((self.state_dir / r / "agent.pid").read_text()))
            except (OSError, ValueError):
                pass
        return pids

    def lab_json(self) -> dict:
        return json.loads((self.state_dir / "lab.json").read_text())

    def ncclient(self, router: str):
        from ncclient import manager

        lab = self.lab_json()
        r = next(x for x in lab["routers"] if x["name"] == router)
        return manager.connect(
            host=r["listen"], port=r["port"], username=lab["user"],
            password=Path(lab["password_file"]).read_text().strip(), hostkey_verify=False,
            look_for_keys=False, allow_agent=False, timeout=20,
        )

    def force_cleanup(self) -> None:
        """Whatever ``lab down`` may have missed (only used when a test already failed)."""
        for pid in self.agent_pids + self.read_pids():
            if pid_alive(pid):
                os.kill(pid, signal.SIGKILL)
        for ns in self.namespaces:
            if ns in netns_list():
                for pid in netns_pids(ns):
                    os.kill(pid, signal.SIGKILL)
                subprocess.run(["ip", "netns", "del", ns], capture_output=True)

    def assert_gone(self) -> None:
        left = [ns for ns in self.namespaces if ns in netns_list()]
        assert not left, f"namespaces left: {left}"
        alive = [p for p in self.agent_pids if pid_alive(p)]
        assert not alive, f"agent processes left: {alive}"
        mine = str(self.state_dir)
        stray = []
        for proc in Path("/proc").iterdir():
            if proc.name.isdigit():
                try:
                    cmd = (proc / "cmdline").read_bytes().decode(errors="replace")
                except OSError:
                    continue
                if mine in cmd and int(proc.name) != os.getpid():
                    stray.append((proc.name, cmd.replace("\0", " ")))
        assert not stray, f"processes still using the lab's state dir: {stray}"
        assert not self.state_dir.exists(), list(self.state_dir.rglob("*"))


@pytest.fixture
def labrun(tmp_path):
    run = LabRun(tmp_path)
    try:
        yield run
    finally:
        down = run.down()
        run.force_cleanup()
        assert down.returncode == 0, down.stderr


def test_up_status_netconf_down(labrun):
    p = labrun.up()
    assert p.returncode == 0, p.stderr + p.stdout
    assert "lab up in" in p.stdout
    assert set(labrun.namespaces) <= netns_list()
    lab = labrun.lab_json()
    assert lab["status"] == "up" and lab["prefix"] == labrun.prefix
    assert os.stat(lab["password_file"]).st_mode & 0o777 == 0o600
    assert len(Path(lab["password_file"]).read_text().strip()) >= 20

    # topology: the bridge has the three ports; the host's default gateway is the VIP
    br = subprocess.run(["ip", "-j", "-n", f"{labrun.prefix}lan", "link", "show",
                         "master", "br0"], capture_output=True, text=True, check=True)
    assert sorted(x["ifname"] for x in json.loads(br.stdout)) == ["host", "r1", "r2"]
    route = subprocess.run(["ip", "-j", "-n", f"{labrun.prefix}host", "route", "show",
                            "default"], capture_output=True, text=True, check=True)
    assert json.loads(route.stdout)[0]["gateway"] == "192.0.2.1"
    route6 = subprocess.run(["ip", "-6", "-j", "-n", f"{labrun.prefix}host", "route", "show",
                             "default"], capture_output=True, text=True, check=True)
    assert json.loads(route6.stdout)[0]["gateway"] == "fe80::1"
    for r in ("r1", "r2"):
        link = subprocess.run(["ip", "-j", "-n", f"{labrun.prefix}{r}", "link", "show",
                               "lan0"], capture_output=True, text=True, check=True)
        assert "UP" in json.loads(link.stdout)[0]["flags"]

    # each agent manages its own router namespace and listens on its own loopback address
    for r, pid in zip(("r1", "r2"), labrun.read_pids(), strict=True):
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        assert cmd[cmd.index(b"--netns") + 1].decode() == f"{labrun.prefix}{r}"
        assert cmd[cmd.index(b"--listen") + 1].decode() != "0.0.0.0"

    st = labrun.status()
    assert st.returncode == 0, st.stdout + st.stderr
    assert len(re.findall(r"^r[12]: agent up \(pid \d+\)", st.stdout, re.M)) == 2, st.stdout
    assert "VRRP:" in st.stdout and f"password in {lab['password_file']}" in st.stdout
    js = json.loads(labrun.status("--json").stdout)
    assert [(r["router"], r["agent"]) for r in js["routers"]] == [("r1", "up"), ("r2", "up")]
    assert all(r["vrrp"] is not None for r in js["routers"]), js  # the <get> was answered

    for r in ("r1", "r2"):
        with labrun.ncclient(r) as m:
            assert m.get_config("running").ok

    again = labrun.up()
    assert again.returncode == 1
    assert "already up" in again.stderr and "lab down" in again.stderr

    down = labrun.down()
    assert down.returncode == 0, down.stderr
    labrun.assert_gone()
    twice = labrun.down()
    assert twice.returncode == 0 and "nothing to remove" in twice.stdout
    gone = labrun.status()
    assert gone.returncode == 1 and "no lab" in gone.stdout


def test_down_after_interrupted_up(labrun):
    """`lab up` killed half-way (agents started, not yet listening maybe): status says so,
    up refuses, down removes everything."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "agent", "lab", "up", "--state-dir", str(labrun.state_dir),
         "--prefix", labrun.prefix, "--address-base", labrun.base, "--port", str(labrun.port)],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not (labrun.state_dir / "r2" / "agent.pid").exists():
        time.sleep(0.01)
    proc.kill()
    proc.wait(5)
    labrun.agent_pids += labrun.read_pids()
    assert len(labrun.agent_pids) == 2
    assert labrun.lab_json()["status"] == "building"
    assert set(labrun.namespaces) <= netns_list()
    st = labrun.status()
    assert st.returncode == 1 and "lab building (state in" in st.stdout
    again = labrun.up()
    assert again.returncode == 1 and "already building" in again.stderr
    down = labrun.down()
    assert down.returncode == 0, down.stderr
    labrun.assert_gone()


def test_down_without_description_removes_leftovers(labrun):
    """Namespaces with the lab's names but no lab.json (e.g. state dir lost): down --prefix
    removes them; up refuses while they exist."""
    for ns in labrun.namespaces[:2]:
        subprocess.run(["ip", "netns", "add", ns], check=True)
    p = labrun.up()
    assert p.returncode == 1 and "already exist" in p.stderr
    # an agent of the lab without a pid file (its `lab up` died before writing one)
    rdir = labrun.state_dir / "r1"
    subprocess.run([sys.executable, "-m", "agent", "useradd", "--state-dir", str(rdir),
                    "admin", "--password-stdin"], input="pw-for-test\n", text=True,
                   check=True, cwd=ROOT, capture_output=True)
    stray = subprocess.Popen(
        [sys.executable, "-m", "agent", "serve", "--state-dir", str(rdir), "--backend",
         "none", "--listen", "127.0.0.1", "--port", str(free_port())],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    labrun.agent_pids.append(stray.pid)
    down = labrun.down()
    assert down.returncode == 0, down.stderr
    labrun.assert_gone()
    assert stray.wait(5) is not None


def test_demo_failover(labrun):
    """tools/vrrp_demo.py on a lab: election of an IPv4 and an IPv6 instance, failover on
    link down, notifications, the host's gap to both gateways."""
    p = labrun.up()
    assert p.returncode == 0, p.stderr + p.stdout
    demo = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "vrrp_demo.py"), "--state-dir",
         str(labrun.state_dir), "--timeout", "8"],
        capture_output=True, text=True, timeout=80, cwd=ROOT,
    )
    out = demo.stdout + demo.stderr
    m = re.search(r"^RESULT failover_ms=(\S+) gap_ms=(\S+) notification=(\S+) "
                  r"gap6_ms=(\S+)$", demo.stdout, re.M)
    assert m, out
    assert demo.returncode == 0, out
    failover, gap, gap6 = int(m[1]), int(m[2]), int(m[4])
    # 0.1 s adverts: RFC 5798 Master_Down_Interval for priority 100 is 361 ms
    assert 100 < failover < 2000, out
    assert 100 < gap < 2000, out
    assert 100 < gap6 < 2000, out
    assert m[3] == "vrrp-new-master-event", out
    assert "r1 MASTER (IPv6 MASTER)" in out and "r2 BACKUP (IPv6 BACKUP)" in out, out
    assert "r2 MASTER (IPv4 and IPv6)" in out, out
    # one new-master notification per instance, the IPv6 one from r2's own link-local
    assert re.search(r"vrrp-new-master-event master-ip-address=192\.0\.2\.3 ", out), out
    assert re.search(r"vrrp-new-master-event master-ip-address=fe80:", out), out
    st = labrun.status()
    assert re.search(r"ipv4 vrid 1: MASTER", st.stdout), st.stdout
    assert re.search(r"ipv6 vrid 1: MASTER", st.stdout), st.stdout
    r1_vrrp, r2_vrrp = st.stdout.split("\nr2:")
    assert "BACKUP" not in r1_vrrp and "MASTER" not in r2_vrrp, st.stdout
    assert "holds 192.0.2.1 on vr401.lan0, fe80::1 on vr601.lan0" in r1_vrrp, st.stdout
    assert "holds" not in r2_vrrp.split("VRRP:")[0], st.stdout
    down = labrun.down()
    assert down.returncode == 0, down.stderr
    labrun.assert_gone()
    assert not subprocess.run(["pgrep", "-f", str(labrun.state_dir)],
                              capture_output=True).stdout
