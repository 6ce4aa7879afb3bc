"""Plan the kernel actions that turn the kernel into what the configuration asks.

Compares the *new* intent with a snapshot of the kernel (so applying the same
configuration twice plans nothing, and a reconcile restores drift), using the
*old* intent to know what the agent managed before (addresses to remove, sysctls
to restore, macvlans to delete). One function per YANG concern, like FRR's
northbound callbacks; each emits :class:`Action` objects with their inverses.
Values a commit changes on an existing link (MTU, admin state, alias) are remembered
as they were (:mod:`~agent.backends.linux.originals`, staged in the result, kept by
the caller once applied) and given back when their configuration is deleted.

A link MTU the plan lowers lowers the links stacked on it and resets their IPv6 MTU:
their configured IPv6 MTU is written again by the same plan (config.py plans the
configured macvlans stacked on an interface whose MTU changes; one above the new link
MTU is a warning, unless that interface is in the edit: the kernel refuses it), and a
configured macvlan MTU above its lower's, as the plan leaves it, is refused.

Stages: delete addresses/neighbours → delete macvlans → create macvlans (lower
first) → link attributes (lower MTUs first) → sysctls → add addresses/neighbours.

Undo (a failed commit leaves the kernel exactly as before): besides its own inverse,
an action's undo restores what the kernel changed along with it, read before anything
is applied. A link MTU change resets the link's IPv6 MTU, lowers the MTU of the links
stacked on it (macvlans...) and theirs, and below 1280 drops their IPv6 configuration
(sysctls, addresses, neighbours); an admin state change drops the link's IPv6
addresses and permanent neighbours (down) or resets its IPv6 MTU (up); a deleted
macvlan is recreated with its index, addresses, permanent neighbours and the per-link
IPv4/IPv6 sysctls that differ from the namespace's ``conf/default``. MTU undos run
first (lower links first), before the sysctl undos the kernel would otherwise undo.
"""

from __future__ import annotations

import errno
import logging
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from agent.backends.linux import netlink as N
from agent.backends.linux import rtnl as R
from agent.backends.linux.actions import Action, Names
from agent.backends.linux.intent import PATH_NS, IfIntent, IpIntent, if_path
from agent.backends.linux.nsthread import sysctl_path
from agent.backends.linux.originals import Changes, Originals
from agent.datastore.tree import xpath_quote
from agent.protocol.errors import RpcError

log = logging.getLogger(__name__)

ST_DEL_NEIGH, ST_DEL_ADDR, ST_DEL_LINK, ST_CREATE = 0, 1, 2, 3
ST_SET, ST_SYSCTL, ST_ADD_ADDR = 20, 30, 40
#: a delete finding its object already gone (e.g. removed with the last address) is done
GONE = (errno.ENOENT, errno.ESRCH, errno.EADDRNOTAVAIL, errno.ENODEV)
MAX_DEPTH = 16
#: link kinds stacked on their IFLA_LINK, whose MTU the kernel lowers with their lower's
STACKED = frozenset({"macvlan", "macvtap", "vlan", "ipvlan", "ipvtap"})
IPV6_MIN_MTU = 1280  # a link MTU below it: the kernel drops the link's IPv6 state
RTEXT_FILTER_SKIP_STATS = 1 << 3  # (uapi linux/rtnetlink.h)
V6, BOTH = (socket.AF_INET6,), (socket.AF_INET, socket.AF_INET6)
#: undo stage of link MTU restores (+ depth of the link): before every other undo step
ST_UNDO_MTU = -100


# ------------------------------------------------------------------ kernel snapshot
@dataclass
class Kernel:
    """Links, addresses and neighbours of the namespace: all of them (:meth:`read`,
    ``complete``) or those of some links only (:meth:`read_some`: what else a plan needs,
    e.g. :meth:`all_links`, is then asked of the kernel through ``sock``)."""

    links: dict[str, R.Link]
    by_index: dict[int, R.Link]
    addrs: dict[int, set[tuple[int, str, int]]]
    neighs: dict[int, dict[tuple[int, str], R.Neigh]]
    sock: R.RtnlSocket | None = None
    complete: bool = True
    _all: list[R.Link] | None = field(default=None, repr=False)

    @classmethod
    def read(cls, sock: R.RtnlSocket) -> Kernel:
        links = sock.links()
        addrs: dict[int, set[tuple[int, str, int]]] = {}
        for a in sock.addrs():
            addrs.setdefault(a.index, set()).add((a.family, a.ip, a.prefixlen))
        neighs: dict[int, dict[tuple[int, str], R.Neigh]] = {}
        for n in sock.neighs():
            neighs.setdefault(n.index, {})[(n.family, n.ip)] = n
        return cls({lk.name: lk for lk in links}, {lk.index: lk for lk in links}, addrs, neighs,
                   sock)

    @classmethod
    def read_some(cls, sock: R.RtnlSocket, names: set[str]) -> Kernel:
        """The links named (those that exist), the lower links of macvlans among them,
        and their addresses and neighbours. ``sock`` must have NETLINK_GET_STRICT_CHK
        set (the kernel then filters the address and neighbour dumps by link)."""
        links = _get_links([N.ifinfo() + N.attr_str(N.IFLA_IFNAME, n) for n in sorted(names)],
                           sock)
        by_index = {lk.index: lk for lk in links}
        lowers = {lk.lower for lk in links if lk.lower and lk.lower not in by_index}
        for lk in _get_links([N.ifinfo(i) for i in sorted(lowers)], sock):
            by_index[lk.index] = lk
        addrs: dict[int, set[tuple[int, str, int]]] = {}
        neighs: dict[int, dict[tuple[int, str], R.Neigh]] = {}
        for index in by_index:
            a, n = _read_objects(sock, index)
            if a:
                addrs[index] = a
            if n:
                neighs[index] = n
        return cls({lk.name: lk for lk in by_index.values()}, by_index, addrs, neighs, sock,
                   complete=False)

    def all_links(self) -> list[R.Link]:
        """Every link of the namespace (not only the snapshot's)."""
        if self.complete or self.sock is None:
            return list(self.by_index.values())
        if self._all is None:
            self._all = self.sock.links()
        return self._all

    def groups(self) -> set[int]:
        """Link groups in use in the namespace (every link's, not only the snapshot's)."""
        return {lk.group for lk in self.all_links()}

    def objects(self, index: int) -> tuple[set[tuple[int, str, int]],
                                           dict[tuple[int, str], R.Neigh]]:
        """Addresses and neighbours of link ``index`` (asked when not in the snapshot)."""
        if self.complete or index in self.by_index or self.sock is None:
            return self.addrs.get(index, set()), self.neighs.get(index, {})
        return _read_objects(self.sock, index)

    def devconf(self, indexes: list[int]) -> dict[int, dict[int, tuple[int, ...]]]:
        """index → {AF_INET: values, AF_INET6: values}: the links' per-link sysctls as
        RTM_GETLINK reports them (``IFLA_AF_SPEC``), asked now (many: one dump, ~10x
        faster than a request each)."""
        want = set(indexes)
        if self.sock is None or not want:
            return {}
        if len(want) > 8:
            msgs = self.sock.dump(N.RTM_GETLINK, N.ifinfo() + N.attr_u32(
                N.IFLA_EXT_MASK, RTEXT_FILTER_SKIP_STATS))
        else:
            msgs = [m for err, ms in self.sock.batch(
                [R.Request(N.RTM_GETLINK, 0, N.ifinfo(i)) for i in sorted(want)])
                if err is None for m in ms]
        out: dict[int, dict[int, tuple[int, ...]]] = {}
        for m in msgs:
            index = N.IFINFO.unpack_from(m, 16)[2]
            got = R.link_devconf(m) if index in want else None
            if got is not None:
                out[index] = got[1]
        return out

    def names(self) -> Names:
        """Name → index of the snapshot's links, and of every link when asked for them."""
        names = {lk.name: lk.index for lk in self._all or ()}
        names.update((n, lk.index) for n, lk in self.links.items())
        return Names(names)


