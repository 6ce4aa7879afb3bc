"""VRRP address owners, keepalived left behind by a killed agent, commit-time events.

Real keepalived in namespaces (tests/vrrplab.py): r1 (192.0.2.1) owns the VIP 192.0.2.1,
r2 (192.0.2.2) backs it up with priority 100, the host (192.0.2.100) uses it.
"""

from __future__ import annotations

import logging
import os
import signal
import time

import pytest
from agentproc import AgentProcess
from lxml import etree
from nslab import Lab
from polling import wait
from vrrplab import (
    ArpCapture,
    NdCapture,
    VrrpLab,
    iface_xml,
    inst,
    keepalived_pids,
    neigh_mac,
    ping,
    send_arp,
    send_na,
    vrrp_state,
)

from agent.backends.vrrp.names import vmac_address, vmac_ifname

OWNED = "192.0.2.1"  # r1's own address
HOST = "192.0.2.100"
OWNED6, HOST6 = "2001:db8::1", "2001:db8::100"
NC = "urn:ietf:params:xml:ns:netconf:base:1.0"


@pytest.fixture(scope="module")
def lab(schema):
    with VrrpLab(schema, routers=2, host=True) as v:
        yield v


def owner_pair(lab, vrid: int) -> None:
    """r1 owns 192.0.2.1 in ``vrid``, r2 backs it up; settled."""
    r1, r2 = lab.routers
    r1.edit_ok(iface_xml("eth0", [r1.v4], [inst(vrid, vips=[OWNED])]),
               default_operation="replace")
    r2.edit_ok(iface_xml("eth0", [r2.v4], [inst(vrid, priority=100, vips=[OWNED])]),
               default_operation="replace")
    wait(lambda: (r1.state(4, vrid), r2.state(4, vrid)) == ("MASTER", "BACKUP"),
         what="r1 (owner) master, r2 backup")


def test_owner_takes_over_again_when_its_link_comes_back(lab):
    """r2 holds the owner's address while r1 is away; r1's adverts (source 192.0.2.1, an
    address of r2's macvlan then) must still reach r2's keepalived: no lasting split brain."""
    r1, r2 = lab.routers
    owner_pair(lab, 40)
    lab.lab.run(lab.lan, "ip", "link", "set", "r1l0", "down")
    try:
        wait(lambda: r2.state(4, 40) == "MASTER", timeout=3, what="r2 takes over")
        assert r2.vips(4, 40) == [OWNED]
    finally:
        lab.lab.run(lab.lan, "ip", "link", "set", "r1l0", "up")
    wait(lambda: (r1.state(4, 40), r2.state(4, 40)) == ("MASTER", "BACKUP"), timeout=4,
         what="r1 master again, r2 backup (not both master)")
    time.sleep(0.5)
    assert (r1.state(4, 40), r2.state(4, 40)) == ("MASTER", "BACKUP")
    assert r1.vips(4, 40) == [OWNED] and r2.vips(4, 40) == []


def owner_arp(frames: list[dict], mac: str) -> list[dict]:
    """ARP frames received with the owned VIP as sender and ``mac`` as its hardware address."""
    return [f for f in frames if not f["outgoing"] and f["spa"] == OWNED and f["sha"] == mac]


def test_owner_answers_arp_only_with_the_virtual_mac(lab):
    r1, r2 = lab.routers
    host, net = lab.host, lab.lab
    vmac = vmac_address(4, 41)
    owner_pair(lab, 41)
    phys = net.link(r1.ns, "eth0")["address"]
    # the host asks for the owner's VIP: one answer only, with the virtual MAC
    net.run(host, "ip", "neigh", "flush", "dev", "eth0")
    with ArpCapture(net, host, "eth0") as cap:
        assert ping(net, host, OWNED)
    assert neigh_mac(net, host, OWNED) == vmac
    assert not owner_arp(cap.frames, phys), cap.frames
    assert [f for f in owner_arp(cap.frames, vmac) if f["op"] == 2], cap.frames
    # the owner resolves a neighbour itself: it still can, and teaches nobody its MAC
    net.run(r1.ns, "ip", "neigh", "flush", "dev", "eth0")
    with ArpCapture(net, host, "eth0") as cap:
        assert ping(net, r1.ns, HOST)
    asks = [f for f in cap.frames if f["src"] == phys and f["op"] == 1 and f["tpa"] == HOST]
    assert asks and all(f["spa"] == "0.0.0.0" for f in asks), cap.frames
    assert not owner_arp(cap.frames, phys), cap.frames
    assert neigh_mac(net, host, OWNED) == vmac
    # gratuitous ARP and replies the parent itself sends carry the virtual MAC
    with ArpCapture(net, host, "eth0") as cap:
        send_arp(net, r1.ns, "eth0", op=1, sha=phys, spa=OWNED, tpa=OWNED)
        send_arp(net, r1.ns, "eth0", op=2, sha=phys, spa=OWNED, tpa=HOST)
    assert not owner_arp(cap.frames, phys), cap.frames
    assert sorted(f["op"] for f in owner_arp(cap.frames, vmac) if f["src"] == phys) == [1, 2]
    # no owner instance any more: the filter goes, the parent answers for itself again
    # (r2 first: it would become master of 192.0.2.1 and answer too)
    r2.edit_ok(iface_xml("eth0", [r2.v4]), default_operation="replace")
    r1.edit_ok(iface_xml("eth0", [r1.v4]), default_operation="replace")
    shown = net.run(r1.ns, "tc", "filter", "show", "dev", "eth0", "egress").stdout
    assert "bpf" not in shown, shown
    net.run(host, "ip", "neigh", "flush", "dev", "eth0")
    assert ping(net, host, OWNED)
    assert neigh_mac(net, host, OWNED) == phys


