"""VRRP end to end: two real agents over SSH (ncclient), each managing a router namespace.

The controller's view: configure both routers with ietf-vrrp over NETCONF, read master and
backup back with ``<get>``, subscribe to notifications, fail the master over NETCONF (its
LAN interface ``enabled`` false) and receive ``vrrp-new-master-event`` from the backup.
"""

from __future__ import annotations

import time

import pytest
from agentproc import AgentProcess
from inproc import NS
from lxml import etree
from nslab import Lab
from polling import wait
from vrrplab import iface_xml, inst

VIP = "192.0.2.254"
CFG = f'<config xmlns="{NS["nc"]}">{{}}</config>'
VRRP_NS = NS["vrrp"]
INSTANCE_FILTER = (
    f'<interfaces xmlns="{NS["if"]}"><interface><name>eth0</name>'
    f'<ipv4 xmlns="{NS["ip"]}"><vrrp xmlns="{VRRP_NS}"/></ipv4></interface></interfaces>'
)


@pytest.fixture
def routers(tmp_path):
    with Lab() as lab:
        lan = lab.netns()
        namespaces = []
        for i in (1, 2):
            ns = lab.netns()
            lab.veth(ns, "eth0", lan, f"r{i}p")
            namespaces.append(ns)
        lab.bridge(lan, "br0", ["r1p", "r2p"])
        agents = [AgentProcess(tmp_path / f"r{i}", netns=ns)
                  for i, ns in enumerate(namespaces, 1)]
        try:
            for a in agents:
                a.start()
            yield lab, namespaces, agents
        finally:
            for a in agents:
                a.stop()


def v3(xml: str) -> str:
    """ncclient moves the config into its request with lxml, which drops a prefix declared
    for a namespace already in scope as the default one (``xmlns:vrrp`` inside ``<vrrp
    xmlns=...>``), breaking the prefixed identityref in text; the unprefixed form takes the
    default namespace (RFC 7950 §9.10.3)."""
    return xml.replace(f'<version xmlns:vrrp="{VRRP_NS}">vrrp:vrrp-v3</version>',
                       "<version>vrrp-v3</version>")


def instance_state(m) -> tuple[str | None, etree._Element | None]:
    reply = m.get(filter=("subtree", INSTANCE_FILTER))
    data = etree.fromstring(reply.data_xml.encode())
    inst_el = data.find(f".//{{{VRRP_NS}}}vrrp-instance")
    if inst_el is None:
        return None, None
    state = inst_el.findtext(f"{{{VRRP_NS}}}state")  # identityref, e.g. vrrp:master
    return (state.rpartition(":")[2] if state else None), inst_el


def test_failover_seen_over_netconf(routers):
    lab, (ns1, ns2), (a1, a2) = routers
    with a1.ncclient() as m1, a2.ncclient() as m2:
        for m, i, prio in ((m1, 1, 200), (m2, 2, 100)):
            m.edit_config(target="running", config=CFG.format(v3(iface_xml(
                "eth0", [f"192.0.2.{i}/24"], [inst(1, priority=prio, vips=[VIP])]))))
        wait(lambda: instance_state(m1)[0] == "master", 10, what="r1 master")
        wait(lambda: instance_state(m2)[0] == "backup", 10, what="r2 backup")
        state, el = instance_state(m1)
        assert el.findtext(f"{{{VRRP_NS}}}is-owner") == "false"
        assert int(el.findtext(f".//{{{VRRP_NS}}}advertisement-sent")) > 0
        _, el2 = instance_state(m2)
        assert el2.findtext(f"{{{VRRP_NS}}}last-adv-source") == "192.0.2.1"
        assert int(el2.findtext(f".//{{{VRRP_NS}}}advertisement-rcvd")) > 0

        # the virtual-MAC macvlan is in the operational interfaces, on top of eth0
        vmac = etree.fromstring(m2.get(filter=(
            "subtree", f'<interfaces xmlns="{NS["if"]}"><interface><name>vr401.eth0</name>'
                       "</interface></interfaces>")).data_xml.encode())
        assert vmac.findtext(f".//{{{NS['if']}}}phys-address") == "00:00:5e:00:01:01"
        assert vmac.findtext(f".//{{{NS['if']}}}lower-layer-if") == "eth0"

        m2.create_subscription()
        t0 = time.monotonic()
        m1.edit_config(target="running", config=CFG.format(
            f'<interfaces xmlns="{NS["if"]}"><interface><name>eth0</name>'
            "<enabled>false</enabled></interface></interfaces>"))
        deadline = time.monotonic() + 5
        event = None
        while event is None and time.monotonic() < deadline:
            n = m2.take_notification(timeout=0.5)
            if n is not None:
                event = etree.fromstring(n.notification_xml.encode()).find(
                    f"{{{VRRP_NS}}}vrrp-new-master-event")
        assert event is not None, "no vrrp-new-master-event from the new master"
        took = time.monotonic() - t0
        assert event.findtext(f"{{{VRRP_NS}}}master-ip-address") == "192.0.2.2"
        assert event.findtext(f"{{{VRRP_NS}}}new-master-reason") in (
            "no-response", "priority", "preempted", "not-master")
        # 0.1 s adverts: Master_Down_Interval ≈ 0.36 s; ncclient may add up to 0.1 s
        assert took < 2.0, took
        assert instance_state(m2)[0] == "master"
        print(f"failover notification {took * 1000:.0f} ms after the edit-config")