def _read_objects(sock: R.RtnlSocket, index: int) -> tuple[set[tuple[int, str, int]],
                                                             dict[tuple[int, str], R.Neigh]]:
    """Addresses and neighbours of one link (``sock``: strict checking)."""
    addrs: set[tuple[int, str, int]] = set()
    neighs: dict[tuple[int, str], R.Neigh] = {}
    for m in sock.dump(N.RTM_GETADDR, N.ifaddr(0, 0, index)):
        a = R.parse_addr(m)
        if a.index == index:  # (filtered by the kernel already)
            addrs.add((a.family, a.ip, a.prefixlen))
    # the interface goes in NDA_IFINDEX: a strict-checking socket filters on the
    # attribute, and answers nothing for an index in the header
    for m in sock.dump(N.RTM_GETNEIGH, N.ndmsg(0, 0) + N.attr_u32(N.NDA_IFINDEX, index)):
        n = R.parse_neigh(m)
        if n is not None and n.index == index:
            neighs[(n.family, n.ip)] = n
    return addrs, neighs


def _get_links(bodies: list[bytes], sock: R.RtnlSocket) -> list[R.Link]:
    """RTM_GETLINK for each body (by name or index); links that don't exist are left out."""
    out = []
    for err, msgs in sock.batch([R.Request(N.RTM_GETLINK, 0, b) for b in bodies]):
        if err is not None:
            if err.errno in (errno.ENODEV, errno.ENOENT):
                continue
            raise err
        out += [R.parse_link(m) for m in msgs]
    return out


# ------------------------------------------------------------------ request builders
def _fam(ip: str) -> int:
    return socket.AF_INET6 if ":" in ip else socket.AF_INET


def req_create_macvlan(name: str, lower: str, mode: str, mac: str | None, mtu: int | None,
                       up: bool, index: int = 0) -> Callable[[Names], R.Request]:
    """``index``: ask for this ifindex (undoing a delete brings the link back as it was)."""
    def build(names: Names) -> R.Request:
        body = N.ifinfo(index, N.IFF_UP if up else 0, N.IFF_UP)
        body += N.attr_str(N.IFLA_IFNAME, name) + N.attr_u32(N.IFLA_LINK, names[lower])
        if mac:
            body += N.attr_bytes(N.IFLA_ADDRESS, R.mac_bytes(mac))
        if mtu:
            body += N.attr_u32(N.IFLA_MTU, mtu)
        body += N.attr_nest(N.IFLA_LINKINFO, N.attr_str(N.IFLA_INFO_KIND, "macvlan"),
                            N.attr_nest(N.IFLA_INFO_DATA,
                                        N.attr_u32(N.IFLA_MACVLAN_MODE, N.MACVLAN_MODES[mode])))
        return R.Request(N.RTM_NEWLINK, N.NLM_F_CREATE | N.NLM_F_EXCL | N.NLM_F_ECHO, body)

    return build


def req_del_link(name: str) -> Callable[[Names], R.Request]:
    return lambda names: R.Request(N.RTM_DELLINK, 0, N.ifinfo(names[name]))


def req_set_link(name: str, *, mtu: int | None = None, mac: str | None = None,
                 alias: str | None = None, up: bool | None = None,
                 mode: str | None = None, group: int | None = None
                 ) -> Callable[[Names], R.Request]:
    def build(names: Names) -> R.Request:
        flags = N.IFF_UP if up else 0
        body = N.ifinfo(names[name], flags, N.IFF_UP if up is not None else 0)
        if mtu is not None:
            body += N.attr_u32(N.IFLA_MTU, mtu)
        if mac is not None:
            body += N.attr_bytes(N.IFLA_ADDRESS, R.mac_bytes(mac))
        if alias is not None:
            body += N.attr_str(N.IFLA_IFALIAS, alias) if alias else N.attr_bytes(
                N.IFLA_IFALIAS, b"")
        if group is not None:
            body += N.attr_u32(N.IFLA_GROUP, group)
        if mode is not None:
            body += N.attr_nest(N.IFLA_LINKINFO, N.attr_str(N.IFLA_INFO_KIND, "macvlan"),
                                N.attr_nest(N.IFLA_INFO_DATA, N.attr_u32(
                                    N.IFLA_MACVLAN_MODE, N.MACVLAN_MODES[mode])))
        return R.Request(N.RTM_NEWLINK, 0, body)

    return build


