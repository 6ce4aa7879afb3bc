"""<get> / <get-config> over real SSH sessions: subtree filters (RFC 6241 §6), XPath
filters (RFC 6241 §8.9) and with-defaults (RFC 6243), with the raw client and ncclient.

One agent for the module; its running datastore is loaded once with several
interfaces carrying IPv4 addresses and VRRP instances, and the tests only read.
"""

from __future__ import annotations

from urllib.parse import parse_qs

import pytest
from lxml import etree
from ncraw import NC, reply_errors

IF = "urn:ietf:params:xml:ns:yang:ietf-interfaces"
IP = "urn:ietf:params:xml:ns:yang:ietf-ip"
VRRP = "urn:ietf:params:xml:ns:yang:ietf-vrrp"
IANAIFT = "urn:ietf:params:xml:ns:yang:iana-if-type"
MV = "urn:netconf-vrrp-agent:yang:macvlan"
NCM = "urn:ietf:params:xml:ns:yang:ietf-netconf-monitoring"
YL = "urn:ietf:params:xml:ns:yang:ietf-yang-library"
WD = "urn:ietf:params:xml:ns:yang:ietf-netconf-with-defaults"
WD_ATTR = "urn:ietf:params:xml:ns:netconf:default:1.0"
WD_DEFAULT = f"{{{WD_ATTR}}}default"
WD_CAP = "urn:ietf:params:netconf:capability:with-defaults:1.0"
XPATH_CAP = "urn:ietf:params:netconf:capability:xpath:1.0"

NSDECL = f'xmlns:if="{IF}" xmlns:ip="{IP}" xmlns:vrrp="{VRRP}" xmlns:ncm="{NCM}"'

#: list keys by local name, to name list entries in :func:`flat`
KEYS = {
    "interface": "name", "address": "ip", "vrrp-instance": "vrid",
    "virtual-ipv4-address": "ipv4-address", "session": "session-id", "module": "name",
    "schema": "identifier", "datastore": "name", "module-set": "name",
}


def _vrrp(vrid: int, vip: str, extra: str = "") -> str:
    return (
        f'<vrrp xmlns="{VRRP}"><vrrp-instance><vrid>{vrid}</vrid>'
        f"<version>vrrp:vrrp-v3</version>{extra}"
        f"<virtual-ipv4-addresses><virtual-ipv4-address><ipv4-address>{vip}</ipv4-address>"
        f"</virtual-ipv4-address></virtual-ipv4-addresses></vrrp-instance></vrrp>"
    )


def _addr(ip: str, plen: int = 24) -> str:
    return f"<address><ip>{ip}</ip><prefix-length>{plen}</prefix-length></address>"


#: eth1: priority 200, nothing else explicit; eth2: enabled=true set explicitly (the default),
#: two addresses, priority left to its default; eth3: disabled, forwarding on, priority=100 set
#: explicitly (the default); mv30: a macvlan on eth3 whose mode is left to its default.
CONFIG = (
    f'<config xmlns="{NC}"><interfaces xmlns="{IF}" xmlns:ianaift="{IANAIFT}" '
    f'xmlns:vrrp="{VRRP}" xmlns:mv="{MV}">'
    "<interface><name>eth1</name><description>uplink one</description>"
    "<type>ianaift:ethernetCsmacd</type>"
    f'<ipv4 xmlns="{IP}">{_addr("192.0.2.1")}'
    f'{_vrrp(10, "192.0.2.254", "<priority>200</priority>")}</ipv4></interface>'
    "<interface><name>eth2</name><type>ianaift:ethernetCsmacd</type><enabled>true</enabled>"
    f'<ipv4 xmlns="{IP}">{_addr("198.51.100.1")}{_addr("198.51.100.2", 25)}'
    f'{_vrrp(20, "198.51.100.254")}</ipv4></interface>'
    "<interface><name>eth3</name><description>lan three</description>"
    "<type>ianaift:ethernetCsmacd</type><enabled>false</enabled>"
    f'<ipv4 xmlns="{IP}"><forwarding>true</forwarding>{_addr("203.0.113.1")}'
    f'{_vrrp(30, "203.0.113.254", "<priority>100</priority>")}</ipv4></interface>'
    "<interface><name>mv30</name><type>mv:macvlan</type>"
    f'<macvlan xmlns="{MV}"><lower-interface>eth3</lower-interface></macvlan></interface>'
    "</interfaces></config>"
)


# ---- helpers ----------------------------------------------------------------------------------


def local(el: etree._Element) -> str:
    return etree.QName(el).localname


def leaves(el: etree._Element, prefix: str = ""):
    """(path, leaf element) for every leaf below ``el``; list entries named by their key."""
    for c in el:
        if not isinstance(c.tag, str):
            continue
        name = local(c)
        if len(c):
            key = KEYS.get(name)
            k = c.findtext(f"{{{etree.QName(c).namespace}}}{key}") if key else None
            yield from leaves(c, f"{prefix}{name}[{k}]/" if k is not None else f"{prefix}{name}/")
        else:
            yield f"{prefix}{name}", c


def flat(el: etree._Element) -> set[str]:
    """Every leaf below ``el`` as ``interfaces/interface[eth1]/description=uplink one``."""
    return {f"{p}={(c.text or '').strip()}" for p, c in leaves(el)}


def data_of(reply: etree._Element) -> etree._Element:
    assert not reply_errors(reply), reply_errors(reply)
    d = reply.find(f"{{{NC}}}data")
    assert d is not None, etree.tostring(reply)
    return d


