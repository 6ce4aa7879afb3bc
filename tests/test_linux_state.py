"""Kernel → operational state (RFC 8343 / RFC 8344) in real network namespaces.

Topology (one module-scoped lab): namespace ``r`` is the managed one, ``p`` its peer.

    r: eth0 ── veth ── p: eth0p        192.0.2.1/24, 2001:db8::1/64 ↔ .2 / ::2
       mv0 (macvlan on eth0, private)
       br0 (bridge) ⊃ eth1 ── veth ── p: eth1p

Most tests talk to an in-process NetconfServer with the state providers attached;
``test_agent_over_ssh`` runs the real agent (``serve --netns``) and uses ncclient.
"""

from __future__ import annotations

import json
import socket
import time
from datetime import datetime

import pytest
from lxml import etree
from nslab import Lab, sh
from polling import wait as wait_for

from agent.app import BackendContext
from agent.backends.linux import state as linux_state
from agent.backends.linux.oper_netlink import in_netns
from agent.datastore.tree import schema_of
from agent.server import NetconfServer

NC = "urn:ietf:params:xml:ns:netconf:base:1.0"
IF = "urn:ietf:params:xml:ns:yang:ietf-interfaces"
IP = "urn:ietf:params:xml:ns:yang:ietf-ip"
IANAIFT = "urn:ietf:params:xml:ns:yang:iana-if-type"
MV = "urn:netconf-vrrp-agent:yang:macvlan"
NMDA = "urn:ietf:params:xml:ns:yang:ietf-netconf-nmda"
DS = "urn:ietf:params:xml:ns:yang:ietf-datastores"
OR = "urn:ietf:params:xml:ns:yang:ietf-origin"
ORIGIN = f"{{{OR}}}origin"
NS = {"if": IF, "ip": IP, "nc": NC, "mv": MV, "nmda": NMDA}


# ---- lab and server ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def lab():
    with Lab(prefix="ls") as lab:
        r, p = lab.netns(), lab.netns()
        lab.veth(r, "eth0", p, "eth0p")
        lab.veth(r, "eth1", p, "eth1p")
        lab.bridge(r, "br0", ["eth1"])
        sh("ip", "-n", r, "link", "add", "mv0", "link", "eth0", "type", "macvlan",
           "mode", "private")
        sh("ip", "-n", r, "link", "set", "mv0", "up")
        for ns, ip4, ip6, dev in ((r, "192.0.2.1/24", "2001:db8::1/64", "eth0"),
                                  (p, "192.0.2.2/24", "2001:db8::2/64", "eth0p")):
            sh("ip", "-n", ns, "addr", "add", ip4, "dev", dev)
            sh("ip", "-n", ns, "-6", "addr", "add", ip6, "dev", dev, "nodad")
        sh("ip", "-n", r, "neigh", "add", "192.0.2.99", "lladdr", "02:00:00:00:00:99",
           "dev", "eth0", "nud", "permanent")
        sh("ip", "-n", r, "-6", "neigh", "add", "2001:db8::99", "lladdr", "02:00:00:00:00:98",
           "dev", "eth0", "nud", "permanent")
        lab.r, lab.p = r, p
        yield lab


@pytest.fixture(scope="module")
def nc(lab, schema, tmp_path_factory):
    """An in-process client of a server whose running holds eth0's IPv4 address."""
    from inproc import LocalClient

    server = NetconfServer(schema, tmp_path_factory.mktemp("state"))
    ctx = BackendContext(state_dir=tmp_path_factory.mktemp("ctx"), netns=lab.r)
    st = linux_state.attach(server, ctx)
    client = LocalClient(server)
    reply = client.edit(
        f'<interfaces xmlns="{IF}" xmlns:ianaift="{IANAIFT}"><interface><name>eth0</name>'
        "<type>ianaift:ethernetCsmacd</type><description>uplink</description>"
        f'<ipv4 xmlns="{IP}"><address><ip>192.0.2.1</ip><prefix-length>24</prefix-length>'
        "</address></ipv4></interface></interfaces>"
    )
    assert reply.find(f"{{{NC}}}ok") is not None, etree.tostring(reply)
    client.state = st
    client.server = server
    try:
        yield client
    finally:
        st.close()


def get(client, filt: str | None = None, ftype: str = "subtree") -> etree._Element:
    if filt is None:
        body = "<get/>"
    elif ftype == "xpath":
        body = (f'<get><filter type="xpath" xmlns:if="{IF}" xmlns:ip="{IP}" '
                f'select="{filt}"/></get>')
    else:
        body = f'<get><filter type="subtree">{filt}</filter></get>'
    reply = client.rpc(body)
    data = reply.find(f"{{{NC}}}data")
    assert data is not None, etree.tostring(reply)
    return data


def entry(data: etree._Element, name: str, tree: str = "interfaces") -> etree._Element:
    found = data.xpath(f"if:{tree}/if:interface[if:name=$n]", namespaces=NS, n=name)
    assert len(found) == 1, f"{name} in {tree}: {len(found)} entries"
    return found[0]


