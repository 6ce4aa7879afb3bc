"""ietf-vrrp configuration → virtual-MAC macvlans + keepalived.conf (real kernel, real keepalived).

One router namespace on a LAN bridge; the agent is in-process except in the end-to-end test,
which drives a real agent process over SSH with ncclient.
"""

from __future__ import annotations

import time

import pytest
from inproc import NS
from lxml import etree
from nslab import Lab
from polling import wait
from vrrplab import VrrpLab, iface_xml, inst, keepalived_reloads

from agent.backends.vrrp import model, render, validate
from agent.backends.vrrp.keepalived import KeepalivedRefused
from agent.backends.vrrp.names import vmac_ifname

NC = NS["nc"]


@pytest.fixture(scope="module")
def lab(schema):
    with VrrpLab(schema, routers=1, host=False) as v:
        yield v


def errors(reply: etree._Element) -> list[tuple[str, str, str]]:
    """``(error-tag, error-path, error-message)`` of every rpc-error of a reply."""
    out = []
    for e in reply.iter(f"{{{NC}}}rpc-error"):
        out.append((e.findtext(f"{{{NC}}}error-tag"), e.findtext(f"{{{NC}}}error-path") or "",
                    e.findtext(f"{{{NC}}}error-message") or ""))
    return out


def test_model_and_render_every_leaf(lab):
    r = lab.routers[0]
    r.edit_ok(iface_xml("eth0", [r.v4], [
        inst(1, version=2, secs=3, priority=150, preempt=True, hold=7, log=True,
             vips=["192.0.2.51", "192.0.2.50"]),
        inst(2, version=3, centis=25, priority=90, preempt=False, accept=True,
             track_net=[("198.51.100.0/24", 30)], vips=["192.0.2.52"]),
        inst(3, centis=None, vips=[r.v4.split("/")[0]]),  # the interface's own address: owner
    ], v6=[r.v6], instances6=[inst(4, vips=["2001:db8::44", "fe80::44"], family=6)]),
        default_operation="replace")
    running = r.server.datastores["running"].tree
    cfg = model.read(running)
    one, two, three = (cfg.instances[("eth0", 4, v)] for v in (1, 2, 3))
    assert (one.version, one.advert_centis, one.priority, one.hold_time, one.log_state_change,
            one.preempt, one.accept_mode) == (2, 300, 150, 7, True, True, False)
    assert (two.version, two.advert_centis, two.preempt, two.accept_mode,
            two.track_networks) == (3, 25, False, True, (("198.51.100.0/24", 30),))
    assert three.is_owner and three.effective_priority == 255 and three.advert_centis == 100
    six = cfg.instances[("eth0", 6, 4)]
    assert six.vips == ("fe80::44", "2001:db8::44")  # link-local first
    text = r.ka.conf_path.read_text()
    assert text == render.render(cfg.instances, {"eth0": "192.0.2.1"}, r.ka.fifo_path,
                                 r.ka.track_dir)
    block = text[text.index("vrrp_instance VI_eth0_4_1 "):]
    block = block[:block.index("}\n") + 2]
    for line in ("interface vr401.eth0", "mcast_src_ip 192.0.2.1", "version 2", "priority 150",
                 "advert_int 3", "preempt_delay 7", "no_accept", "192.0.2.50"):
        assert line in block, (line, block)
    assert "nopreempt" in text and "advert_int 0.25" in text and "priority 255" in text
    assert "track_file {\n    TN_198_51_100_0_24 weight -30" in text
    assert f"notify_fifo {r.ka.fifo_path}" in text and str(r.state_dir) in str(r.ka.conf_path)
    wait(lambda: r.state(4, 3) == "MASTER", what="owner master")
    assert r.dump()["VI_eth0_4_3"]["data"]["effective_priority"] == 255


