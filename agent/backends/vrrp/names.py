"""Names shared by the VRRP backend's parts: keepalived instances and virtual-MAC macvlans.

One VRRP instance is identified by (parent interface, address family 4|6, VRID).
"""

from __future__ import annotations

import hashlib

IFNAMSIZ = 15  # usable characters of a Linux interface name


def instance_name(ifname: str, family: int, vrid: int) -> str:
    """The keepalived ``vrrp_instance`` name of an instance, e.g. ``VI_eth0_4_10``."""
    return f"VI_{ifname}_{family}_{vrid}"


def parse_instance_name(name: str) -> tuple[str, int, int] | None:
    """``(ifname, family, vrid)`` from :func:`instance_name`; ``None`` for foreign names."""
    if not name.startswith("VI_"):
        return None
    try:
        ifname, fam, vrid = name[3:].rsplit("_", 2)
        family, v = int(fam), int(vrid)
    except ValueError:
        return None
    if family not in (4, 6) or not ifname:
        return None
    return ifname, family, v


def vmac_address(family: int, vrid: int) -> str:
    """RFC 5798 §7.3 virtual router MAC: 00:00:5e:00:01:VRID (IPv4), …:02:VRID (IPv6)."""
    return f"00:00:5e:00:{1 if family == 4 else 2:02x}:{vrid:02x}"


def vmac_ifname(parent: str, family: int, vrid: int) -> str:
    """Name (≤ 15 characters) of the macvlan carrying the virtual MAC, unique per
    (parent, family, VRID): ``vr4.0a.eth0``-like, with a hash when the parent is long."""
    head = f"vr{family}{vrid:02x}"  # 5 characters
    rest = IFNAMSIZ - len(head) - 1
    if len(parent) <= rest:
        return f"{head}.{parent}"
    digest = hashlib.sha1(parent.encode()).hexdigest()[:4]
    return f"{head}.{parent[: rest - 4]}{digest}"
