"""Plan the kernel actions that turn the kernel into what the configuration asks.

Compares the *new* intent with a snapshot of the kernel (so applying the same
configuration twice plans nothing, and a reconcile restores drift), using the
*old* intent to know what the agent managed before (addresses to remove, sysctls
to restore, macvlans to delete). One function per YANG concern, like FRR's
northbound callbacks; each emits :class:`Action` objects with their inverses.
Values a commit changes on an existing link (MTU, admin state, alias) are remembered
as they were (:mod:`~agent.backends.linux.originals`, staged in the result, kept by
the caller once applied) and given back when their configuration is deleted.

Stages: delete addresses/neighbours → delete macvlans → create macvlans (lower
first) → link attributes (lower MTUs first) → sysctls → add addresses/neighbours.
"""

from __future__ import annotations

import errno
import logging
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from agent.backends.linux import netlink as N
from agent.backends.linux import rtnl as R
from agent.backends.linux.actions import Action, Names
from agent.backends.linux.intent import PATH_NS, IfIntent, IpIntent, if_path
from agent.backends.linux.originals import Changes, Originals
from agent.datastore.tree import xpath_quote
from agent.protocol.errors import RpcError

log = logging.getLogger(__name__)

ST_DEL_NEIGH, ST_DEL_ADDR, ST_DEL_LINK, ST_CREATE = 0, 1, 2, 3
ST_SET, ST_SYSCTL, ST_ADD_ADDR = 20, 30, 40
#: a delete finding its object already gone (e.g. removed with the last address) is done
GONE = (errno.ENOENT, errno.ESRCH, errno.EADDRNOTAVAIL, errno.ENODEV)
MAX_DEPTH = 16