def test_macvlans_sysctls_and_removal(lab):
    r, ns = lab.routers[0], lab.routers[0].ns
    r.edit_ok(iface_xml("eth0", [r.v4], [inst(30, vips=["192.0.2.30"])], v6=[r.v6],
                        instances6=[inst(30, vips=["fe80::30"], family=6)]),
              default_operation="replace")
    m4, m6 = vmac_ifname("eth0", 4, 30), vmac_ifname("eth0", 6, 30)
    for name, mac, mode in ((m4, "00:00:5e:00:01:1e", "none"),
                            (m6, "00:00:5e:00:02:1e", "random")):
        link = lab.lab.link(ns, name)
        assert link is not None and link["address"] == mac
        info = link["linkinfo"]
        assert info["info_kind"] == "macvlan" and info["info_data"]["mode"] == "private"
        assert link["link"] == "eth0" and link.get("inet6_addr_gen_mode") == mode
        assert lab.lab.sysctl(ns, f"net.ipv4.conf.{name.replace('.', '/')}.arp_ignore") == "1"
    assert lab.lab.sysctl(ns, "net.ipv4.conf.eth0.arp_ignore") == "1"
    assert lab.lab.sysctl(ns, "net.ipv4.conf.eth0.arp_announce") == "2"
    assert not [a for a in lab.lab.addresses(ns, m4, "inet6")]  # no IPv6 link-local
    pid = r.ka.pid
    assert pid and r.ka.vrrp_pid and r.ka.conf_path.exists()
    assert r.ka.pid_path.read_text().strip() == str(pid)
    r.edit_ok(iface_xml("eth0", [r.v4], [inst(31, vips=["192.0.2.31"])]),
              default_operation="replace")
    assert lab.lab.link(ns, m4) is None and lab.lab.link(ns, m6) is None
    assert lab.lab.link(ns, vmac_ifname("eth0", 4, 31)) is not None
    assert r.ka.pid == pid  # reloaded, not restarted


def test_reload_only_when_the_text_changes(lab):
    r = lab.routers[0]
    cfg = iface_xml("eth0", [r.v4], [inst(32, priority=50, vips=["192.0.2.32"])])
    r.edit_ok(cfg, default_operation="replace")
    wait(lambda: r.state(4, 32) == "MASTER", what="master")
    n, mtime = keepalived_reloads(r), r.ka.conf_path.stat().st_mtime_ns
    r.edit_ok(cfg, default_operation="replace")  # same config
    r.edit_ok(f'<interfaces xmlns="{NS["if"]}"><interface><name>eth0</name>'
              "<description>uplink</description></interface></interfaces>")  # unrelated
    time.sleep(0.3)
    assert keepalived_reloads(r) == n and r.ka.conf_path.stat().st_mtime_ns == mtime
    r.edit_ok(cfg.replace("<priority>50<", "<priority>60<"), default_operation="replace")
    wait(lambda: keepalived_reloads(r) > n, what="a reload")


def test_model_read_cache_reparses_only_changed_instances():
    """The prepare-side cache: unchanged instances are reused (pointing at the new tree),
    a changed instance or a change of the interface's addresses is parsed again."""
    def tree(prio: int, addr: str) -> etree._Element:
        x = iface_xml("eth0", [addr], [inst(1, priority=prio, vips=["192.0.2.50"]),
                                       inst(2, vips=["192.0.2.60"])])
        return etree.fromstring(f'<data xmlns="{NC}">{x}</data>')

    cache: model.ReadCache = {}
    t1 = tree(100, "192.0.2.1/24")
    first = model.read(t1, cache)
    assert first.instances == model.read(t1).instances and len(cache) == 2
    t2 = tree(120, "192.0.2.1/24")
    second = model.read(t2, cache)
    one, two = second.instances[("eth0", 4, 1)], second.instances[("eth0", 4, 2)]
    assert one.priority == 120 and two == first.instances[("eth0", 4, 2)]
    assert two.elem is not None and two.elem.getroottree().getroot() is t2  # new tree
    assert second.instances == model.read(t2).instances
    # the interface now owns 192.0.2.60: instance 2 becomes the owner
    third = model.read(tree(120, "192.0.2.60/24"), cache)
    assert third.instances[("eth0", 4, 2)].is_owner
    assert not second.instances[("eth0", 4, 2)].is_owner and len(cache) == 2