def error_of(reply: etree._Element) -> dict[str, str]:
    errs = reply.findall(f"{{{NC}}}rpc-error")
    assert len(errs) == 1, etree.tostring(reply)
    e = errs[0]
    out = {local(c): (c.text or "").strip() for c in e if len(c) == 0}
    for c in e.iterfind(f"{{{NC}}}error-info/*"):
        out["info:" + local(c)] = (c.text or "").strip()
    return out


def interfaces(d: etree._Element) -> dict[str, etree._Element]:
    return {
        i.findtext(f"{{{IF}}}name"): i
        for i in d.iterfind(f"{{{IF}}}interfaces/{{{IF}}}interface")
    }


def get_config(c, filt: str | None = None, wd: str | None = None, source: str = "running"):
    f = "" if filt is None else filt
    w = "" if wd is None else f'<with-defaults xmlns="{WD}">{wd}</with-defaults>'
    return c.rpc(f"<get-config><source><{source}/></source>{f}{w}</get-config>")


def get(c, filt: str | None = None, wd: str | None = None):
    f = "" if filt is None else filt
    w = "" if wd is None else f'<with-defaults xmlns="{WD}">{wd}</with-defaults>'
    return c.rpc(f"<get>{f}{w}</get>")


def subtree(inner: str) -> str:
    return f'<filter type="subtree">{inner}</filter>'


# ---- fixtures ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def loaded(agent):
    """The module's agent with :data:`CONFIG` in running (loaded once)."""
    agent.reset()
    with agent.raw() as c:
        r = c.rpc(f"<edit-config><target><running/></target>{CONFIG}</edit-config>")
        assert r.find(f"{{{NC}}}ok") is not None, etree.tostring(r)
    return agent


@pytest.fixture(scope="module")
def raw(loaded):
    c = loaded.raw()
    yield c
    c.close()


@pytest.fixture(scope="module")
def full(raw) -> etree._Element:
    """The unfiltered running configuration (explicit mode)."""
    return data_of(get_config(raw))


@pytest.fixture(scope="module")
def nc(loaded):
    import ncclient.transport.session as ncsession

    old = ncsession.TICK
    ncsession.TICK = 0.001  # stock ncclient waits 100 ms per RPC
    m = loaded.ncclient()
    yield m
    m.close_session()
    ncsession.TICK = old


# ---- subtree filters: namespace selection -----------------------------------------------------


def test_no_filter_returns_the_whole_configuration(full):
    assert set(interfaces(full)) == {"eth1", "eth2", "eth3", "mv30"}
    assert "interfaces/interface[eth2]/ipv4/address[198.51.100.2]/prefix-length=25" in flat(full)


def test_namespace_selection(raw, full):
    d = data_of(get_config(raw, subtree(f'<interfaces xmlns="{IF}"/>')))
    assert flat(d) == flat(full)
    # the same element name in another namespace selects nothing
    d = data_of(get_config(raw, subtree('<interfaces xmlns="urn:example:not-interfaces"/>')))
    assert len(d) == 0
    # a top-level name that exists only lower down selects nothing either
    d = data_of(get_config(raw, subtree(f'<interface xmlns="{IF}"/>')))
    assert len(d) == 0


def test_filter_element_without_namespace_matches_any(raw, full):
    d = data_of(get_config(raw, subtree('<interfaces xmlns=""/>')))
    assert flat(d) == flat(full)
    d = data_of(get_config(raw, subtree(
        '<interfaces xmlns=""><interface><name/><ipv4><address><ip/></address></ipv4>'
        "</interface></interfaces>"
    )))
    assert flat(d) == {
        "interfaces/interface[eth1]/name=eth1",
        "interfaces/interface[eth1]/ipv4/address[192.0.2.1]/ip=192.0.2.1",
        "interfaces/interface[eth2]/name=eth2",
        "interfaces/interface[eth2]/ipv4/address[198.51.100.1]/ip=198.51.100.1",
        "interfaces/interface[eth2]/ipv4/address[198.51.100.2]/ip=198.51.100.2",
        "interfaces/interface[eth3]/name=eth3",
        "interfaces/interface[eth3]/ipv4/address[203.0.113.1]/ip=203.0.113.1",
        "interfaces/interface[mv30]/name=mv30",
    }
    # the namespaces in the reply are the real ones, whatever the filter said
    ip = d.find(f"{{{IF}}}interfaces/{{{IF}}}interface/{{{IP}}}ipv4/{{{IP}}}address/{{{IP}}}ip")
    assert ip is not None


def test_namespace_mismatch_below_the_top_selects_nothing_there(raw):
    # ipv4 lives in ietf-ip: asking for it in the ietf-interfaces namespace finds nothing
    d = data_of(get_config(raw, subtree(
        f'<interfaces xmlns="{IF}"><interface><name>eth1</name><ipv4/></interface></interfaces>'
    )))
    assert flat(d) == {"interfaces/interface[eth1]/name=eth1"}


# ---- containment, selection and content match nodes -------------------------------------------


def test_containment_and_selection_nodes(raw):
    d = data_of(get_config(raw, subtree(
        f'<interfaces xmlns="{IF}"><interface><name/><description/></interface></interfaces>'
    )))
    assert flat(d) == {
        "interfaces/interface[eth1]/name=eth1",
        "interfaces/interface[eth1]/description=uplink one",
        "interfaces/interface[eth2]/name=eth2",
        "interfaces/interface[eth3]/name=eth3",
        "interfaces/interface[eth3]/description=lan three",
        "interfaces/interface[mv30]/name=mv30",
    }


