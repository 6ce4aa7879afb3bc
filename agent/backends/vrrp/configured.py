"""The VRRP instances configured in ``running``, indexed for the state side.

The packet watcher classifies every received VRRP packet against it (is the VRID
configured on that interface? same interval, same address list?), the state providers
list the instances from it. Built once per running tree (trees are replaced, never
edited in place), so a lookup per packet is a dict access.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from lxml import etree

from agent.backends.vrrp.names import vmac_address, vmac_ifname

IF = "urn:ietf:params:xml:ns:yang:ietf-interfaces"
IP = "urn:ietf:params:xml:ns:yang:ietf-ip"
VRRP = "urn:ietf:params:xml:ns:yang:ietf-vrrp"

Key = tuple[str, int, int]  # (interface name, address family 4|6, VRID)


@dataclass(frozen=True)
class InstanceConfig:
    """What the state side needs of one configured ``vrrp-instance`` (YANG defaults filled)."""

    ifname: str
    family: int
    vrid: int
    version: int  # 2 or 3
    interval_cs: int  # advertisement interval in centiseconds
    priority: int
    preempt: bool
    hold_time: int
    vips: frozenset[str]  # normalised virtual addresses
    owner: bool  # a virtual address is one of the interface's own addresses
    log_state_change: bool = False  # the agent logs this instance's transitions

    @property
    def key(self) -> Key:
        return (self.ifname, self.family, self.vrid)


@dataclass
class ConfigIndex:
    instances: dict[Key, InstanceConfig] = field(default_factory=dict)
    # interface -> its configured addresses per family (for the owner check and as the
    # source address this router advertises with)
    addresses: dict[tuple[str, int], list[str]] = field(default_factory=dict)
    # virtual-MAC macvlan name -> (instance, its MAC as bytes)
    vmacs: dict[str, tuple[Key, bytes]] = field(default_factory=dict)
    # the tree indexed (to find the configuration being committed over it: committing())
    tree: etree._Element | None = field(default=None, repr=False, compare=False)

    @property
    def interfaces(self) -> set[str]:
        """Interfaces with at least one VRRP instance."""
        return {k[0] for k in self.instances}

    def get(self, ifname: str, family: int, vrid: int) -> InstanceConfig | None:
        return self.instances.get((ifname, family, vrid))


def _norm(addr: str) -> str:
    try:
        return str(ipaddress.ip_address(addr.strip()))
    except ValueError:
        return addr.strip()


def _int(elem: etree._Element, path: str, default: int) -> int:
    text = elem.findtext(path)
    return int(text) if text is not None and text.strip() else default


def build_index(config: etree._Element | None) -> ConfigIndex:
    """Index the VRRP instances of a running config tree (``nc:data`` root)."""
    idx = ConfigIndex(tree=config)
    if config is None:
        return idx
    for itf in config.iterfind(f"{{{IF}}}interfaces/{{{IF}}}interface"):
        ifname = (itf.findtext(f"{{{IF}}}name") or "").strip()
        for family, fam_tag, addr_list, addr_leaf in (
            (4, "ipv4", f"virtual-ipv4-addresses/{{{VRRP}}}virtual-ipv4-address",
             "ipv4-address"),
            (6, "ipv6", f"virtual-ipv6-addresses/{{{VRRP}}}virtual-ipv6-address",
             "ipv6-address"),
        ):
            ipc = itf.find(f"{{{IP}}}{fam_tag}")
            if ipc is None:
                continue
            own = [_norm(a.findtext(f"{{{IP}}}ip") or "")
                   for a in ipc.iterfind(f"{{{IP}}}address")]
            idx.addresses[(ifname, family)] = own
            for inst in ipc.iterfind(f"{{{VRRP}}}vrrp/{{{VRRP}}}vrrp-instance"):
                vrid = _int(inst, f"{{{VRRP}}}vrid", 0)
                ver_text = (inst.findtext(f"{{{VRRP}}}version") or "").strip()
                version = 2 if ver_text.endswith("vrrp-v2") else 3
                if version == 2:
                    interval = 100 * _int(inst, f"{{{VRRP}}}advertise-interval-sec", 1)
                else:
                    interval = _int(inst, f"{{{VRRP}}}advertise-interval-centi-sec", 100)
                vips = frozenset(
                    _norm(a.findtext(f"{{{VRRP}}}{addr_leaf}") or "")
                    for a in inst.iterfind(f"{{{VRRP}}}{addr_list}")
                )
                owner = bool(vips & set(own))
                preempt = (inst.findtext(f"{{{VRRP}}}preempt/{{{VRRP}}}enabled") or "true")
                idx.instances[(ifname, family, vrid)] = InstanceConfig(
                    ifname=ifname,
                    family=family,
                    vrid=vrid,
                    version=version,
                    interval_cs=interval,
                    priority=255 if owner else _int(inst, f"{{{VRRP}}}priority", 100),
                    preempt=preempt.strip() == "true",
                    hold_time=_int(inst, f"{{{VRRP}}}preempt/{{{VRRP}}}hold-time", 0),
                    vips=vips,
                    owner=owner,
                    log_state_change=(inst.findtext(f"{{{VRRP}}}log-state-change") or "")
                    .strip() == "true",
                )
                idx.vmacs[vmac_ifname(ifname, family, vrid)] = (
                    (ifname, family, vrid),
                    bytes.fromhex(vmac_address(family, vrid).replace(":", "")))
    return idx


class IndexCache:
    """``build_index`` of the current running tree, rebuilt only when the tree changes."""

    def __init__(self, get_tree) -> None:
        self._get_tree = get_tree
        self._tree: etree._Element | None = None
        self._index = ConfigIndex()
        self._built = False

    def __call__(self) -> ConfigIndex:
        tree = self._get_tree()
        if not self._built or tree is not self._tree:
            self._index = build_index(tree)  # assignment is atomic: readers in threads are safe
            self._tree = tree
            self._built = True
        return self._index


# ---------------------------------------------------------------------------- commits
# A commit applies the backends (keepalived started or reloaded) before the new tree
# becomes running: the transitions keepalived reports meanwhile belong to the new
# configuration, which the index of running does not know yet. The VRRP backend
# registers the tree it is committing over the running one (begin_commit, before it hands
# keepalived the new configuration) and withdraws it when the commit is undone
# (end_commit); once the new tree is running the entry no longer matches anything.
_committing: dict[int, tuple[etree._Element, etree._Element, list[ConfigIndex]]] = {}


def begin_commit(old: etree._Element, new: etree._Element) -> int:
    """Register ``new`` as being committed over the running tree ``old``; a token."""
    _committing[id(old)] = (old, new, [])  # ``old`` is kept alive: its id stays unique
    return id(old)


def end_commit(token: int | None) -> None:
    if token is not None:
        _committing.pop(token, None)


def committing(idx: ConfigIndex) -> ConfigIndex | None:
    """The index of the configuration being committed over the tree ``idx`` was built
    from, while that commit runs (None otherwise)."""
    if idx.tree is None:
        return None
    hit = _committing.get(id(idx.tree))
    if hit is None or hit[0] is not idx.tree:
        return None
    if not hit[2]:
        hit[2].append(build_index(hit[1]))
    return hit[2][0]
