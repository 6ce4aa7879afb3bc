"""Kernel facts → RFC 8343 / RFC 8344 operational XML (lxml elements built directly).

Mappings (documented choices):
- type: veth and plain Ethernet → ``ianaift:ethernetCsmacd``; loopback →
  ``softwareLoopback``; bridge → ``bridge``; vlan → ``l2vlan``; bond/team →
  ``ieee8023adLag``; IP tunnels (ipip, gre, sit, ip6tnl, vti, wireguard, …) →
  ``tunnel``; tun → ``propVirtual``; ipvlan → ``l3ipvlan``; Wi-Fi → ``ieee80211``;
  macvlan → ``mv:macvlan``; anything else → ``other``. The prefix is declared on the
  ``type`` element itself, so the value stays resolvable wherever the element is moved.
- description: the link's alias (IFLA_IFALIAS, where the configuration side puts it);
  enabled: the IFF_UP flag (both only in ``/interfaces``: configuration as in use).
- oper-status: IF_OPER_* as is, except IF_OPER_UNKNOWN (drivers that never report a
  state: lo, tun), which is ``up`` when the link is administratively up with carrier.
- macvlans: in ``/interfaces`` also the project's ``mv:macvlan`` container (lower
  interface, mode, MAC address) as the kernel has it; YANG makes ``lower-interface``
  mandatory for a macvlan-typed entry, configured or not.
- statistics (rtnl_link_stats64): in-unicast-pkts = rx_packets − multicast (the kernel
  counts received multicast but not broadcast, so broadcasts are in unicast);
  out-unicast-pkts = tx_packets (the kernel has no transmitted multicast count);
  in/out-discards = rx/tx_dropped, in/out-errors = rx/tx_errors (counter32: modulo
  2^32). in-unknown-protos, *-broadcast-pkts and out-multicast-pkts are not reported.
- address origin: ``static`` when the address is in running for that interface;
  IPv6 link-local and SLAAC addresses → ``link-layer`` (addrgenmode eui64) or
  ``random`` (stable-privacy / random modes, and RFC 4941 temporary addresses); IPv4
  169.254/16 → ``random``; an IPv4 address with a finite lifetime → ``dhcp``; else
  ``other``.
- IPv6 address status: dadfailed → duplicate, link not up → inaccessible, then
  tentative, optimistic, deprecated, else preferred.
- neighbours: NUD_PERMANENT → origin static, else dynamic; failed / noarp entries are
  left out, and so are entries without a link-layer address (incomplete: the NMDA
  list requires one; both trees carry the same entries).
  A permanent IPv6 entry has no ``state`` (RFC 8344's enumeration has none for it).
"""

from __future__ import annotations

import re
import socket
from datetime import UTC, datetime

from agent.backends.linux.netlink import (
    ARPHRD_ETHER,
    ARPHRD_IEEE80211,
    ARPHRD_LOOPBACK,
    DEVCONF_DISABLE_IPV6,
    DEVCONF_FORWARDING,
    DEVCONF_MTU6,
    IFA_F_DADFAILED,
    IFA_F_DEPRECATED,
    IFA_F_OPTIMISTIC,
    IFA_F_PERMANENT,
    IFA_F_TEMPORARY,
    IFA_F_TENTATIVE,
    IFF_RUNNING,
    IFF_UP,
    IN6_ADDR_GEN_MODE_EUI64,
    MACVLAN_MODE_NAMES,
    NTF_ROUTER,
    NUD_DELAY,
    NUD_FAILED,
    NUD_INCOMPLETE,
    NUD_NOARP,
    NUD_PERMANENT,
    NUD_PROBE,
    NUD_REACHABLE,
    NUD_STALE,
)
from agent.backends.linux.oper_netlink import Addr, Link, Neigh

IF = "urn:ietf:params:xml:ns:yang:ietf-interfaces"
IP = "urn:ietf:params:xml:ns:yang:ietf-ip"
IANAIFT = "urn:ietf:params:xml:ns:yang:iana-if-type"
MV = "urn:netconf-vrrp-agent:yang:macvlan"


