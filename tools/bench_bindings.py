#!/usr/bin/env python3
"""Measure what the pyangbind bindings cost (agent/model/bindings.py).

For a configuration of N interfaces, each with an IPv4 address and a VRRP
instance, prints: indexing the lxml tree, per-object build cost (patched and,
for comparison, pyangbind's own way: unpatched classes + ``add()``), the XML
decoder's cost, memory per object and the reverse conversion.

    python3 tools/bench_bindings.py [--interfaces 1000] [--sample 50]
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
import tracemalloc
from pathlib import Path

from lxml import etree

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agent.model import bindings as B  # noqa: E402

NC = "urn:ietf:params:xml:ns:netconf:base:1.0"


def make_config(n: int) -> etree._Element:
    """A ``<data>`` tree like the datastore's: n interfaces, each with an address and VRRP."""
    data = etree.Element(f"{{{NC}}}data", nsmap={None: NC})
    ifs = etree.SubElement(data, f"{{{B.IF_NS}}}interfaces", nsmap={"if": B.IF_NS})

    def sub(parent, ns, name, text=None, nsmap=None):
        e = etree.SubElement(parent, f"{{{ns}}}{name}", nsmap=nsmap)
        if text is not None:
            e.text = text
        return e

    for i in range(n):
        itf = sub(ifs, B.IF_NS, "interface")
        sub(itf, B.IF_NS, "name", f"eth{i}")
        sub(itf, B.IF_NS, "type", "ianaift:ethernetCsmacd", {"ianaift": B.IANAIFT_NS})
        v4 = sub(itf, B.IP_NS, "ipv4", nsmap={"ip": B.IP_NS})
        a = sub(v4, B.IP_NS, "address")
        sub(a, B.IP_NS, "ip", f"10.{i // 250}.{i % 250}.2")
        sub(a, B.IP_NS, "prefix-length", "24")
        vr = sub(v4, B.VRRP_NS, "vrrp", nsmap={"vrrp": B.VRRP_NS})
        inst = sub(vr, B.VRRP_NS, "vrrp-instance")
        sub(inst, B.VRRP_NS, "vrid", str(i % 255 + 1))
        sub(inst, B.VRRP_NS, "version", "vrrp:vrrp-v3")
        sub(inst, B.VRRP_NS, "priority", "200")
        vips = sub(inst, B.VRRP_NS, "virtual-ipv4-addresses")
        sub(sub(vips, B.VRRP_NS, "virtual-ipv4-address"), B.VRRP_NS, "ipv4-address",
            f"10.{i // 250}.{i % 250}.1")
    return data


def _per(fn, count: int) -> float:
    t = time.perf_counter()
    fn()
    return (time.perf_counter() - t) / count * 1000


def _mem_per(fn, count: int) -> float:
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    keep = fn()
    gc.collect()
    used = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    del keep
    return used / count / 1024


def run(n: int, sample: int) -> dict[str, float]:
    res: dict[str, float] = {}
    data = make_config(n)
    sample = min(sample, n)

    t = time.perf_counter()
    m = B.ConfigModel(data)
    keys = list(m.vrrp_keys())
    res["index_all_ms"] = (time.perf_counter() - t) * 1000
    assert len(keys) == n

    # warm the class caches once
    B.ConfigModel(make_config(1)).interface("eth0")

    m = B.ConfigModel(data)
    res["vrrp_instance_ms"] = _per(lambda: [m.vrrp_instance(k) for k in keys[:sample]], sample)
    m = B.ConfigModel(data)
    names = m.interface_names()[:sample]
    res["interface_ms"] = _per(lambda: [m.interface(nm) for nm in names], sample)
    res["to_element_ms"] = _per(lambda: [B.to_element(m.interface(nm)) for nm in names], sample)

    res["vrrp_instance_kb"] = _mem_per(
        lambda: [B.ConfigModel(data).vrrp_instance(k) for k in keys[:sample]], sample)
    res["interface_kb"] = _mem_per(
        lambda: [B.ConfigModel(data).interface(nm) for nm in names], sample)

    # pyangbind's own way, unpatched module: add() + setters, and its XML decoder
    raw = B.raw_generated_module()
    small = min(sample, 10)

    def build_raw():
        root = raw.ietf_interfaces()
        for i in range(small):
            itf = root.interfaces.interface.add(f"eth{i}")
            itf.type = "ethernetCsmacd"
            itf.ipv4.address.add("10.0.0.2").prefix_length = 24
            v = itf.ipv4.vrrp.vrrp_instance.add(i + 1)
            v.version = "vrrp-v3"
            v.priority = 200
            v.virtual_ipv4_addresses.virtual_ipv4_address.add("10.0.0.1")
        return root

    res["raw_interface_with_vrrp_ms"] = _per(build_raw, small)
    res["raw_interface_with_vrrp_kb"] = _mem_per(build_raw, small)

    from pyangbind.lib.serialise import pybindIETFXMLDecoder

    doc = etree.Element(f"{{{B.IF_NS}}}ietf-interfaces")
    doc.append(_copy(make_config(small).find(f"{{{B.IF_NS}}}interfaces")))
    xml = etree.tostring(doc)
    res["raw_xml_decode_ms"] = _per(
        lambda: pybindIETFXMLDecoder.decode(xml, raw, "ietf_interfaces"), small)
    return res


def _copy(e: etree._Element) -> etree._Element:
    return etree.fromstring(etree.tostring(e))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--interfaces", type=int, default=1000)
    ap.add_argument("--sample", type=int, default=50, help="objects built per measurement")
    o = ap.parse_args(argv)
    r = run(o.interfaces, o.sample)
    n = o.interfaces
    print(f"bindings benchmark, {n} interfaces each with an IPv4 address and a VRRP instance")
    print(f"  index tree + list all VRRP keys:      {r['index_all_ms']:8.1f} ms total")
    print(f"  VRRP instance binding (lazy, patched): {r['vrrp_instance_ms']:8.2f} ms, "
          f"{r['vrrp_instance_kb']:7.0f} KiB each -> all {n}: "
          f"{r['vrrp_instance_ms'] * n / 1000:.1f} s")
    print(f"  interface binding (incl. address+VRRP): {r['interface_ms']:7.2f} ms, "
          f"{r['interface_kb']:7.0f} KiB each -> all {n}: {r['interface_ms'] * n / 1000:.1f} s")
    print(f"  to_element (interface):                {r['to_element_ms']:8.2f} ms each")
    print(f"  pyangbind as is (add + setters):       {r['raw_interface_with_vrrp_ms']:8.2f} ms, "
          f"{r['raw_interface_with_vrrp_kb']:7.0f} KiB per interface")
    print(f"  pyangbind XML decoder:                 {r['raw_xml_decode_ms']:8.2f} ms "
          "per interface")
    return 0


if __name__ == "__main__":
    sys.exit(main())