def text(el: etree._Element, path: str) -> str | None:
    r = el.xpath(path, namespaces=NS)
    return r[0].text if r else None


def texts(el: etree._Element, path: str) -> list[str]:
    return [e.text for e in el.xpath(path, namespaces=NS)]


def kernel_link(ns: str, name: str) -> dict:
    return json.loads(sh("ip", "-j", "-n", ns, "link", "show", "dev", name).stdout)[0]


def kernel_names(ns: str) -> set[str]:
    return {ln["ifname"] for ln in json.loads(sh("ip", "-j", "-n", ns, "link").stdout)}


def identity(leaf: etree._Element) -> tuple[str, str]:
    """(namespace, name) of an identityref value, resolved through the leaf's nsmap."""
    prefix, name = leaf.text.split(":")
    return leaf.nsmap[prefix], name


def parse_time(value: str) -> datetime:
    t = datetime.fromisoformat(value)
    assert t.tzinfo is not None, value
    return t


# ---- the leaves -------------------------------------------------------------------------------


def test_veth_leaves(lab, nc):
    data = get(nc)
    e = entry(data, "eth0")
    k = kernel_link(lab.r, "eth0")
    assert identity(e.find(f"{{{IF}}}type")) == (IANAIFT, "ethernetCsmacd")
    assert text(e, "if:description") == "uplink"  # from running: config merged with state
    assert text(e, "if:admin-status") == "up"
    assert text(e, "if:oper-status") == "up"
    assert text(e, "if:if-index") == str(k["ifindex"])
    assert text(e, "if:phys-address") == k["address"]
    assert texts(e, "if:higher-layer-if") == ["mv0"]
    assert texts(e, "if:lower-layer-if") == []
    assert text(e, "if:speed") == str(10_000 * 1_000_000)  # veth reports 10 Gb/s
    stats = e.find(f"{{{IF}}}statistics")
    parse_time(text(stats, "if:discontinuity-time"))
    for leaf in ("in-octets", "in-unicast-pkts", "in-multicast-pkts", "in-discards",
                 "in-errors", "out-octets", "out-unicast-pkts", "out-discards", "out-errors"):
        assert int(text(stats, f"if:{leaf}")) >= 0, leaf
    assert text(e, "ip:ipv4/ip:forwarding") == "false"
    assert text(e, "ip:ipv4/ip:mtu") == "1500"
    assert text(e, "ip:ipv6/ip:mtu") == "1500"
    assert text(e, "ip:ipv6/ip:forwarding") == "false"


def test_address_origin_and_status(lab, nc):
    e = entry(get(nc), "eth0")
    v4 = e.xpath("ip:ipv4/ip:address[ip:ip='192.0.2.1']", namespaces=NS)[0]
    assert text(v4, "ip:prefix-length") == "24"
    assert text(v4, "ip:origin") == "static"  # it is in running
    v6 = e.xpath("ip:ipv6/ip:address[ip:ip='2001:db8::1']", namespaces=NS)[0]
    assert text(v6, "ip:prefix-length") == "64"
    assert text(v6, "ip:origin") == "other"  # added behind the agent's back
    assert text(v6, "ip:status") == "preferred"  # nodad
    ll = e.xpath("ip:ipv6/ip:address[starts-with(ip:ip, 'fe80:')]", namespaces=NS)
    assert len(ll) == 1 and text(ll[0], "ip:origin") == "link-layer"
    assert text(ll[0], "ip:status") in ("preferred", "tentative")


def test_static_neighbors(lab, nc):
    e = entry(get(nc), "eth0")
    n4 = e.xpath("ip:ipv4/ip:neighbor[ip:ip='192.0.2.99']", namespaces=NS)[0]
    assert text(n4, "ip:link-layer-address") == "02:00:00:00:00:99"
    assert text(n4, "ip:origin") == "static"
    n6 = e.xpath("ip:ipv6/ip:neighbor[ip:ip='2001:db8::99']", namespaces=NS)[0]
    assert text(n6, "ip:link-layer-address") == "02:00:00:00:00:98"
    assert text(n6, "ip:origin") == "static"


def test_macvlan_bridge_loopback(lab, nc):
    data = get(nc)
    mv = entry(data, "mv0")
    assert identity(mv.find(f"{{{IF}}}type")) == (MV, "macvlan")
    assert texts(mv, "if:lower-layer-if") == ["eth0"]
    assert text(mv, "if:phys-address") == kernel_link(lab.r, "mv0")["address"]
    assert text(mv, "mv:macvlan/mv:lower-interface") == "eth0"
    assert text(mv, "mv:macvlan/mv:mode") == "private"
    assert text(mv, "mv:macvlan/mv:mac-address") == kernel_link(lab.r, "mv0")["address"]
    assert text(mv, "if:if-index") == str(kernel_link(lab.r, "mv0")["ifindex"])
    br = entry(data, "br0")
    assert identity(br.find(f"{{{IF}}}type")) == (IANAIFT, "bridge")
    assert texts(br, "if:lower-layer-if") == ["eth1"]
    assert texts(entry(data, "eth1"), "if:higher-layer-if") == ["br0"]
    lo = entry(data, "lo")
    assert identity(lo.find(f"{{{IF}}}type")) == (IANAIFT, "softwareLoopback")
    assert text(lo, "if:oper-status") == "up"  # IF_OPER_UNKNOWN with carrier
    assert text(lo, "if:phys-address") is None
    assert texts(lo, "ip:ipv4/ip:address/ip:ip") == ["127.0.0.1"]


