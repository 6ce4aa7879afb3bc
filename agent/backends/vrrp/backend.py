"""The VRRP backend: running ietf-vrrp → virtual-MAC macvlans + one keepalived.

``prepare`` reads the new running tree into :mod:`model` dataclasses, validates them
(:mod:`validate`), renders keepalived.conf (:mod:`render`) and has ``keepalived -t`` check
it: any refusal is an rpc-error and nothing is applied. ``apply`` converges the kernel
(macvlans, ARP sysctls, the macvlans' egress filters and the owner ARP filter of parents
whose own addresses are VIPs), the track files and keepalived (start, or SIGHUP only when
the text changed); its undo converges back to the previous configuration. While a commit
runs, the configuration being committed is registered for the state side
(:func:`configured.committing`): keepalived's transitions meanwhile belong to it.
"""

from __future__ import annotations

import ipaddress
import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from lxml import etree

from agent.backends.linux.netns import open_iproute
from agent.backends.vrrp import configured, egress, mcast, model, vmac
from agent.backends.vrrp.keepalived import Keepalived, KeepalivedRefused
from agent.backends.vrrp.model import VrrpInstance
from agent.backends.vrrp.names import vmac_address, vmac_ifname
from agent.backends.vrrp.render import render_blocks, render_header
from agent.backends.vrrp.tracking import NetworkTracker
from agent.backends.vrrp.validate import check
from agent.datastore.tree import PathMaker
from agent.protocol.errors import RpcError, RpcErrors

if TYPE_CHECKING:
    from agent.app import BackendContext
    from agent.datastore.schema import Schema
    from agent.server import NetconfServer

log = logging.getLogger(__name__)

Instances = Mapping[tuple[str, int, int], VrrpInstance]


@dataclass
class Desired:
    instances: dict[tuple[str, int, int], VrrpInstance]
    text: str
    prefixes: set[str]
    # parent → {VIP that is one of its own addresses: VRID} (owner ARP / ND filter)
    owned: dict[str, dict[str, int]] = field(default_factory=dict)