def test_keepalived_t_checks_blocks_not_yet_checked(lab, monkeypatch):
    """``keepalived -t`` sees every block once under a header: an edit of one instance
    checks that block only; a new header (a tracked network) checks the whole file."""
    r = lab.routers[0]
    seen: list[str] = []
    real = r.ka.check
    monkeypatch.setattr(r.ka, "check", lambda text: (seen.append(text), real(text))[1])

    def blocks(text: str) -> list[str]:
        return [ln.split()[1] for ln in text.splitlines() if ln.startswith("vrrp_instance")]

    three = [inst(v, priority=100, vips=[f"192.0.2.{v}"]) for v in (61, 62, 63)]
    r.edit_ok(iface_xml("eth0", [r.v4], three), default_operation="replace")
    r.edit_ok(iface_xml("eth0", [r.v4], [inst(62, priority=110, vips=["192.0.2.62"])]))
    two = [three[0], inst(62, priority=110, vips=["192.0.2.62"])]
    r.edit_ok(iface_xml("eth0", [r.v4], two), default_operation="replace")  # a removal
    r.edit_ok(iface_xml("eth0", [r.v4], [inst(61, priority=100, vips=["192.0.2.61"],
                                              track_net=[("198.51.100.0/24", 20)])]))
    assert [blocks(t) for t in seen] == [
        ["VI_eth0_4_61", "VI_eth0_4_62", "VI_eth0_4_63"], ["VI_eth0_4_62"],
        ["VI_eth0_4_61", "VI_eth0_4_62"]], seen
    assert "vrrp_track_file" in seen[2] and "global_defs" in seen[1]
    assert "priority 110" in r.ka.conf_path.read_text()


def test_macvlan_deleted_behind_the_agent_is_recreated(lab):
    """convergence reads the kernel's links (``ip -j link``) each time: a macvlan removed
    by someone else comes back, with its virtual MAC, on the next change."""
    r, ns = lab.routers[0], lab.routers[0].ns
    r.edit_ok(iface_xml("eth0", [r.v4], [inst(64, vips=["192.0.2.64"]),
                                         inst(65, vips=["192.0.2.65"])]),
              default_operation="replace")
    name = vmac_ifname("eth0", 4, 64)
    lab.lab.run(ns, "ip", "link", "del", name)
    assert lab.lab.link(ns, name) is None
    r.edit_ok(iface_xml("eth0", [r.v4], [inst(65, priority=120, vips=["192.0.2.65"])]))
    link = lab.lab.link(ns, name)
    assert link is not None and link["address"] == "00:00:5e:00:01:40"
    assert "UP" in link["flags"] and link["link"] == "eth0"
    wait(lambda: r.state(4, 64) == "MASTER", what="recreated instance master")


def test_vips_removed_in_one_batch_when_keepalived_dies(lab):
    """The before-restart hook takes the virtual addresses (only those) off the macvlans."""
    r, ns = lab.routers[0], lab.routers[0].ns
    r.edit_ok(iface_xml("eth0", [r.v4], [inst(66, vips=["192.0.2.66", "192.0.2.67"])]),
              default_operation="replace")
    name = vmac_ifname("eth0", 4, 66)
    wait(lambda: sorted(lab.lab.addresses(ns, name)) == ["192.0.2.66/32", "192.0.2.67/32"],
         what="VIPs on the master")
    lab.lab.run(ns, "ip", "addr", "add", "203.0.113.9/32", "dev", name)  # not a VIP
    r.vrrp._remove_vips()
    assert lab.lab.addresses(ns, name) == ["203.0.113.9/32"]
    assert lab.lab.addresses(ns, "eth0") == [r.v4]
    lab.lab.run(ns, "ip", "addr", "del", "203.0.113.9/32", "dev", name)


