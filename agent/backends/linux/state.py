"""Linux backend, kernel → operational state: ``/if:interfaces`` (NMDA, RFC 8343 + RFC 8344
state) and the deprecated ``/if:interfaces-state`` tree, for every link in the managed
namespace, configured or not.

Each ``<get>`` reads the kernel afresh (counters move without events): counters
(RTM_GETSTATS), addresses and neighbours for all interfaces, with the link attributes
from a link dump not older than two seconds and taken after the last link notification;
or, when a filter names the interfaces (``names``), one RTM_GETLINK by name plus address
and neighbour dumps filtered by ifindex for each. What a single read can't tell (which
macvlans sit on a filtered interface, when its state changed, when the agent first saw
it) comes from the
:class:`~agent.backends.linux.oper_links.LinkTable`, kept current by link events.
See :mod:`agent.backends.linux.oper_xml` for the kernel → YANG mappings.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from lxml import etree

from agent.backends.linux.oper_ethtool import SpeedReader
from agent.backends.linux.oper_links import LinkTable
from agent.backends.linux.oper_netlink import Addr, Link, LinkEvents, Neigh, RtReader
from agent.backends.linux.oper_xml import IF, IP, Builder, iso_time

if TYPE_CHECKING:
    from agent.app import BackendContext
    from agent.server import NetconfServer

log = logging.getLogger("agent.linux.state")

INTERFACES = f"{{{IF}}}interfaces"
INTERFACES_STATE = f"{{{IF}}}interfaces-state"

_IFACE = f"{{{IF}}}interface"
#: The configuration lists of ``/interfaces`` this provider reports exactly as the kernel
#: has them: in ``<operational>``, a configured interface without a link, an address or
#: a static neighbour not in the kernel (ipv4 disabled, removed by hand) is not in use.
COMPLETE = (
    (_IFACE,),
    *((_IFACE, f"{{{IP}}}{fam}", f"{{{IP}}}{lst}")
      for fam in ("ipv4", "ipv6") for lst in ("address", "neighbor")),
)


def _canon_ip(text: str) -> str | None:
    text = text.strip()
    fam = socket.AF_INET6 if ":" in text else socket.AF_INET
    try:
        return socket.inet_ntop(fam, socket.inet_pton(fam, text))
    except OSError:
        return None


def static_addresses(running: etree._Element | None) -> set[tuple[str, str]]:
    """``(interface name, ip)`` of every address configured in running."""
    out: set[tuple[str, str]] = set()
    if running is None:
        return out
    for it in running.iterfind(f"{{{IF}}}interfaces/{{{IF}}}interface"):
        name = it.findtext(f"{{{IF}}}name")
        for fam in ("ipv4", "ipv6"):
            for ip in it.iterfind(f"{{{IP}}}{fam}/{{{IP}}}address/{{{IP}}}ip"):
                c = _canon_ip(ip.text or "")
                if name and c:
                    out.add((name, c))
    return out


class InterfaceState:
    """The state providers of the Linux backend (one netlink reader, one link table)."""

    SHARE_FOR = 1.0  # seconds a kernel read may serve the other tree of the same <get>
    LINKS_FOR = 2.0  # seconds a link dump may be reused (with fresh counters), see _all_links

    def __init__(
        self, netns: str | None, running: Callable[[], etree._Element | None] = lambda: None
    ) -> None:
        self.netns = netns
        self.running = running
        self.reader = RtReader(netns)
        self.events = LinkEvents(netns)  # subscribe before the first dump: no gap
        self.table = LinkTable(self.reader, self.events)
        self.speeds = SpeedReader(netns)
        self._static: tuple[etree._Element | None, set[tuple[str, str]]] = (None, set())
        self._links: tuple[int, float, list[Link], set[int]] | None = None
        self._speeds: dict[str, int | None] = {}
        self._shared: tuple[tuple, float, set[str], list[tuple[str, str]]] | None = None

    def close(self) -> None:
        for s in (self.reader, self.events, self.speeds):
            s.close()

    # ------------------------------------------------------------------ providers
    def interfaces(self, names: set[str] | None) -> etree._Element:
        return self.build(INTERFACES, names)

    def interfaces_state(self, names: set[str] | None) -> etree._Element:
        return self.build(INTERFACES_STATE, names)

    def build(self, top: str, names: set[str] | None) -> etree._Element:
        local = etree.QName(top).localname
        i = 0 if top == INTERFACES else 1
        body = "".join(e[i] for e in self.entries(top, names))
        return etree.fromstring(
            f'<{local} xmlns="{IF}" xmlns:ip="{IP}">{body}</{local}>'.encode())

    # ------------------------------------------------------------------ reading
    def _static_addrs(self) -> tuple[etree._Element | None, set[tuple[str, str]]]:
        tree = self.running()
        if self._static[0] is not tree:  # trees are replaced on commit, never edited
            self._static = (tree, static_addresses(tree))
        return self._static

    def entries(self, top: str, names: set[str] | None) -> list[tuple[str, str]]:
        """The ``interface`` entries as XML text, ``(nmda, legacy)`` (see
        :meth:`Builder.interface`).

        One ``<get>`` calls the ``interfaces`` and the ``interfaces-state`` providers one
        after the other: a kernel read serves both, once each, if it is less than
        ``SHARE_FOR`` seconds old and no netlink notification (link, address, neighbour,
        sysctl) came in since. Otherwise (and for any other call) the kernel is read again.
        """
        self.table.update()
        tree, static = self._static_addrs()
        key = (None if names is None else frozenset(names), self.table.generation, id(tree))
        sh = self._shared
        if (sh is not None and sh[0] == key and top not in sh[2]
                and time.monotonic() - sh[1] < self.SHARE_FOR):
            sh[2].add(top)
            return sh[3]
        text = self._entries(names, static)
        key = (key[0], self.table.generation, key[2])  # the read may have updated the table
        self._shared = (key, time.monotonic(), {top}, text)
        return text

    def read(self, names: set[str] | None
             ) -> tuple[list[Link], dict[int, list[Addr]], dict[int, list[Neigh]]]:
        """Links (sorted by name), addresses and neighbours by ifindex."""
        addrs: dict[int, list[Addr]] = {}
        neighs: dict[int, list[Neigh]] = {}
        if names is None:
            links = self._all_links()
            for a in self.reader.dump_addrs():
                addrs.setdefault(a.index, []).append(a)
            for n in self.reader.dump_neighs():
                neighs.setdefault(n.index, []).append(n)
        else:
            links = []
            for name in names:
                ln = self.reader.get_link(name)
                if ln is None:
                    continue
                links.append(ln)
                self.table.observe(ln)
                addrs[ln.index] = self.reader.dump_addrs(ln.index)
                neighs[ln.index] = self.reader.dump_neighs(ln.index)
        links.sort(key=lambda ln: ln.name)
        return links, addrs, neighs

    def _all_links(self) -> list[Link]:
        """Every link, with fresh counters. Link attributes change only with a notification
        (RTM_NEWLINK, or RTM_NEWNETCONF for forwarding): while none came and for at most
        ``LINKS_FOR`` seconds, the last link dump is reused and only the counters are read
        (RTM_GETSTATS), which parses ~20x less than a link dump."""
        c = self._links
        now = time.monotonic()
        if c is not None and c[0] == self.events.link_changes and now - c[1] < self.LINKS_FOR:
            stats = self.reader.dump_stats()
            if stats.keys() == c[3]:
                for ln in c[2]:
                    ln.stats = stats[ln.index]
                return c[2]
        links = self.reader.dump_links()
        self.table.sync(links)
        self._speeds = {}
        self._links = (self.events.link_changes, now, links, {ln.index for ln in links})
        return links

    def _speed(self, name: str, cached: bool) -> int | None:
        """Link speed; a full read keeps it with the cached links (a speed change comes with
        a carrier change, hence a link notification)."""
        if not cached:
            return self.speeds.speed(name)
        if name not in self._speeds:
            self._speeds[name] = self.speeds.speed(name)
        return self._speeds[name]

    def _entries(self, names: set[str] | None, static: set[tuple[str, str]]
                 ) -> list[tuple[str, str]]:
        links, addrs, neighs = self.read(names)
        table = self.table
        if names is None:
            uppers, lowers = table.layer_maps()
        else:
            uppers = {ln.index: table.uppers(ln.index) for ln in links}
            lowers = {ln.index: table.lowers(ln.index) for ln in links}
        b = Builder(static)
        name_of = table.name_of
        cached = names is None
        speed = self._speed
        started = iso_time(table.started)
        parts = []
        for ln in links:
            info = table.links.get(ln.index)
            first = info.first_seen if info else table.started
            parts.append(b.interface(
                ln,
                first_seen=started if first == table.started else iso_time(first),
                last_change=info.last_change if info else None,
                uppers=sorted(n for i in uppers.get(ln.index, ()) if (n := name_of(i))),
                lowers=sorted(n for i in lowers.get(ln.index, ()) if (n := name_of(i))),
                speed=speed(ln.name, cached),
                addrs=addrs.get(ln.index, []),
                neighs=neighs.get(ln.index, []),
                lower_name=name_of(info.lower) if info and info.lower else None,
            ))
        return parts

    # ------------------------------------------------------------------ events
    def _on_events(self) -> None:
        try:
            self.table.update()
        except Exception:  # a bad message never stops the watcher
            log.exception("reading link events failed")

    async def watch(self) -> None:
        """Read link events as they come (accurate last-change) while the agent runs."""
        loop = asyncio.get_running_loop()
        fd = self.events.fileno()
        loop.add_reader(fd, self._on_events)
        try:
            await asyncio.Event().wait()
        finally:
            loop.remove_reader(fd)


def attach(server: NetconfServer, ctx: BackendContext) -> InterfaceState:
    """Register the interface state providers and the link-event watcher."""
    state = InterfaceState(ctx.netns, lambda: server.datastores["running"].tree)
    server.retriever.add_provider(INTERFACES, state.interfaces, complete=COMPLETE)
    server.retriever.add_provider(INTERFACES_STATE, state.interfaces_state)
    ctx.tasks.append(state.watch)
    ctx.on_stop.append(state.close)
    return state