def req_addr(add: bool, name: str, ip: str, plen: int) -> Callable[[Names], R.Request]:
    fam = _fam(ip)
    raw = socket.inet_pton(fam, ip)

    def build(names: Names) -> R.Request:
        body = N.ifaddr(fam, plen, names[name]) + N.attr_bytes(N.IFA_LOCAL, raw)
        body += N.attr_bytes(N.IFA_ADDRESS, raw)
        if add:
            return R.Request(N.RTM_NEWADDR, N.NLM_F_CREATE | N.NLM_F_REPLACE, body)
        return R.Request(N.RTM_DELADDR, 0, body)

    return build


def req_neigh(add: bool, name: str, ip: str, lladdr: str | None) -> Callable[[Names], R.Request]:
    fam = _fam(ip)
    raw = socket.inet_pton(fam, ip)

    def build(names: Names) -> R.Request:
        body = N.ndmsg(fam, names[name], N.NUD_PERMANENT) + N.attr_bytes(N.NDA_DST, raw)
        if add:
            body += N.attr_bytes(N.NDA_LLADDR, R.mac_bytes(lladdr or ""))
            return R.Request(N.RTM_NEWNEIGH, N.NLM_F_CREATE | N.NLM_F_REPLACE, body)
        return R.Request(N.RTM_DELNEIGH, 0, body)

    return build


# ------------------------------------------------------------------ sysctls
def v4key(name: str, leaf: str) -> str:
    return f"net/ipv4/conf/{name}/{leaf}"


def v6key(name: str, leaf: str) -> str:
    return f"net/ipv6/conf/{name}/{leaf}"


def _b(v: bool) -> str:
    return "1" if v else "0"


def sysctl_intent(it: IfIntent | None) -> dict[str, tuple[str, str]]:
    """sysctl key → (value, YANG path) the intent manages."""
    out: dict[str, tuple[str, str]] = {}
    if it is None:
        return out
    n = it.name
    if it.ipv4 is not None:
        out[v4key(n, "forwarding")] = (_b(it.ipv4.forwarding),
                                       if_path(n, "ip:ipv4", "ip:forwarding"))
    v6: IpIntent | None = it.ipv6
    if v6 is not None:
        p = lambda *t: if_path(n, "ip:ipv6", *t)  # noqa: E731
        out[v6key(n, "disable_ipv6")] = (_b(not v6.enabled), p("ip:enabled"))
        out[v6key(n, "forwarding")] = (_b(v6.forwarding), p("ip:forwarding"))
        if v6.mtu is not None:
            out[v6key(n, "mtu")] = (str(v6.mtu), p("ip:mtu"))
        out[v6key(n, "dad_transmits")] = (str(v6.dad_transmits),
                                          p("ip:dup-addr-detect-transmits"))
        ac = "ip:autoconf"
        out[v6key(n, "autoconf")] = (_b(v6.autoconf_global),
                                     p(ac, "ip:create-global-addresses"))
        out[v6key(n, "use_tempaddr")] = ("2" if v6.temp_addresses else "0",
                                         p(ac, "ip:create-temporary-addresses"))
        out[v6key(n, "temp_valid_lft")] = (str(v6.temp_valid),
                                           p(ac, "ip:temporary-valid-lifetime"))
        out[v6key(n, "temp_prefered_lft")] = (str(v6.temp_preferred),
                                              p(ac, "ip:temporary-preferred-lifetime"))
    return out


def read_conf_dirs(dirs: list[str]) -> dict[str, dict[str, str]]:
    """Runs in the namespace thread: ``net/ipv6/conf/eth0`` → leaf → value of its
    readable and writable sysctls (a directory that does not exist is left out)."""
    out: dict[str, dict[str, str]] = {}
    for d in dirs:
        try:
            entries = list(os.scandir(sysctl_path(d)))
        except OSError:
            continue
        values: dict[str, str] = {}
        for e in entries:
            try:
                if not e.stat().st_mode & 0o200:
                    continue  # read-only (mc_forwarding)
                with open(e.path) as f:
                    values[e.name] = f.read().rstrip("\n")
            except OSError:
                continue  # unreadable (stable_secret when unset)
        out[d] = values
    return out


def _sysctl_order(key: str) -> int:
    """disable_ipv6=0 must come before the other IPv6 settings (and addresses)."""
    return 0 if key.endswith("disable_ipv6") else 1


def default_key(key: str) -> str:
    """``net/ipv6/conf/eth0/autoconf`` → ``net/ipv6/conf/default/autoconf``."""
    parts = key.split("/")
    parts[3] = "default"
    return "/".join(parts)


# ------------------------------------------------------------------ the planner
@dataclass
class PlanResult:
    actions: list[Action] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    #: pre-agent values to remember / forget once the actions are applied
    originals: Changes = field(default_factory=dict)


