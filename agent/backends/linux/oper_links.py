"""The link table: what operational state remembers about links between two reads.

Fed by a full dump at start and by netlink link events after that, it keeps per ifindex:
the name, the layering (IFLA_LINK of a macvlan/vlan, IFLA_MASTER of a bridge or bond
port), the time the agent first saw the link (``discontinuity-time`` of its counters)
and the time it last saw its operational state change (``last-change``).

Timestamps, as RFC 8343 defines them:
- links present when the agent started: ``discontinuity-time`` is the agent's start
  time, ``last-change`` is absent until the agent sees an oper-status change;
- links created later (or recreated: new ifindex, same name): both are the time the
  agent saw the RTM_NEWLINK event (or the first dump showing the link).
Events are read as soon as they arrive when the agent's event loop runs (``watch``),
otherwise (in-process use) at the next read, which then dates them.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from agent.backends.linux.netlink import RTM_DELLINK
from agent.backends.linux.oper_netlink import Link, LinkEvents, RtReader

log = logging.getLogger("agent.linux.state")

#: link kinds whose IFLA_LINK is the lower interface they sit on (for veth it is the peer)
LAYERED_KINDS = frozenset({"macvlan", "macvtap", "vlan", "ipvlan", "ipvtap", "macsec"})


@dataclass(slots=True)
class LinkInfo:
    name: str
    lower: int  # ifindex of the lower interface (0: none)
    master: int  # ifindex of the bridge/bond master (0: none)
    operstate: int
    first_seen: float
    last_change: float | None


def lower_of(ln: Link) -> int:
    return ln.link if ln.kind in LAYERED_KINDS and not ln.link_netns and ln.link != ln.index else 0


class LinkTable:
    def __init__(self, reader: RtReader, events: LinkEvents, now: float | None = None) -> None:
        self.reader = reader
        self.events = events
        self.started = time.time() if now is None else now
        self.links: dict[int, LinkInfo] = {}
        self.generation = 0  # bumped whenever anything changed (links, addresses, ...)
        self._initial = True
        self.sync(reader.dump_links())
        self._initial = False

    # ------------------------------------------------------------------ updates
    def _see(self, ln: Link, now: float) -> None:
        info = self.links.get(ln.index)
        if info is None or info.name != ln.name and ln.name:
            seen = self.started if self._initial else now
            self.links[ln.index] = LinkInfo(ln.name, lower_of(ln), ln.master, ln.operstate,
                                            seen, None if self._initial else now)
            self.generation += 1
            return
        if info.operstate != ln.operstate:
            info.operstate = ln.operstate
            info.last_change = now
            self.generation += 1
        lower = lower_of(ln)
        if info.lower != lower or info.master != ln.master:
            info.lower, info.master = lower, ln.master
            self.generation += 1

    def observe(self, ln: Link) -> None:
        """Take a link read outside a full dump (a filtered get) into account."""
        self._see(ln, time.time())

    def sync(self, links: list[Link]) -> None:
        """Reconcile with a full dump (drops links that are gone)."""
        now = time.time()
        present = set()
        for ln in links:
            present.add(ln.index)
            self._see(ln, now)
        for gone in set(self.links) - present:
            del self.links[gone]
            self.generation += 1

    def update(self) -> None:
        """Apply pending link events (a full resync when the kernel dropped some)."""
        other = self.events.other
        events, lost = self.events.drain()
        if self.events.other != other:
            self.generation += 1
        now = time.time()
        for typ, ln in events:
            if typ == RTM_DELLINK:
                if self.links.pop(ln.index, None) is not None:
                    self.generation += 1
            else:
                self._see(ln, now)
        if lost:
            log.info("link events overrun: resynchronising the link table")
            self.sync(self.reader.dump_links())

    # ------------------------------------------------------------------ queries
    def uppers(self, index: int) -> list[int]:
        """Interfaces layered on top of ``index``: its macvlans/vlans and its master."""
        out = [i for i, info in self.links.items() if info.lower == index]
        info = self.links.get(index)
        if info is not None and info.master:
            out.append(info.master)
        return out

    def lowers(self, index: int) -> list[int]:
        """Interfaces ``index`` sits on: its lower link and, for a master, its ports."""
        info = self.links.get(index)
        out = [info.lower] if info is not None and info.lower else []
        out += [i for i, p in self.links.items() if p.master == index]
        return out

    def layer_maps(self) -> tuple[dict[int, list[int]], dict[int, list[int]]]:
        """``uppers`` and ``lowers`` of every link at once (O(n))."""
        up: dict[int, list[int]] = {}
        down: dict[int, list[int]] = {}
        for i, info in self.links.items():
            for below in (info.lower,):
                if below:
                    up.setdefault(below, []).append(i)
                    down.setdefault(i, []).append(below)
            if info.master:
                up.setdefault(i, []).append(info.master)
                down.setdefault(info.master, []).append(i)
        return up, down

    def name_of(self, index: int) -> str | None:
        info = self.links.get(index)
        return info.name if info is not None else None