def test_every_kernel_link_in_both_trees(lab, nc):
    data = get(nc)
    names = kernel_names(lab.r)
    assert names >= {"lo", "eth0", "eth1", "br0", "mv0"}
    assert set(texts(data, "if:interfaces/if:interface/if:name")) == names
    assert set(texts(data, "if:interfaces-state/if:interface/if:name")) == names
    old = entry(data, "mv0", "interfaces-state")
    assert identity(old.find(f"{{{IF}}}type")) == (MV, "macvlan")
    assert texts(old, "if:lower-layer-if") == ["eth0"]
    assert old.find(f"{{{IF}}}statistics/{{{IF}}}in-octets") is not None
    assert old.find(f"{{{MV}}}macvlan") is None  # the macvlan augment is NMDA-only
    # the deprecated tree carries no configuration
    assert entry(data, "eth0", "interfaces-state").find(f"{{{IF}}}description") is None


def test_output_matches_yang_types(lab, nc, schema):
    """Every state element is a schema node, every leaf value passes its YANG type, and the
    interfaces trees pass validation as state data (other modules' trees aren't ours)."""
    data = get(nc)
    checked = 0
    for top in data.xpath("if:interfaces | if:interfaces-state", namespaces=NS):
        for el in top.iter():
            if not isinstance(el.tag, str):
                continue
            snode = schema_of(schema, el)
            assert snode is not None, f"not in the schema: {el.getroottree().getpath(el)}"
            if snode.kind in ("leaf", "leaf-list") and snode.type is not None:
                snode.type.check(el.text or "", el.nsmap)  # raises TypeMismatch
                checked += 1
    assert checked > 100
    # mandatory nodes, when/must and leafrefs (higher-layer-if ...) of the whole reply
    from agent.datastore.tree import PathMaker
    from agent.datastore.validate import Validator
    from agent.protocol.errors import RpcErrors

    try:
        Validator(schema, PathMaker(schema), config=False).validate(data)
        problems = []
    except RpcErrors as e:
        problems = [(x.message, x.path) for x in e.errors if (x.path or "").startswith("/if:")]
    assert problems == []


# ---- filters ----------------------------------------------------------------------------------


def test_subtree_filter_reads_only_the_named_interface(lab, nc, monkeypatch):
    calls = []
    reader = nc.state.reader
    real_links, real_stats = reader.dump_links, reader.dump_stats
    monkeypatch.setattr(reader, "dump_links", lambda: calls.append("links") or real_links())
    monkeypatch.setattr(reader, "dump_stats", lambda: calls.append("stats") or real_stats())
    data = get(nc, f'<interfaces xmlns="{IF}"><interface><name>mv0</name></interface>'
                   "</interfaces>")
    assert texts(data, "if:interfaces/if:interface/if:name") == ["mv0"]
    assert texts(data, "if:interfaces/if:interface/if:lower-layer-if") == ["eth0"]
    assert data.find(f"{{{IF}}}interfaces-state") is None
    assert calls == []  # no dump of every link for one interface
    data = get(nc, f'<interfaces-state xmlns="{IF}"><interface><name>eth0</name>'
                   "<oper-status/><higher-layer-if/></interface></interfaces-state>")
    e = entry(data, "eth0", "interfaces-state")
    assert [etree.QName(c).localname for c in e] == ["name", "oper-status", "higher-layer-if"]
    assert text(e, "if:oper-status") == "up" and texts(e, "if:higher-layer-if") == ["mv0"]
    assert calls == []
    get(nc)  # while a whole <get> does read every link
    assert calls


def test_xpath_filter_on_state(lab, nc):
    data = get(nc, "/if:interfaces-state/if:interface[if:name='mv0']/if:oper-status", "xpath")
    assert texts(data, "if:interfaces-state/if:interface/if:name") == ["mv0"]
    assert texts(data, "if:interfaces-state/if:interface/if:oper-status") == ["up"]
    data = get(nc, "/if:interfaces/if:interface[if:oper-status='up']/if:name", "xpath")
    assert {"eth0", "mv0", "lo"} <= set(texts(data, "if:interfaces/if:interface/if:name"))