REFUSALS = [
    # (instances4, instances6, error-tag, error-path tail, message part)
    ([], [inst(5, version=2, vips=["fe80::5"], family=6)], "", "vrrp-instance[vrrp:vrid='5']",
     ""),  # refused by the YANG must already
    ([inst(6, hold=1001, vips=["192.0.2.6"])], [], "invalid-value", "preempt/vrrp:hold-time",
     "1000"),
    ([], [inst(7, vips=["2001:db8::7"], family=6)], "invalid-value",
     "vrrp:virtual-ipv6-addresses", "link-local"),
    ([inst(8)], [], "data-missing", "vrrp-instance[vrrp:vrid='8']", "virtual address"),
    ([inst(9, vips=["224.0.0.9"])], [], "invalid-value", "virtual-ipv4-addresses",
     "cannot be"),
    ([inst(10, vips=["192.0.2.99"]), inst(11, vips=["192.0.2.99"])], [], "invalid-value",
     "vrrp-instance[vrrp:vrid='11']/vrrp:virtual-ipv4-addresses", "already used"),
    ([inst(12, vips=[f"192.0.2.{100 + i}" for i in range(17)])], [], "",
     "virtual-ipv4-address", ""),
    # a link-local virtual address twice on one link
    ([], [inst(13, vips=["fe80::13"], family=6), inst(14, vips=["fe80::13"], family=6)],
     "invalid-value", "vrrp-instance[vrrp:vrid='14']/vrrp:virtual-ipv6-addresses",
     "fe80::13 is already used by VRRP instance 13 on eth0"),
]


@pytest.mark.parametrize("v4,v6,tag,path,msg", REFUSALS)
def test_validation_refusals(lab, v4, v6, tag, path, msg):
    r = lab.routers[0]
    r.edit_ok(iface_xml("eth0", [r.v4], [inst(40, vips=["192.0.2.40"])]),
              default_operation="replace")
    before = etree.tostring(r.server.datastores["running"].tree)
    conf = r.ka.conf_path.read_text()
    reply = r.edit(iface_xml("eth0", [r.v4], v4, v6=[r.v6] if v6 else [], instances6=v6))
    errs = errors(reply)
    assert errs, etree.tostring(reply).decode()
    assert any((not tag or t == tag) and path in p and msg in m for t, p, m in errs), errs
    assert etree.tostring(r.server.datastores["running"].tree) == before
    assert r.ka.conf_path.read_text() == conf
    assert not [x for x in ("vr40a", "vr40b", "vr40c") if lab.lab.link(r.ns, x + ".eth0")]


OWNER = "VRRP instance {} on eth0 owns {} (an address of eth0): "
OWNER_REFUSALS = [
    # (instances4, instances6, error-path tail, message): 192.0.2.1 and 2001:db8::1 are
    # eth0's own addresses, so each instance is the owner (priority 255)
    ([inst(50, preempt=False, vips=["192.0.2.50", "192.0.2.1"])], [],
     "vrrp-instance[vrrp:vrid='50']/vrrp:preempt/vrrp:enabled",
     OWNER.format(50, "192.0.2.1") + "an owner always preempts; preempt enabled must be true"),
    ([inst(51, hold=5, vips=["192.0.2.1"])], [],
     "vrrp-instance[vrrp:vrid='51']/vrrp:preempt/vrrp:hold-time",
     OWNER.format(51, "192.0.2.1") + "an owner always preempts at once; preempt hold-time "
     "must be 0"),
    ([inst(52, track_if=[("eth1", 10)], vips=["192.0.2.1"])], [],
     "vrrp-instance[vrrp:vrid='52']/vrrp:track/vrrp:interfaces",
     OWNER.format(52, "192.0.2.1") + "an owner's priority is always 255, tracking cannot "
     "lower it; remove the tracked interfaces (eth1)"),
    ([inst(53, track_net=[("198.51.100.0/24", 10)], vips=["192.0.2.1"])], [],
     "vrrp-instance[vrrp:vrid='53']/vrrp:track/vrrp:networks",
     OWNER.format(53, "192.0.2.1") + "an owner's priority is always 255, tracking cannot "
     "lower it; remove the tracked networks (198.51.100.0/24)"),
    ([], [inst(54, hold=3, vips=["fe80::54", "2001:db8::1"], family=6)],
     "vrrp-instance[vrrp:vrid='54']/vrrp:preempt/vrrp:hold-time",
     OWNER.format(54, "2001:db8::1") + "an owner always preempts at once"),
]


