"""Unit tests of agent.datastore.filters: subtree (RFC 6241 §6) and XPath filters."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence

import pytest
from lxml import etree

from agent.datastore.filters import parse_filter, subtree_filter, xpath_filter
from agent.protocol.errors import RpcError

NC = "urn:ietf:params:xml:ns:netconf:base:1.0"
CFG = "http://example.com/schema/1.2/config"
STATS = "http://example.com/schema/1.2/stats"
IF = "urn:ietf:params:xml:ns:yang:ietf-interfaces"
IP = "urn:ietf:params:xml:ns:yang:ietf-ip"
IANA = "urn:ietf:params:xml:ns:yang:iana-if-type"

KEYS: dict[str, list[str]] = {
    f"{{{CFG}}}user": [f"{{{CFG}}}name"],
    f"{{{CFG}}}group": [f"{{{CFG}}}name"],
    f"{{{IF}}}interface": [f"{{{IF}}}name"],
    f"{{{IP}}}address": [f"{{{IP}}}ip"],
    "{urn:x}entry": ["{urn:x}k1", "{urn:x}k2"],
}


def keys(elem: etree._Element) -> Sequence[str]:
    return KEYS.get(elem.tag, [])


def data(xml: str) -> etree._Element:
    parser = etree.XMLParser(remove_blank_text=True)
    return etree.fromstring(f'<data xmlns="{NC}">{xml}</data>', parser)


def flt(xml: str) -> list[etree._Element]:
    parser = etree.XMLParser(remove_blank_text=True)
    return list(etree.fromstring(f'<filter xmlns="{NC}" type="subtree">{xml}</filter>', parser))


def canon(e: etree._Element) -> str:
    return etree.tostring(e, method="c14n").decode()


def same(a: etree._Element, b: etree._Element) -> bool:
    return canon(a) == canon(b)


# The configuration used by the RFC 6241 §6.4 examples.
RFC_DATA = f"""
<top xmlns="{CFG}">
  <users>
    <user><name>root</name><type>superuser</type><full-name>Charlie Root</full-name>
      <company-info><dept>1</dept><id>1</id></company-info></user>
    <user><name>fred</name><type>admin</type><full-name>Fred Flintstone</full-name>
      <company-info><dept>2</dept><id>2</id></company-info></user>
    <user><name>barney</name><type>admin</type><full-name>Barney Rubble</full-name>
      <company-info><dept>2</dept><id>3</id></company-info></user>
  </users>
  <groups>
    <group><name>admin</name></group>
  </groups>