def _count_kernel_reads(client, monkeypatch) -> list:
    """Record the state reader's kernel requests: whole dumps by name, per-link reads as
    ``("link", name)`` (a per-link address/neighbour dump is not recorded)."""
    calls: list = []
    reader = client.state.reader

    def spy(meth: str):  # noqa: ANN202
        real = getattr(reader, meth)

        def call(*args):  # noqa: ANN002, ANN202
            if meth == "get_link":
                calls.append(("link", args[0]))
            elif not args or not args[0]:  # no ifindex: every link
                calls.append(meth)
            return real(*args)

        monkeypatch.setattr(reader, meth, call)

    for meth in ("dump_links", "dump_stats", "dump_addrs", "dump_neighs", "get_link"):
        spy(meth)
    return calls


XPATH_ONE = [
    # select, tree, the links it may read (and the entries it selects)
    ("/if:interfaces/if:interface[if:name='mv0']", "interfaces", {"mv0"}),
    ("/if:interfaces/if:interface[name='mv0']/if:oper-status", "interfaces", {"mv0"}),
    ("/if:interfaces-state/if:interface[if:name='mv0']", "interfaces-state", {"mv0"}),
    ("/if:interfaces/if:interface[if:name='mv0' or if:name='eth0']/if:if-index",
     "interfaces", {"mv0", "eth0"}),
    ("/if:interfaces/if:interface[if:name='mv0']/if:higher-layer-if | "
     "/if:interfaces/if:interface[if:name='eth0'][if:oper-status='up']/if:if-index",
     "interfaces", {"mv0", "eth0"}),
]


@pytest.mark.parametrize(("select", "tree", "links"), XPATH_ONE)
def test_xpath_filter_reads_only_the_named_interfaces(lab, nc, monkeypatch, select, tree, links):
    """An XPath filter naming its interfaces reads those links only (no dump of every link,
    nor of every address or neighbour), and selects what it would from a whole read."""
    from agent.datastore.filters import xpath_filter

    whole = xpath_filter(get(nc), select, {"if": IF}, nc.server.retriever.keys_of)
    expected = sorted(texts(whole, f"if:{tree}/if:interface/if:name"))
    assert expected and set(expected) <= links
    calls = _count_kernel_reads(nc, monkeypatch)
    data = get(nc, select, "xpath")
    assert sorted(texts(data, f"if:{tree}/if:interface/if:name")) == expected
    assert [c for c in calls if not isinstance(c, tuple)] == []
    assert {c[1] for c in calls if isinstance(c, tuple)} == links
    other = "interfaces-state" if tree == "interfaces" else "interfaces"
    assert data.find(f"{{{IF}}}{other}") is None


def test_xpath_filter_values_match_a_whole_read(lab, nc):
    """What a bounded XPath read returns equals the same entry in a whole read."""
    select = ("/if:interfaces/if:interface[if:name='mv0' or if:name='eth0']")
    whole = get(nc)
    data = get(nc, select, "xpath")
    for name in ("mv0", "eth0"):
        a, b = entry(whole, name), entry(data, name)
        for leaf in ("if:type", "if:admin-status", "if:oper-status", "if:if-index",
                     "if:phys-address", "if:higher-layer-if", "if:lower-layer-if",
                     "ip:ipv4/ip:address/ip:ip", "ip:ipv6/ip:address/ip:ip",
                     "mv:macvlan/mv:lower-interface"):
            assert texts(a, leaf) == texts(b, leaf), (name, leaf)


def test_xpath_filter_that_names_no_interface_reads_all(lab, nc, monkeypatch):
    calls = _count_kernel_reads(nc, monkeypatch)
    data = get(nc, "/if:interfaces/if:interface[if:oper-status='up']/if:name", "xpath")
    assert {"eth0", "mv0"} <= set(texts(data, "if:interfaces/if:interface/if:name"))
    assert "dump_addrs" in calls  # every link's addresses: the filter can't be bounded


def test_get_data_xpath_filter_reads_only_the_named_interface(lab, nc, monkeypatch):
    calls = _count_kernel_reads(nc, monkeypatch)
    for extra in ("", "<max-depth>2</max-depth>", "<with-origin/>"):
        calls.clear()
        r = nc.rpc(f'<get-data xmlns="{NMDA}" xmlns:ds="{DS}"><datastore>ds:operational'
                   f"</datastore><xpath-filter xmlns:if=\"{IF}\">/if:interfaces/if:interface"
                   f"[if:name='mv0']</xpath-filter>{extra}</get-data>")
        data = r.find(f"{{{NMDA}}}data")
        assert data is not None, etree.tostring(r)
        assert texts(data, "if:interfaces/if:interface/if:name") == ["mv0"], extra
        assert calls == [("link", "mv0")], extra


# ---- the kernel moves -------------------------------------------------------------------------


def _counters(client, name: str) -> dict[str, int]:
    data = get(client, f'<interfaces xmlns="{IF}"><interface><name>{name}</name>'
                       "<statistics/></interface></interfaces>")
    st = entry(data, name).find(f"{{{IF}}}statistics")
    return {etree.QName(c).localname: int(c.text) for c in st
            if etree.QName(c).localname != "discontinuity-time"}