_KIND_TYPE: dict[str, tuple[str, str]] = {
    "veth": ("ianaift", "ethernetCsmacd"),
    "bridge": ("ianaift", "bridge"),
    "vlan": ("ianaift", "l2vlan"),
    "bond": ("ianaift", "ieee8023adLag"),
    "team": ("ianaift", "ieee8023adLag"),
    "macvlan": ("mv", "macvlan"),
    "macvtap": ("mv", "macvlan"),
    "ipvlan": ("ianaift", "l3ipvlan"),
    "tun": ("ianaift", "propVirtual"),
    "vrf": ("ianaift", "propVirtual"),
}
_TUNNELS = frozenset({"ipip", "gre", "gretap", "ip6gre", "ip6gretap", "sit", "ip6tnl", "vti",
                      "vti6", "wireguard", "geneve", "vxlan", "erspan", "ip6erspan", "xfrm"})
_PREFIX_NS = {"ianaift": IANAIFT, "mv": MV}

_OPER = {1: "not-present", 2: "down", 3: "lower-layer-down", 4: "testing", 5: "dormant",
         6: "up"}
_ND_STATE = {NUD_INCOMPLETE: "incomplete", NUD_REACHABLE: "reachable", NUD_STALE: "stale",
             NUD_DELAY: "delay", NUD_PROBE: "probe"}
_INFINITE = 0xFFFFFFFF
_U32 = 1 << 32


def if_type(ln: Link) -> tuple[str, str]:
    """(prefix, identity name) of the interface type."""
    t = _KIND_TYPE.get(ln.kind)
    if t is not None:
        return t
    if ln.kind in _TUNNELS:
        return "ianaift", "tunnel"
    if ln.arphrd == ARPHRD_LOOPBACK:
        return "ianaift", "softwareLoopback"
    if ln.arphrd == ARPHRD_ETHER:
        return "ianaift", "ethernetCsmacd"
    if ln.arphrd == ARPHRD_IEEE80211:
        return "ianaift", "ieee80211"
    if ln.arphrd in (768, 769, 776, 778, 823):  # ARPHRD_TUNNEL, TUNNEL6, SIT, IPGRE, IP6GRE
        return "ianaift", "tunnel"
    return "ianaift", "other"


def oper_status(ln: Link) -> str:
    s = _OPER.get(ln.operstate)
    if s is not None:
        return s
    if not ln.flags & IFF_UP:
        return "down"
    return "up" if ln.flags & IFF_RUNNING else "unknown"


def iso_time(t: float) -> str:
    """RFC 3339 date-and-time with the UTC offset."""
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="microseconds")


def mac(raw: bytes) -> str | None:
    return raw.hex(":") if raw and any(raw) else None