def two_ifaces(a: str, b: str) -> str:
    """Two ``iface_xml`` interfaces under one ``interfaces`` element."""
    return a[:a.rindex("</interfaces>")] + b[b.index("<interface>"):]


def owner_cfg(r, v4: list[str], v6: list[str]) -> dict:
    """The model of eth0 (r's addresses) holding ``v4`` / ``v6`` instances."""
    x = iface_xml("eth0", [r.v4], v4, v6=[r.v6], instances6=v6)
    return model.read(etree.fromstring(f'<data xmlns="{NC}">{x}</data>')).instances


@pytest.mark.parametrize("v4,v6,path,msg", OWNER_REFUSALS)
def test_owner_refusals(lab, v4, v6, path, msg):
    """What keepalived -t refuses of an owner is refused by validation, in plain words,
    at the offending leaf (nothing applied)."""
    r = lab.routers[0]
    r.edit_ok(iface_xml("eth0", [r.v4], [inst(40, vips=["192.0.2.40"])]),
              default_operation="replace")
    before = etree.tostring(r.server.datastores["running"].tree)
    conf = r.ka.conf_path.read_text()
    reply = r.edit(two_ifaces(iface_xml("eth0", [r.v4], v4, v6=[r.v6], instances6=v6),
                              iface_xml("eth1")))  # eth1: a trackable interface
    got = [(e.findtext(f"{{{NC}}}error-type"), t, p, m)
           for e, (t, p, m) in zip(reply.iter(f"{{{NC}}}rpc-error"), errors(reply),
                                   strict=True)]
    assert [(ty, t) for ty, t, _, _ in got] == [("application", "invalid-value")], got
    assert got[0][2].endswith(path) and msg in got[0][3], got
    assert "keepalived" not in got[0][3]
    assert etree.tostring(r.server.datastores["running"].tree) == before
    assert r.ka.conf_path.read_text() == conf
    # keepalived -t refuses the same instance (what validation spares it)
    text = render.render(owner_cfg(r, v4, v6), {"eth0": "192.0.2.1"}, r.ka.fifo_path,
                         r.ka.track_dir)
    with pytest.raises(KeepalivedRefused):
        r.ka.check(text)


def test_owner_accepted_and_address_change_making_an_owner(lab):
    """A plain owner (preempt, no hold-time, no tracking) is accepted by validation and by
    keepalived -t; a new interface address making an instance with a hold-time an owner
    is refused at that hold-time."""
    r = lab.routers[0]
    owner = [inst(55, hold=0, vips=["192.0.2.1"]), inst(56, hold=4, vips=["192.0.2.56"])]
    assert validate.check(model.read(etree.fromstring(
        f'<data xmlns="{NC}">{iface_xml("eth0", [r.v4], owner)}</data>')),
        {"eth0": "192.0.2.1"}, lambda e: ("", {})) == []
    r.edit_ok(iface_xml("eth0", [r.v4], owner), default_operation="replace")
    wait(lambda: r.state(4, 55) == "MASTER", what="owner master")
    before = etree.tostring(r.server.datastores["running"].tree)
    reply = r.edit(iface_xml("eth0", [r.v4, "192.0.2.56/24"]))
    errs = errors(reply)
    assert len(errs) == 1 and errs[0][0] == "invalid-value", errs
    assert errs[0][1].endswith("vrrp-instance[vrrp:vrid='56']/vrrp:preempt/vrrp:hold-time")
    assert errs[0][2].startswith(OWNER.format(56, "192.0.2.56")), errs
    assert etree.tostring(r.server.datastores["running"].tree) == before
    assert lab.lab.addresses(r.ns, "eth0") == [r.v4]