def test_content_match_on_key_selects_whole_entry(raw, full):
    d = data_of(get_config(raw, subtree(
        f'<interfaces xmlns="{IF}"><interface><name>eth2</name></interface></interfaces>'
    )))
    assert list(interfaces(d)) == ["eth2"]
    want = {p for p in flat(full) if p.startswith("interfaces/interface[eth2]/")}
    assert flat(d) == want
    assert len(want) > 8


def test_content_match_with_selection_siblings(raw):
    d = data_of(get_config(raw, subtree(
        f'<interfaces xmlns="{IF}"><interface><name>eth3</name><description/><enabled/>'
        "</interface></interfaces>"
    )))
    assert flat(d) == {
        "interfaces/interface[eth3]/name=eth3",
        "interfaces/interface[eth3]/description=lan three",
        "interfaces/interface[eth3]/enabled=false",
    }


def test_content_match_nodes_are_anded(raw):
    # eth1 has the description but is not disabled; eth3 is disabled with another description
    d = data_of(get_config(raw, subtree(
        f'<interfaces xmlns="{IF}"><interface><description>uplink one</description>'
        "<enabled>false</enabled></interface></interfaces>"
    )))
    assert len(d) == 0
    d = data_of(get_config(raw, subtree(
        f'<interfaces xmlns="{IF}"><interface><description>lan three</description>'
        "<enabled>false</enabled></interface></interfaces>"
    )))
    assert list(interfaces(d)) == ["eth3"]


def test_content_match_on_identityref_with_another_prefix(raw):
    d = data_of(get_config(raw, subtree(
        f'<interfaces xmlns="{IF}"><interface><type xmlns:x="{MV}">x:macvlan</type><name/>'
        "</interface></interfaces>"
    )))
    assert flat(d) == {
        "interfaces/interface[mv30]/name=mv30",
        "interfaces/interface[mv30]/type=mv:macvlan",
    }


def test_nested_content_match_keeps_ancestor_keys(raw):
    d = data_of(get_config(raw, subtree(
        f'<interfaces xmlns="{IF}"><interface><ipv4 xmlns="{IP}"><vrrp xmlns="{VRRP}">'
        "<vrrp-instance><vrid>30</vrid><priority/></vrrp-instance></vrrp></ipv4>"
        "</interface></interfaces>"
    )))
    assert flat(d) == {
        "interfaces/interface[eth3]/name=eth3",
        "interfaces/interface[eth3]/ipv4/vrrp/vrrp-instance[30]/vrid=30",
        "interfaces/interface[eth3]/ipv4/vrrp/vrrp-instance[30]/priority=100",
    }


def test_list_keys_come_first_in_partial_entries(raw):
    d = data_of(get_config(raw, subtree(
        f'<interfaces xmlns="{IF}"><interface><ipv4 xmlns="{IP}"><address><prefix-length/>'
        "</address></ipv4></interface></interfaces>"
    )))
    entries = list(interfaces(d).values())
    assert [e.findtext(f"{{{IF}}}name") for e in entries] == ["eth1", "eth2", "eth3"]
    for e in entries:
        assert local(e[0]) == "name"
        for a in e.iterfind(f"{{{IP}}}ipv4/{{{IP}}}address"):
            assert [local(c) for c in a] == ["ip", "prefix-length"]


def test_sibling_filters_are_united(raw):
    d = data_of(get_config(raw, subtree(
        f'<interfaces xmlns="{IF}">'
        "<interface><name>eth1</name><description/></interface>"
        "<interface><name>eth3</name><description/></interface>"
        "<interface><name>eth3</name><enabled/></interface>"
        "</interfaces>"
    )))
    assert flat(d) == {
        "interfaces/interface[eth1]/name=eth1",
        "interfaces/interface[eth1]/description=uplink one",
        "interfaces/interface[eth3]/name=eth3",
        "interfaces/interface[eth3]/description=lan three",
        "interfaces/interface[eth3]/enabled=false",
    }
    # one entry per data node, never duplicated by the union
    assert [i.findtext(f"{{{IF}}}name") for i in d.iter(f"{{{IF}}}interface")] == ["eth1", "eth3"]


def test_empty_filter_selects_nothing(raw):
    for f in ('<filter type="subtree"/>', "<filter/>", '<filter type="subtree">  </filter>'):
        assert len(data_of(get_config(raw, f))) == 0, f
        assert len(data_of(get(raw, f))) == 0, f


# ---- subtree filters on state data in <get> -----------------------------------------------------


def test_get_without_filter_has_config_and_state(raw):
    d = data_of(get(raw))
    tops = {etree.QName(c).text for c in d}
    assert {f"{{{IF}}}interfaces", f"{{{NCM}}}netconf-state", f"{{{YL}}}yang-library"} <= tops


def test_subtree_filter_on_netconf_state_sessions(loaded, raw):
    with loaded.raw() as other:
        d = data_of(get(raw, subtree(
            f'<netconf-state xmlns="{NCM}"><sessions><session><session-id>{raw.session_id}'
            "</session-id><username/><source-host/></session></sessions></netconf-state>"
        )))
        assert flat(d) == {
            f"netconf-state/sessions/session[{raw.session_id}]/session-id={raw.session_id}",
            f"netconf-state/sessions/session[{raw.session_id}]/username=admin",
            f"netconf-state/sessions/session[{raw.session_id}]/source-host=127.0.0.1",
        }
        d = data_of(get(raw, subtree(
            f'<netconf-state xmlns="{NCM}"><sessions><session><session-id/></session>'
            "</sessions></netconf-state>"
        )))
        ids = {int(x.text) for x in d.iter(f"{{{NCM}}}session-id")}
        assert {raw.session_id, other.session_id} <= ids
        assert len(d) == 1 and local(d[0]) == "netconf-state"