class VrrpBackend:
    """A :class:`~agent.datastore.transaction.Subscriber` for ietf-vrrp."""

    name = "vrrp"

    def __init__(self, schema: Schema, state_dir: Path, netns: str | None) -> None:
        self.schema = schema
        self.netns = netns
        self.keepalived = Keepalived(state_dir, netns)
        self.tracker = NetworkTracker(netns, self.keepalived.track_dir)
        self.current = Desired({}, "", set())
        self._lock = threading.RLock()
        self._ipr = None
        self._read_cache: model.ReadCache = {}  # instances parsed by earlier prepares
        self._checked_header: str | None = None  # header of the blocks ``keepalived -t`` passed
        self._checked: dict[tuple[str, int, int], str] = {}  # those blocks, by instance
        self._filters: dict[str, tuple[str, ...]] = {}  # macvlan → VIPs its filter lets out
        # parent → its owner filter's VIPs and IPv6 solicitation source
        self._owner_filters: dict[str, tuple[dict[str, int], str | None]] = {}
        self._converged = False  # set once this agent converged (macvlans of an earlier
        # agent: sysctls and filters checked once)
        self._commit: int | None = None  # configured.begin_commit token of the last apply
        self.groups = mcast.Memberships(netns)
        self.keepalived.before_restart(self._remove_vips)

    # ------------------------------------------------------------------ helpers
    def ipr(self):  # noqa: ANN201 - pyroute2 IPRoute
        if self._ipr is None:
            self._ipr = open_iproute(self.netns)
        return self._ipr

    def _kernel_ipv4(self, ifname: str) -> str | None:
        try:
            idx = vmac.link_index(self.ipr(), ifname)
            if idx is None:
                return None
            for a in self.ipr().get_addr(index=idx, family=2):
                return a.get_attr("IFA_ADDRESS")
        except Exception:  # pragma: no cover - no kernel view: the config decides
            log.exception("reading addresses of %s failed", ifname)
        return None

    def _sources(self, cfg: model.VrrpConfig) -> dict[str, str | None]:
        """IPv4 advert source per parent: its first configured address, else the kernel's."""
        out: dict[str, str | None] = {}
        for inst in cfg.instances.values():
            if inst.family != 4 or inst.ifname in out:
                continue
            ic = cfg.interfaces.get(inst.ifname)
            if ic is not None and ic.ipv4:
                out[inst.ifname] = ic.ipv4[0].split("/")[0]
            else:
                out[inst.ifname] = self._kernel_ipv4(inst.ifname)
        return out

    # ------------------------------------------------------------------ transaction
    def prepare(self, old: etree._Element, new: etree._Element) -> _Plan | None:
        cfg = model.read(new, self._read_cache)
        src4 = self._sources(cfg)
        pm = PathMaker(self.schema)
        errors = check(cfg, src4, pm.path)
        if errors:
            raise errors[0] if len(errors) == 1 else RpcErrors(errors)
        ka = self.keepalived
        header = render_header(cfg.instances, ka.fifo_path, ka.track_dir)
        blocks = render_blocks(cfg.instances, src4, ka.track_dir)
        text = header + "".join(blocks.values())
        prefixes = {p for i in cfg.instances.values() for p, _ in i.track_networks}
        desired = Desired(dict(cfg.instances), text, prefixes, self._owned(cfg))
        if (text == self.current.text and desired.owned == self.current.owned
                and (ka.running or not cfg.instances)):
            return None
        self._guard(header, blocks)
        return _Plan(self, desired, old, new)

    @staticmethod
    def _owned(cfg: model.VrrpConfig) -> dict[str, dict[str, int]]:
        """parent → {owned VIP: VRID}: the VIPs that are the parent's own addresses (an
        IPv6 owner's link-local VIP too: it may be the parent's kernel-made link-local, and
        the filter changes nothing about an address the parent does not have)."""
        out: dict[str, dict[str, int]] = {}
        for inst in cfg.instances.values():
            ic = cfg.interfaces.get(inst.ifname)
            if not inst.is_owner or ic is None:
                continue
            own = {str(ipaddress.ip_interface(a).ip)
                   for a in (ic.ipv4 if inst.family == 4 else ic.ipv6)}
            for v in inst.vips:
                if v in own or (inst.family == 6 and ipaddress.IPv6Address(v).is_link_local):
                    out.setdefault(inst.ifname, {})[v] = inst.vrid
        return out

    def _guard(self, header: str, blocks: Mapping[tuple[str, int, int], str]) -> None:
        """``keepalived -t`` on the rendered file, refusing with an rpc-error.

        Instance blocks are independent (own name, own macvlan, see :func:`render_blocks`),
        so only the blocks not yet checked under the same header are checked, with that
        header: an edit of one instance among 1,000 checks a one-instance file (~10 ms)
        instead of the whole one (~60–90 ms measured)."""
        if header != self._checked_header:
            self._checked_header, self._checked = None, {}
        todo = {k: b for k, b in blocks.items() if self._checked.get(k) != b}
        if not todo and self._checked_header is not None:
            return
        try:
            self.keepalived.check(header + "".join(todo.values()))
        except KeepalivedRefused as exc:
            raise RpcError("operation-failed", f"keepalived refuses the configuration: {exc}",
                           app_tag="keepalived-refused") from exc
        self._checked_header = header
        self._checked.update(todo)

    # ------------------------------------------------------------------ convergence
    def converge(self, want: Desired) -> None:
        """Make kernel, track files and keepalived match ``want`` (idempotent)."""
        with self._lock:
            names = {vmac_ifname(*k): k for k in want.instances}
            all_links = vmac.links(self.netns)
            have = vmac.existing(all_links)
            # 1. macvlans of new instances (down until their sysctls are set)
            fix: list[vmac.Vmac] = []  # existing but wrong: repaired one by one
            new: list[vmac.Vmac] = []
            for name, key in names.items():
                info = have.get(name)
                v = vmac.Vmac(name, key[0], vmac_address(key[1], key[2]), key[1])
                if info is None:
                    new.append(v)
                elif info["mac"] != v.mac or info["parent"] != v.parent or not info["up"]:
                    fix.append(v)
            missing = {v.parent for v in new + fix if v.parent not in all_links}
            if missing:
                raise LookupError(f"interface {', '.join(sorted(missing))} does not exist")
            vmac.create_many(self.netns, new)
            for v in fix:
                vmac.create(self.ipr(), v)
            parents = sorted({k[0] for k in want.instances})
            tune = new + fix
            if not self._converged:  # macvlans an earlier agent made: settings it lacked
                made = {v.ifname for v in tune}
                tune = tune + [vmac.Vmac(n, k[0], vmac_address(k[1], k[2]), k[1])
                               for n, k in names.items() if n in have and n not in made]
            if tune or parents:
                sysctls = vmac.arp_sysctls(parents, [v.ifname for v in tune],
                                           [v.ifname for v in tune if v.family == 6])
                vmac.set_sysctls(self.netns, sysctls)
            # egress filters: before the new macvlans come up, and wherever the VIPs changed
            self._set_filters(names, want.instances, {v.ifname for v in new + fix})
            self._set_owner_filters(want.owned, all_links)
            vmac.up_many(self.netns, [v.ifname for v in new + fix])
            self._set_groups(want.instances, all_links)
            # 2. track files, then keepalived
            self.tracker.set_prefixes(want.prefixes)
            ka = self.keepalived
            if want.instances or ka.running:
                ka.apply(want.text)
            self.current = want
            # 3. macvlans no instance uses any more (keepalived already dropped them), the
            # owner filters of parents that own no VIP any more
            gone = [n for n in have if n not in names]
            vmac.delete_many(self.netns, gone)
            for n in gone:
                self._filters.pop(n, None)
            self._drop_owner_filters(want.owned, all_links)
            self._converged = True

    def _set_filters(self, names: Mapping[str, tuple[str, int, int]], instances: Instances,
                     fresh: set[str]) -> None:
        """Install or replace the egress filter of every macvlan whose virtual addresses
        differ from the filter it has (all of them after an agent start), and of the
        macvlans just (re)created (``fresh``)."""
        lines: list[str] = []
        done: dict[str, tuple[str, ...]] = {}
        for name, key in names.items():
            vips = tuple(instances[key].vips)
            if name in fresh or self._filters.get(name) != vips:
                lines += egress.tc_lines(name, vips)
                done[name] = vips
        egress.tc_batch(self.netns, lines)
        self._filters.update(done)

    def _set_owner_filters(self, owned: Mapping[str, dict[str, int]],
                           all_links: Mapping[str, dict]) -> None:
        """The parents' owner ARP / ND filters (:mod:`egress`), where the owned VIPs or the
        solicitations' replacement source changed (everywhere after an agent start)."""
        want = {p: (dict(vips), self._source6(all_links[p]["index"], vips))
                for p, vips in owned.items() if p in all_links}
        todo = {p: w for p, w in want.items()
                if not self._converged or self._owner_filters.get(p) != w}
        if not todo:
            return
        egress.tc_batch(self.netns, [ln for p in sorted(todo) for ln in egress.owner_lines(p)])
        for parent, (vips, source6) in sorted(todo.items()):
            egress.attach_owner(self.netns, all_links[parent]["index"], vips, source6)
            self._owner_filters[parent] = (vips, source6)

    def _source6(self, index: int, vips: Mapping[str, int]) -> str | None:
        """The address the parent's neighbor solicitations from an owned IPv6 VIP go out
        from instead (:mod:`egress`): its link-local, else another address of its own,
        that no instance owns; None without IPv6 VIPs or such an address."""
        if not any(":" in v for v in vips):
            return None
        try:
            have = [(a.get_attr("IFA_ADDRESS"), a["scope"])
                    for a in self.ipr().get_addr(index=index, family=10)]
        except Exception:  # pragma: no cover - no kernel view: solicitations unchanged
            log.exception("reading IPv6 addresses of link %s failed", index)
            return None
        mine = [str(ipaddress.IPv6Address(a)) for a, scope in
                sorted(have, key=lambda h: h[1] != 253) if a and scope in (0, 253)]
        return next((a for a in mine if a not in vips), None)

    def _drop_owner_filters(self, owned: Mapping[str, dict[str, int]],
                            all_links: Mapping[str, dict]) -> None:
        """Remove the owner filter from the parents that own no VIP any more (after an
        agent start: from every link but the macvlans, wherever an earlier agent left one)."""
        if self._converged:
            drop = [p for p in self._owner_filters if p not in owned]
        else:
            drop = [n for n, i in all_links.items() if n not in owned and i["alias"] != vmac.ALIAS]
        egress.tc_batch(self.netns, [ln for p in drop if p in all_links
                                     for ln in egress.owner_del_lines(p)], force=True)
        for p in drop:
            self._owner_filters.pop(p, None)

    def _set_groups(self, instances: Instances, all_links: Mapping[str, dict]) -> None:
        """The parents join the IPv6 groups the macvlans may not report (:mod:`mcast`)."""
        want: set[tuple[int, str]] = set()
        for inst in instances.values():
            info = all_links.get(inst.ifname)
            if inst.family == 6 and info is not None:
                want |= {(info["index"], g) for g in mcast.groups6(inst.vips)}
        self.groups.set(want)

    def _remove_vips(self) -> None:
        """keepalived died: take every virtual address off the macvlans now, so that no
        stale VIP stays on the LAN while it restarts (it comes back only as master)."""
        want = self.current
        vips = {vmac_ifname(*k): set(i.vips) for k, i in want.instances.items()}
        # one ``ip -j addr`` and one ``ip -batch``: 1,000 instances must not cost 1,000
        # netlink round trips before keepalived is restarted
        stale = [(name, a, plen) for name, addrs in vmac.addresses(self.netns).items()
                 if name in vips for a, plen in addrs if a in vips[name]]
        vmac.delete_addresses(self.netns, stale)
        log.info("removed virtual addresses after keepalived exit")

    def stop(self) -> None:
        configured.end_commit(self._commit)
        self._commit = None
        self.tracker.stop()
        self.keepalived.stop()
        self.groups.close()
        if self._ipr is not None:
            self._ipr.close()
            self._ipr = None