</top>
"""


@pytest.fixture
def rfc() -> etree._Element:
    return data(RFC_DATA)


# --------------------------------------------------------------------------- RFC 6241 §6.4


def test_rfc_6_4_2_empty_filter(rfc: etree._Element) -> None:
    out = subtree_filter(rfc, flt(""), keys)
    assert out.tag == f"{{{NC}}}data" and len(out) == 0


def test_rfc_6_4_3_entire_users_subtree(rfc: etree._Element) -> None:
    out = subtree_filter(rfc, flt(f'<top xmlns="{CFG}"><users/></top>'), keys)
    expected = data(f'<top xmlns="{CFG}">{etree.tostring(rfc[0][0]).decode()}</top>')
    assert same(out, expected)


def test_rfc_6_4_4_all_name_elements_in_users(rfc: etree._Element) -> None:
    out = subtree_filter(
        rfc, flt(f'<top xmlns="{CFG}"><users><user><name/></user></users></top>'), keys
    )
    expected = data(
        f'<top xmlns="{CFG}"><users><user><name>root</name></user><user><name>fred</name></user>'
        "<user><name>barney</name></user></users></top>"
    )
    assert same(out, expected)


def test_rfc_6_4_5_one_specific_user_entry(rfc: etree._Element) -> None:
    out = subtree_filter(
        rfc, flt(f'<top xmlns="{CFG}"><users><user><name>fred</name></user></users></top>'), keys
    )
    fred = etree.tostring(rfc[0][0][1]).decode()
    assert same(out, data(f'<top xmlns="{CFG}"><users>{fred}</users></top>'))


def test_rfc_6_4_6_specific_elements_from_a_specific_user(rfc: etree._Element) -> None:
    f = flt(
        f'<top xmlns="{CFG}"><users><user><name>fred</name><type/><full-name/></user></users></top>'
    )
    expected = data(
        f'<top xmlns="{CFG}"><users><user><name>fred</name><type>admin</type>'
        "<full-name>Fred Flintstone</full-name></user></users></top>"
    )
    assert same(subtree_filter(rfc, f, keys), expected)


def test_rfc_6_4_7_multiple_subtrees(rfc: etree._Element) -> None:
    f = flt(
        f"""<top xmlns="{CFG}"><users>
          <user><name>root</name><company-info/></user>
          <user><name>fred</name><company-info><id/></company-info></user>
          <user><name>barney</name><type>superuser</type><company-info><dept/></company-info>
          </user></users></top>"""
    )
    expected = data(
        f"""<top xmlns="{CFG}"><users>
          <user><name>root</name><company-info><dept>1</dept><id>1</id></company-info></user>
          <user><name>fred</name><company-info><id>2</id></company-info></user>
        </users></top>"""
    )
    assert same(subtree_filter(rfc, f, keys), expected)


def test_rfc_6_4_8_elements_with_attribute_naming() -> None:
    d = data(
        f"""<t:top xmlns:t="{STATS}"><t:interfaces>
          <t:interface t:ifName="eth0"><t:ifInOctets>45621</t:ifInOctets>
            <t:ifOutOctets>774344</t:ifOutOctets></t:interface>
          <t:interface t:ifName="eth1"><t:ifInOctets>1</t:ifInOctets>
            <t:ifOutOctets>2</t:ifOutOctets></t:interface>
        </t:interfaces></t:top>"""
    )
    f = flt(
        f'<t:top xmlns:t="{STATS}"><t:interfaces><t:interface t:ifName="eth0"/></t:interfaces>'
        "</t:top>"
    )
    out = subtree_filter(d, f, keys)
    ifs = out.findall(f".//{{{STATS}}}interface")
    assert [i.get(f"{{{STATS}}}ifName") for i in ifs] == ["eth0"]
    assert ifs[0].findtext(f"{{{STATS}}}ifOutOctets") == "774344"
    # an attribute absent from the data never matches
    f2 = flt(f'<top xmlns="{CFG}" foo="1"/>')
    assert len(subtree_filter(data(RFC_DATA), f2, keys)) == 0


# --------------------------------------------------------------------------- semantics


@pytest.fixture
def ifs() -> etree._Element:
    return data(
        f"""<interfaces xmlns="{IF}">
          <interface><name>eth0</name><description>up link</description>
            <type xmlns:ianaift="{IANA}">ianaift:ethernetCsmacd</type><enabled>true</enabled>
            <ipv4 xmlns="{IP}"><enabled>true</enabled><mtu>1500</mtu>
              <address><ip>10.0.0.1</ip><prefix-length>24</prefix-length></address>
              <address><ip>10.0.1.1</ip><prefix-length>16</prefix-length></address></ipv4>
          </interface>
          <interface><name>eth1</name>
            <type xmlns:ianaift="{IANA}">ianaift:ethernetCsmacd</type><enabled>false</enabled>
            <ipv4 xmlns="{IP}"><mtu>9000</mtu></ipv4></interface>
          <interface><name>lo</name>
            <type xmlns:x="{IANA}">x:softwareLoopback</type><enabled>true</enabled></interface>
        </interfaces>
        <other xmlns="urn:other"><name>eth0</name></other>"""
    )


def names(out: etree._Element) -> list[str | None]:
    return [i.findtext(f"{{{IF}}}name") for i in out.iter(f"{{{IF}}}interface")]


def test_content_match_siblings_are_anded(ifs: etree._Element) -> None:
    def sel(body: str) -> list[str | None]:
        return names(subtree_filter(ifs, flt(f'<interfaces xmlns="{IF}"><interface>{body}'
                                             "</interface></interfaces>"), keys))  # fmt: skip

    assert sel("<enabled>true</enabled>") == ["eth0", "lo"]
    assert sel("<name>eth0</name><enabled>true</enabled>") == ["eth0"]
    assert sel("<name>eth1</name><enabled>true</enabled>") == []
    assert sel("<name>nope</name>") == []


def test_content_match_only_returns_whole_entry(ifs: etree._Element) -> None:
    out = subtree_filter(
        ifs, flt(f'<interfaces xmlns="{IF}"><interface><name>eth0</name></interface></interfaces>'),
        keys,
    )  # fmt: skip
    assert same(out[0][0], ifs[0][0])


def test_content_match_with_selection_siblings_returns_only_those(ifs: etree._Element) -> None:
    f = flt(
        f'<interfaces xmlns="{IF}"><interface><enabled>true</enabled><description/>'
        "</interface></interfaces>"
    )
    out = subtree_filter(ifs, f, keys)
    # key first (not requested), then the content match node and the selection, document order
    assert [[c.tag.split("}")[1] for c in e] for e in out[0]] == [
        ["name", "description", "enabled"],
        ["name", "enabled"],
    ]


def test_content_match_whitespace_and_qname(ifs: etree._Element) -> None:
    f = flt(f'<interfaces xmlns="{IF}"><interface><name>\n  eth1  </name></interface></interfaces>')
    assert names(subtree_filter(ifs, f, keys)) == ["eth1"]
    # identityref: same identity written with another prefix
    f = flt(
        f'<interfaces xmlns="{IF}"><interface><type xmlns:t="{IANA}">t:softwareLoopback</type>'
        "<name/></interface></interfaces>"
    )
    out = subtree_filter(ifs, f, keys)
    assert names(out) == ["lo"]
    f = flt(
        f'<interfaces xmlns="{IF}"><interface><type xmlns:t="urn:other">t:softwareLoopback</type>'
        "</interface></interfaces>"
    )
    assert names(subtree_filter(ifs, f, keys)) == []


def test_content_match_on_non_leaf_fails(ifs: etree._Element) -> None:
    f = flt(f'<interfaces xmlns="{IF}"><interface><ipv4 xmlns="{IP}">x</ipv4></interface>'
            "</interfaces>")  # fmt: skip
    assert len(subtree_filter(ifs, f, keys)) == 0


def test_namespace_wildcard_and_mismatch(ifs: etree._Element) -> None:
    f = flt('<interfaces xmlns=""><interface><name>eth1</name></interface></interfaces>')
    assert names(subtree_filter(ifs, f, keys)) == ["eth1"]
    # wrong namespace: nothing
    f = flt('<interfaces xmlns="urn:wrong"><interface/></interfaces>')
    assert len(subtree_filter(ifs, f, keys)) == 0
    # a top-level name without namespace matches in every module
    out = subtree_filter(ifs, flt('<name xmlns=""/>'), keys)
    assert len(out) == 0  # no top-level "name"
    out = subtree_filter(ifs, flt('<other xmlns=""/><interfaces xmlns=""/>'), keys)
    assert [e.tag for e in out] == [f"{{{IF}}}interfaces", "{urn:other}other"]


def test_filter_nodes_in_netconf_namespace_match_any_namespace(ifs: etree._Element) -> None:
    # <filter xmlns=NC><interfaces/></filter>: "interfaces" inherits the NETCONF namespace
    f = flt("<interfaces><interface><name>lo</name></interface></interfaces>")
    assert names(subtree_filter(ifs, f, keys)) == ["lo"]


def test_key_leafs_included_first(ifs: etree._Element) -> None:
    f = flt(
        f'<interfaces xmlns="{IF}"><interface><ipv4 xmlns="{IP}"><address><prefix-length/>'
        "</address></ipv4></interface></interfaces>"
    )
    out = subtree_filter(ifs, f, keys)
    eth0 = out[0][0]
    assert [c.tag.split("}")[1] for c in eth0] == ["name", "ipv4"]
    addrs = eth0[1].findall(f"{{{IP}}}address")
    assert [[c.text for c in a] for a in addrs] == [["10.0.0.1", "24"], ["10.0.1.1", "16"]]
    assert names(out) == ["eth0"]  # eth1 has no address, lo no ipv4


def test_keys_in_schema_order() -> None:
    d = data('<l xmlns="urn:x"><entry><v>1</v><k2>b</k2><k1>a</k1></entry></l>')
    out = subtree_filter(d, flt('<l xmlns="urn:x"><entry><v/></entry></l>'), keys)
    assert [c.tag for c in out[0][0]] == ["{urn:x}k1", "{urn:x}k2", "{urn:x}v"]


def test_union_of_sibling_filters_same_name(ifs: etree._Element) -> None:
    f = flt(
        f'<interfaces xmlns="{IF}"><interface><name>lo</name></interface>'
        "<interface><name>eth0</name><enabled/></interface>"
        "<interface><name>eth0</name><description/></interface></interfaces>"
    )
    out = subtree_filter(ifs, f, keys)
    assert names(out) == ["eth0", "lo"]  # document order, no duplicates
    eth0 = out[0][0]
    assert [c.tag.split("}")[1] for c in eth0] == ["name", "description", "enabled"]
    assert same(out[0][1], ifs[0][2])  # lo: content match only -> whole entry


def test_union_selection_wins_over_partial(ifs: etree._Element) -> None:
    f = flt(
        f'<interfaces xmlns="{IF}"><interface><name>eth1</name><enabled/></interface>'
        "<interface><name>eth1</name></interface></interfaces>"
    )
    out = subtree_filter(ifs, f, keys)
    assert same(out[0][0], ifs[0][1])


def test_top_level_content_match_selects_matching_leaf() -> None:
    d = data('<hostname xmlns="urn:x">r1</hostname><other xmlns="urn:x">1</other>')
    out = subtree_filter(d, flt('<hostname xmlns="urn:x">r1</hostname>'), keys)
    assert [e.text for e in out] == ["r1"]
    assert len(subtree_filter(d, flt('<hostname xmlns="urn:x">r2</hostname>'), keys)) == 0


def test_leaf_list_content_match() -> None:
    d = data('<c xmlns="urn:x"><tag>a</tag><tag>b</tag><tag>c</tag><x>1</x></c>')
    out = subtree_filter(d, flt('<c xmlns="urn:x"><tag>b</tag><x/></c>'), keys)
    assert [(e.tag.split("}")[1], e.text) for e in out[0]] == [("tag", "b"), ("x", "1")]


def test_input_untouched_output_new_and_namespaces_kept(ifs: etree._Element) -> None:
    before = canon(ifs)
    f = flt(f'<interfaces xmlns="{IF}"><interface><type/></interface></interfaces>')
    out = subtree_filter(ifs, f, keys)
    assert canon(ifs) == before
    assert all(e.getroottree().getroot() is out for e in out.iter())
    # identityref prefixes still resolve in the output
    types = list(out.iter(f"{{{IF}}}type"))
    assert [t.nsmap[t.text.split(":")[0]] for t in types] == [IANA] * 3
    # re-parsing the serialized output keeps them too
    again = etree.fromstring(etree.tostring(out))
    t = next(again.iter(f"{{{IF}}}type"))
    assert t.nsmap["ianaift"] == IANA


def test_containment_without_result_is_omitted(ifs: etree._Element) -> None:
    f = flt(f'<interfaces xmlns="{IF}"><interface><nothing/></interface></interfaces>')
    assert len(subtree_filter(ifs, f, keys)) == 0


# --------------------------------------------------------------------------- big data


def big(n: int = 1000) -> etree._Element:
    root = etree.Element(f"{{{NC}}}data", nsmap={None: NC})
    ifs = etree.SubElement(root, f"{{{IF}}}interfaces", nsmap={None: IF})
    for i in range(n):
        e = etree.SubElement(ifs, f"{{{IF}}}interface")
        etree.SubElement(e, f"{{{IF}}}name").text = f"eth{i}"
        etree.SubElement(e, f"{{{IF}}}description").text = f"port {i}"
        t = etree.SubElement(e, f"{{{IF}}}type", nsmap={"ianaift": IANA})
        t.text = "ianaift:ethernetCsmacd" if i % 10 else "ianaift:softwareLoopback"
        etree.SubElement(e, f"{{{IF}}}enabled").text = "true"
        v4 = etree.SubElement(e, f"{{{IP}}}ipv4", nsmap={"ip": IP})
        etree.SubElement(v4, f"{{{IP}}}mtu").text = "1500"
        for j in range(3):
            a = etree.SubElement(v4, f"{{{IP}}}address")
            etree.SubElement(a, f"{{{IP}}}ip").text = f"10.{j}.{i // 256}.{i % 256}"
            etree.SubElement(a, f"{{{IP}}}prefix-length").text = "24"
    etree.SubElement(root, "{urn:other}other").text = "x"
    return root


def best_of(fn, n: int = 5) -> float:
    best = math.inf
    for _ in range(n):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def test_big_one_interface_by_name_is_fast() -> None:
    d = big()
    f = flt(f'<interfaces xmlns="{IF}"><interface><name>eth500</name></interface></interfaces>')
    out = subtree_filter(d, f, keys)
    assert names(out) == ["eth500"] and same(out[0][0], d[0][500])
    elapsed = best_of(lambda: subtree_filter(d, f, keys))
    assert elapsed < 0.02, f"{elapsed * 1000:.1f} ms"


def test_big_prefilter_keeps_exact_semantics() -> None:
    d = big(100)
    d[0][7].find(f"{{{IF}}}name").text = "  eth7 "  # whitespace around a value
    # "eth5" is a substring of eth50..eth59: the C pre-filter over-approximates, Python decides
    f = flt(f'<interfaces xmlns="{IF}"><interface><name>eth5</name><enabled/></interface>'
            "<interface><name>eth7</name><enabled/></interface></interfaces>")  # fmt: skip
    assert names(subtree_filter(d, f, keys)) == ["eth5", "  eth7 "]
    f = flt(
        f'<interfaces xmlns=""><interface><type xmlns:t="{IANA}">t:softwareLoopback</type>'
        "<name/></interface></interfaces>"
    )
    assert names(subtree_filter(d, f, keys)) == [f"eth{i}" for i in range(0, 100, 10)]


def test_big_select_everything_is_a_copy() -> None:
    d = big()
    out = subtree_filter(d, flt(f'<interfaces xmlns="{IF}"/><other xmlns="urn:other"/>'), keys)
    assert same(out, d)
    # only one top-level subtree (copied piecewise, it is large)
    out = subtree_filter(d, flt(f'<interfaces xmlns="{IF}"/>'), keys)
    assert len(out) == 1 and same(out[0], d[0])
    f = flt(f'<interfaces xmlns="{IF}"><interface/></interfaces>')
    assert same(subtree_filter(d, f, keys)[0], d[0])


# --------------------------------------------------------------------------- xpath filter


def test_xpath_selected_nodes_with_ancestors_and_keys(ifs: etree._Element) -> None:
    out = xpath_filter(
        ifs, "/if:interfaces/if:interface/ip:ipv4/ip:address[ip:prefix-length=16]/ip:prefix-length",
        {"if": IF, "ip": IP}, keys,
    )  # fmt: skip
    expected = data(
        f'<interfaces xmlns="{IF}"><interface><name>eth0</name><ipv4 xmlns="{IP}"><address>'
        "<ip>10.0.1.1</ip><prefix-length>16</prefix-length></address></ipv4></interface>"
        "</interfaces>"
    )
    assert same(out, expected)


def test_xpath_selected_element_includes_subtree(ifs: etree._Element) -> None:
    out = xpath_filter(ifs, "//if:interface[if:name='eth1']", {"if": IF}, keys)
    assert same(out[0][0], ifs[0][1])
    assert len(out) == 1


def test_xpath_unprefixed_names_match_by_local_name(ifs: etree._Element) -> None:
    out = xpath_filter(ifs, "/interfaces/interface[enabled='false']/name", {}, keys)
    assert names(out) == ["eth1"]
    out = xpath_filter(ifs, "//name", {}, keys)
    assert [e.tag for e in out] == [f"{{{IF}}}interfaces", "{urn:other}other"]


def test_xpath_union_text_nodes_and_root(ifs: etree._Element) -> None:
    out = xpath_filter(ifs, "//if:interface[if:name='lo']/if:enabled | /x:other", {
        "if": IF, "x": "urn:other"}, keys)  # fmt: skip
    assert names(out) == ["lo"] and out[1].tag == "{urn:other}other"
    out = xpath_filter(ifs, "//if:description/text()", {"if": IF}, keys)
    assert [c.tag.split("}")[1] for c in out[0][0]] == ["name", "description"]
    assert same(xpath_filter(ifs, "/", {}, keys), ifs)
    assert len(xpath_filter(ifs, "//nothing", {}, keys)) == 0


def test_xpath_filter_does_not_mutate(ifs: etree._Element) -> None:
    before = canon(ifs)
    xpath_filter(ifs, "//ip:address", {"ip": IP}, keys)
    assert canon(ifs) == before


@pytest.mark.parametrize("select", ["count(//name)", "1 = 1", "'x'"])
def test_xpath_non_node_set_is_invalid_value(ifs: etree._Element, select: str) -> None:
    with pytest.raises(RpcError) as ei:
        xpath_filter(ifs, select, {}, keys)
    assert ei.value.tag == "invalid-value" and "node-set" in (ei.value.message or "")


def test_xpath_syntax_error_is_invalid_value(ifs: etree._Element) -> None:
    with pytest.raises(RpcError) as ei:
        xpath_filter(ifs, "/interfaces/interface[", {}, keys)
    assert ei.value.tag == "invalid-value" and "/interfaces/interface[" in (ei.value.message or "")


def test_xpath_unknown_prefix_is_invalid_value(ifs: etree._Element) -> None:
    with pytest.raises(RpcError) as ei:
        xpath_filter(ifs, "/foo:interfaces", {"if": IF}, keys)
    assert ei.value.tag == "invalid-value" and "'foo'" in (ei.value.message or "")


def test_xpath_big_is_fast() -> None:
    d = big()
    sel = "/if:interfaces/if:interface[if:name='eth500']"
    out = xpath_filter(d, sel, {"if": IF}, keys)
    assert names(out) == ["eth500"]
    elapsed = best_of(lambda: xpath_filter(d, sel, {"if": IF}, keys))
    assert elapsed < 0.02, f"{elapsed * 1000:.1f} ms"
    assert same(xpath_filter(d, "/if:interfaces | /o:other", {"if": IF, "o": "urn:other"}, keys), d)


# --------------------------------------------------------------------------- parse_filter


def parse(xml: str) -> etree._Element:
    return etree.fromstring(xml)


def test_parse_filter_default_subtree() -> None:
    kind, children = parse_filter(
        parse(f'<filter xmlns="{NC}"><top xmlns="{CFG}"/><!--c--></filter>')
    )
    assert kind == "subtree" and [c.tag for c in children] == [f"{{{CFG}}}top"]  # type: ignore[union-attr]
    kind, children = parse_filter(parse(f'<filter xmlns="{NC}" type="subtree"/>'))
    assert kind == "subtree" and children == []


def test_parse_filter_xpath_prefixes_inherited() -> None:
    rpc = parse(
        f'<rpc xmlns="{NC}" xmlns:if="{IF}"><get><filter xmlns:ip="{IP}" type="xpath" '
        'select="/if:interfaces/if:interface/ip:ipv4"/></get></rpc>'
    )
    kind, (select, prefixes) = parse_filter(rpc[0][0])  # type: ignore[misc]
    assert kind == "xpath"
    assert select == "/if:interfaces/if:interface/ip:ipv4"
    assert prefixes == {"if": IF, "ip": IP}


def test_parse_filter_type_in_netconf_namespace() -> None:
    f = parse(f'<nc:filter xmlns:nc="{NC}" nc:type="xpath" nc:select="/a"/>')
    assert parse_filter(f) == ("xpath", ("/a", {"nc": NC}))


def test_parse_filter_bad_type() -> None:
    with pytest.raises(RpcError) as ei:
        parse_filter(parse(f'<filter xmlns="{NC}" type="regex"/>'))
    e = ei.value
    assert (e.tag, e.type) == ("bad-attribute", "protocol")
    assert (f"{{{NC}}}bad-attribute", "type") in e.info
    assert (f"{{{NC}}}bad-element", "filter") in e.info


def test_parse_filter_xpath_without_select() -> None:
    with pytest.raises(RpcError) as ei:
        parse_filter(parse(f'<filter xmlns="{NC}" type="xpath"/>'))
    e = ei.value
    assert (e.tag, e.type) == ("missing-attribute", "protocol")
    assert (f"{{{NC}}}bad-attribute", "select") in e.info