def test_subtree_filter_on_yang_library(raw):
    d = data_of(get(raw, subtree(
        f'<yang-library xmlns="{YL}"><module-set><module><name>ietf-vrrp</name><revision/>'
        "</module></module-set></yang-library>"
    )))
    assert flat(d) == {
        "yang-library/module-set[complete]/name=complete",
        "yang-library/module-set[complete]/module[ietf-vrrp]/name=ietf-vrrp",
        "yang-library/module-set[complete]/module[ietf-vrrp]/revision=2018-03-13",
    }


def test_subtree_union_of_config_and_state(raw):
    d = data_of(get(raw, subtree(
        f'<interfaces xmlns="{IF}"><interface><name>eth1</name><description/></interface>'
        f'</interfaces><netconf-state xmlns="{NCM}"><datastores/></netconf-state>'
    )))
    assert flat(d) == {
        "interfaces/interface[eth1]/name=eth1",
        "interfaces/interface[eth1]/description=uplink one",
        "netconf-state/datastores/datastore[running]/name=running",
        "netconf-state/datastores/datastore[candidate]/name=candidate",
        "netconf-state/datastores/datastore[startup]/name=startup",
    }


def test_state_filter_without_namespace_matches_any(raw):
    d = data_of(get(raw, subtree('<netconf-state xmlns=""><datastores/></netconf-state>')))
    assert len(d) == 1 and etree.QName(d[0]).namespace == NCM


def test_state_filter_in_inherited_base_namespace(raw):
    """A filter written without any xmlns inherits the <rpc>'s base namespace; the filter
    code treats that as "any namespace" (no data node lives in it), so state must be
    produced for it just as for config."""
    d = data_of(get(raw, subtree("<netconf-state><datastores/></netconf-state>")))
    assert len(d) == 1 and etree.QName(d[0]).namespace == NCM
    assert {x.text for x in d.iter(f"{{{NCM}}}name")} == {"running", "candidate", "startup"}
    d = data_of(get_config(raw, subtree("<interfaces><interface><name>eth1</name>"
                                        "</interface></interfaces>")))
    assert list(interfaces(d)) == ["eth1"]


def test_ncclient_subtree_filters(nc, full):
    r = nc.get_config("running", filter=(
        "subtree",
        f'<interfaces xmlns="{IF}"><interface><name>eth1</name><description/></interface>'
        "</interfaces>",
    ))
    assert flat(r.data) == {
        "interfaces/interface[eth1]/name=eth1",
        "interfaces/interface[eth1]/description=uplink one",
    }
    r = nc.get(filter=("subtree", f'<netconf-state xmlns="{NCM}"><sessions/></netconf-state>'))
    assert nc.session_id in r.data_xml
    assert f"netconf-state/sessions/session[{nc.session_id}]/username=admin" in flat(r.data)
    r = nc.get_config("running", filter=("subtree", f'<interfaces xmlns="{IF}"/>'))
    assert flat(r.data) == flat(full)


# ---- XPath filters ----------------------------------------------------------------------------

ETH1_IPV4 = {
    "interfaces/interface[eth1]/name=eth1",
    "interfaces/interface[eth1]/ipv4/address[192.0.2.1]/ip=192.0.2.1",
    "interfaces/interface[eth1]/ipv4/address[192.0.2.1]/prefix-length=24",
    "interfaces/interface[eth1]/ipv4/vrrp/vrrp-instance[10]/vrid=10",
    "interfaces/interface[eth1]/ipv4/vrrp/vrrp-instance[10]/version=vrrp:vrrp-v3",
    "interfaces/interface[eth1]/ipv4/vrrp/vrrp-instance[10]/priority=200",
    "interfaces/interface[eth1]/ipv4/vrrp/vrrp-instance[10]/virtual-ipv4-addresses/"
    "virtual-ipv4-address[192.0.2.254]/ipv4-address=192.0.2.254",
}


def test_xpath_capability_advertised(raw):
    assert XPATH_CAP in raw.capabilities


def test_xpath_with_prefixes_on_filter_element(raw):
    d = data_of(get_config(raw, (
        f'<filter type="xpath" {NSDECL} '
        "select=\"/if:interfaces/if:interface[if:name='eth1']/ip:ipv4\"/>"
    )))
    assert flat(d) == ETH1_IPV4


def test_xpath_type_and_select_in_base_namespace(raw):
    d = data_of(get_config(raw, (
        f'<filter xmlns:nc="{NC}" nc:type="xpath" {NSDECL} '
        "nc:select=\"/if:interfaces/if:interface[if:name='eth1']/ip:ipv4\"/>"
    )))
    assert flat(d) == ETH1_IPV4


def test_xpath_prefixes_can_be_declared_on_an_ancestor(raw):
    r = raw.rpc(
        f"<get-config {NSDECL}><source><running/></source>"
        "<filter type=\"xpath\" select=\"/if:interfaces/if:interface[if:name='eth1']/ip:ipv4\"/>"
        "</get-config>"
    )
    assert flat(data_of(r)) == ETH1_IPV4


def test_xpath_unprefixed_names(raw):
    d = data_of(get_config(raw, (
        "<filter type=\"xpath\" select=\"/interfaces/interface[name='eth3']/description\"/>"
    )))
    assert flat(d) == {
        "interfaces/interface[eth3]/name=eth3",
        "interfaces/interface[eth3]/description=lan three",
    }


