"""pyangbind bindings: generation (tools/gen_bindings.py), wrapper (agent/model/bindings.py)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from lxml import etree

from agent.model import bindings as B

ROOT = Path(__file__).resolve().parent.parent
GEN = ROOT / "tools" / "gen_bindings.py"
IF, IP, VRRP, IANA, MV = B.IF_NS, B.IP_NS, B.VRRP_NS, B.IANAIFT_NS, B.MACVLAN_NS
GENERATED = ("yang_model.py", "__init__.py", "README")


def gen(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(GEN), *args], capture_output=True, text=True,
                          timeout=120)


# ------------------------------------------------------------------------------ generation


def test_generation_is_deterministic_and_matches_committed(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    assert gen("--out", str(a)).returncode == 0
    assert gen("--out", str(b)).returncode == 0
    for name in GENERATED:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
        assert (a / name).read_bytes() == (ROOT / "bindings" / name).read_bytes(), name
    # standard modules come from pyang's share/yang/modules, never from the repository
    assert not list((ROOT / "yang").glob("ietf-*.yang"))
    # no install path in the output: it does not depend on where pyang lives
    assert sys.prefix.encode() not in (a / "yang_model.py").read_bytes()


def test_check_passes_on_committed_tree():
    t = time.monotonic()
    r = gen("--check")
    assert r.returncode == 0, r.stderr
    assert "up to date" in r.stdout
    assert time.monotonic() - t < 5


def test_check_fails_and_names_stale_files(tmp_path):
    copy = tmp_path / "bindings"
    shutil.copytree(ROOT / "bindings", copy, ignore=shutil.ignore_patterns("__pycache__"))
    assert gen("--check", "--out", str(copy)).returncode == 0
    with open(copy / "yang_model.py", "a") as f:
        f.write("# hand edit\n")
    (copy / "README").unlink()
    r = gen("--check", "--out", str(copy))
    assert r.returncode == 1
    assert "yang_model.py" in r.stderr and "README" in r.stderr
    assert "__init__.py" not in r.stderr


# ------------------------------------------------------------------------------ a realistic config

CONFIG = f"""<interfaces xmlns="{IF}" xmlns:ianaift="{IANA}" xmlns:mv="{MV}">
<interface><name>lan0</name><type>ianaift:ethernetCsmacd</type><enabled>true</enabled>
 <ipv4 xmlns="{IP}"><address><ip>192.0.2.2</ip><prefix-length>24</prefix-length></address>
  <vrrp xmlns="{VRRP}" xmlns:v="{VRRP}"><vrrp-instance><vrid>10</vrid><version>v:vrrp-v3</version>
   <priority>200</priority><accept-mode>true</accept-mode>
   <advertise-interval-centi-sec>50</advertise-interval-centi-sec>
   <preempt><enabled>false</enabled><hold-time>3</hold-time></preempt>
   <track><interfaces><interface><interface>wan0</interface>
     <priority-decrement>20</priority-decrement></interface></interfaces>
    <networks><network><prefix>198.51.100.0/24</prefix>
     <priority-decrement>15</priority-decrement></network></networks></track>
   <virtual-ipv4-addresses>
    <virtual-ipv4-address><ipv4-address>192.0.2.1</ipv4-address></virtual-ipv4-address>
    <virtual-ipv4-address><ipv4-address>192.0.2.100</ipv4-address></virtual-ipv4-address>
   </virtual-ipv4-addresses>
  </vrrp-instance></vrrp></ipv4>
 <ipv6 xmlns="{IP}"><address><ip>2001:db8::2</ip><prefix-length>64</prefix-length></address>
  <vrrp xmlns="{VRRP}"><vrrp-instance><vrid>20</vrid><version>vrrp-v3</version>
   <virtual-ipv6-addresses>
    <virtual-ipv6-address><ipv6-address>fe80::1</ipv6-address></virtual-ipv6-address>
    <virtual-ipv6-address><ipv6-address>2001:db8::1</ipv6-address></virtual-ipv6-address>
   </virtual-ipv6-addresses>
  </vrrp-instance></vrrp></ipv6>
</interface>
<interface><name>wan0</name><type>ianaift:ethernetCsmacd</type>
 <ipv4 xmlns="{IP}"><address><ip>198.51.100.2</ip><netmask>255.255.255.0</netmask></address>
 </ipv4></interface>
