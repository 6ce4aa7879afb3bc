"""``netconf-vrrp-agent lab up|status|down``: the switchdev VRRP topology in network namespaces.

::

                 ┌──────────── <prefix>lan ────────────┐
                 │               bridge br0             │
                 │      r1           r2           host  │   (veth ports)
                 └──────┼────────────┼─────────────┼────┘
                   lan0 │       lan0 │        eth0 │
               <prefix>r1    <prefix>r2    <prefix>host
               192.0.2.2     192.0.2.3     192.0.2.100, default via 192.0.2.1 (IPv4 VIP)
               2001:db8::2   2001:db8::3   2001:db8::100, default via fe80::1 (IPv6 VIP)

Each router namespace is managed by its own agent process running in the caller's network
namespace (``serve --netns <prefix>rN --listen 127.0.0.1N --port 830``), started as a daemon
with a pid file and a log under the lab's state directory. The lab has one NETCONF user,
``admin``, with a random password stored (mode 0600) in the state directory.

Nothing is made in the caller's namespace: all links live inside the lab's namespaces, so
``lab down`` (stop the agents, kill whatever still runs in the namespaces, delete the
namespaces, remove the state files) undoes everything, and can be run any number of times,
also after a ``lab up`` that failed half-way.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TextIO

from lxml import etree

DEFAULT_STATE_DIR = Path("/run/netconf-vrrp-agent-lab")
DEFAULT_PREFIX = "nva-"
DEFAULT_ADDRESS_BASE = "127.0.0.10"  # r1 listens on base+1, r2 on base+2
DEFAULT_PORT = 830
USER = "admin"
LAB_FILE = "lab.json"
PASSWORD_FILE = "password"
AGENT_PID = "agent.pid"
AGENT_LOG = "agent.log"

BRIDGE = "br0"
LAN_IF = "lan0"
HOST_IF = "eth0"
LAN_V4 = "192.0.2.0/24"
LAN_V6 = "2001:db8::/64"
VIP = "192.0.2.1"
VIP6 = "fe80::1"  # the IPv6 instance's first virtual address (link-local, RFC 5798 §5.2.9)
VIP6_GLOBAL = "2001:db8::1"
HOST_V4 = "192.0.2.100"
HOST_V6 = "2001:db8::100"
ROUTERS = (("r1", "192.0.2.2", "2001:db8::2"), ("r2", "192.0.2.3", "2001:db8::3"))

START_TIMEOUT = 30.0  # seconds for an agent to listen
STOP_TIMEOUT = 15.0  # seconds for an agent to stop (it stops keepalived first)

IF_NS = "urn:ietf:params:xml:ns:yang:ietf-interfaces"
IP_NS = "urn:ietf:params:xml:ns:yang:ietf-ip"
VRRP_NS = "urn:ietf:params:xml:ns:yang:ietf-vrrp"
_NAME_RE = re.compile(r"^[A-Za-z0-9_.-]{1,20}$")


class LabError(Exception):
    """Printed as ``netconf-vrrp-agent: error: ...`` (exit 1)."""


# ---- the lab's description (lab.json) ------------------------------------------------------


@dataclass
class Router:
    name: str  # r1, r2
    netns: str
    lan_ipv4: str  # with prefix length
    lan_ipv6: str
    listen: str
    port: int
    state_dir: str


@dataclass
class Lab:
    """Everything ``status``, ``down`` and ``tools/vrrp_demo.py`` need to find the lab."""

    state_dir: str
    prefix: str
    lan_netns: str
    host_netns: str
    routers: list[Router]
    user: str = USER
    password_file: str = ""
    bridge: str = BRIDGE
    lan_if: str = LAN_IF
    host_if: str = HOST_IF
    host_ipv4: str = f"{HOST_V4}/24"
    host_ipv6: str = f"{HOST_V6}/64"
    vip: str = VIP
    vip6: str = VIP6
    vip6_global: str = VIP6_GLOBAL
    status: str = "building"  # "building" until every agent listens, then "up"

    @property
    def namespaces(self) -> list[str]:
        return [self.lan_netns, *(r.netns for r in self.routers), self.host_netns]

    def password(self) -> str:
        return Path(self.password_file).read_text().strip()

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str) -> Lab:
        raw = json.loads(text)
        raw["routers"] = [Router(**r) for r in raw["routers"]]
        return cls(**raw)


def plan(state_dir: Path, prefix: str, address_base: str, port: int) -> Lab:
    """The lab's names and addresses (nothing is created)."""
    if not _NAME_RE.match(prefix):
        raise LabError(f"invalid prefix {prefix!r}: use 1-20 of A-Z a-z 0-9 _ . -")
    try:
        base = ipaddress.IPv4Address(address_base)
    except ValueError:
        raise LabError(f"not an IPv4 address: {address_base!r}") from None
    if not base.is_loopback:
        raise LabError(f"--address-base must be a loopback address (127.x.y.z): {base}")
    state_dir = state_dir.resolve()
    routers = []
    for i, (name, v4, v6) in enumerate(ROUTERS, 1):
        listen = str(base + i)
        if not ipaddress.IPv4Address(listen).is_loopback:
            raise LabError(f"--address-base {base} leaves the loopback range")
        routers.append(Router(
            name=name, netns=f"{prefix}{name}", lan_ipv4=f"{v4}/24", lan_ipv6=f"{v6}/64",
            listen=listen, port=port, state_dir=str(state_dir / name),
        ))
    return Lab(
        state_dir=str(state_dir), prefix=prefix, lan_netns=f"{prefix}lan",
        host_netns=f"{prefix}host", routers=routers,
        password_file=str(state_dir / PASSWORD_FILE),
    )