def echo(client_ns: str, server_ns: str, family: int, server_ip: str, count: int) -> None:
    """``count`` UDP datagrams of 100 bytes from ``client_ns`` to ``server_ns`` and back
    (real unicast traffic across the veth, no ping binary needed)."""
    srv = in_netns(server_ns, lambda: socket.socket(family, socket.SOCK_DGRAM))
    cli = in_netns(client_ns, lambda: socket.socket(family, socket.SOCK_DGRAM))
    try:
        srv.bind((server_ip, 0))
        srv.settimeout(5)
        cli.settimeout(5)
        port = srv.getsockname()[1]
        for i in range(count):
            cli.sendto(bytes([i]) * 100, (server_ip, port))
            payload, peer = srv.recvfrom(200)
            srv.sendto(payload, peer)
            assert cli.recvfrom(200)[0] == payload
    finally:
        srv.close()
        cli.close()


def test_counters_and_neighbors_move_after_traffic(lab, nc):
    before = _counters(nc, "eth0")
    echo(lab.p, lab.r, socket.AF_INET, "192.0.2.1", 3)
    echo(lab.p, lab.r, socket.AF_INET6, "2001:db8::1", 2)
    after = _counters(nc, "eth0")
    assert after["in-unicast-pkts"] >= before["in-unicast-pkts"] + 5
    assert after["out-unicast-pkts"] >= before["out-unicast-pkts"] + 5
    assert after["in-octets"] >= before["in-octets"] + 5 * (28 + 100)
    assert after["out-octets"] >= before["out-octets"] + 5 * (28 + 100)
    peer_mac = kernel_link(lab.p, "eth0p")["address"]
    e = entry(get(nc), "eth0")
    n4 = e.xpath("ip:ipv4/ip:neighbor[ip:ip='192.0.2.2']", namespaces=NS)
    assert len(n4) == 1 and text(n4[0], "ip:link-layer-address") == peer_mac
    assert text(n4[0], "ip:origin") == "dynamic"
    n6 = e.xpath("ip:ipv6/ip:neighbor[ip:ip='2001:db8::2']", namespaces=NS)
    assert len(n6) == 1 and text(n6[0], "ip:origin") == "dynamic"
    assert text(n6[0], "ip:state") in ("reachable", "stale", "delay", "probe")


def test_admin_and_oper_status_follow_the_kernel(lab, nc):
    def status(name: str, tree: str = "interfaces") -> tuple[str, str, str | None]:
        data = get(nc, f'<{tree} xmlns="{IF}"><interface><name>{name}</name></interface>'
                       f"</{tree}>")
        e = entry(data, name, tree)
        return text(e, "if:admin-status"), text(e, "if:oper-status"), text(e, "if:last-change")

    t0 = time.time()
    try:
        sh("ip", "-n", lab.p, "link", "set", "eth0p", "down")  # carrier lost on eth0
        admin, oper, changed = wait_for(
            lambda: s if (s := status("eth0"))[1] == "down" else None, what="eth0 down")
        assert admin == "up"
        assert changed is not None and parse_time(changed).timestamp() >= t0 - 1
        assert status("mv0")[1] == "lower-layer-down"
        assert status("mv0", "interfaces-state")[1] == "lower-layer-down"
        sh("ip", "-n", lab.r, "link", "set", "mv0", "down")
        assert status("mv0")[:2] == ("down", "down")
        assert status("mv0", "interfaces-state")[:2] == ("down", "down")
    finally:
        sh("ip", "-n", lab.p, "link", "set", "eth0p", "up")
        sh("ip", "-n", lab.r, "link", "set", "mv0", "up")
    wait_for(lambda: status("mv0")[:2] == ("up", "up"), what="mv0 up again")
    assert status("eth0")[:2] == ("up", "up")


def test_whole_get_sees_sysctl_and_mtu_changes(lab, nc):
    """A whole <get> may reuse the last link dump (counters re-read): a forwarding sysctl
    or an MTU change must still show at once."""
    e = entry(get(nc), "eth0")
    assert text(e, "ip:ipv4/ip:forwarding") == "false"
    fwd = "/proc/sys/net/ipv4/conf/eth0/forwarding"
    try:
        sh("ip", "netns", "exec", lab.r, "sh", "-c", f"echo 1 > {fwd}")
        sh("ip", "-n", lab.r, "link", "set", "mv0", "mtu", "1400")
        data = get(nc)
        assert text(entry(data, "eth0"), "ip:ipv4/ip:forwarding") == "true"
        assert text(entry(data, "mv0"), "ip:ipv4/ip:mtu") == "1400"
        assert text(entry(data, "mv0", "interfaces-state"), "ip:ipv4/ip:mtu") == "1400"
    finally:
        sh("ip", "netns", "exec", lab.r, "sh", "-c", f"echo 0 > {fwd}")
        sh("ip", "-n", lab.r, "link", "set", "mv0", "mtu", "1500")
    assert text(entry(get(nc), "eth0"), "ip:ipv4/ip:forwarding") == "false"