class _Plan:
    def __init__(self, backend: VrrpBackend, want: Desired, old: etree._Element,
                 new: etree._Element) -> None:
        self.backend = backend
        self.want = want
        self.old, self.new = old, new

    def apply(self):  # noqa: ANN201 - Undo
        b = self.backend
        before = b.current
        # keepalived reports transitions of the new configuration before it is running:
        # the state side judges them by it (configured.committing)
        configured.end_commit(b._commit)
        b._commit = configured.begin_commit(self.old, self.new)
        try:
            b.converge(self.want)
        except (OSError, LookupError) as exc:
            self._withdraw()
            raise RpcError("operation-failed", f"VRRP: {exc}") from exc
        except BaseException:
            self._withdraw()
            raise

        def undo() -> None:
            self._withdraw()
            b.converge(before)

        return undo

    def _withdraw(self) -> None:
        configured.end_commit(self.backend._commit)
        self.backend._commit = None


def attach(server: NetconfServer, ctx: BackendContext) -> VrrpBackend:
    """Subscribe the VRRP backend (after the Linux one) and stop keepalived at shutdown."""
    b = VrrpBackend(server.schema, ctx.state_dir, ctx.netns)
    # a keepalived left running by this agent's previous run (killed with SIGKILL) would
    # keep its VIPs beside the one started now, or for good without VRRP configuration
    b.keepalived.reap()
    server.datastores.subscribers.append(b)
    ctx.on_stop.append(b.stop)
    server.vrrp = b  # type: ignore[attr-defined] - the state provider finds keepalived here
    return b