def owner_nd(frames: list[dict], mac: str) -> list[dict]:
    """Received neighbor discovery telling ``mac`` for the owned IPv6 VIP: advertisements
    for it, solicitations from it."""
    return [f for f in frames if not f["outgoing"] and f["lladdr"] == mac
            and (f["target"] if f["type"] == 136 else f["ipsrc"]) == OWNED6]


def test_ipv6_owner_advertises_only_the_virtual_mac(lab):
    """RFC 5798 §8.1.2 for IPv6: the owner's parent answers neighbor solicitations for its
    own VIP with the virtual MAC (TLLA rewritten, checksum fixed), and its own neighbor
    resolution from that address teaches nobody its physical MAC."""
    r1, r2 = lab.routers
    host, net = lab.host, lab.lab
    vmac = vmac_address(6, 42)
    vips = ["fe80::42", OWNED6]
    r1.edit_ok(iface_xml("eth0", [r1.v4], v6=[r1.v6], instances6=[inst(42, vips=vips, family=6)]),
               default_operation="replace")
    r2.edit_ok(iface_xml("eth0", [r2.v4], v6=[r2.v6],
                         instances6=[inst(42, priority=100, vips=vips, family=6)]),
               default_operation="replace")
    wait(lambda: (r1.state(6, 42), r2.state(6, 42)) == ("MASTER", "BACKUP"),
         what="r1 (IPv6 owner) master, r2 backup")
    phys = net.link(r1.ns, "eth0")["address"]
    # the host asks for the owner's VIP: every answer carries the virtual MAC
    net.run(host, "ip", "-6", "neigh", "flush", "dev", "eth0")
    with NdCapture(net, host, "eth0") as cap:
        assert ping(net, host, OWNED6)
    assert all(f["csum_ok"] for f in cap.frames), cap.frames
    assert not owner_nd(cap.frames, phys), cap.frames
    assert [f for f in owner_nd(cap.frames, vmac) if f["src"] == phys], cap.frames
    assert neigh_mac(net, host, OWNED6) == vmac
    # the owner resolves a neighbour itself: it still can (its solicitations come from its
    # link-local instead; the first answer to a fresh namespace's link-local is lost here,
    # with or without the filter: the retransmission a second later gets through), and
    # teaches nobody its MAC
    net.run(r1.ns, "ip", "-6", "neigh", "flush", "dev", "eth0")
    with NdCapture(net, host, "eth0") as cap:
        assert ping(net, r1.ns, HOST6, timeout=3)
    asks = [f for f in cap.frames if f["src"] == phys and f["type"] == 135
            and f["target"] == HOST6]
    assert asks and all(f["ipsrc"].startswith("fe80:") for f in asks), cap.frames
    assert all(f["csum_ok"] for f in cap.frames), cap.frames
    assert not owner_nd(cap.frames, phys), cap.frames
    assert neigh_mac(net, host, OWNED6) == vmac
    # an unsolicited advertisement the parent itself sends carries the virtual MAC
    with NdCapture(net, host, "eth0") as cap:
        send_na(net, r1.ns, "eth0", OWNED6, phys)
    assert not owner_nd(cap.frames, phys), cap.frames
    assert [f for f in owner_nd(cap.frames, vmac) if f["src"] == phys and f["csum_ok"]
            and f["type"] == 136], cap.frames
    assert neigh_mac(net, host, OWNED6) == vmac
    # no owner instance any more: the filter goes, the parent answers for itself again
    r2.edit_ok(iface_xml("eth0", [r2.v4], v6=[r2.v6]), default_operation="replace")
    r1.edit_ok(iface_xml("eth0", [r1.v4], v6=[r1.v6]), default_operation="replace")
    shown = net.run(r1.ns, "tc", "filter", "show", "dev", "eth0", "egress").stdout
    assert "bpf" not in shown, shown
    net.run(host, "ip", "-6", "neigh", "flush", "dev", "eth0")
    assert ping(net, host, OWNED6)
    assert neigh_mac(net, host, OWNED6) == phys