def test_recreated_link_is_a_discontinuity(lab, nc):
    def mv1() -> etree._Element:
        return entry(get(nc, f'<interfaces xmlns="{IF}"><interface><name>mv1</name>'
                             "</interface></interfaces>"), "mv1")

    sh("ip", "-n", lab.r, "link", "add", "mv1", "link", "eth0", "type", "macvlan")
    try:
        first = mv1()
        t1 = parse_time(text(first, "if:statistics/if:discontinuity-time"))
        assert text(first, "if:last-change") is not None  # created after the agent started
        assert "mv1" in texts(entry(get(nc), "eth0"), "if:higher-layer-if")
        time.sleep(0.01)
        sh("ip", "-n", lab.r, "link", "del", "mv1")
        sh("ip", "-n", lab.r, "link", "add", "mv1", "link", "eth0", "type", "macvlan")
        second = mv1()
        assert text(second, "if:if-index") != text(first, "if:if-index")
        assert parse_time(text(second, "if:statistics/if:discontinuity-time")) > t1
    finally:
        sh("ip", "-n", lab.r, "link", "del", "mv1", check=False)
    data = get(nc)
    assert "mv1" not in texts(data, "if:interfaces/if:interface/if:name")
    assert "mv1" not in texts(entry(data, "eth0"), "if:higher-layer-if")


# ---- through the real agent -------------------------------------------------------------------


def test_agent_over_ssh(lab, tmp_path):
    """The real agent: state of unconfigured links, of a macvlan it created from an
    edit-config (address origin static), and last-change dated by its event watcher."""
    from agentproc import AgentProcess

    agent = AgentProcess(tmp_path, netns=lab.r)
    agent.start()
    try:
        with agent.ncclient() as m:
            flt = (f'<filter xmlns="{NC}" type="subtree"><interfaces xmlns="{IF}">'
                   "<interface><name>mv0</name></interface></interfaces>"
                   f'<interfaces-state xmlns="{IF}"/></filter>')
            data = etree.fromstring(m.get(filter=flt).data_xml.encode())
            mv = entry(data, "mv0")
            assert identity(mv.find(f"{{{IF}}}type")) == (MV, "macvlan")
            assert texts(mv, "if:lower-layer-if") == ["eth0"]
            assert text(mv, "if:if-index") == str(kernel_link(lab.r, "mv0")["ifindex"])
            assert texts(data, "if:interfaces/if:interface/if:name") == ["mv0"]
            assert set(texts(data, "if:interfaces-state/if:interface/if:name")) == \
                kernel_names(lab.r)
            e = entry(data, "eth0", "interfaces-state")
            assert text(e, "if:oper-status") == "up"
            assert int(text(e, "if:statistics/if:in-octets")) > 0

            m.edit_config(target="running", config=(
                f'<config xmlns="{NC}"><interfaces xmlns="{IF}" xmlns:ianaift="{IANAIFT}" '
                f'xmlns:mv="{MV}"><interface><name>eth0</name><type>ianaift:ethernetCsmacd'
                "</type></interface><interface><name>mvc</name><type>mv:macvlan</type>"
                f'<macvlan xmlns="{MV}"><lower-interface>eth0</lower-interface>'
                f'<mode>private</mode></macvlan><ipv4 xmlns="{IP}"><address>'
                "<ip>198.51.100.1</ip><prefix-length>24</prefix-length></address></ipv4>"
                "</interface></interfaces></config>"))
            flt = (f'<filter xmlns="{NC}" type="subtree"><interfaces xmlns="{IF}">'
                   "<interface><name>mvc</name></interface><interface><name>eth0</name>"
                   "<higher-layer-if/></interface></interfaces></filter>")
            data = etree.fromstring(m.get(filter=flt).data_xml.encode())
            mvc = entry(data, "mvc")
            assert texts(mvc, "if:lower-layer-if") == ["eth0"]
            assert text(mvc, "if:if-index") == str(kernel_link(lab.r, "mvc")["ifindex"])
            assert text(mvc, "ip:ipv4/ip:address[ip:ip='198.51.100.1']/ip:origin") == "static"
            assert texts(entry(data, "eth0"), "if:higher-layer-if") == ["mv0", "mvc"]

            t0 = time.time()
            sh("ip", "-n", lab.r, "link", "set", "mv0", "down")
            t1 = time.time()
            time.sleep(1.0)  # the agent's watcher dates the event, not the next <get>
            flt = (f'<filter xmlns="{NC}" type="subtree"><interfaces xmlns="{IF}">'
                   "<interface><name>mv0</name><oper-status/><last-change/></interface>"
                   "</interfaces></filter>")
            data = etree.fromstring(m.get(filter=flt).data_xml.encode())
            mv = entry(data, "mv0")
            assert text(mv, "if:oper-status") == "down"
            changed = parse_time(text(mv, "if:last-change")).timestamp()
            assert t0 - 0.01 <= changed <= t1 + 0.5, (t0, changed, t1)
    finally:
        sh("ip", "-n", lab.r, "link", "set", "mv0", "up")
        agent.stop()


# ---- <operational>: the values in use (RFC 8342 §5.3) -----------------------------------------


