"""Drift repair: netlink events in the managed namespace trigger a reconcile.

A socket subscribed to the link, address and neighbour groups is watched by the
event loop (``add_reader``: no thread, no polling). Events are coalesced: the
first one schedules a reconcile ``delay`` seconds later, the ones arriving
meanwhile ride along. Events caused by the agent's own commits lead to a
reconcile that finds nothing to do. A reconcile restores what it can (best
effort): after one that failed in a new way the next attempt waits longer (up to
``max_backoff``), so a kernel that keeps refusing does not make the agent spin;
one that failed only as before (a difference that cannot be restored, logged once,
whose retry costs a failed write and raises no event) keeps the short delay, so
other drift is still repaired at once.

Sysctls: the kernel announces forwarding changes (RTM_NEWNETCONF, the IPv4/IPv6
netconf groups) but not the others the backend manages (IPv6 mtu, DAD transmits,
autoconf, temporary addresses, disable_ipv6 — the last one only through the
addresses it removes). Every ``sysctl_period`` seconds those of the configured
interfaces are read in the namespace thread (the event loop does not wait) and
compared with running; a difference triggers a reconcile. A difference the
reconcile could not repair is not retried until it changes. The values come from
one link dump (``IFLA_AF_SPEC`` carries every link's IPv4/IPv6 devconf array):
for 1,000 links with 6 such sysctls each, ~35 ms of CPU per check (~0.7 % of a core
at the 5 s default) instead of ~150 ms reading the /proc/sys files one by one; with
no ``ipv6`` container configured there is nothing to check.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket

from agent.backends.linux import netlink as N
from agent.backends.linux import rtnl as R
from agent.backends.linux.config import LinuxConfig
from agent.backends.linux.nsthread import read_sysctls

log = logging.getLogger("agent.linux")

GROUPS = (N.RTMGRP_LINK | N.RTMGRP_NEIGH | N.RTMGRP_IPV4_IFADDR | N.RTMGRP_IPV6_IFADDR
          | N.RTMGRP_IPV4_NETCONF | N.RTMGRP_IPV6_NETCONF)


class DriftWatcher:
    def __init__(self, backend: LinuxConfig, delay: float = 0.05,
                 max_backoff: float = 10.0, sysctl_period: float = 5.0) -> None:
        self.backend = backend
        self.delay = delay
        self.sysctl_period = sysctl_period
        self._stuck: set[str] = set()  # sysctls a reconcile did not repair
        self._dump_sock: R.RtnlSocket | None = None
        self._reads: tuple[dict[str, str] | None, LinkReads] = (None, ({}, []))
        self.max_backoff = max_backoff
        self._backoff = delay
        self._pending: asyncio.Handle | None = None
        self.reconciles = 0

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        sock = self.backend.ns.socket(GROUPS)
        sock.sock.setblocking(False)
        loop.add_reader(sock.fileno(), self._readable, sock, loop)
        try:
            await self._poll_sysctls(loop)
        finally:
            loop.remove_reader(sock.fileno())
            sock.close()
            if self._dump_sock is not None:
                self._dump_sock.close()
                self._dump_sock = None
            if self._pending is not None:
                self._pending.cancel()

    async def _poll_sysctls(self, loop: asyncio.AbstractEventLoop) -> None:
        while True:
            await asyncio.sleep(self.sysctl_period)
            keys = self.backend.managed_sysctls()
            if not keys:
                self._stuck = set()
                continue
            if self._dump_sock is None:
                self._dump_sock = self.backend.ns.socket()
            if self._reads[0] is not keys:
                self._reads = (keys, link_reads(list(keys)))
            have = await asyncio.wrap_future(self.backend.ns.submit(
                read_link_sysctls, self._dump_sock, self._reads[1]))
            bad = self.backend.sysctl_drift(keys, have)
            if bad and bad != self._stuck and self._pending is None:
                self._pending = loop.call_soon(self._fire)
            self._stuck = bad

    def _relevant(self, typ: int, msg: bytes) -> bool:
        if typ in (N.RTM_NEWNEIGH, N.RTM_DELNEIGH):
            n = R.parse_neigh(msg) if len(msg) >= 28 else None
            return n is not None and bool(n.state & N.NUD_PERMANENT)
        return typ in (N.RTM_NEWLINK, N.RTM_DELLINK, N.RTM_NEWADDR, N.RTM_DELADDR,
                       N.RTM_NEWNETCONF)

    def _readable(self, sock: R.RtnlSocket, loop: asyncio.AbstractEventLoop) -> None:
        relevant = False
        while True:
            try:
                buf = sock.sock.recv(1 << 20)
            except BlockingIOError:
                break
            except OSError as exc:
                if exc.errno == errno.ENOBUFS:  # events lost: reconcile to be sure
                    relevant = True
                    continue
                raise
            for typ, _flags, _seq, msg, _ in R.messages(buf):
                relevant = relevant or self._relevant(typ, msg)
        if relevant and self._pending is None:
            self._pending = loop.call_later(self._backoff, self._fire)

    def _fire(self) -> None:
        self._pending = None
        self.reconciles += 1
        known = self.backend.failures
        try:
            ok = self.backend.reconcile()
            # failing only as before: nothing new to wait for
            ok = ok or self.backend.failures.keys() <= known.keys()
        except Exception:  # noqa: BLE001 - the watcher must survive
            log.exception("drift: reconcile failed")
            ok = False
        self._backoff = self.delay if ok else min(self._backoff * 4, self.max_backoff)


LinkReads = tuple[dict[str, list[tuple[str, int, int]]], list[str]]


def link_reads(keys: list[str]) -> LinkReads:
    """How to read per-link sysctl ``keys`` (``net/ipv6/conf/eth0/mtu``): link → (key,
    family, devconf index) for those netlink reports, and the others (from /proc/sys)."""
    fams = {"ipv4": (socket.AF_INET, N.INET_DEVCONF), "ipv6": (socket.AF_INET6, N.INET6_DEVCONF)}
    wanted: dict[str, list[tuple[str, int, int]]] = {}
    rest: list[str] = []
    for key in keys:
        parts = key.split("/")  # net/ipv6/conf/NAME/LEAF
        fam, table = fams.get(parts[1], (0, {}))
        index = table.get(parts[-1]) if len(parts) == 5 else None
        if index is None:
            rest.append(key)
        else:
            wanted.setdefault(parts[3], []).append((key, fam, index))
    return wanted, rest


def read_link_sysctls(sock: R.RtnlSocket, reads: LinkReads) -> dict[str, str | None]:
    """Values of the keys planned by :func:`link_reads`: one link dump, then /proc/sys for
    the rest (runs in the namespace thread). None: no such link / file."""
    wanted, rest = reads
    out: dict[str, str | None] = {}
    if wanted:
        names = set(wanted)
        for m in sock.dump(N.RTM_GETLINK, N.ifinfo()):
            got = R.link_devconf(m, names)
            if got is None:
                continue
            name, conf = got
            for key, fam, index in wanted[name]:
                values = conf.get(fam)
                if values is not None and index < len(values):
                    out[key] = str(values[index])
    if rest:
        out.update(read_sysctls(rest))
    return out
