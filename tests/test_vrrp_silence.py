"""The VRRP backup never sends a frame with the virtual MAC (issue 4).

A frame sourced from 00:00:5e:00:0X:VRID leaving the backup makes the LAN switch learn the
virtual MAC on the backup's port and divert the master's traffic there. Two routers on a
bridge (in-process agents, real keepalived); a packet socket on each router's bridge port
(in the LAN namespace) records every frame the router sends; the frames whose source is a
virtual MAC are counted per router while the macvlans are created and brought up, after
the election, and after a failover back and forth (the old master must go silent too).
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterable

import pytest
from polling import wait
from vrrplab import VrrpLab, iface_xml, inst, neigh_mac, ping

from agent.backends.vrrp import egress
from agent.backends.vrrp.names import vmac_address, vmac_ifname
from agent.backends.vrrp.validate import MAX_VIPS

V4, V6 = 10, 13
VIP4 = "192.0.2.254"
VIP6 = ["fe80::13:1", "2001:db8::254"]
VMAC4, VMAC6 = vmac_address(4, V4), vmac_address(6, V6)
VMACS = {VMAC4, VMAC6}

# Runs in the LAN namespace: one packet socket per bridge port, frames the router SENT only
# (PACKET_OUTGOING are the bridge's own transmissions towards the router). Prints one JSON
# line per frame until SIGTERM.
_SNIFF = r'''
import json, select, signal, socket, struct, sys, time
ports = sys.argv[1:]
socks = {}
for p in ports:
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
    s.bind((p, 0))
    socks[s.fileno()] = (p, s)
stop = []
signal.signal(signal.SIGTERM, lambda *a: stop.append(1))
def mac(b): return ":".join(f"{x:02x}" for x in b)
def what(et, d):
    if et == 0x0806:
        return f"arp op {struct.unpack('!H', d[6:8])[0]} sip {socket.inet_ntoa(d[14:18])}"
    if et == 0x0800:
        src, dst = socket.inet_ntoa(d[12:16]), socket.inet_ntoa(d[16:20])
        return f"ipv4 proto {d[9]} src {src} dst {dst}"
    if et == 0x86dd:
        nh, off = d[6], 40
        while nh in (0, 43, 60) and len(d) > off + 1:
            nh, off = d[off], off + (d[off + 1] + 1) * 8
        t = f" type {d[off]}" if nh == 58 and len(d) > off else ""
        src = socket.inet_ntop(socket.AF_INET6, d[8:24])
        dst = socket.inet_ntop(socket.AF_INET6, d[24:40])
        return f"ipv6 nh {nh}{t} src {src} dst {dst}"
    return f"ethertype {et:#06x}"
print("ready", flush=True)
while not stop:
    try:
        r, _, _ = select.select(list(socks), [], [], 0.2)
    except InterruptedError:
        continue
    for fd in r:
        port, s = socks[fd]
        data, addr = s.recvfrom(65535)
        if addr[2] == socket.PACKET_OUTGOING:
            continue
        et = struct.unpack("!H", data[12:14])[0]
        print(json.dumps({"t": time.time(), "port": port, "src": mac(data[6:12]),
                          "what": what(et, data[14:])}), flush=True)
'''


class Sniffer:
    """Frames sent by the routers into the bridge ports ``ports`` of namespace ``ns``."""

    def __init__(self, ns: str, ports: Iterable[str]) -> None:
        self.proc = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-c", _SNIFF,
                                      *ports], stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        assert self.proc.stdout.readline().strip() == "ready"
        self.frames: list[dict] = []

    def stop(self) -> list[dict]:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        out, _ = self.proc.communicate(timeout=10)
        self.frames = [json.loads(ln) for ln in out.splitlines() if ln.startswith("{")]
        return self.frames

    def __enter__(self) -> Sniffer:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def port(router) -> str:  # noqa: ANN001 - vrrplab.Router
    return f"r{router.index}l0"


def vmac_frames(frames: list[dict], router, since: float = 0.0) -> list[dict]:  # noqa: ANN001
    """Frames from ``router``'s port with a virtual MAC as source, at or after ``since``."""
    return [f for f in frames
            if f["port"] == port(router) and f["src"] in VMACS and f["t"] >= since]