@pytest.fixture
def opnc(lab, schema, tmp_path):
    """A fresh in-process server (empty running, no cached kernel read) on the lab's ``r``."""
    from inproc import LocalClient

    (tmp_path / "ds").mkdir()
    (tmp_path / "ctx").mkdir()
    server = NetconfServer(schema, tmp_path / "ds")
    st = linux_state.attach(server, BackendContext(state_dir=tmp_path / "ctx", netns=lab.r))
    client = LocalClient(server)
    client.state = st
    try:
        yield client
    finally:
        st.close()


def get_data(client, ds: str, params: str = "") -> etree._Element:
    r = client.rpc(f'<get-data xmlns="{NMDA}" xmlns:ds="{DS}"><datastore>ds:{ds}</datastore>'
                   f"{params}</get-data>")
    data = r.find(f"{{{NMDA}}}data")
    assert data is not None, etree.tostring(r)
    return data


def origin(el: etree._Element) -> str:
    """The effective or:origin of a node (its own annotation or its nearest ancestor's)."""
    for e in (el, *el.iterancestors()):
        v = e.get(ORIGIN)
        if v is not None:
            prefix, _, local = v.partition(":")
            assert e.nsmap[prefix] == OR
            return local
    raise AssertionError("no origin")


def configure(client, body: str) -> None:
    reply = client.edit(f'<interfaces xmlns="{IF}" xmlns:ianaift="{IANAIFT}">{body}'
                        "</interfaces>")
    assert reply.find(f"{{{NC}}}ok") is not None, etree.tostring(reply)


def _veth(lab, name: str) -> None:
    sh("ip", "-n", lab.r, "link", "del", name, check=False)  # left over by a failed run
    lab.veth(lab.r, name)


def test_operational_shows_values_in_use(lab, opnc):
    """A leaf both configured and reported shows the kernel's value in <operational> (origin
    system where it differs from running); configured addresses the kernel lacks (ipv4
    disabled) are not listed. <get> still shows running's values."""
    r = lab.r
    _veth(lab, "op0")
    try:
        sh("ip", "-n", r, "-6", "addr", "add", "2001:db8:5::1/64", "dev", "op0", "nodad")
        lab.run(r, "sysctl", "-qw", "net.ipv6.conf.op0.mtu=1300")  # lowered behind our back
        sh("ip", "-n", r, "link", "set", "op0", "alias", "set by hand")
        configure(opnc, (
            "<interface><name>op0</name><type>ianaift:ethernetCsmacd</type>"
            f'<description>configured</description><ipv4 xmlns="{IP}"><enabled>false</enabled>'
            "<address><ip>203.0.113.1</ip><prefix-length>24</prefix-length></address></ipv4>"
            f'<ipv6 xmlns="{IP}"><mtu>1400</mtu><address><ip>2001:db8:5::1</ip>'
            "<prefix-length>64</prefix-length></address></ipv6></interface>"
            "<interface><name>op0p</name><type>ianaift:ethernetCsmacd</type>"
            "<description>peer</description></interface>"))
        for params in ("", "<with-origin/>",
                       f'<subtree-filter><interfaces xmlns="{IF}"><interface><name>op0</name>'
                       "</interface><interface><name>op0p</name></interface></interfaces>"
                       "</subtree-filter><with-origin/>"):
            op = get_data(opnc, "operational", params)
            e = entry(op, "op0")
            assert text(e, "ip:ipv6/ip:mtu") == "1300", params
            assert text(e, "if:description") == "set by hand", params
            assert texts(e, "ip:ipv4/ip:address/ip:ip") == [], params
            assert text(e, "ip:ipv4/ip:enabled") == "false", params  # config the kernel
            assert texts(e, "ip:ipv6/ip:address/ip:ip")[:1] == ["2001:db8:5::1"], params
            assert text(entry(op, "op0p"), "if:description") == "peer"  # no alias: running's
            if not params:
                continue
            assert origin(e) == "intended"
            assert origin(e.find("ip:ipv6/ip:mtu", NS)) == "system"
            assert origin(e.find("if:description", NS)) == "system"
            assert origin(e.find("if:type", NS)) == "intended"
            assert origin(e.find("ip:ipv4/ip:enabled", NS)) == "intended"
            assert origin(e.find("ip:ipv6/ip:address", NS)) == "intended"
            assert origin(e.find("if:enabled", NS)) == "default"  # up: the default in use
            assert origin(entry(op, "op0p").find("if:description", NS)) == "intended"
            ll = e.xpath("ip:ipv6/ip:address[starts-with(ip:ip, 'fe80:')]", namespaces=NS)
            assert ll and origin(ll[0]) == "system"
        # the legacy <get> is running merged with state: the configured values
        e = entry(get(opnc), "op0")
        assert text(e, "ip:ipv6/ip:mtu") == "1400"
        assert text(e, "if:description") == "configured"
        assert texts(e, "ip:ipv4/ip:address/ip:ip") == ["203.0.113.1"]
        # and running / intended hold the configuration as it is
        for ds in ("running", "intended"):
            e = entry(get_data(opnc, ds), "op0")
            assert text(e, "ip:ipv6/ip:mtu") == "1400"
            assert texts(e, "ip:ipv4/ip:address/ip:ip") == ["203.0.113.1"]
    finally:
        sh("ip", "-n", r, "link", "del", "op0", check=False)