def test_fresh_owner_reports_priority_as_new_master_reason(schema, caplog):
    """keepalived reports the owner's transition while the commit runs (running still the
    old configuration): it is judged by the configuration being committed."""
    with VrrpLab(schema, routers=1, host=False) as v:
        r = v.routers[0]
        svc = vrrp_state(r)
        key = ("eth0", 4, 60)

        def seen() -> bool:
            h = svc.events.histories.get(key)
            return h is not None and h.state == "master"

        class HoldCommit:
            """Keeps the commit open until the transition has been handled."""

            name = "hold"

            def prepare(self, old, new):  # noqa: ANN001, ANN201
                return self

            def apply(self):  # noqa: ANN201
                deadline = time.monotonic() + 5
                while not seen() and time.monotonic() < deadline:
                    time.sleep(0.01)
                return lambda: None

        subs = r.server.datastores.subscribers
        subs.append(HoldCommit())
        try:
            with caplog.at_level(logging.INFO, logger="agent.backends.vrrp.events"):
                r.edit_ok(iface_xml("eth0", [r.v4], [inst(60, vips=[OWNED], log=True)]),
                          default_operation="replace")
        finally:
            subs.pop()
        assert seen(), svc.events.histories
        h = svc.events.histories[key]
        assert (h.new_master_reason, h.last_event) == ("priority", "vrrp-event-startup"), h
        lines = [rec.getMessage() for rec in caplog.records if rec.levelno == logging.INFO]
        assert any("eth0 ipv4 vrid 60" in m and "-> master" in m for m in lines), lines


def rpc_ok(agent: AgentProcess, xml: str) -> None:
    with agent.raw() as c:
        reply = c.rpc(xml)
    assert reply.find(f"{{{NC}}}ok") is not None, etree.tostring(reply).decode()


def test_agent_killed_keeps_no_second_keepalived(tmp_path):
    """kill -9 of the agent leaves its keepalived running (own session); the restarted
    agent stops it before starting its own, and a clean stop leaves nothing behind."""
    vip, vrid = "192.0.2.50", 50
    conf = tmp_path / "keepalived" / "keepalived.conf"  # the agent's keepalived's file
    with Lab(prefix="tvo") as lab:
        ns = lab.netns()
        lab.veth(ns, "eth0")
        agent = AgentProcess(tmp_path, netns=ns)
        macvlan = vmac_ifname("eth0", 4, vrid)
        try:
            agent.start()
            cfg = iface_xml("eth0", ["192.0.2.1/24"], [inst(vrid, vips=[vip])])
            rpc_ok(agent, f"<edit-config><target><running/></target><config>{cfg}</config>"
                          "</edit-config>")
            rpc_ok(agent, "<copy-config><target><startup/></target><source><running/>"
                          "</source></copy-config>")
            wait(lambda: lab.addresses(ns, macvlan) == [f"{vip}/32"], what="VIP on macvlan")
            first = keepalived_pids(conf)
            assert len(first) == 2, first  # keepalived and its VRRP child
            agent.kill9()
            assert keepalived_pids(conf) == first  # still there, VIP and all
            agent.start()  # applies startup: starts keepalived again
            wait(lambda: len(now := keepalived_pids(conf)) == 2 and not now & first,
                 timeout=15, what="only the new keepalived pair")
            time.sleep(0.5)
            assert len(keepalived_pids(conf)) == 2
            wait(lambda: lab.addresses(ns, macvlan) == [f"{vip}/32"], what="VIP back")
            agent.stop()
            wait(lambda: not keepalived_pids(conf), timeout=15, what="no keepalived after stop")
            assert lab.addresses(ns, macvlan) == []
        finally:
            agent.stop()
            for pid in keepalived_pids(conf):  # never leave one behind, even failing
                os.kill(pid, signal.SIGKILL)