def test_xpath_predicates_and_union(raw):
    d = data_of(get_config(raw, (
        f'<filter type="xpath" {NSDECL} select="'
        "/if:interfaces/if:interface/ip:ipv4/vrrp:vrrp/vrrp:vrrp-instance[vrrp:priority &gt; 150]"
        "/vrrp:virtual-ipv4-addresses"
        " | /if:interfaces/if:interface[if:enabled='false']/if:description\"/>"
    )))
    assert flat(d) == {
        "interfaces/interface[eth1]/name=eth1",
        "interfaces/interface[eth1]/ipv4/vrrp/vrrp-instance[10]/vrid=10",
        "interfaces/interface[eth1]/ipv4/vrrp/vrrp-instance[10]/virtual-ipv4-addresses/"
        "virtual-ipv4-address[192.0.2.254]/ipv4-address=192.0.2.254",
        "interfaces/interface[eth3]/name=eth3",
        "interfaces/interface[eth3]/description=lan three",
    }


def test_xpath_selecting_nothing_gives_empty_data(raw):
    d = data_of(get_config(raw, (
        f"<filter type=\"xpath\" {NSDECL} select=\"/if:interfaces/if:interface[if:name='nope']\"/>"
    )))
    assert len(d) == 0


def test_xpath_on_state_data(raw):
    d = data_of(get(raw, (
        f'<filter type="xpath" {NSDECL} select="/ncm:netconf-state/ncm:sessions/'
        f'ncm:session[ncm:session-id={raw.session_id}]/ncm:username"/>'
    )))
    assert flat(d) == {
        f"netconf-state/sessions/session[{raw.session_id}]/session-id={raw.session_id}",
        f"netconf-state/sessions/session[{raw.session_id}]/username=admin",
    }
    d = data_of(get(raw, (
        f'<filter type="xpath" xmlns:yl="{YL}" '
        "select=\"/yl:yang-library/yl:module-set/yl:module[yl:name='ietf-ip']/yl:feature\"/>"
    )))
    assert "yang-library/module-set[complete]/module[ietf-ip]/feature=" \
        "ipv4-non-contiguous-netmasks" in flat(d)


def test_xpath_errors(raw):
    e = error_of(get_config(raw, (
        f'<filter type="xpath" {NSDECL} select="/if:interfaces/if:interface["/>'
    )))
    assert e["error-tag"] == "invalid-value"
    e = error_of(get_config(raw, '<filter type="xpath" select="/zz:interfaces"/>'))
    assert e["error-tag"] == "invalid-value"
    e = error_of(get_config(raw, f'<filter type="xpath" {NSDECL} select="count(/if:interfaces)"/>'))
    assert e["error-tag"] == "invalid-value"
    e = error_of(get_config(raw, f'<filter type="xpath" {NSDECL}/>'))
    assert e["error-tag"] == "missing-attribute"
    assert e["info:bad-attribute"] == "select"
    e = error_of(get(raw, '<filter type="xpath"/>'))
    assert e["error-tag"] == "missing-attribute"
    e = error_of(get_config(raw, '<filter type="regex" select=".*"/>'))
    assert e["error-tag"] == "bad-attribute"
    assert e["info:bad-attribute"] == "type"
    # the session survives all of them
    assert list(interfaces(data_of(get_config(raw))))


def test_ncclient_xpath_filters(nc):
    from ncclient.operations.rpc import RPCError

    ns = {"if": IF, "ip": IP}
    r = nc.get_config("running", filter=(
        "xpath", (ns, "/if:interfaces/if:interface[if:name='eth1']/ip:ipv4")))
    assert flat(r.data) == ETH1_IPV4
    r = nc.get(filter=("xpath", "/interfaces/interface[name='eth3']/description"))
    assert flat(r.data) == {
        "interfaces/interface[eth3]/name=eth3",
        "interfaces/interface[eth3]/description=lan three",
    }
    with pytest.raises(RPCError) as exc:
        nc.get_config("running", filter=("xpath", "/if:interfaces"))  # prefix not declared
    assert exc.value.tag == "invalid-value"


# ---- with-defaults (RFC 6243) -----------------------------------------------------------------

_I = "interfaces/interface"
DEFAULTED = {  # what report-all adds to CONFIG: defaults of leafs that are not set
    f"{_I}[eth1]/enabled=true",
    f"{_I}[eth1]/ipv4/enabled=true",
    f"{_I}[eth1]/ipv4/forwarding=false",
    f"{_I}[eth1]/ipv4/vrrp/vrrp-instance[10]/accept-mode=false",
    f"{_I}[eth1]/ipv4/vrrp/vrrp-instance[10]/log-state-change=false",
    f"{_I}[eth1]/ipv4/vrrp/vrrp-instance[10]/preempt/enabled=true",
    f"{_I}[eth1]/ipv4/vrrp/vrrp-instance[10]/preempt/hold-time=0",
    f"{_I}[eth2]/ipv4/enabled=true",
    f"{_I}[eth2]/ipv4/forwarding=false",
    f"{_I}[eth2]/ipv4/vrrp/vrrp-instance[20]/accept-mode=false",
    f"{_I}[eth2]/ipv4/vrrp/vrrp-instance[20]/log-state-change=false",
    f"{_I}[eth2]/ipv4/vrrp/vrrp-instance[20]/preempt/enabled=true",
    f"{_I}[eth2]/ipv4/vrrp/vrrp-instance[20]/preempt/hold-time=0",
    f"{_I}[eth2]/ipv4/vrrp/vrrp-instance[20]/priority=100",
    f"{_I}[eth3]/ipv4/enabled=true",
    f"{_I}[eth3]/ipv4/vrrp/vrrp-instance[30]/accept-mode=false",
    f"{_I}[eth3]/ipv4/vrrp/vrrp-instance[30]/log-state-change=false",
    f"{_I}[eth3]/ipv4/vrrp/vrrp-instance[30]/preempt/enabled=true",
    f"{_I}[eth3]/ipv4/vrrp/vrrp-instance[30]/preempt/hold-time=0",
    # the augment's `when` holds only for the macvlan: no macvlan/mode on eth1..eth3
    f"{_I}[mv30]/enabled=true",
    f"{_I}[mv30]/macvlan/mode=vepa",
    # no advertise-interval-*: that choice has no default case (RFC 7950 §7.9.3)
}
EXPLICIT_DEFAULTS = {  # set by the client to their default value
    "interfaces/interface[eth2]/enabled=true",
    "interfaces/interface[eth3]/ipv4/vrrp/vrrp-instance[30]/priority=100",
}