def not_vrrp(frames: list[dict]) -> list[dict]:
    return [f for f in frames if " proto 112 " not in f["what"] and " nh 112 " not in f["what"]]


def not_master(frames: list[dict]) -> list[dict]:
    """Frames no master sends: neither adverts nor from (ARP: for) a virtual address."""
    vips = [VIP4, *VIP6]
    return [f for f in not_vrrp(frames)
            if not any(f["what"].split(" dst ")[0].endswith(f" {a}") for a in vips)]


def configure(r, prio4: int, prio6: int) -> None:  # noqa: ANN001
    r.edit_ok(iface_xml("eth0", [r.v4], [inst(V4, priority=prio4, accept=True, vips=[VIP4])],
                        v6=[r.v6], instances6=[inst(V6, priority=prio6, accept=True,
                                                    vips=VIP6, family=6)]),
              default_operation="replace")


def states(lab, family: int, vrid: int) -> tuple[str | None, ...]:  # noqa: ANN001
    return tuple(r.state(family, vrid) for r in lab.routers)


def both(lab, want: tuple[str, str]) -> bool:  # noqa: ANN001
    return states(lab, 4, V4) == want and states(lab, 6, V6) == want


@pytest.fixture(scope="module")
def lab(schema):
    with VrrpLab(schema, routers=2, host=True) as v:
        yield v


def test_backup_never_sends_with_the_virtual_mac(lab):
    r1, r2 = lab.routers
    with Sniffer(lab.lan, [port(r1), port(r2)]) as sn:
        configure(r1, 200, 200)
        wait(lambda: both(lab, ("MASTER", None)), what="r1 master alone")
        t_r2 = time.time()
        configure(r2, 100, 100)  # r2's macvlans are created and brought up now
        wait(lambda: both(lab, ("MASTER", "BACKUP")), what="r1 master, r2 backup")
        # MLD reports repeat within 1-2 s, router solicitations after 4 s
        time.sleep(4.5)
        frames = sn.stop()
    leaked = vmac_frames(frames, r2, t_r2)
    assert leaked == [], leaked
    m6 = vmac_ifname("eth0", 6, V6).replace(".", "/")
    for key in ("accept_ra", "router_solicitations"):  # no SLAAC, no RS on the macvlan
        assert lab.lab.sysctl(r2.ns, f"net.ipv6.conf.{m6}.{key}") == "0"
    # what a master must send still leaves with the virtual MAC: adverts of both families,
    # gratuitous ARP and unsolicited neighbor advertisements for the VIPs
    mine = vmac_frames(frames, r1)
    assert {f["src"] for f in mine if f not in not_vrrp(mine)} == VMACS
    whats = {f["what"].split(" dst ")[0] for f in not_vrrp(mine)}
    assert f"arp op 1 sip {VIP4}" in whats, whats
    assert "ipv6 nh 58 type 136 src 2001:db8::254" in whats, whats
    assert not [w for w in whats if "type 143" in w or "type 133" in w or "proto 2 " in w]
    # the LAN still reaches the VIPs through the master's virtual MAC
    assert ping(lab.lab, lab.host, VIP4) and ping(lab.lab, lab.host, "2001:db8::254")
    assert neigh_mac(lab.lab, lab.host, "2001:db8::254") == VMAC6
    assert neigh_mac(lab.lab, lab.host, VIP4) == VMAC4
    # the bridge learned each virtual MAC on the master's port only
    fdb = lab.lab.run(lab.lan, "bridge", "-j", "fdb", "show", "br", "br0").stdout
    learned = {(e["mac"], e["ifname"]) for e in json.loads(fdb) if e["mac"] in VMACS}
    assert learned == {(VMAC4, port(r1)), (VMAC6, port(r1))}, learned
    # no macvlan reports its groups, yet an MLD-snooping switch (the bridge) learns on both
    # routers' ports the groups VRRP needs: the parents join them with their own MAC
    need = {"ff02::12", "ff02::1:ff13:1", "ff02::1:ff00:254"}  # adverts, the VIPs' nodes
    mdb = lab.lab.run(lab.lan, "bridge", "-j", "mdb", "show", "dev", "br0").stdout
    groups = {(e["port"], e["grp"]) for d in json.loads(mdb) for e in d.get("mdb", [])}
    for r in (r1, r2):
        assert {(port(r), g) for g in need} <= groups, groups