# ------------------------------------------------------------------ kernel snapshot
@dataclass
class Kernel:
    """Links, addresses and neighbours of the namespace: all of them (:meth:`read`) or
    those of some links only (:meth:`read_some`, ``sock`` set: :meth:`groups` then
    asks the kernel for every link)."""

    links: dict[str, R.Link]
    by_index: dict[int, R.Link]
    addrs: dict[int, set[tuple[int, str, int]]]
    neighs: dict[int, dict[tuple[int, str], R.Neigh]]
    sock: R.RtnlSocket | None = None

    @classmethod
    def read(cls, sock: R.RtnlSocket) -> Kernel:
        links = sock.links()
        addrs: dict[int, set[tuple[int, str, int]]] = {}
        for a in sock.addrs():
            addrs.setdefault(a.index, set()).add((a.family, a.ip, a.prefixlen))
        neighs: dict[int, dict[tuple[int, str], R.Neigh]] = {}
        for n in sock.neighs():
            neighs.setdefault(n.index, {})[(n.family, n.ip)] = n
        return cls({lk.name: lk for lk in links}, {lk.index: lk for lk in links}, addrs, neighs)

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
            for m in sock.dump(N.RTM_GETADDR, N.ifaddr(0, 0, index)):
                a = R.parse_addr(m)
                if a.index == index:  # (filtered by the kernel already)
                    addrs.setdefault(index, set()).add((a.family, a.ip, a.prefixlen))
            # the interface goes in NDA_IFINDEX: a strict-checking socket filters on the
            # attribute, and answers nothing for an index in the header
            for m in sock.dump(N.RTM_GETNEIGH, N.ndmsg(0, 0) + N.attr_u32(N.NDA_IFINDEX, index)):
                n = R.parse_neigh(m)
                if n is not None and n.index == index:
                    neighs.setdefault(index, {})[(n.family, n.ip)] = n
        return cls({lk.name: lk for lk in by_index.values()}, by_index, addrs, neighs, sock)

    def groups(self) -> set[int]:
        """Link groups in use in the namespace (every link's, not only the snapshot's)."""
        links = self.sock.links() if self.sock is not None else self.links.values()
        return {lk.group for lk in links}

    def names(self) -> Names:
        return Names({n: lk.index for n, lk in self.links.items()})


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
    """One planning pass. ``read_sysctls(keys) -> {key: value|None}`` reads the namespace;
    ``originals`` holds the links' values from before the agent changed them (MTU, admin
    state, alias: restored when unconfigured); the plan stages its changes to them in
    ``PlanResult.originals``."""

    def __init__(self, kernel: Kernel,
                 read_sysctls: Callable[[list[str]], dict[str, str | None]],
                 originals: Originals) -> None:
        self.k = kernel
        self.read_sysctls = read_sysctls
        self.originals = originals
        self.out = PlanResult()
        # (key, value, path, link created by this plan, write even if equal, "default"?)
        self._sysctl_todo: list[tuple[str, str, str, bool, bool, str]] = []
        self._deleting: list[str] = []  # macvlans to delete
        self._mtu_changed: dict[str, int] = {}  # links whose MTU this plan sets → MTU

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
        self._flush_deletes()
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

    def _recreate_undo(self, link: R.Link) -> list[Action]:
        """Inverses of deleting macvlan ``link``: create it again as it was."""
        lower = self.lower_name(link) or ""
        p = if_path(link.name)
        undo = [Action(f"recreate macvlan {link.name}", p, 0,
                       nl=req_create_macvlan(link.name, lower, link.mode or "vepa", link.mac,
                                             link.mtu, link.up, link.index),
                       creates=link.name)]
        if link.alias:
            undo.append(Action("restore alias", p, 0, nl=req_set_link(link.name,
                                                                      alias=link.alias)))
        for _fam, ip, plen in sorted(self.k.addrs.get(link.index, ())):
            if not ip.startswith("fe80:"):
                undo.append(Action(f"re-add {ip}/{plen}", p, 0,
                                   nl=req_addr(True, link.name, ip, plen)))
        for n in self.k.neighs.get(link.index, {}).values():
            if n.state & N.NUD_PERMANENT and n.lladdr:
                undo.append(Action(f"re-add neighbor {n.ip}", p, 0,
                                   nl=req_neigh(True, link.name, n.ip, n.lladdr)))
        return undo

    def _delete_macvlan(self, name: str) -> None:
        self._deleting.append(name)

    def _flush_deletes(self) -> None:
        """Each RTM_DELLINK waits for an RCU grace period (~18 ms): several macvlans are
        put in one unused link group and deleted with a single request."""
        names = self._deleting
        if len(names) == 1:
            name = names[0]
            self.act(Action(f"delete macvlan {name}", if_path(name), ST_DEL_LINK,
                            nl=req_del_link(name), undo=self._recreate_undo(self.k.links[name]),
                            deletes=(name,)))
            return
        if not names:
            return
        used = self.k.groups()
        group = next(g for g in range(0x7A000000, 0x7B000000) if g not in used)
        undo: list[Action] = []
        for name in names:
            link = self.k.links[name]
            self.act(Action(f"put macvlan {name} in link group {group}", if_path(name),
                            ST_DEL_LINK, nl=req_set_link(name, group=group),
                            undo=[Action(f"restore group of {name}", if_path(name), 0,
                                         nl=req_set_link(name, group=link.group))]))
            undo += self._recreate_undo(link)
        self.act(Action(f"delete macvlans {', '.join(names)}", if_path(names[0]), ST_DEL_LINK,
                        nl=lambda _names: R.Request(N.RTM_DELLINK, 0, N.ifinfo(0) + N.attr_u32(
                            N.IFLA_GROUP, group)), undo=undo, deletes=tuple(names)))

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
                                                 nl=req_addr(False, name, ip, plen))]))

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
                                   nl=req_neigh(False, name, ip, None))]
                self.act(Action(f"add neighbor {ip} lladdr {ll} to {name}", p, ST_ADD_ADDR,
                                nl=req_neigh(True, name, ip, ll), undo=undo))

    # -------------------------------------------------------------- sysctls
    def _sysctls(self, it: IfIntent, prev: IfIntent | None, existing: bool) -> None:
        want = sysctl_intent(it if (it.ipv4 or it.ipv6) else None)
        before = sysctl_intent(prev)
        new_link = not existing
        mtu_changes = it.name in self._mtu_changed
        for key, (val, path) in want.items():
            force = key.endswith("/mtu") and (mtu_changes or new_link)
            self._sysctl_todo.append((key, val, path, new_link, force, ""))
        for key, (_val, path) in before.items():
            if key in want:
                continue
            if key.endswith("/mtu"):  # back to the link MTU (the one this plan sets)
                link = self.k.links.get(it.name)
                restore = str(it.mtu or self._mtu_changed.get(it.name)
                              or (link.mtu if link else 0))
                self._sysctl_todo.append((key, restore, path, False, False, ""))
            else:
                self._sysctl_todo.append((key, "", path, False, False, "default"))

    def _flush_sysctls(self) -> None:
        if not self._sysctl_todo:
            return
        keys = {t[0] for t in self._sysctl_todo}
        keys |= {default_key(t[0]) for t in self._sysctl_todo}
        cur = self.read_sysctls(sorted(keys))
        # disable_ipv6=0 must come before the other IPv6 settings (and addresses)
        order = sorted(self._sysctl_todo, key=lambda t: 0 if t[0].endswith("disable_ipv6") else 1)
        for key, val, path, new_link, force, mode in order:
            if mode == "default":
                val = cur.get(default_key(key)) or ""
                if not val:
                    continue
            # a link created by this plan starts from the namespace defaults
            now = cur.get(default_key(key)) if new_link else cur.get(key)
            if now == val and not force:
                continue
            undo = [] if now is None else [Action(f"restore {key}", path, 0,
                                                  sysctl=(key, now))]
            self.act(Action(f"sysctl {key.replace('/', '.')}={val}", path, ST_SYSCTL,
                            sysctl=(key, val), undo=undo))