def test_with_defaults_capability(raw):
    caps = [c for c in raw.capabilities if c.split("?")[0] == WD_CAP]
    assert len(caps) == 1
    q = parse_qs(caps[0].split("?", 1)[1])
    assert q["basic-mode"] == ["explicit"]
    assert set(q["also-supported"][0].split(",")) == {"report-all", "report-all-tagged", "trim"}


def test_explicit_is_the_basic_mode(raw, full):
    d = data_of(get_config(raw, wd="explicit"))
    assert flat(d) == flat(full)
    f = flat(full)
    assert EXPLICIT_DEFAULTS <= f
    assert not DEFAULTED & f
    assert "interfaces/interface[eth3]/ipv4/forwarding=true" in f


def test_report_all(raw, full):
    only_ifs = subtree(f'<interfaces xmlns="{IF}"/>')
    for reply in (get_config(raw, wd="report-all"), get(raw, only_ifs, "report-all")):
        f = flat(data_of(reply))
        # explicit values (also those equal to the default) stay, defaults are added
        assert f == flat(full) | DEFAULTED
        # no attributes in report-all
        assert not any(e.attrib for e in data_of(reply).iter())


def test_report_all_with_filters(raw):
    f = subtree(
        f'<interfaces xmlns="{IF}"><interface><ipv4 xmlns="{IP}"><vrrp xmlns="{VRRP}">'
        "<vrrp-instance><priority/></vrrp-instance></vrrp></ipv4></interface></interfaces>"
    )
    want = {
        "interfaces/interface[eth1]/name=eth1",
        "interfaces/interface[eth1]/ipv4/vrrp/vrrp-instance[10]/vrid=10",
        "interfaces/interface[eth1]/ipv4/vrrp/vrrp-instance[10]/priority=200",
        "interfaces/interface[eth3]/name=eth3",
        "interfaces/interface[eth3]/ipv4/vrrp/vrrp-instance[30]/vrid=30",
        "interfaces/interface[eth3]/ipv4/vrrp/vrrp-instance[30]/priority=100",
    }
    # eth2's instance has no priority to show: a containment node selecting nothing is left out
    assert flat(data_of(get_config(raw, f))) == want
    assert flat(data_of(get_config(raw, f, "report-all"))) == want | {
        "interfaces/interface[eth2]/name=eth2",
        "interfaces/interface[eth2]/ipv4/vrrp/vrrp-instance[20]/vrid=20",
        "interfaces/interface[eth2]/ipv4/vrrp/vrrp-instance[20]/priority=100",
    }
    # a content match on a default value matches the defaults in report-all mode only
    cm = subtree(f'<interfaces xmlns="{IF}"><interface><enabled>true</enabled><name/>'
                 "</interface></interfaces>")
    assert list(interfaces(data_of(get_config(raw, cm)))) == ["eth2"]
    assert list(interfaces(data_of(get_config(raw, cm, "report-all")))) == [
        "eth1", "eth2", "mv30"]
    xp = f"<filter type=\"xpath\" {NSDECL} select=\"//vrrp:vrrp-instance[vrrp:priority=100]\"/>"
    got = data_of(get_config(raw, xp, "report-all")).iter(f"{{{VRRP}}}vrid")
    assert sorted(v.text for v in got) == ["20", "30"]


def test_trim(raw, full):
    f = flat(data_of(get_config(raw, wd="trim")))
    assert f == flat(full) - EXPLICIT_DEFAULTS
    assert "interfaces/interface[eth1]/ipv4/vrrp/vrrp-instance[10]/priority=200" in f
    assert "interfaces/interface[eth3]/enabled=false" in f
    assert "interfaces/interface[eth3]/ipv4/forwarding=true" in f
    # <get> trims too
    g = flat(data_of(get(raw, subtree(f'<interfaces xmlns="{IF}"/>'), "trim")))
    assert g == f


def test_report_all_tagged(raw):
    reply = get_config(raw, wd="report-all-tagged")
    d = data_of(reply)
    tagged = {f"{p}={c.text}" for p, c in leaves(d) if c.get(WD_DEFAULT) == "true"}
    # the same content as report-all, but marked
    assert flat(d) == flat(data_of(get_config(raw, wd="report-all")))
    # defaults that filled in, and explicit values equal to the default (RFC 6243 §3.4)
    assert tagged == DEFAULTED | EXPLICIT_DEFAULTS
    # only leafs carry the attribute, and only that attribute
    for e in d.iter():
        if len(e):
            assert not e.attrib
        else:
            assert set(e.attrib) <= {WD_DEFAULT}
    # the attribute's namespace is the RFC 6243 one, declared in the reply
    assert f'="{WD_ATTR}"' in etree.tostring(reply).decode()