def _esc(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _xml_text(text: str) -> str:
    """Free text from the kernel (an alias: any bytes) as XML character data: characters
    XML 1.0 cannot carry become U+FFFD."""
    return _esc(_NOT_XML.sub("\ufffd", text))


_TYPE_LEAF = {p: f'<type xmlns:{p}="{ns}">' for p, ns in _PREFIX_NS.items()}


class Builder:
    """Serialises ``interface`` list entries as XML text (parsed once per reply by the
    caller: several times cheaper than building elements one by one). The same entries
    serve ``/interfaces`` and ``/interfaces-state`` (same element names and namespaces)."""

    def __init__(self, static_addrs: set[tuple[str, str]]) -> None:
        self.static = static_addrs  # (interface name, canonical ip)

    def interface(
        self,
        ln: Link,
        *,
        first_seen: str,
        last_change: float | None,
        uppers: list[str],
        lowers: list[str],
        speed: int | None,
        addrs: list[Addr],
        neighs: list[Neigh],
        lower_name: str | None = None,
    ) -> tuple[str, str]:
        """One ``<interface>`` entry (default namespace ietf-interfaces, ``ip:`` ietf-ip), as
        ``(nmda, legacy)``: the entry of ``/interfaces`` and the one of
        ``/interfaces-state``. Only the NMDA tree has configuration as the system has it
        (``description`` from the alias, ``enabled`` from the admin state) and the
        macvlan container (its ``lower-interface`` is mandatory there, ``lower_name``
        gives it)."""
        name = _esc(ln.name)
        prefix, ident = if_type(ln)
        up = oper_status(ln)
        admin_up = ln.flags & IFF_UP
        head = f"<interface><name>{name}</name>"
        typ = f"{_TYPE_LEAF[prefix]}{prefix}:{ident}</type>"
        out = [
            f"<admin-status>{'up' if admin_up else 'down'}</admin-status>"
            f"<oper-status>{up}</oper-status>"
        ]
        if last_change is not None:
            out.append(f"<last-change>{iso_time(last_change)}</last-change>")
        out.append(f"<if-index>{ln.index}</if-index>")
        phys = mac(ln.address)
        if phys is not None:
            out.append(f"<phys-address>{phys}</phys-address>")
        for n in uppers:
            out.append(f"<higher-layer-if>{_esc(n)}</higher-layer-if>")
        for n in lowers:
            out.append(f"<lower-layer-if>{_esc(n)}</lower-layer-if>")
        if speed is not None:
            out.append(f"<speed>{speed}</speed>")
        if ln.stats is not None:
            out.append(_statistics(ln.stats, first_seen))
        v4 = [a for a in addrs if a.family == socket.AF_INET]
        n4 = [n for n in neighs if n.family == socket.AF_INET]
        out.append(self._ipv4(ln, v4, n4))
        if ln.v6_conf is not None:
            v6 = [a for a in addrs if a.family == socket.AF_INET6]
            n6 = [n for n in neighs if n.family == socket.AF_INET6]
            out.append(self._ipv6(ln, up, v6, n6))
        rest = "".join(out)
        macvlan = ""
        if ln.kind == "macvlan" and lower_name is not None:
            mode = MACVLAN_MODE_NAMES.get(ln.macvlan_mode)
            macvlan = (f'<macvlan xmlns="{MV}"><lower-interface>{_esc(lower_name)}'
                       "</lower-interface>" + (f"<mode>{mode}</mode>" if mode else "")
                       + (f"<mac-address>{phys}</mac-address>" if phys else "") + "</macvlan>")
        desc = f"<description>{_xml_text(ln.alias)}</description>" if ln.alias else ""
        enabled = f"<enabled>{'true' if admin_up else 'false'}</enabled>"
        return (f"{head}{desc}{typ}{enabled}{rest}{macvlan}</interface>",
                f"{head}{typ}{rest}</interface>")

    def _ipv4(self, ln: Link, addrs: list[Addr], neighs: list[Neigh]) -> str:
        out = ["<ip:ipv4>"]
        if ln.v4_forwarding is not None:
            out.append(f"<ip:forwarding>{'true' if ln.v4_forwarding else 'false'}</ip:forwarding>")
        if 68 <= ln.mtu <= 0xFFFF:
            out.append(f"<ip:mtu>{ln.mtu}</ip:mtu>")
        ntop = socket.inet_ntop
        for a in addrs:
            ip = ntop(socket.AF_INET, a.address)
            out.append(f"<ip:address><ip:ip>{ip}</ip:ip>"
                       f"<ip:prefix-length>{a.prefixlen}</ip:prefix-length>"
                       f"<ip:origin>{self._origin4(ln.name, ip, a)}</ip:origin></ip:address>")
        if neighs:
            out.append(self._neighbors(socket.AF_INET, neighs, v6=False))
        out.append("</ip:ipv4>")
        return "".join(out)

    def _origin4(self, name: str, ip: str, a: Addr) -> str:
        if (name, ip) in self.static:
            return "static"
        if ip.startswith("169.254."):
            return "random"
        if not a.flags & IFA_F_PERMANENT and a.valid != _INFINITE:
            return "dhcp"
        return "other"

    def _ipv6(self, ln: Link, up: str, addrs: list[Addr], neighs: list[Neigh]) -> str:
        conf = ln.v6_conf or ()
        out = ["<ip:ipv6>"]
        if len(conf) > DEVCONF_FORWARDING:
            fwd = "true" if conf[DEVCONF_FORWARDING] else "false"
            out.append(f"<ip:forwarding>{fwd}</ip:forwarding>")
        if len(conf) > DEVCONF_MTU6 and conf[DEVCONF_MTU6] >= 1280:
            out.append(f"<ip:mtu>{conf[DEVCONF_MTU6]}</ip:mtu>")
        if not (len(conf) > DEVCONF_DISABLE_IPV6 and conf[DEVCONF_DISABLE_IPV6] > 0):
            ntop = socket.inet_ntop
            for a in addrs:
                ip = ntop(socket.AF_INET6, a.address)
                out.append(f"<ip:address><ip:ip>{ip}</ip:ip>"
                           f"<ip:prefix-length>{a.prefixlen}</ip:prefix-length>"
                           f"<ip:origin>{self._origin6(ln, ip, a)}</ip:origin>"
                           f"<ip:status>{_status6(a, up)}</ip:status></ip:address>")
            if neighs:
                out.append(self._neighbors(socket.AF_INET6, neighs, v6=True))
        out.append("</ip:ipv6>")
        return "".join(out)

    def _origin6(self, ln: Link, ip: str, a: Addr) -> str:
        if (ln.name, ip) in self.static:
            return "static"
        if a.flags & IFA_F_TEMPORARY:
            return "random"
        kernel_made = ip.startswith("fe80:") or (
            not a.flags & IFA_F_PERMANENT and a.valid != _INFINITE)
        if kernel_made:
            return "link-layer" if ln.v6_addr_gen_mode == IN6_ADDR_GEN_MODE_EUI64 else "random"
        return "other"

    def _neighbors(self, family: int, neighs: list[Neigh], *, v6: bool) -> str:
        out = []
        for n in neighs:
            if n.state & (NUD_FAILED | NUD_NOARP) or not n.dst or not n.lladdr:
                continue
            out.append(f"<ip:neighbor><ip:ip>{socket.inet_ntop(family, n.dst)}</ip:ip>")
            if n.lladdr:
                out.append(f"<ip:link-layer-address>{n.lladdr.hex(':')}</ip:link-layer-address>")
            origin = "static" if n.state & NUD_PERMANENT else "dynamic"
            out.append(f"<ip:origin>{origin}</ip:origin>")
            if v6:
                if n.flags & NTF_ROUTER:
                    out.append("<ip:is-router/>")
                state = _nd_state(n.state)
                if state is not None:
                    out.append(f"<ip:state>{state}</ip:state>")
            out.append("</ip:neighbor>")
        return "".join(out)


def _statistics(s: tuple[int, ...], since: str) -> str:
    rx_packets, tx_packets, rx_bytes, tx_bytes, rx_errors, tx_errors, rx_dropped, \
        tx_dropped, multicast = s[:9]
    return (
        f"<statistics><discontinuity-time>{since}</discontinuity-time>"
        f"<in-octets>{rx_bytes}</in-octets>"
        f"<in-unicast-pkts>{max(rx_packets - multicast, 0)}</in-unicast-pkts>"
        f"<in-multicast-pkts>{multicast}</in-multicast-pkts>"
        f"<in-discards>{rx_dropped % _U32}</in-discards>"
        f"<in-errors>{rx_errors % _U32}</in-errors>"
        f"<out-octets>{tx_bytes}</out-octets>"
        f"<out-unicast-pkts>{tx_packets}</out-unicast-pkts>"
        f"<out-discards>{tx_dropped % _U32}</out-discards>"
        f"<out-errors>{tx_errors % _U32}</out-errors></statistics>"
    )


def _status6(a: Addr, up: str) -> str:
    f = a.flags
    if f & IFA_F_DADFAILED:
        return "duplicate"
    if up != "up":
        return "inaccessible"
    if f & IFA_F_TENTATIVE:
        return "optimistic" if f & IFA_F_OPTIMISTIC else "tentative"
    if f & IFA_F_DEPRECATED:
        return "deprecated"
    return "preferred"


def _nd_state(state: int) -> str | None:
    for bit, name in _ND_STATE.items():
        if state & bit:
            return name
    return None