def load(state_dir: Path) -> Lab | None:
    path = state_dir / LAB_FILE
    try:
        return Lab.from_json(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError, TypeError, KeyError) as exc:
        raise LabError(f"{path}: unreadable lab description ({exc})") from None


def _save(lab: Lab) -> None:
    path = Path(lab.state_dir) / LAB_FILE
    tmp = path.with_suffix(".tmp")
    tmp.write_text(lab.to_json())
    os.replace(tmp, path)


# ---- commands and processes -------------------------------------------------------------


def _sh(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    p = subprocess.run(list(args), capture_output=True, text=True)
    if check and p.returncode != 0:
        raise LabError(f"{' '.join(args)} failed: {p.stderr.strip() or p.returncode}")
    return p


def netns_exists(name: str) -> bool:
    return Path("/run/netns", name).exists()


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie (our own unreaped child) is gone for our purposes
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def _cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return []


def agent_pid(router: Router) -> int | None:
    """The pid of the router's agent if its pid file names a live agent of this lab."""
    try:
        pid = int((Path(router.state_dir) / AGENT_PID).read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    args = _cmdline(pid)
    if "serve" in args and router.state_dir in args and _pid_alive(pid):
        return pid
    return None


def agent_processes(router: Router) -> list[int]:
    """Every live ``serve`` process of this router's state dir: the pid file's, and any
    other (e.g. an agent started by a ``lab up`` killed before it wrote the pid file)."""
    found = set()
    pid = agent_pid(router)
    if pid is not None:
        found.add(pid)
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        args = _cmdline(int(entry.name))
        if "serve" in args and "--state-dir" in args:
            i = args.index("--state-dir")
            if i + 1 < len(args) and args[i + 1] == router.state_dir and _pid_alive(
                int(entry.name)
            ):
                found.add(int(entry.name))
    return sorted(found)


def _wait_gone(pids: Iterable[int], timeout: float) -> list[int]:
    """Pids still alive after ``timeout`` seconds."""
    left = list(pids)
    deadline = time.monotonic() + timeout
    while left and time.monotonic() < deadline:
        time.sleep(0.05)
        for pid in list(left):
            try:  # reap our own children, if any
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                pass
            if not _pid_alive(pid):
                left.remove(pid)
    return [p for p in left if _pid_alive(p)]


def _signal(pids: Iterable[int], sig: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def netns_pids(name: str) -> list[int]:
    """Processes whose network namespace is ``name`` (``ip netns pids``)."""
    if not netns_exists(name):
        return []
    out = _sh("ip", "netns", "pids", name, check=False).stdout.split()
    return [int(p) for p in out if p.isdigit() and int(p) != os.getpid()]


def project_root() -> Path:
    """The directory holding the ``agent`` package (for ``python -m agent`` children)."""
    return Path(__file__).resolve().parent.parent


def _agent_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "agent", *args]


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    root = str(project_root())
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    return env


# ---- up ---------------------------------------------------------------------------------


def _build_topology(lab: Lab) -> None:
    for ns in lab.namespaces:
        _sh("ip", "netns", "add", ns)
        _sh("ip", "-n", ns, "link", "set", "lo", "up")
    lan = lab.lan_netns
    _sh("ip", "-n", lan, "link", "add", lab.bridge, "type", "bridge", "stp_state", "0")
    _sh("ip", "-n", lan, "link", "set", lab.bridge, "up")
    ports = [(r.name, r.netns, lab.lan_if) for r in lab.routers]
    ports.append(("host", lab.host_netns, lab.host_if))
    for port, ns, ifname in ports:
        _sh("ip", "-n", lan, "link", "add", port, "type", "veth", "peer", "name", ifname,
            "netns", ns)
        _sh("ip", "-n", lan, "link", "set", port, "master", lab.bridge, "up")
        _sh("ip", "-n", ns, "link", "set", ifname, "up")
    host = lab.host_netns
    _sh("ip", "-n", host, "addr", "add", lab.host_ipv4, "dev", lab.host_if)
    _sh("ip", "-n", host, "addr", "add", lab.host_ipv6, "dev", lab.host_if, "nodad")
    _sh("ip", "-n", host, "route", "add", "default", "via", lab.vip, "dev", lab.host_if)
    _sh("ip", "-n", host, "-6", "route", "add", "default", "via", lab.vip6, "dev", lab.host_if)


def _start_agent(lab: Lab, router: Router, password: str) -> subprocess.Popen[bytes]:
    rdir = Path(router.state_dir)
    rdir.mkdir(mode=0o700, parents=True, exist_ok=True)
    p = subprocess.run(
        _agent_cmd("useradd", "--state-dir", str(rdir), lab.user, "--password-stdin"),
        input=password + "\n", capture_output=True, text=True, env=_child_env(),
    )
    if p.returncode != 0:
        raise LabError(f"useradd for {router.name} failed: {p.stderr.strip()}")
    log = open(rdir / AGENT_LOG, "ab")  # noqa: SIM115 - handed to the daemon
    try:
        proc = subprocess.Popen(
            _agent_cmd("serve", "--state-dir", str(rdir), "--netns", router.netns,
                       "--listen", router.listen, "--port", str(router.port)),
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            env=_child_env(), cwd=str(rdir), start_new_session=True,
        )
    finally:
        log.close()
    tmp = rdir / (AGENT_PID + ".tmp")
    tmp.write_text(f"{proc.pid}\n")
    os.replace(tmp, rdir / AGENT_PID)  # atomic: a pid file that exists is complete
    return proc


def _listening(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.2):
            return True
    except OSError:
        return False


def _wait_listening(lab: Lab, procs: dict[str, subprocess.Popen[bytes]]) -> None:
    waiting = {r.name: r for r in lab.routers}
    deadline = time.monotonic() + START_TIMEOUT
    while waiting:
        for name, r in list(waiting.items()):
            if procs[name].poll() is not None:
                tail = _log_tail(r)
                raise LabError(f"agent {name} exited (rc {procs[name].returncode}):\n{tail}")
            if _listening(r.listen, r.port):
                del waiting[name]
        if waiting and time.monotonic() > deadline:
            names = ", ".join(waiting)
            raise LabError(f"agent(s) {names} not listening after {START_TIMEOUT:.0f} s")
        if waiting:
            time.sleep(0.05)


def _log_tail(router: Router, lines: int = 15) -> str:
    try:
        text = (Path(router.state_dir) / AGENT_LOG).read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join("    " + line for line in text.splitlines()[-lines:])


def up(state_dir: Path, prefix: str, address_base: str, port: int, out: TextIO) -> int:
    lab = plan(state_dir, prefix, address_base, port)
    existing = load(Path(lab.state_dir))
    if existing is not None:
        raise LabError(
            f"a lab is already {existing.status} in {lab.state_dir} (namespaces "
            f"{' '.join(existing.namespaces)}); see `lab status`, or run `lab down` first"
        )
    taken = [ns for ns in lab.namespaces if netns_exists(ns)]
    if taken:
        raise LabError(
            f"network namespace(s) {' '.join(taken)} already exist; remove leftovers with "
            f"`lab down --prefix {prefix}` or choose another --prefix"
        )
    busy = [f"{r.listen}:{r.port}" for r in lab.routers if _listening(r.listen, r.port)]
    if busy:
        raise LabError(f"something already listens on {', '.join(busy)}; "
                       "choose another --address-base or --port")
    sdir = Path(lab.state_dir)
    sdir.mkdir(mode=0o700, parents=True, exist_ok=True)
    _save(lab)  # from here on, `lab down` knows what to remove
    t0 = time.monotonic()
    try:
        _build_topology(lab)
        password = secrets.token_urlsafe(18)
        fd = os.open(lab.password_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(password + "\n")
        procs = {r.name: _start_agent(lab, r, password) for r in lab.routers}
        _wait_listening(lab, procs)
    except BaseException as exc:
        print(f"lab up failed: {exc}; cleaning up", file=sys.stderr)
        teardown(lab, out=sys.stderr)
        raise
    lab.status = "up"
    _save(lab)
    print(f"lab up in {time.monotonic() - t0:.1f} s (state in {lab.state_dir})", file=out)
    print_status(lab, out, ask_agents=False)
    return 0


# ---- down -------------------------------------------------------------------------------


def teardown(lab: Lab, out: TextIO) -> list[str]:
    """Stop the agents, kill what still runs in the namespaces, delete the namespaces and the
    state files. Returns what could not be removed (empty when everything is gone)."""
    problems: list[str] = []
    running = [pid for r in lab.routers for pid in agent_processes(r)]
    _signal(running, signal.SIGTERM)  # the agent stops its keepalived itself
    stuck = _wait_gone(running, STOP_TIMEOUT)
    if stuck:
        print(f"agent(s) {stuck} did not stop in {STOP_TIMEOUT:.0f} s: killed", file=out)
        _signal(stuck, signal.SIGKILL)
        stuck = _wait_gone(stuck, 5.0)
        if stuck:
            problems.append(f"agent processes {stuck} still running")
    for pid in running:  # anything left in the agents' process groups
        try:
            os.killpg(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    for ns in lab.namespaces:
        left = netns_pids(ns)
        if left:
            _signal(left, signal.SIGTERM)
            left = _wait_gone(left, 3.0)
            _signal(left, signal.SIGKILL)
            left = _wait_gone(left, 3.0)
            if left:
                problems.append(f"processes {left} still in namespace {ns}")
    for ns in reversed(lab.namespaces):
        if netns_exists(ns):
            p = _sh("ip", "netns", "del", ns, check=False)
            if p.returncode != 0 or netns_exists(ns):
                problems.append(f"namespace {ns}: {p.stderr.strip()}")
    sdir = Path(lab.state_dir)
    for r in lab.routers:
        shutil.rmtree(r.state_dir, ignore_errors=True)
    for name in (PASSWORD_FILE, LAB_FILE, LAB_FILE.replace(".json", ".tmp")):
        try:
            (sdir / name).unlink()
        except FileNotFoundError:
            pass
    try:
        sdir.rmdir()
    except OSError:
        pass  # not empty: files that are not ours stay
    return problems


def down(state_dir: Path, prefix: str | None, out: TextIO) -> int:
    lab = load(state_dir)
    if lab is None:
        # No description (never up, or removed): clean up by names, in case an earlier
        # run was interrupted before it wrote one.
        lab = plan(state_dir, prefix or DEFAULT_PREFIX, DEFAULT_ADDRESS_BASE, DEFAULT_PORT)
        if not any(netns_exists(ns) for ns in lab.namespaces) and not any(
            agent_processes(r) for r in lab.routers
        ):
            print(f"no lab in {lab.state_dir} and no namespace {lab.prefix}*: "
                  "nothing to remove", file=out)
            return 0
    elif prefix is not None and prefix != lab.prefix:
        raise LabError(f"the lab in {lab.state_dir} has prefix {lab.prefix!r}, not {prefix!r}")
    problems = teardown(lab, out)
    if problems:
        raise LabError("lab down left: " + "; ".join(problems))
    print(f"lab down: agents stopped, namespaces {' '.join(lab.namespaces)} removed", file=out)
    return 0


# ---- status -----------------------------------------------------------------------------

_VRRP_FILTER = (
    f'<interfaces xmlns="{IF_NS}"><interface><name/>'
    f'<ipv4 xmlns="{IP_NS}"><vrrp xmlns="{VRRP_NS}"/></ipv4>'
    f'<ipv6 xmlns="{IP_NS}"><vrrp xmlns="{VRRP_NS}"/></ipv6>'
    "</interface></interfaces>"
)


def _local(tag: str) -> str:
    return etree.QName(tag).localname


def vrrp_instances(data: etree._Element) -> list[dict[str, str]]:
    """Each VRRP instance in a ``<get>`` reply: interface, family, vrid, state, priority,
    virtual addresses (identity prefixes stripped)."""
    found = []
    for itf in data.iter(f"{{{IF_NS}}}interface"):
        ifname = itf.findtext(f"{{{IF_NS}}}name") or "?"
        for fam in ("ipv4", "ipv6"):
            for inst in itf.iterfind(f"{{{IP_NS}}}{fam}/{{{VRRP_NS}}}vrrp/"
                                     f"{{{VRRP_NS}}}vrrp-instance"):
                state = (inst.findtext(f"{{{VRRP_NS}}}state") or "unknown").split(":")[-1]
                vips = [e.text or "" for e in inst.iter()
                        if _local(e.tag) in ("ipv4-address", "ipv6-address")]
                found.append({
                    "interface": ifname, "family": fam,
                    "vrid": inst.findtext(f"{{{VRRP_NS}}}vrid") or "?",
                    "state": state,
                    "priority": inst.findtext(f"{{{VRRP_NS}}}priority") or "100",
                    "vips": " ".join(vips),
                })
    return found


def _addresses(ns: str, ifname: str) -> list[str]:
    p = _sh("ip", "-j", "-n", ns, "addr", "show", "dev", ifname, check=False)
    if p.returncode != 0 or not p.stdout.strip():
        return []
    return [f"{a['local']}/{a['prefixlen']}" for a in json.loads(p.stdout)[0].get("addr_info", [])
            if a.get("scope") == "global"]


def vip_holder(ns: str, vip: str) -> str | None:
    """The interface of ``ns`` that holds the address ``vip`` (kernel view), if any."""
    family = "-6" if ":" in vip else "-4"
    p = _sh("ip", "-j", "-n", ns, family, "addr", "show", check=False)
    if p.returncode != 0 or not p.stdout.strip():
        return None
    for link in json.loads(p.stdout):
        if any(a.get("local") == vip for a in link.get("addr_info", [])):
            return str(link.get("ifname"))
    return None


def router_status(lab: Lab, router: Router, ask_agent: bool = True,
                  get: Callable[..., etree._Element] | None = None) -> dict[str, Any]:
    """A router's agent (pid, listening), LAN addresses and VRRP instances."""
    pid = agent_pid(router)
    st: dict[str, Any] = {
        "router": router.name, "netns": router.netns, "address": router.listen,
        "port": router.port, "pid": pid, "agent": "down",
        "lan_addresses": _addresses(router.netns, lab.lan_if) if netns_exists(router.netns)
        else [],
        "vip_on": vip_holder(router.netns, lab.vip) if netns_exists(router.netns) else None,
        "vip6_on": vip_holder(router.netns, lab.vip6) if netns_exists(router.netns) else None,
        "vrrp": None, "vrrp_error": None,
    }
    if pid is None:
        return st
    if ask_agent:
        if get is None:
            from agent.lab_netconf import netconf_get as get
        try:
            data = get(router.listen, router.port, lab.user, lab.password(), _VRRP_FILTER)
            st["vrrp"] = vrrp_instances(data)
            st["agent"] = "up"
            return st
        except Exception as exc:  # status shows "unknown" and why
            st["vrrp_error"] = str(exc)
    if _listening(router.listen, router.port):
        st["agent"] = "up"
    return st


def _vrrp_text(st: dict[str, Any]) -> str:
    if st["agent"] != "up":
        return "unknown (agent down)"
    if st["vrrp"] is None:
        return f"unknown ({st['vrrp_error']})" if st["vrrp_error"] else "not asked"
    if not st["vrrp"]:
        return "no VRRP instance configured"
    return "; ".join(
        f"{i['interface']} {i['family']} vrid {i['vrid']}: {i['state'].upper()} "
        f"(priority {i['priority']}{', vip ' + i['vips'] if i['vips'] else ''})"
        for i in st["vrrp"]
    )


def print_status(lab: Lab, out: TextIO, ask_agents: bool = True) -> list[dict[str, Any]]:
    states = [router_status(lab, r, ask_agents) for r in lab.routers]
    print(f"namespaces: switch {lab.lan_netns} (bridge {lab.bridge}), routers "
          f"{' '.join(r.netns for r in lab.routers)}, host {lab.host_netns}", file=out)
    for st in states:
        pid = f" (pid {st['pid']})" if st["pid"] else ""
        lan = " ".join(st["lan_addresses"]) or "no address yet"
        held = [f"{v} on {st[k]}" for v, k in ((lab.vip, "vip_on"), (lab.vip6, "vip6_on"))
                if st.get(k)]
        vip = f"; holds {', '.join(held)}" if held else ""
        print(f"{st['router']}: agent {st['agent']}{pid}, NETCONF {st['address']} port "
              f"{st['port']}, netns {st['netns']}", file=out)
        print(f"    {lab.lan_if}: {lan}{vip}", file=out)
        if ask_agents:
            print(f"    VRRP: {_vrrp_text(st)}", file=out)
    print(f"host: netns {lab.host_netns}, {lab.host_if} {lab.host_ipv4} {lab.host_ipv6}, "
          f"default via {lab.vip} and {lab.vip6}", file=out)
    r = lab.routers[0]
    print(f"connect: user {lab.user}, password in {lab.password_file}", file=out)
    print(f"    ssh -p {r.port} {lab.user}@{r.listen} -s netconf", file=out)
    opt = "" if Path(lab.state_dir) == DEFAULT_STATE_DIR else f" --state-dir {lab.state_dir}"
    print(f"    python3 tools/vrrp_demo.py{opt}", file=out)
    return states


def status(state_dir: Path, out: TextIO, as_json: bool = False) -> int:
    lab = load(state_dir)
    if lab is None:
        if as_json:
            print(json.dumps({"lab": None}), file=out)
        else:
            print(f"no lab in {state_dir.resolve()} (start one with `lab up`)", file=out)
        return 1
    if as_json:
        states = [router_status(lab, r) for r in lab.routers]
        doc = {"lab": asdict(lab), "routers": states,
               "namespaces": {ns: netns_exists(ns) for ns in lab.namespaces}}
        print(json.dumps(doc, indent=2), file=out)
    else:
        print(f"lab {lab.status} (state in {lab.state_dir})", file=out)
        states = print_status(lab, out)
    return 0 if lab.status == "up" and all(s["agent"] == "up" for s in states) else 1