def test_report_all_tagged_exact_leafs(raw):
    d = data_of(get_config(raw, subtree(
        f'<interfaces xmlns="{IF}"><interface><name>eth2</name></interface>'
        f'<interface><name>eth3</name></interface></interfaces>'
    ), "report-all-tagged"))
    ifs = interfaces(d)

    def leaf(name: str, *path: tuple[str, str]):
        e = ifs[name]
        for ns, n in path:
            e = e.find(f"{{{ns}}}{n}")
            assert e is not None, (name, path)
        return e

    assert leaf("eth2", (IF, "enabled")).get(WD_DEFAULT) == "true"  # explicit, = default
    assert leaf("eth3", (IF, "enabled")).get(WD_DEFAULT) is None  # explicit false
    inst = (IP, "ipv4"), (VRRP, "vrrp"), (VRRP, "vrrp-instance")
    assert leaf("eth2", *inst, (VRRP, "priority")).get(WD_DEFAULT) == "true"  # defaulted
    assert leaf("eth3", *inst, (VRRP, "priority")).get(WD_DEFAULT) == "true"  # explicit 100
    assert leaf("eth2", *inst, (VRRP, "vrid")).get(WD_DEFAULT) is None
    assert leaf("eth3", (IP, "ipv4"), (IP, "forwarding")).get(WD_DEFAULT) is None
    assert leaf("eth2", (IP, "ipv4"), (IP, "forwarding")).get(WD_DEFAULT) == "true"


def test_with_defaults_bad_mode(raw):
    for mode in ("everything", "", "REPORT-ALL"):
        e = error_of(get_config(raw, wd=mode))
        assert e["error-tag"] == "invalid-value", mode
        e = error_of(get(raw, wd=mode))
        assert e["error-tag"] == "invalid-value", mode


def test_with_defaults_on_candidate(raw):
    # candidate holds the same content as running here
    a = flat(data_of(get_config(raw, wd="report-all", source="candidate")))
    b = flat(data_of(get_config(raw, wd="report-all")))
    assert a == b


def test_ncclient_with_defaults(nc, full):
    assert ":with-defaults" in nc.server_capabilities
    params = nc.server_capabilities[":with-defaults"].parameters
    assert params["basic-mode"] == "explicit"
    f = flat(nc.get_config("running", with_defaults="report-all").data)
    assert f == flat(full) | DEFAULTED
    assert flat(nc.get_config("running", with_defaults="trim").data) == \
        flat(full) - EXPLICIT_DEFAULTS
    r = nc.get(filter=("subtree", f'<interfaces xmlns="{IF}"/>'), with_defaults="report-all-tagged")
    assert WD_ATTR in r.data_xml
    assert flat(nc.get_config("running", with_defaults="explicit").data) == flat(full)


def test_report_all_tagged_with_xpath_filter(raw):
    reply = get_config(raw, (
        f'<filter type="xpath" {NSDECL} select="//vrrp:vrrp-instance/vrrp:priority"/>'
    ), "report-all-tagged")
    d = data_of(reply)
    got = {f"{p}={c.text}": c.get(WD_DEFAULT) for p, c in leaves(d) if local(c) == "priority"}
    assert got == {
        f"{_I}[eth1]/ipv4/vrrp/vrrp-instance[10]/priority=200": None,
        f"{_I}[eth2]/ipv4/vrrp/vrrp-instance[20]/priority=100": "true",
        f"{_I}[eth3]/ipv4/vrrp/vrrp-instance[30]/priority=100": "true",
    }
    # the reply re-parses on its own: the wd prefix is declared
    again = etree.fromstring(etree.tostring(reply))
    assert len(again.xpath("//@wd:default", namespaces={"wd": WD_ATTR})) == 2


def test_with_defaults_applies_to_state_data(raw):
    """The netconf-state counters are yang:zero-based-counter32, whose typedef has default 0
    (RFC 6991): explicit reports them, trim leaves the zero ones out, report-all-tagged tags
    them (RFC 6243 §3.2, §3.3, §3.4 cover non-configuration nodes too)."""
    f = subtree(f'<netconf-state xmlns="{NCM}"><statistics/></netconf-state>')

    def stats(wd):
        d = data_of(get(raw, f, wd))
        return {local(e): e for e in d.iterfind(f".//{{{NCM}}}statistics/*")}

    explicit = stats(None)
    assert explicit["out-notifications"].text == "0"
    assert set(explicit) == set(stats("report-all"))
    trimmed = stats("trim")
    assert "out-notifications" not in trimmed
    assert {k for k, e in explicit.items() if e.text != "0"} <= set(trimmed)
    assert "netconf-start-time" in trimmed and "in-sessions" in trimmed
    tagged = stats("report-all-tagged")
    assert tagged["out-notifications"].get(WD_DEFAULT) == "true"
    assert tagged["in-sessions"].get(WD_DEFAULT) is None


# ---- which state a filter needs (unit) ------------------------------------------------------

_IFS, _IFS_STATE = f"{{{IF}}}interfaces", f"{{{IF}}}interfaces-state"
_PREFIXES = {"if": IF, "ip": IP, "ncm": NCM, "ietf-interfaces": IF}