def test_deleted_interface_leaves_operational(lab, opnc):
    """RFC 8343 §3 / RFC 8342 §5.3: a configured interface the system does not have is not
    in <operational> (only in running and intended)."""
    r = lab.r
    _veth(lab, "op1")
    try:
        configure(opnc, "<interface><name>op1</name><type>ianaift:ethernetCsmacd</type>"
                        "</interface>")
        e = entry(get_data(opnc, "operational", "<with-origin/>"), "op1")
        assert origin(e) == "intended" and text(e, "if:oper-status") == "up"
        sh("ip", "-n", r, "link", "del", "op1")
        one = (f'<subtree-filter><interfaces xmlns="{IF}"><interface><name>op1</name>'
               "</interface></interfaces></subtree-filter>")
        xp = (f'<xpath-filter xmlns:if="{IF}">/if:interfaces/if:interface[if:name=\'op1\']'
              "</xpath-filter>")
        for params in ("", "<with-origin/>", one, one + "<with-origin/>", xp,
                       xp + "<max-depth>3</max-depth>"):
            op = get_data(opnc, "operational", params)
            assert "op1" not in texts(op, "if:interfaces/if:interface/if:name"), params
        assert {"lo", "eth0"} <= set(texts(get_data(opnc, "operational"),
                                           "if:interfaces/if:interface/if:name"))
        for ds in ("running", "intended"):
            assert texts(get_data(opnc, ds), "if:interfaces/if:interface/if:name") == ["op1"]
    finally:
        sh("ip", "-n", r, "link", "del", "op1", check=False)


def test_unconfigured_interface_reports_description_and_enabled(lab, opnc):
    """The system's configuration of a link nobody configured: description from its alias,
    enabled from its admin state, origin system; not in the deprecated tree."""
    r = lab.r
    _veth(lab, "op2")
    try:
        sh("ip", "-n", r, "link", "set", "op2", "alias", "lan <side> & \x01more")
        sh("ip", "-n", r, "link", "set", "op2", "down")
        op = get_data(opnc, "operational", "<with-origin/>")
        e = entry(op, "op2")
        assert text(e, "if:description") == "lan <side> & \ufffdmore"
        assert text(e, "if:enabled") == "false"
        assert text(e, "if:admin-status") == "down"
        assert origin(e) == "system"
        assert origin(e.find("if:description", NS)) == "system"
        assert origin(e.find("if:enabled", NS)) == "system"
        assert origin(entry(op, "op2p").find("if:enabled", NS)) == "system"  # true, not default
        assert text(entry(op, "op2p"), "if:enabled") == "true"
        assert entry(op, "op2p").find(f"{{{IF}}}description") is None  # no alias
        data = get(opnc)
        assert text(entry(data, "op2"), "if:enabled") == "false"
        old = entry(data, "op2", "interfaces-state")
        assert old.find(f"{{{IF}}}description") is None and old.find(f"{{{IF}}}enabled") is None
    finally:
        sh("ip", "-n", r, "link", "del", "op2", check=False)


def test_learned_entries_have_origin_learned(lab, opnc):
    """An address with a lease (ip:origin dhcp) and a dynamic neighbour: or:learned; a
    permanent address or neighbour nobody configured: or:system."""
    r = lab.r
    _veth(lab, "op3")
    try:
        sh("ip", "-n", r, "addr", "add", "198.51.100.9/24", "dev", "op3",
           "valid_lft", "1000", "preferred_lft", "1000")
        sh("ip", "-n", r, "addr", "add", "198.51.100.10/24", "dev", "op3")
        sh("ip", "-n", r, "neigh", "replace", "198.51.100.7", "lladdr", "02:00:00:00:00:07",
           "dev", "op3", "nud", "reachable")
        sh("ip", "-n", r, "neigh", "replace", "198.51.100.8", "lladdr", "02:00:00:00:00:08",
           "dev", "op3", "nud", "permanent")
        e = entry(get_data(opnc, "operational", "<with-origin/>"), "op3")

        def at(path: str) -> etree._Element:
            found = e.xpath(path, namespaces=NS)
            assert len(found) == 1, path
            return found[0]

        assert origin(at("ip:ipv4/ip:address[ip:ip='198.51.100.9']")) == "learned"
        assert origin(at("ip:ipv4/ip:address[ip:ip='198.51.100.10']")) == "system"
        assert origin(at("ip:ipv4/ip:neighbor[ip:ip='198.51.100.7']")) == "learned"
        assert origin(at("ip:ipv4/ip:neighbor[ip:ip='198.51.100.8']")) == "system"
    finally:
        sh("ip", "-n", r, "link", "del", "op3", check=False)