<interface><name>vrrp10</name><type>mv:macvlan</type><enabled>false</enabled>
 <mv:macvlan><mv:lower-interface>lan0</mv:lower-interface><mv:mode>private</mv:mode>
  <mv:mac-address>00:00:5e:00:01:0a</mv:mac-address></mv:macvlan></interface>
</interfaces>"""


@pytest.fixture
def running(server, client):
    """The running datastore tree after a realistic edit-config, as backends receive it."""
    from inproc import ok

    reply = client.edit(CONFIG)
    assert ok(reply), etree.tostring(reply)
    return server.datastores["running"].tree


def test_vrrp_instances_are_typed(running):
    m = B.ConfigModel(running)
    assert m.interface_names() == ["lan0", "wan0", "vrrp10"]
    assert list(m.vrrp_keys()) == [B.VrrpKey("lan0", "ipv4", 10), B.VrrpKey("lan0", "ipv6", 20)]
    insts = {(i, f): v for i, f, v in m.vrrp_instances()}
    v4, v6 = insts["lan0", "ipv4"], insts["lan0", "ipv6"]

    assert isinstance(v4.vrid, int) and v4.vrid == 10
    assert isinstance(v4.priority, int) and v4.priority == 200
    assert B.identity(v4.version) == B.Identity("ietf-vrrp", "vrrp-v3", VRRP)
    assert B.identity(v4.version).prefixed == "vrrp:vrrp-v3"
    assert v4.accept_mode is not None and bool(v4.accept_mode) is True
    assert bool(v4.preempt.enabled) is False and v4.preempt.hold_time == 3
    assert v4.advertise_interval_centi_sec == 50
    assert list(v4.track.interfaces.interface) == ["wan0"]
    assert v4.track.interfaces.interface["wan0"].priority_decrement == 20
    assert v4.track.networks.network["198.51.100.0/24"].priority_decrement == 15
    assert list(v4.virtual_ipv4_addresses.virtual_ipv4_address) == ["192.0.2.1", "192.0.2.100"]
    assert v4._path()[-1] == "vrrp-instance[vrid='10']"

    assert v6.vrid == 20 and B.identity(v6.version).name == "vrrp-v3"
    assert list(v6.virtual_ipv6_addresses.virtual_ipv6_address) == ["fe80::1", "2001:db8::1"]
    # defaults are not in the tree: value() gives the YANG default (pyangbind reads 0)
    assert v6.priority == 0 and B.value(v6.priority) == 100
    assert B.value(v6.advertise_interval_centi_sec) == 100
    assert B.value(v4.priority) == 200
    # pyangbind drops a falsy YANG default (accept-mode false): the caller's default is used
    assert B.value(v6.accept_mode) is None and B.value(v6.accept_mode, False) is False
    assert m.built == 2


def test_interfaces_and_macvlan_are_typed(running):
    m = B.ConfigModel(running)
    lan = m.interface("lan0")
    assert lan.name == "lan0" and bool(lan.enabled) is True
    assert B.identity(lan.type) == B.Identity("iana-if-type", "ethernetCsmacd", IANA)
    assert lan.ipv4.address["192.0.2.2"].prefix_length == 24
    assert lan.ipv6.address["2001:db8::2"].prefix_length == 64
    assert m.interface("wan0").ipv4.address["198.51.100.2"].netmask == "255.255.255.0"
    # a VRRP instance asked for after its interface is the interface's own object
    assert m.vrrp_instance(B.VrrpKey("lan0", "ipv4", 10)) is lan.ipv4.vrrp.vrrp_instance[10]

    mv = m.interface("vrrp10")
    assert B.identity(mv.type) == B.Identity("netconf-vrrp-agent-macvlan", "macvlan", MV)
    assert bool(mv.enabled) is False
    assert mv.macvlan.lower_interface == "lan0"
    assert mv.macvlan.mode == "private"
    assert mv.macvlan.mac_address == "00:00:5e:00:01:0a"
    assert m.interface("nope") is None
    assert m.built == 3


def _norm(e: etree._Element):
    """(tag, text, children) with identityref texts resolved to (namespace, name)."""
    text = (e.text or "").strip()
    if ":" in text and not text.count(":") > 1:
        p, _, n = text.partition(":")
        if p in e.nsmap:
            text = (e.nsmap[p], n)
    return (e.tag, text, [_norm(c) for c in e if isinstance(c.tag, str)])


def test_to_element_round_trips_the_datastore_tree(running):
    m = B.ConfigModel(running)
    for name in m.interface_names():
        back = B.to_element(m.interface(name))
        assert _norm(back) == _norm(m.interface_element(name)), name
        # every element carries its module's own prefix
        assert back.prefix == "if"
    inst = B.to_element(m.vrrp_instance(B.VrrpKey("lan0", "ipv6", 20)))
    assert inst.tag == f"{{{VRRP}}}vrrp-instance" and inst.prefix == "vrrp"


def test_state_data_to_element_declares_identity_prefixes():
    m = B.ConfigModel(etree.fromstring(
        f'<data xmlns="urn:ietf:params:xml:ns:netconf:base:1.0">{CONFIG}</data>'))
    v = m.vrrp_instance(B.VrrpKey("lan0", "ipv4", 10))
    v._set_state("master")
    v._set_is_owner(False)
    v.statistics._set_advertisement_sent(42)
    el = etree.fromstring(etree.tostring(B.to_element(v)))  # reparse: prefixes must resolve
    st = el.find(f"{{{VRRP}}}state")
    p, _, n = st.text.partition(":")
    assert n == "master" and st.nsmap[p] == VRRP
    assert el.findtext(f"{{{VRRP}}}is-owner") == "false"
    assert el.findtext(f"{{{VRRP}}}statistics/{{{VRRP}}}advertisement-sent") == "42"
    lan = B.to_element(m.interface("lan0"))
    t = etree.fromstring(etree.tostring(lan)).find(f"{{{IF}}}type")
    assert t.text == "ianaift:ethernetCsmacd" and t.nsmap["ianaift"] == IANA


# ------------------------------------------------------------------------------ the workarounds


def _tree(body: str) -> etree._Element:
    return etree.fromstring(f'<data xmlns="urn:ietf:params:xml:ns:netconf:base:1.0">{body}</data>')


def _raw_decode(body: str):
    from pyangbind.lib.serialise import pybindIETFXMLDecoder

    xml = f'<ietf-interfaces xmlns="{IF}">{body}</ietf-interfaces>'
    return pybindIETFXMLDecoder.decode(xml, B.raw_generated_module(), "ietf_interfaces")


ONE = (f'<interfaces xmlns="{IF}"><interface><name>e0</name>'
       f'<type xmlns:x="{IANA}">x:ethernetCsmacd</type>{{extra}}'
       f'<ipv4 xmlns="{IP}"><vrrp xmlns="{VRRP}"><vrrp-instance><vrid>10</vrid>'
       f'<version xmlns:v="{VRRP}">v:vrrp-v3</version>{{inst}}</vrrp-instance></vrrp></ipv4>'
       "</interface></interfaces>")


def test_identityref_prefix_bug_and_workaround():
    import pyangbind.lib.pybindJSON as pj

    raw = B.raw_generated_module()
    r = raw.ietf_interfaces()
    r.interfaces.interface.add("e0").type = "ianaift:ethernetCsmacd"
    assert "iana-if-type:ianaift:ethernetCsmacd" in pj.dumps(r, mode="ietf")  # the bug
    m = B.ConfigModel(_tree(ONE.format(extra="", inst="")))
    m.interface("e0")
    out = json.loads(pj.dumps(m.root, mode="ietf"))
    itf = out["ietf-interfaces:interfaces"]["interface"][0]
    assert itf["type"] == "iana-if-type:ethernetCsmacd"


def test_identity_namespace_is_checked():
    wrong = ONE.replace(f'xmlns:x="{IANA}"', f'xmlns:x="{VRRP}"').format(extra="", inst="")
    assert _raw_decode(wrong.replace(f'<interfaces xmlns="{IF}">', "<interfaces>")
                       ).interfaces.interface["e0"].type == "ethernetCsmacd"  # raw: accepted
    with pytest.raises(B.BindingError, match="ethernetCsmacd"):
        B.ConfigModel(_tree(wrong)).interface("e0")


def test_element_namespaces_are_checked():
    bogus = ONE.format(extra='<description xmlns="urn:bogus">x</description>', inst="")
    raw = _raw_decode(bogus.replace(f'<interfaces xmlns="{IF}">', "<interfaces>"))
    assert raw.interfaces.interface["e0"].description == "x"  # the bug: namespace ignored
    with pytest.raises(B.BindingError, match="urn:bogus"):
        B.ConfigModel(_tree(bogus)).interface("e0")


def test_config_false_nodes_refused_in_config():
    state = ONE.format(extra="", inst=f'<state xmlns:v="{VRRP}">v:master</state>')
    raw = _raw_decode(state.replace(f'<interfaces xmlns="{IF}">', "<interfaces>"))
    assert raw.interfaces.interface["e0"].ipv4.vrrp.vrrp_instance["10"].state == "master"
    with pytest.raises(B.BindingError, match="config false"):
        B.ConfigModel(_tree(state)).interface("e0")


def test_list_keys_have_the_key_type():
    body = ONE.format(extra="", inst="")
    raw = _raw_decode(body.replace(f'<interfaces xmlns="{IF}">', "<interfaces>"))
    assert list(raw.interfaces.interface["e0"].ipv4.vrrp.vrrp_instance) == ["10"]  # the bug
    lst = B.ConfigModel(_tree(body)).interface("e0").ipv4.vrrp.vrrp_instance
    assert list(lst) == [10] and lst[10].vrid == 10


def test_module_wrapper_element_bug_and_workaround():
    from pyangbind.lib.serialise import pybindIETFXMLEncoder

    raw = B.raw_generated_module()
    r = raw.ietf_interfaces()
    r.interfaces.interface.add("e0").description = "d"
    doc = etree.fromstring(pybindIETFXMLEncoder.serialise(r).encode())
    assert etree.QName(doc).localname == "ietf-interfaces"  # the extra wrapper
    assert etree.QName(doc[0]).localname == "interfaces"
    m = B.ConfigModel(_tree(ONE.format(extra="", inst="")))
    m.interface("e0")
    el = B.to_element(m.root.interfaces)
    assert el.tag == f"{{{IF}}}interfaces" and el[0].tag == f"{{{IF}}}interface"


def test_lazy_model_of_1000_interfaces_is_cheap():
    from bench_bindings import make_config

    data = make_config(1000)
    t = time.perf_counter()
    m = B.ConfigModel(data)
    keys = list(m.vrrp_keys())
    assert time.perf_counter() - t < 1.0
    assert len(keys) == 1000 and m.built == 0
    v = m.vrrp_instance(keys[500])
    assert m.built == 1 and v.vrid == keys[500].vrid and v.priority == 200
    assert list(v.virtual_ipv4_addresses.virtual_ipv4_address) == ["10.2.0.1"]


def _raw_vrrp(mod, prio):
    v = mod.yc_vrrp_instance_ietf_interfaces__interfaces_interface_ipv4_vrrp_vrrp_instance()
    v.vrid = 10
    v.version = "vrrp-v3"
    v.priority = prio
    v.preempt.hold_time = 5
    v.virtual_ipv4_addresses.virtual_ipv4_address.add("192.0.2.1")
    return v


def test_fast_types_same_behaviour_and_faster():
    import pyangbind.lib.pybindJSON as pj

    raw, fast = B.raw_generated_module(), B._gen
    assert fast.RestrictedClassType is B._fast_restricted_class_type
    assert raw.RestrictedClassType is not B._fast_restricted_class_type
    assert pj.dumps(_raw_vrrp(raw, 200)) == pj.dumps(_raw_vrrp(fast, 200))
    for mod in (raw, fast):
        v = _raw_vrrp(mod, 200)
        for attr, bad in (("priority", 255), ("priority", 0), ("vrid", 0), ("version", "nope"),
                          ("advertise_interval_centi_sec", 4096)):
            with pytest.raises(ValueError):
                setattr(v, attr, bad)
        v.priority = "254"
        assert v.priority == 254

    def best(mod):
        cls = mod.yc_vrrp_instance_ietf_interfaces__interfaces_interface_ipv4_vrrp_vrrp_instance
        runs = []
        for _ in range(3):
            t = time.perf_counter()
            for _ in range(5):
                cls()
            runs.append(time.perf_counter() - t)
        return min(runs)

    best(fast)
    assert best(fast) < best(raw)
