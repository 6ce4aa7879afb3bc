"""What the running configuration asks of the kernel, per interface (the *intent*).

Reads a validated ``running`` tree (ietf-interfaces, ietf-ip, the project's macvlan
augment) into plain dataclasses with YANG defaults filled in, IP addresses in
canonical text. Error paths use the modules' own prefixes.

An absent ``ip:ipv4`` / ``ip:ipv6`` container means "not managed", not "disabled"
(a deliberate deviation from RFC 8344, where these presence containers enable the
family: "Enables IPv4/IPv6 unless the 'enabled' leaf is false"). Read strictly, an
interface configured without ``ipv6`` would get ``disable_ipv6=1``: the kernel then
drops its link-local and every other IPv6 address, neighbour discovery and SLAAC
stop, and IPv6 VRRP on the LAN, router advertisements and an operator's own IPv6
management access break the moment someone configures only a description or an
IPv4 address (the tests and the VRRP lab configure most interfaces that way). Linux
cannot switch IPv4 off on a link at all; "disabled" could only mean deleting every
IPv4 address not in the configuration — DHCP leases, addresses set by other tools,
the management address the operator is connected through. So the agent touches a
family only when its container is present (addresses, neighbours and sysctls listed
there; ``enabled false`` is the explicit way to disable it) and reports the kernel's
actual IPv4/IPv6 state in the operational datastore whatever the configuration.
Removing a container gives its sysctls back their ``conf/default`` values and removes
the addresses and neighbours it listed, nothing else.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from lxml import etree

from agent.datastore.tree import xpath_quote
from agent.protocol.errors import RpcError

IF = "urn:ietf:params:xml:ns:yang:ietf-interfaces"
IP = "urn:ietf:params:xml:ns:yang:ietf-ip"
MV = "urn:netconf-vrrp-agent:yang:macvlan"
PATH_NS = {"if": IF, "ip": IP, "mv": MV}


def if_path(name: str, *tail: str) -> str:
    """``/if:interfaces/if:interface[if:name='X']/tail...``"""
    base = f"/if:interfaces/if:interface[if:name={xpath_quote(name)}]"
    return base + "".join("/" + t for t in tail)


@dataclass
class IpIntent:
    """``ip:ipv4`` or ``ip:ipv6`` of one interface (present container)."""

    enabled: bool = True
    forwarding: bool = False
    mtu: int | None = None
    addresses: dict[str, int] = field(default_factory=dict)  # ip → prefix length
    neighbors: dict[str, str] = field(default_factory=dict)  # ip → link-layer address
    # IPv6 only
    dad_transmits: int = 1
    autoconf_global: bool = True
    temp_addresses: bool = False
    temp_valid: int = 604800
    temp_preferred: int = 86400


@dataclass
class IfIntent:
    name: str
    macvlan: bool = False
    enabled: bool = True
    description: str | None = None
    link_up_down_trap: bool = True  # stored only
    lower: str | None = None
    mode: str = "vepa"
    mac: str | None = None
    ipv4: IpIntent | None = None
    ipv6: IpIntent | None = None

    @property
    def mtu(self) -> int | None:
        """The link MTU asked for (ietf-ip: IPv4 mtu is the link MTU)."""
        return self.ipv4.mtu if self.ipv4 is not None else None


def _q(ns: str, name: str) -> str:
    return f"{{{ns}}}{name}"


def _text(el: etree._Element, ns: str, name: str) -> str | None:
    c = el.find(_q(ns, name))
    return None if c is None else (c.text or "").strip()


def _bool(el: etree._Element, ns: str, name: str, default: bool) -> bool:
    t = _text(el, ns, name)
    return default if t is None else t == "true"


def _int(el: etree._Element, ns: str, name: str, default: int | None) -> int | None:
    t = _text(el, ns, name)
    return default if t is None else int(t)


def _is_macvlan_type(el: etree._Element) -> bool:
    t = el.find(_q(IF, "type"))
    if t is None or not t.text:
        return False
    prefix, _, local = t.text.strip().rpartition(":")
    return local == "macvlan" and t.nsmap.get(prefix or None) == MV


def netmask_to_prefix(mask: str, path: str) -> int:
    bits = int(ipaddress.IPv4Address(mask))
    plen = bin(bits).count("1")
    if bits != ((1 << 32) - 1) ^ ((1 << (32 - plen)) - 1):
        raise RpcError("invalid-value", f"non-contiguous netmask {mask} is not supported by "
                       "Linux", path=path, path_ns=PATH_NS)
    return plen


def _ip(el: etree._Element, name: str, v6: bool) -> IpIntent:
    c = IpIntent(
        enabled=_bool(el, IP, "enabled", True),
        forwarding=_bool(el, IP, "forwarding", False),
        mtu=_int(el, IP, "mtu", None),
    )
    fam = "ipv6" if v6 else "ipv4"
    for a in el.iterfind(_q(IP, "address")):
        ip = ipaddress.ip_address(_text(a, IP, "ip") or "").compressed
        plen = _int(a, IP, "prefix-length", None)
        if plen is None:
            mask = _text(a, IP, "netmask")
            apath = if_path(name, f"ip:{fam}", f"ip:address[ip:ip={xpath_quote(ip)}]")
            if mask is None:
                raise RpcError("missing-element", f"address {ip} has no prefix-length",
                               path=apath, path_ns=PATH_NS)
            plen = netmask_to_prefix(mask, apath + "/ip:netmask")
        c.addresses[ip] = plen
    for n in el.iterfind(_q(IP, "neighbor")):
        ip = ipaddress.ip_address(_text(n, IP, "ip") or "").compressed
        c.neighbors[ip] = (_text(n, IP, "link-layer-address") or "").lower()
    if v6:
        c.dad_transmits = _int(el, IP, "dup-addr-detect-transmits", 1) or 0
        ac = el.find(_q(IP, "autoconf"))
        if ac is not None:
            c.autoconf_global = _bool(ac, IP, "create-global-addresses", True)
            c.temp_addresses = _bool(ac, IP, "create-temporary-addresses", False)
            c.temp_valid = _int(ac, IP, "temporary-valid-lifetime", 604800) or 0
            c.temp_preferred = _int(ac, IP, "temporary-preferred-lifetime", 86400) or 0
    return c


def parse_interface(el: etree._Element) -> IfIntent:
    name = _text(el, IF, "name") or ""
    it = IfIntent(
        name=name,
        macvlan=_is_macvlan_type(el),
        enabled=_bool(el, IF, "enabled", True),
        description=_text(el, IF, "description"),
        link_up_down_trap=_text(el, IF, "link-up-down-trap-enable") != "disabled",
    )
    mv = el.find(_q(MV, "macvlan"))
    if mv is not None:
        it.lower = _text(mv, MV, "lower-interface")
        it.mode = _text(mv, MV, "mode") or "vepa"
        mac = _text(mv, MV, "mac-address")
        it.mac = mac.lower() if mac else None
    if it.macvlan and not it.lower:
        raise RpcError("missing-element", f"macvlan {name} needs mv:macvlan/lower-interface",
                       path=if_path(name, "mv:macvlan"), path_ns=PATH_NS)
    v4 = el.find(_q(IP, "ipv4"))
    if v4 is not None:
        it.ipv4 = _ip(v4, name, False)
    v6 = el.find(_q(IP, "ipv6"))
    if v6 is not None:
        it.ipv6 = _ip(v6, name, True)
    return it


def parse(root: etree._Element, names: set[str] | None = None) -> dict[str, IfIntent]:
    """name → intent for every configured interface of a ``<data>`` tree (only those
    named in ``names`` when given)."""
    out: dict[str, IfIntent] = {}
    ifs = root.find(_q(IF, "interfaces"))
    if ifs is None:
        return out
    if names is not None and len(names) <= 8:  # a lookup per name (in C) beats a scan
        for name in names:
            for el in _BY_NAME(ifs, name=name):
                it = parse_interface(el)
                out[it.name] = it
        return out
    name_tag = _q(IF, "name")
    for el in ifs.iterfind(_q(IF, "interface")):
        if names is not None:
            key = el[0] if len(el) and el[0].tag == name_tag else el.find(name_tag)
            if key is None or (key.text or "").strip() not in names:
                continue
        it = parse_interface(el)
        out[it.name] = it
    return out


_BY_NAME = etree.XPath("if:interface[if:name = $name]", namespaces={"if": IF})
_MACVLANS_ON = etree.XPath(
    "if:interfaces/if:interface[mv:macvlan/mv:lower-interface = $lower]/if:name/text()",
    namespaces={"if": IF, "mv": MV}, smart_strings=False)


def macvlans_on(root: etree._Element, lower: str) -> list[str]:
    """Names of the interfaces configured as macvlans on ``lower``."""
    return [str(n).strip() for n in _MACVLANS_ON(root, lower=lower)]