class Planner:
    """One planning pass. ``read_sysctls(keys) -> {key: value|None}`` reads the namespace,
    ``read_conf(dirs)`` whole sysctl directories (:func:`read_conf_dirs`); ``originals``
    holds the links' values from before the agent changed them (MTU, admin state, alias:
    restored when unconfigured); the plan stages its changes to them in
    ``PlanResult.originals``. ``undo=False`` (drift repair, never undone): the undos
    leave out what the kernel changes along (nothing more is read)."""

    def __init__(self, kernel: Kernel,
                 read_sysctls: Callable[[list[str]], dict[str, str | None]],
                 originals: Originals,
                 read_conf: Callable[[list[str]], dict[str, dict[str, str]]] | None = None,
                 undo: bool = True) -> None:
        self.k = kernel
        self.read_sysctls = read_sysctls
        self.read_conf = read_conf
        self.undo = undo
        self.originals = originals
        self.out = PlanResult()
        # (key, value, path, link created by this plan, write even if equal,
        # "default" | "link-mtu": value resolved when flushed)
        self._sysctl_todo: list[tuple[str, str, str, bool, bool, str]] = []
        self._deleting: list[str] = []  # macvlans to delete
        self._mtu_changed: dict[str, int] = {}  # links whose MTU this plan sets → MTU
        self._up_changed: set[str] = set()  # links this plan brings up
        # link changes whose undo must also restore what the kernel changes along:
        # (link, new MTU or None for an admin state change, the undo list to complete)
        self._side: list[tuple[R.Link, int | None, list[Action]]] = []
        self._stack_maps: tuple[dict[int, R.Link], dict[int, list[R.Link]]] | None = None
        # IPv6 MTU keys of the links the kernel lowers with a lower this plan lowers (it
        # resets them to the new link MTU): a configured value is written again
        self._mtu6_reset: set[str] = set()
        self._new: dict[str, IfIntent] = {}
        self._fate: dict[str, str] = {}
        self._strict: set[str] = set()

    # -------------------------------------------------------------- helpers
    def act(self, a: Action) -> None:
        self.out.actions.append(a)

    def refuse_or_skip(self, strict: bool, name: str, msg: str, tail: tuple[str, ...] = ()) -> None:
        if strict:
            raise RpcError("operation-failed", msg, path=if_path(name, *tail), path_ns=PATH_NS)
        self.out.warnings.append(msg)

    def original(self, name: str, attr: str) -> Any:
        key = (name, attr)
        return self.out.originals[key] if key in self.out.originals else self.originals.get(
            name, attr)

    def remember(self, name: str, attr: str, value: Any) -> None:
        """Keep ``value`` as the pre-agent one, unless one is known already."""
        if self.original(name, attr) is None:
            self.out.originals[(name, attr)] = value

    def forget(self, name: str, *attrs: str) -> None:
        for attr in attrs:
            if self.original(name, attr) is not None:
                self.out.originals[(name, attr)] = None

    def lower_name(self, link: R.Link) -> str | None:
        lo = self.k.by_index.get(link.lower or -1)
        return lo.name if lo is not None else None

    # -------------------------------------------------------------- entry point
    def plan(self, old: dict[str, IfIntent], new: dict[str, IfIntent],
             strict: set[str]) -> PlanResult:
        fate = self._link_fates(new, strict)
        self._new, self._fate, self._strict = new, fate, strict
        for name, it in old.items():
            if name not in new:
                self._removed(it)
        for name, it in new.items():
            f = fate.get(name)
            if f is None:
                continue
            prev = old.get(name)
            if f in ("create", "recreate"):
                self._create(it, f == "recreate", fate, new)
            else:
                self._link_attrs(it, prev)
            existing = f == "existing"
            self._addresses(it, prev, existing)
            self._neighbors(it, prev, existing)
            self._sysctls(it, prev, existing)
        self._stacked(strict)
        self._flush_deletes()
        self._flush_side_effects()
        self._flush_sysctls()
        return self.out

    # -------------------------------------------------------------- links
    def _base(self, name: str, new: dict[str, IfIntent]) -> str:
        """The non-macvlan interface a (chain of) macvlan(s) finally sits on."""
        seen = set()
        while name in new and new[name].macvlan and name not in seen:
            seen.add(name)
            name = new[name].lower or name
        return name

    def _link_fates(self, new: dict[str, IfIntent], strict: set[str]) -> dict[str, str]:
        """name → existing | create | recreate (absent: skipped)."""
        fate: dict[str, str] = {}
        for name, it in new.items():
            k = self.k.links.get(name)
            if not it.macvlan:
                if k is None:
                    self.refuse_or_skip(
                        name in strict, name,
                        f"interface {name} does not exist in the kernel and cannot be created "
                        "(only macvlan interfaces are created by the agent)")
                    continue
                fate[name] = "existing"
                continue
            if k is not None and k.kind != "macvlan":
                self.refuse_or_skip(name in strict, name,
                                    f"interface {name} exists in the kernel as a "
                                    f"{k.kind or 'physical'} interface, not a macvlan")
                continue
            if k is None:
                fate[name] = "create"
            elif self.lower_name(k) != self._base(it.lower or "", new):
                fate[name] = "recreate"
            else:
                fate[name] = "existing"
        # a created macvlan needs its lower: in the kernel, or created in this plan
        changed = True
        while changed:
            changed = False
            for name, f in list(fate.items()):
                it = new[name]
                if f not in ("create", "recreate"):
                    continue
                lower = it.lower or ""
                ok = (lower in fate) or (lower in self.k.links and lower not in new)
                if not ok:
                    del fate[name]
                    changed = True
                    self.refuse_or_skip(name in strict, name,
                                        f"lower interface {lower} of macvlan {name} does not "
                                        "exist in the kernel", ("mv:macvlan",
                                                                "mv:lower-interface"))
        return fate

    def _depth(self, name: str, new: dict[str, IfIntent], created: set[str]) -> int:
        d, cur = 0, new[name].lower
        while cur in created and d < MAX_DEPTH:
            d += 1
            cur = new[cur].lower
        if d >= MAX_DEPTH:
            raise RpcError("invalid-value", f"macvlan {name}: lower-interface chain loops",
                           path=if_path(name, "mv:macvlan", "mv:lower-interface"),
                           path_ns=PATH_NS)
        return d

    def _recreate_undo(self, link: R.Link) -> tuple[list[Action], list[Action]]:
        """Inverses of deleting macvlan ``link``: create it again as it was, with its
        index; (the link, its addresses and neighbours) — its sysctls go in between."""
        lower = self.lower_name(link) or ""
        p = if_path(link.name)
        undo = [Action(f"recreate macvlan {link.name}", p, 0,
                       nl=req_create_macvlan(link.name, lower, link.mode or "vepa", link.mac,
                                             link.mtu, link.up, link.index),
                       creates=link.name)]
        if link.alias:
            undo.append(Action("restore alias", p, 0, nl=req_set_link(link.name,
                                                                      alias=link.alias)))
        return undo, self._objects_undo(link, BOTH, BOTH)

    def _objects_undo(self, link: R.Link, addr_fams: tuple[int, ...],
                      neigh_fams: tuple[int, ...], stage: int = 0) -> list[Action]:
        """Re-add ``link``'s addresses (not link-local ones) and permanent neighbours of
        the families given, as the kernel has them now."""
        have_addrs, have_neighs = self.k.objects(link.index)
        p = if_path(link.name)
        undo = []
        for fam, ip, plen in sorted(have_addrs):
            if fam in addr_fams and not ip.startswith("fe80:"):
                undo.append(Action(f"re-add {ip}/{plen} to {link.name}", p, stage,
                                   nl=req_addr(True, link.name, ip, plen)))
        for (fam, _ip), n in sorted(have_neighs.items()):
            if fam in neigh_fams and n.state & N.NUD_PERMANENT and n.lladdr:
                undo.append(Action(f"re-add neighbor {n.ip} to {link.name}", p, stage,
                                   nl=req_neigh(True, link.name, n.ip, n.lladdr)))
        return undo

    def _delete_macvlan(self, name: str) -> None:
        self._deleting.append(name)

    def _flush_deletes(self) -> None:
        """Each RTM_DELLINK waits for an RCU grace period (~18 ms): several macvlans are
        put in one unused link group and deleted with a single request."""
        names = self._deleting
        if not names:
            return
        links = [self.k.links[name] for name in names]
        conf = self._deleted_sysctls(links)
        if len(names) == 1:
            name = names[0]
            link_undo, objects = self._recreate_undo(links[0])
            self.act(Action(f"delete macvlan {name}", if_path(name), ST_DEL_LINK,
                            nl=req_del_link(name), undo=link_undo + conf.get(name, []) + objects,
                            deletes=(name,)))
            return
        used = self.k.groups()
        group = next(g for g in range(0x7A000000, 0x7B000000) if g not in used)
        recreate: list[Action] = []
        sysctls: list[Action] = []
        objects: list[Action] = []
        for name, link in zip(names, links, strict=True):
            self.act(Action(f"put macvlan {name} in link group {group}", if_path(name),
                            ST_DEL_LINK, nl=req_set_link(name, group=group),
                            undo=[Action(f"restore group of {name}", if_path(name), 0,
                                         nl=req_set_link(name, group=link.group))]))
            link_undo, link_objects = self._recreate_undo(link)
            recreate += link_undo
            sysctls += conf.get(name, [])
            objects += link_objects
        self.act(Action(f"delete macvlans {', '.join(names)}", if_path(names[0]), ST_DEL_LINK,
                        nl=lambda _names: R.Request(N.RTM_DELLINK, 0, N.ifinfo(0) + N.attr_u32(
                            N.IFLA_GROUP, group)), undo=recreate + sysctls + objects,
                        deletes=tuple(names)))

    def _deleted_sysctls(self, links: list[R.Link]) -> dict[str, list[Action]]:
        """name → the sysctl writes giving a recreated macvlan its per-link sysctls back:
        those that differ from ``conf/default`` (which a new link starts from), and the
        IPv6 MTU when it is not the link MTU. Reading ~100 files per link would cost
        ~2 ms each: the links are grouped by their sysctls as RTM_GETLINK reports them
        (one batch), and the files read for one link of each group only."""
        if not self.undo or self.read_conf is None:
            return {}
        conf = self.k.devconf([lk.index for lk in links])
        groups: dict[tuple, list[tuple[R.Link, int | None]]] = {}
        for lk in links:
            c = conf.get(lk.index, {})
            v6 = list(c.get(socket.AF_INET6, ()))
            mtu6 = v6[N.DEVCONF_MTU6] if len(v6) > N.DEVCONF_MTU6 else None
            if mtu6 is not None:
                v6[N.DEVCONF_MTU6] = 0
            key = (c.get(socket.AF_INET), tuple(v6) if socket.AF_INET6 in c else None)
            groups.setdefault(key, []).append((lk, mtu6))
        fams = ("ipv4", "ipv6")
        dirs = [f"net/{f}/conf/default" for f in fams]
        dirs += [f"net/{f}/conf/{members[0][0].name}" for members in groups.values()
                 for f in fams]
        values = self.read_conf(dirs)
        out: dict[str, list[Action]] = {}
        for members in groups.values():
            rep = members[0][0].name
            differ: list[tuple[str, str, str]] = []
            for f in fams:
                default = values.get(f"net/{f}/conf/default", {})
                for leaf, v in values.get(f"net/{f}/conf/{rep}", {}).items():
                    if not (f == "ipv6" and leaf == "mtu") and default.get(leaf) != v:
                        differ.append((f, leaf, v))
            differ.sort(key=lambda t: _sysctl_order(t[1]))
            for lk, mtu6 in members:
                acts = []
                for f, leaf, v in differ:
                    key = f"net/{f}/conf/{lk.name}/{leaf}"
                    acts.append(Action(f"restore {key}", if_path(lk.name), 0, sysctl=(key, v)))
                if mtu6 is not None and mtu6 != lk.mtu:
                    key = v6key(lk.name, "mtu")
                    acts.append(Action(f"restore {key}", if_path(lk.name), 0,
                                       sysctl=(key, str(mtu6))))
                out[lk.name] = acts
        return out

    def _create(self, it: IfIntent, recreate: bool, fate: dict[str, str],
                new: dict[str, IfIntent]) -> None:
        name = it.name
        if recreate:
            self._delete_macvlan(name)
        created = {n for n, f in fate.items() if f in ("create", "recreate")}
        stage = ST_CREATE + self._depth(name, new, created)
        self.act(Action(f"create macvlan {name} on {it.lower} mode {it.mode}",
                        if_path(name, "mv:macvlan"), stage,
                        nl=req_create_macvlan(name, it.lower or "", it.mode, it.mac, it.mtu,
                                              it.enabled),
                        undo=[Action(f"delete macvlan {name}", if_path(name), 0,
                                     nl=req_del_link(name), deletes=(name,), del_link=True)],
                        creates=name))
        if it.description:
            self.act(Action(f"set alias of {name}", if_path(name, "if:description"), ST_SET,
                            nl=req_set_link(name, alias=it.description)))

    def _set(self, name: str, what: str, tail: tuple[str, ...], order: int = 0,
             undo_kw: dict | None = None, **kw) -> None:
        undo = [Action(f"undo {what}", if_path(name), 0, nl=req_set_link(name, **undo_kw))] \
            if undo_kw else []
        if kw.get("mtu") is not None:
            self._mtu_changed[name] = kw["mtu"]
            self._side.append((self.k.links[name], kw["mtu"], undo))
        if kw.get("up") is not None:
            if kw["up"]:
                self._up_changed.add(name)
            self._side.append((self.k.links[name], None, undo))
        self.act(Action(what, if_path(name, *tail), ST_SET + order,
                        nl=req_set_link(name, **kw), undo=undo))

    def _link_attrs(self, it: IfIntent, prev: IfIntent | None) -> None:
        name, k = it.name, self.k.links[it.name]
        if it.macvlan and k.mode != it.mode:
            self._set(name, f"set macvlan mode of {name} to {it.mode}",
                      ("mv:macvlan", "mv:mode"), undo_kw={"mode": k.mode or "vepa"},
                      mode=it.mode)
        if it.macvlan and it.mac and it.mac != k.mac:
            self._set(name, f"set MAC of {name} to {it.mac}", ("mv:macvlan", "mv:mac-address"),
                      undo_kw={"mac": k.mac}, mac=it.mac)
        # a value the configuration changes is remembered as it was before (restored when
        # unconfigured); a reconcile (prev == it) restores drift and remembers nothing
        mtu = it.mtu
        if mtu is None and prev is not None and prev.mtu is not None:
            mtu = self.original(name, "mtu")  # unconfigured: back to what it was
            self.forget(name, "mtu")
        if mtu is not None and mtu != k.mtu:
            if it.mtu is not None and (prev is None or prev.mtu != it.mtu):
                self.remember(name, "mtu", k.mtu)
            self._set(name, f"set MTU of {name} to {mtu}", ("ip:ipv4", "ip:mtu"),
                      order=0 if not it.macvlan else 1, undo_kw={"mtu": k.mtu}, mtu=mtu)
        alias = it.description
        if alias is None and prev is not None and prev.description is not None:
            alias = self.original(name, "alias") or ""
            self.forget(name, "alias")
        if alias is not None and alias != k.alias:
            if it.description is not None and (prev is None
                                               or prev.description != it.description):
                self.remember(name, "alias", k.alias)
            self._set(name, f"set alias of {name}", ("if:description",), order=2,
                      undo_kw={"alias": k.alias}, alias=alias)
        if it.enabled != k.up:
            if prev is None or prev.enabled != it.enabled:
                self.remember(name, "up", k.up)
            self._set(name, f"set {name} {'up' if it.enabled else 'down'}", ("if:enabled",),
                      order=3, undo_kw={"up": k.up}, up=it.enabled)

    # -------------------------------------------------------------- stacked links
    def _final_mtu(self, name: str, depth: int = 0) -> int | None:
        """The MTU link ``name`` has once the plan is applied (None: unknown, no link):
        the one the plan sets or creates it with, or a stacked link's own but at most
        its lower's (the kernel lowers it along)."""
        if name in self._mtu_changed:
            return self._mtu_changed[name]
        f = self._fate.get(name)
        it = self._new.get(name) if f else None
        if it is not None and it.mtu is not None:
            return it.mtu
        k = self.k.links.get(name)
        if it is not None and it.macvlan:
            lower = it.lower
        else:
            lower = self.lower_name(k) if k is not None and k.kind in STACKED else None
        lo = self._final_mtu(lower, depth + 1) if lower and depth < MAX_DEPTH else None
        if k is None or f in ("create", "recreate"):
            return lo
        return k.mtu if lo is None else min(k.mtu, lo)

    def _stacked(self, strict: set[str]) -> None:
        """A link MTU change and the links stacked on it: a configured macvlan MTU the
        kernel accepts now but would lower with its lower (whose MTU the plan lowers
        under it) is refused (one above its lower's MTU now: the kernel refuses it); the
        IPv6 MTU of the links the kernel lowers along (reset to their new MTU) is written
        again where configured (:meth:`_flush_sysctls`; its undo, and the stacked links'
        MTU restore, come from :meth:`_flush_side_effects`)."""
        for name, it in self._new.items():
            if not (it.macvlan and it.mtu is not None and it.lower and name in self._fate):
                continue
            k = self.k.links.get(it.lower)
            if k is None or self._fate.get(it.lower) in ("create", "recreate"):
                continue
            lo = self._final_mtu(it.lower)
            if lo is None or not lo < it.mtu <= k.mtu:
                continue
            chain, cur = {name}, it.lower
            while cur and cur not in chain:
                chain.add(cur)
                up = self._new.get(cur)
                cur = up.lower if up is not None and up.macvlan else None
            self.refuse_or_skip(bool(chain & strict), name,
                                f"macvlan {name}: MTU {it.mtu} is above the MTU {lo} of its "
                                f"lower interface {it.lower}", ("ip:ipv4", "ip:mtu"))
        for name, mtu in self._mtu_changed.items():
            link = self.k.links.get(name)
            if link is not None and self._fate.get(name) != "create":
                self._mtu6_reset.update(v6key(c.name, "mtu")
                                        for c in self._stacked_lowered(link, mtu))

    # -------------------------------------------------------------- kernel side effects
    def _stacking(self) -> tuple[dict[int, R.Link], dict[int, list[R.Link]]]:
        """Every link by index, and the links stacked on each (index → links)."""
        if self._stack_maps is None:
            links = self.k.all_links()
            children: dict[int, list[R.Link]] = {}
            for lk in links:
                if lk.kind in STACKED and lk.lower and lk.index != lk.lower:
                    children.setdefault(lk.lower, []).append(lk)
            self._stack_maps = ({lk.index: lk for lk in links}, children)
        return self._stack_maps

    def _kdepth(self, link: R.Link) -> int:
        """How many stacked links ``link`` sits on (0: a link of its own)."""
        if link.kind not in STACKED:
            return 0
        by_index = self._stacking()[0]
        d, cur = 0, link
        while cur.kind in STACKED and cur.lower in by_index and d < MAX_DEPTH:
            d, cur = d + 1, by_index[cur.lower]
        return d

    def _stacked_lowered(self, link: R.Link, mtu: int) -> list[R.Link]:
        """The links stacked on ``link`` (transitively) whose MTU the kernel lowers when
        ``link``'s becomes ``mtu`` (as they are now)."""
        children = self._stacking()[1]
        out: dict[int, R.Link] = {}
        todo = [link.index]
        while todo:
            for c in children.get(todo.pop(), ()):
                if c.mtu > mtu and c.index not in out:
                    out[c.index] = c
                    todo.append(c.index)
        return list(out.values())

    def _flush_side_effects(self) -> None:
        """Complete the undo of each link MTU / admin state change with what the kernel
        changes along (see the module's docstring), as it is now."""
        if not self._side or not self.undo:
            return
        deleting = set(self._deleting)  # (recreated with their own state by their undo)
        # (undo list, stage, link, what to restore: "mtu6" | "ipv6" | "admin")
        jobs: list[tuple[list[Action], int, R.Link, str]] = []
        for link, mtu, undo in self._side:
            if mtu is None:
                jobs.append((undo, 0, link, "admin"))
                continue
            stage = ST_UNDO_MTU + self._kdepth(link)
            for a in undo:
                a.stage = stage
            affected = [link]
            for c in self._stacked_lowered(link, mtu):
                if c.name not in deleting:
                    undo.append(Action(f"restore MTU of {c.name} to {c.mtu}", if_path(c.name),
                                       stage, nl=req_set_link(c.name, mtu=c.mtu)))
                    affected.append(c)
            for lk in affected:
                dropped = mtu < IPV6_MIN_MTU <= lk.mtu
                jobs.append((undo, stage, lk, "ipv6" if dropped else "mtu6"))
        mtu6 = self.read_sysctls(sorted({v6key(lk.name, "mtu") for _u, _s, lk, _w in jobs}))
        v6dirs = sorted({f"net/ipv6/conf/{lk.name}" for _u, _s, lk, w in jobs if w == "ipv6"})
        conf = self.read_conf(v6dirs + ["net/ipv6/conf/default"]) \
            if v6dirs and self.read_conf is not None else {}
        default = conf.get("net/ipv6/conf/default", {})
        for undo, stage, lk, what in jobs:
            acts: list[Action] = []
            if what == "ipv6":  # IPv6 state dropped: back from defaults
                values = conf.get(f"net/ipv6/conf/{lk.name}", {})
                for leaf, v in sorted(values.items(), key=lambda t: _sysctl_order(t[0])):
                    if leaf != "mtu" and default.get(leaf) != v:
                        key = v6key(lk.name, leaf)
                        acts.append(Action(f"restore {key}", if_path(lk.name), stage,
                                           sysctl=(key, v)))
            old6 = mtu6.get(v6key(lk.name, "mtu"))
            if old6 is not None:  # reset to the link MTU by the kernel
                key = v6key(lk.name, "mtu")
                acts.append(Action(f"restore {key}", if_path(lk.name), stage,
                                   sysctl=(key, old6)))
            if what == "admin":  # down: IPv6 addresses, permanent neighbours dropped
                acts += self._objects_undo(lk, V6, BOTH, stage)
            elif what == "ipv6":
                acts += self._objects_undo(lk, V6, V6, stage)
            undo += acts

    # -------------------------------------------------------------- removed config
    def _removed(self, it: IfIntent) -> None:
        """An interface no longer configured: a macvlan is deleted; an existing link goes
        back to its values from before the agent changed them (admin state: to the YANG
        default, up, when that is unknown and the configuration had it down)."""
        name = it.name
        k = self.k.links.get(name)
        orig = {a: self.original(name, a) for a in ("mtu", "up", "alias")}
        self.forget(name, "mtu", "up", "alias")
        if k is None:
            return
        if it.macvlan and k.kind == "macvlan":
            self._delete_macvlan(name)
            return
        empty = IfIntent(name=name)
        self._addresses(empty, it, True)
        self._neighbors(empty, it, True)
        if it.description is not None or orig["alias"] is not None:
            alias = orig["alias"] or ""
            if alias != k.alias:
                self._set(name, f"restore alias of {name}", ("if:description",),
                          undo_kw={"alias": k.alias}, alias=alias)
        if orig["mtu"] is not None and orig["mtu"] != k.mtu:
            self._set(name, f"restore MTU of {name} to {orig['mtu']}", ("ip:ipv4", "ip:mtu"),
                      undo_kw={"mtu": k.mtu}, mtu=orig["mtu"])
        up = orig["up"] if orig["up"] is not None else (True if not it.enabled else None)
        if up is not None and up != k.up:
            self._set(name, f"restore {name} {'up' if up else 'down'}", ("if:enabled",),
                      order=3, undo_kw={"up": k.up}, up=up)
        self._sysctls(empty, it, True)

    # -------------------------------------------------------------- addresses
    def _addresses(self, it: IfIntent, prev: IfIntent | None, existing: bool) -> None:
        name = it.name
        k = self.k.links.get(name)
        have = self.k.addrs.get(k.index, set()) if (existing and k is not None) else set()
        for fam_name, fam in (("ipv4", socket.AF_INET), ("ipv6", socket.AF_INET6)):
            cur: IpIntent | None = getattr(it, fam_name)
            old: IpIntent | None = getattr(prev, fam_name) if prev else None
            want = cur.addresses if cur is not None and cur.enabled else {}
            managed = set(want) | set(cur.addresses if cur else ()) | set(
                old.addresses if old else ())
            for f, ip, plen in sorted(have):
                if f == fam and ip in managed and want.get(ip) != plen:
                    p = if_path(name, f"ip:{fam_name}", f"ip:address[ip:ip={xpath_quote(ip)}]")
                    self.act(Action(f"delete address {ip}/{plen} from {name}", p, ST_DEL_ADDR,
                                    nl=req_addr(False, name, ip, plen), ok_errors=GONE,
                                    undo=[Action(f"re-add {ip}/{plen}", p, 0,
                                                 nl=req_addr(True, name, ip, plen))]))
            for ip, plen in want.items():
                if (fam, ip, plen) not in have:
                    p = if_path(name, f"ip:{fam_name}", f"ip:address[ip:ip={xpath_quote(ip)}]")
                    self.act(Action(f"add address {ip}/{plen} to {name}", p, ST_ADD_ADDR,
                                    nl=req_addr(True, name, ip, plen),
                                    undo=[Action(f"remove {ip}/{plen}", p, 0,
                                                 nl=req_addr(False, name, ip, plen),
                                                 ok_errors=GONE)]))

    def _neighbors(self, it: IfIntent, prev: IfIntent | None, existing: bool) -> None:
        name = it.name
        k = self.k.links.get(name)
        have = self.k.neighs.get(k.index, {}) if (existing and k is not None) else {}
        for fam_name, fam in (("ipv4", socket.AF_INET), ("ipv6", socket.AF_INET6)):
            cur: IpIntent | None = getattr(it, fam_name)
            old: IpIntent | None = getattr(prev, fam_name) if prev else None
            want = cur.neighbors if cur is not None and cur.enabled else {}
            managed = set(cur.neighbors if cur else ()) | set(old.neighbors if old else ())
            for (f, ip), n in sorted(have.items()):
                if f == fam and ip in managed and ip not in want and n.state & N.NUD_PERMANENT:
                    p = if_path(name, f"ip:{fam_name}", f"ip:neighbor[ip:ip={xpath_quote(ip)}]")
                    self.act(Action(f"delete neighbor {ip} from {name}", p, ST_DEL_NEIGH,
                                    nl=req_neigh(False, name, ip, None), ok_errors=GONE,
                                    undo=[Action(f"re-add neighbor {ip}", p, 0,
                                                 nl=req_neigh(True, name, ip, n.lladdr))]))
            for ip, ll in want.items():
                n = have.get((fam, ip))
                if n is not None and n.lladdr == ll and n.state & N.NUD_PERMANENT:
                    continue
                p = if_path(name, f"ip:{fam_name}", f"ip:neighbor[ip:ip={xpath_quote(ip)}]")
                if n is not None and n.state & N.NUD_PERMANENT and n.lladdr:
                    undo = [Action(f"restore neighbor {ip}", p, 0,
                                   nl=req_neigh(True, name, ip, n.lladdr))]
                else:
                    undo = [Action(f"remove neighbor {ip}", p, 0,
                                   nl=req_neigh(False, name, ip, None), ok_errors=GONE)]
                self.act(Action(f"add neighbor {ip} lladdr {ll} to {name}", p, ST_ADD_ADDR,
                                nl=req_neigh(True, name, ip, ll), undo=undo))

    # -------------------------------------------------------------- sysctls
    def _sysctls(self, it: IfIntent, prev: IfIntent | None, existing: bool) -> None:
        want = sysctl_intent(it if (it.ipv4 or it.ipv6) else None)
        before = sysctl_intent(prev)
        new_link = not existing
        # the kernel resets the IPv6 MTU to the link MTU when either changes or the link
        # comes up
        mtu_changes = it.name in self._mtu_changed or it.name in self._up_changed
        for key, (val, path) in want.items():
            force = key.endswith("/mtu") and (mtu_changes or new_link)
            self._sysctl_todo.append((key, val, path, new_link, force, ""))
        for key, (_val, path) in before.items():
            if key in want:
                continue
            if key.endswith("/mtu"):  # back to the link MTU (as this plan leaves it)
                self._sysctl_todo.append((key, "", path, False, False, "link-mtu"))
            else:
                self._sysctl_todo.append((key, "", path, False, False, "default"))

    def _flush_sysctls(self) -> None:
        if not self._sysctl_todo:
            return
        keys = {t[0] for t in self._sysctl_todo}
        keys |= {default_key(t[0]) for t in self._sysctl_todo}
        cur = self.read_sysctls(sorted(keys))
        order = sorted(self._sysctl_todo, key=lambda t: _sysctl_order(t[0]))
        for key, val, path, new_link, force, mode in order:
            if mode == "default":
                val = cur.get(default_key(key)) or ""
                if not val:
                    continue
            elif mode == "link-mtu":
                val = str(self._final_mtu(key.split("/")[3]) or "")
                if not val:
                    continue
            if key in self._mtu6_reset and val.isdigit():
                name = key.split("/")[3]
                mtu = self._final_mtu(name)
                if mtu is not None and int(val) > mtu and name not in self._strict:
                    # the edit lowers the lower interface under a configuration it leaves
                    # in place: refused, like a configured macvlan MTU it would cut (in
                    # the edit, the kernel refuses the write and the commit fails alike)
                    raise RpcError(
                        "operation-failed",
                        f"IPv6 MTU {val} of {name} would be above its MTU {mtu} (lowered "
                        "with its lower interface's)",
                        path=if_path(name, "ip:ipv6", "ip:mtu"), path_ns=PATH_NS)
                force = True
            # a link created by this plan starts from the namespace defaults
            now = cur.get(default_key(key)) if new_link else cur.get(key)
            if now == val and not force:
                continue
            undo = [] if now is None else [Action(f"restore {key}", path, 0,
                                                  sysctl=(key, now))]
            self.act(Action(f"sysctl {key.replace('/', '.')}={val}", path, ST_SYSCTL,
                            sysctl=(key, val), undo=undo))