def test_old_master_goes_silent_after_failover_and_back(lab):
    r1, r2 = lab.routers
    configure(r1, 200, 200)
    configure(r2, 100, 100)
    wait(lambda: both(lab, ("MASTER", "BACKUP")), what="r1 master")
    with Sniffer(lab.lan, [port(r1), port(r2)]) as sn:
        t0 = time.time()
        configure(r2, 250, 250)  # r2 preempts: r1 becomes backup
        wait(lambda: both(lab, ("BACKUP", "MASTER")), what="r2 master")
        t1 = time.time()
        time.sleep(2.5)
        t2 = time.time()
        configure(r2, 100, 100)  # and back: r2 becomes backup again
        wait(lambda: both(lab, ("MASTER", "BACKUP")), what="r1 master again")
        t3 = time.time()
        time.sleep(2.5)
        frames = sn.stop()
    first = [f for f in frames if f["t"] < t2]
    # from the handover on, the old master sends what a master sends (adverts, a periodic
    # gratuitous ARP) at most until it sees the new master, and nothing else with the
    # virtual MAC: no MLD leave report when its VIPs go ...
    assert not_master(vmac_frames(first, r1, t0)) == []
    assert vmac_frames(first, r1, t1) == []  # ... and nothing at all once it is backup
    assert not_master(vmac_frames(frames, r2, t2)) == []
    assert vmac_frames(frames, r2, t3) == []
    # the new masters did announce themselves with the virtual MAC
    assert not_vrrp(vmac_frames(first, r2, t0)) and not_vrrp(vmac_frames(frames, r1, t2))


def test_vip_change_updates_the_filter(lab):
    """A new VIP is let out at once (the master answers ARP for it with the virtual MAC);
    the old one is not any more."""
    r1, r2 = lab.routers
    new = "192.0.2.253"
    for r, prio in ((r1, 200), (r2, 100)):
        r.edit_ok(iface_xml("eth0", [r.v4], [inst(V4, priority=prio, accept=True, vips=[new])]),
                  default_operation="replace")
    wait(lambda: states(lab, 4, V4) == ("MASTER", "BACKUP"), what="r1 master")
    wait(lambda: r1.vips(4, V4) == [new], what="new VIP on r1")
    assert ping(lab.lab, lab.host, new) and neigh_mac(lab.lab, lab.host, new) == VMAC4
    text = lab.lab.run(r1.ns, "tc", "filter", "show", "dev", vmac_ifname("eth0", 4, V4),
                       "egress").stdout
    assert egress.bytecode(egress.program([new])) in text
    assert egress.bytecode(egress.program([VIP4])) not in text


def test_filter_programs_fit_every_vip_count():
    """Classic BPF jumps are 8-bit: the largest VIP lists still assemble."""
    v4 = [f"192.0.2.{i}" for i in range(1, MAX_VIPS[4] + 1)]
    v6 = ["fe80::1", "2001:db8::1"][: MAX_VIPS[6]]
    for vips in (v4, v6, []):
        prog = egress.program(vips)
        assert prog[-1] == (0x06, 0, 0, egress.TC_ACT_OK)
        assert all(0 <= jt <= 255 and 0 <= jf <= 255 for _, jt, jf, _ in prog)