@pytest.mark.parametrize(("select", "expected"), [
    # the forms that bound the selection
    ("/if:interfaces/if:interface[if:name='m500']", {_IFS: {"m500"}}),
    ("/if:interfaces/if:interface[name='m500']", {_IFS: {"m500"}}),
    ('/if:interfaces-state/if:interface[if:name="m500"]/if:oper-status',
     {_IFS_STATE: {"m500"}}),
    ("/ietf-interfaces:interfaces/ietf-interfaces:interface[name = 'a']", {_IFS: {"a"}}),
    ("/interfaces/interface[name='a']", {"interfaces": {"a"}}),
    ("/if:interfaces/if:interface[if:name='a' or if:name='b']", {_IFS: {"a", "b"}}),
    ("/if:interfaces/if:interface['a'=if:name]", {_IFS: {"a"}}),
    ("/if:interfaces/if:interface[if:name='a'] | /if:interfaces/if:interface[if:name='b']"
     " | /if:interfaces-state/if:interface[if:name='c']/if:statistics/if:in-octets",
     {_IFS: {"a", "b"}, _IFS_STATE: {"c"}}),
    ("/if:interfaces/if:interface[(if:name='a' or if:name='b') and if:enabled='true']",
     {_IFS: {"a", "b"}}),
    ("/if:interfaces/if:interface[if:enabled='true' and not(if:description)][if:name='a']",
     {_IFS: {"a"}}),
    ("/if:interfaces/if:interface[if:name='a' and if:name='b']", {_IFS: set()}),
    ("/if:interfaces/if:interface[if:name='a']/ip:ipv4/ip:address[ip:prefix-length>24]/ip:ip",
     {_IFS: {"a"}}),
    ("/if:interfaces/if:interface[if:name='a']/*/@foo", {_IFS: {"a"}}),
    ("/if:interfaces/if:interface[if:name='a']/if:name/text()", {_IFS: {"a"}}),
    # the whole node, or every entry
    ("/if:interfaces", {_IFS: None}),
    ("/if:interfaces/if:interface/if:oper-status", {_IFS: None}),
    ("/if:interfaces/if:interface[if:oper-status='up']", {_IFS: None}),
    ("/if:interfaces/if:interface[if:name='a' or if:type='x']", {_IFS: None}),
    ("/if:interfaces/if:interface[if:name!='a']", {_IFS: None}),
    ("/if:interfaces/if:interface[not(if:name='a')]", {_IFS: None}),
    ("/if:interfaces/if:interface[if:name=5]", {_IFS: None}),
    ("/if:interfaces/if:interface[ip:name='a']/if:name", {_IFS: None}),  # another leaf
    ("/if:interfaces/if:interface[if:name='a'] | /if:interfaces", {_IFS: None}),
    ("/if:interfaces/if:interface[if:name='a'] | /interfaces/interface",
     {_IFS: {"a"}, "interfaces": None}),
    ("/ncm:netconf-state/ncm:sessions/ncm:session[ncm:session-id=3]/ncm:username",
     {f"{{{NCM}}}netconf-state": None}),
    # not provably bounded: read everything
    ("/", None),
    ("//if:interface[if:name='a']", None),
    ("/if:interfaces//if:interface[if:name='a']", None),
    ("/*/if:interface[if:name='a']", None),
    ("/if:interfaces/*[if:name='a']", None),
    ("/if:interfaces[if:interface/if:name='b']/if:interface[if:name='a']", None),
    ("/if:interfaces/if:interface[1][if:name='a']", None),  # position among all entries
    ("/if:interfaces/if:interface[if:name='a'][last()]", None),
    ("/if:interfaces/if:interface[position()=1 and if:name='a']", None),
    ("/if:interfaces/if:interface[string-length(if:name)]", None),
    ("/if:interfaces/if:interface[if:name='a']/../if:interface", None),
    ("/if:interfaces/if:interface[if:name='a']/following-sibling::if:interface", None),
    ("/if:interfaces/if:interface[if:name='a' and "
     "/if:interfaces/if:interface[if:name='b']/if:oper-status='up']", None),
    ("/if:interfaces/if:interface[if:name='a' and ../if:interface/if:name='b']", None),
    ("/if:interfaces/if:interface[if:name='a' and current()/if:name='a']", None),
    ("/if:interfaces/if:interface[if:name='a']/if:ipv4[../../if:interface]", None),
    ("/if:interfaces/if:interface[if:name=/if:interfaces/if:interface[1]/if:name]", None),
    ("/if:interfaces/if:interface[if:name='a'] | //if:interface", None),
    ("(/if:interfaces/if:interface[if:name='a'])", None),
    ("/x:interfaces/x:interface[x:name='a']", None),  # unknown prefix: the filter says so
    ("/if:interfaces/if:interface[", None),
    ("count(/if:interfaces/if:interface[if:name='a'])", None),
])
def test_xpath_names_wanted(select, expected):
    """Which interfaces an XPath filter can select, proved from its form; anything else
    reads every link (``None``)."""
    from agent.datastore.filter_hints import xpath_names_wanted

    assert xpath_names_wanted(select, _PREFIXES) == expected


def test_subtree_names_wanted_unites_sibling_filters():
    from agent.datastore.filter_hints import names_wanted as _names_wanted

    def spec(xml: str) -> list:
        return list(etree.fromstring(f'<filter xmlns:if="{IF}">{xml}</filter>'))

    one = f'<interfaces xmlns="{IF}"><interface><name>%s</name></interface></interfaces>'
    assert _names_wanted("subtree", spec(one % "a" + one % "b")) == {_IFS: {"a", "b"}}
    assert _names_wanted("subtree", spec(one % "a" + f'<interfaces xmlns="{IF}"/>')) == \
        {_IFS: None}
    assert _names_wanted("subtree", spec(
        one % "a" + f'<interfaces xmlns="{IF}"><interface><type/></interface></interfaces>'
    )) == {_IFS: None}