def test_link_local_vip_per_link(lab):
    """fe80::1 on two interfaces is two addresses (accepted, keepalived -t too); a global
    virtual address on two interfaces is refused."""
    r = lab.routers[0]
    ll = two_ifaces(iface_xml("eth0", [r.v4], v6=[r.v6], instances6=[
        inst(1, vips=["fe80::1", "2001:db8::61"], family=6)]), iface_xml(
        "eth1", instances6=[inst(1, vips=["fe80::1"], family=6)]))
    try:
        r.edit_ok(ll, default_operation="replace")
        text = r.ka.conf_path.read_text()
        assert "VI_eth0_6_1" in text and "VI_eth1_6_1" in text
        assert lab.lab.link(r.ns, vmac_ifname("eth1", 6, 1)) is not None
        r.ka.check(text)  # keepalived -t accepts both
        dup = iface_xml("eth1", instances6=[
            inst(1, vips=["fe80::1", "2001:db8::61"], family=6)])
        errs = errors(r.edit(dup))
        assert [(t, m) for t, _, m in errs] == [
            ("invalid-value", "VRRP instance 1 (IPv6) on eth1: virtual address 2001:db8::61 "
             "is already used by VRRP instance 1 on eth0")], errs
        assert errs[0][1].endswith("vrrp:virtual-ipv6-addresses")
    finally:
        r.edit_ok(iface_xml("eth0", [r.v4], [inst(40, vips=["192.0.2.40"])]),
                  default_operation="replace")


def test_keepalived_t_guards_the_rendered_file(lab, monkeypatch):
    """With validation switched off, ``keepalived -t`` still refuses (nothing applied)."""
    r = lab.routers[0]
    r.edit_ok(iface_xml("eth0", [r.v4], [inst(41, vips=["192.0.2.41"])]),
              default_operation="replace")
    conf = r.ka.conf_path.read_text()
    monkeypatch.setattr("agent.backends.vrrp.backend.check", lambda *a: [])
    reply = r.edit(iface_xml("eth0", [r.v4], [inst(42, hold=2000, vips=["192.0.2.42"])]))
    errs = errors(reply)
    assert errs and errs[0][0] == "operation-failed" and "keepalived" in errs[0][2], errs
    assert "Preempt_delay" in errs[0][2] or "1000" in errs[0][2], errs
    assert r.ka.conf_path.read_text() == conf
    assert lab.lab.link(r.ns, vmac_ifname("eth0", 4, 42)) is None
    assert validate.PREEMPT_DELAY_MAX == 1000


def test_end_to_end_agent_process_over_ssh(tmp_path):
    """A real agent (``serve --netns``) configured with ncclient: macvlan, keepalived master,
    and keepalived stopped with the agent."""
    from agentproc import AgentProcess

    with Lab(prefix="te") as lab:
        lan, ns = lab.netns(), lab.netns()
        lab.veth(ns, "eth0", lan, "p0")
        lab.bridge(lan, "br0", ["p0"])
        lab.run(ns, "ip", "addr", "add", "192.0.2.1/24", "dev", "eth0")
        a = AgentProcess(tmp_path, netns=ns)
        a.start()
        try:
            with a.ncclient() as m:
                cfg = iface_xml("eth0", ["192.0.2.1/24"],
                                [inst(77, priority=120, vips=["192.0.2.77"])])
                # ncclient drops a namespace declaration used only in a value: no prefix
                cfg = cfg.replace(f' xmlns:vrrp="{NS["vrrp"]}">vrrp:', ">")
                m.edit_config(target="running", config=f'<config xmlns="{NC}">{cfg}</config>')
            name = vmac_ifname("eth0", 4, 77)
            wait(lambda: lab.addresses(ns, name) == ["192.0.2.77/32"], what="VIP on macvlan")
            pidfile = tmp_path / "keepalived" / "keepalived.pid"
            pid = int(pidfile.read_text())
            assert (tmp_path / "keepalived" / "keepalived.conf").exists()
        finally:
            a.stop()
        wait(lambda: not __import__("os").path.exists(f"/proc/{pid}"), what="keepalived gone")
        assert lab.addresses(ns, name) == []  # keepalived removed its VIP on stop
