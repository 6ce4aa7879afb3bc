"""ietf-vrrp operational state: per-instance state and statistics, the global ``/vrrp``.

Sources, joined per instance ``(interface, family, VRID)``:

- the running config (:mod:`configured`): which instances exist, their intervals, owners;
- keepalived's JSON dump (:mod:`status`): state, priorities, intervals, advertisement
  counters, transitions to master;
- the packet watcher (:mod:`packets`): the error counters keepalived lacks, the last
  advertisement seen on the LAN;
- the notify FIFO history (:mod:`events`): last-event, new-master-reason, up-datetime.

``attach(server, ctx, keepalived)`` registers the providers and starts the watchers.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING
from xml.sax.saxutils import escape

from lxml import etree

from agent.backends.vrrp.configured import (
    IF,
    IP,
    VRRP,
    ConfigIndex,
    IndexCache,
    InstanceConfig,
    Key,
)
from agent.backends.vrrp.events import (
    EventTracker,
    FifoReader,
    History,
    master_down_interval_cs,
)
from agent.backends.vrrp.packets import InstanceCounters, PacketWatcher
from agent.backends.vrrp.status import (
    STATE_BACKUP,
    STATE_MASTER,
    InstanceStatus,
    KeepalivedLike,
    StatusReader,
)

if TYPE_CHECKING:
    from agent.app import BackendContext
    from agent.events import EventBus
    from agent.server import NetconfServer

log = logging.getLogger(__name__)

INTERFACES = f"{{{IF}}}interfaces"
_NO_COUNTERS = InstanceCounters()
VRRP_TOP = f"{{{VRRP}}}vrrp"


def datetime_str(t: float) -> str:
    """yang:date-and-time of a POSIX time."""
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="microseconds")


def process_start_time(pid: int) -> float | None:
    """When process ``pid`` started (POSIX time), from /proc."""
    try:
        fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
        with open("/proc/uptime") as f:
            uptime = float(f.read().split()[0])
    except (OSError, IndexError, ValueError):
        return None
    ticks = int(fields[19])  # field 22 of stat, counted after "pid (comm)"
    return time.time() - uptime + ticks / os.sysconf("SC_CLK_TCK")


class VrrpState:
    """The VRRP state side of one managed namespace."""

    def __init__(
        self,
        get_running,
        keepalived: KeepalivedLike,
        bus: EventBus,
        netns: str | None = None,
        max_age: float = 0.1,
    ) -> None:
        self.keepalived = keepalived
        self.bus = bus
        self.netns = netns
        self.started = time.time()
        self._icache = IndexCache(get_running)
        self._last_idx: ConfigIndex | None = None
        self._idx_lock = threading.Lock()
        self._first_seen: dict[Key, float] = {}
        self._epoch_pid: int | None = None
        self._epoch_time = self.started
        self._loop: asyncio.AbstractEventLoop | None = None
        self._addr_cache: dict[tuple[str, int], tuple[float, str | None]] = {}
        self.status = StatusReader(keepalived, max_age=max_age)
        self.events = EventTracker(self.index, lambda: self.watcher.counters,
                                   self.own_address, self.publish)
        self.watcher = PacketWatcher(netns, self.index, on_error=self.events.on_error)
        self.fifo = FifoReader(keepalived.fifo_path, self.events.on_line)
        self.running = False

    # ------------------------------------------------------------------ lifecycle
    def start(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        """Start the FIFO reader and the packet watcher; notifications are handed to
        ``loop`` (the server's) when given, else published from the reader threads."""
        self._loop = loop
        self.fifo.start()
        try:
            self.watcher.start()
        except OSError:
            log.exception("VRRP packet watcher not started (netns %s)", self.netns)
        self.running = True

    def stop(self) -> None:
        if not self.running:
            return
        self.running = False
        self.fifo.stop()
        self.watcher.stop()

    def publish(self, content: etree._Element, event_time: float) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self.bus.publish, content, event_time)
        else:
            self.bus.publish(content, event_time)

    # ------------------------------------------------------------------ inputs
    def index(self) -> ConfigIndex:
        """The configured instances; forgets the counters of instances that went away."""
        idx = self._icache()
        if idx is self._last_idx:
            return idx
        with self._idx_lock:
            if idx is self._last_idx:
                return idx
            old = self._last_idx
            now = time.time() if old is not None else self.started
            before = set(old.instances) if old is not None else set()
            for k in idx.instances.keys() - before:
                self._first_seen[k] = now
            for k in before - idx.instances.keys():
                self._first_seen.pop(k, None)
                self.watcher.counters.instances.pop(k, None)
                self.events.forget(k)
            self._last_idx = idx
        return idx

    def _epoch(self, pid: int | None) -> float:
        """Start of the current keepalived's counters (a discontinuity for them)."""
        if pid is not None and pid != self._epoch_pid:
            self._epoch_pid = pid
            self._epoch_time = max(self.started, process_start_time(pid) or time.time())
        return self._epoch_time

    def own_address(self, key: Key) -> str | None:
        """The address this router advertises with for ``key``: as last seen on the wire,
        else the interface's configured address (IPv4) / link-local (IPv6), else netlink."""
        ifname, family, _ = key
        c = self.watcher.counters
        mine = c.instances.get(key)
        if mine is not None and mine.last_adv is not None and mine.last_adv.own:
            return mine.last_adv.source
        for k, ic in list(c.instances.items()):
            if k[:2] == (ifname, family) and ic.last_adv is not None and ic.last_adv.own:
                return ic.last_adv.source
        for a in self.index().addresses.get((ifname, family), []):
            if family == 4 or a.startswith("fe80:"):
                return a
        return self._netlink_address(ifname, family)

    def _netlink_address(self, ifname: str, family: int) -> str | None:
        hit = self._addr_cache.get((ifname, family))
        if hit is not None and time.monotonic() - hit[0] < 5:
            return hit[1]
        addr = None
        try:
            from agent.backends.linux.netns import open_iproute

            with open_iproute(self.netns) as ipr:
                idx = ipr.link_lookup(ifname=ifname)
                if idx:
                    for a in ipr.get_addr(index=idx[0], family=2 if family == 4 else 10):
                        v = a.get_attr("IFA_ADDRESS")
                        if family == 4 or str(v).startswith("fe80:"):
                            addr = v
                            break
        except Exception:  # pragma: no cover - best effort
            log.debug("address lookup of %s failed", ifname, exc_info=True)
        self._addr_cache[(ifname, family)] = (time.monotonic(), addr)
        return addr

    # ------------------------------------------------------------------ providers
    def interfaces_state(self, names: set[str] | None) -> etree._Element | None:
        """``/if:interfaces/if:interface/ip:ipv4|ipv6/vrrp:vrrp/vrrp:vrrp-instance`` state."""
        idx = self.index()
        keys = [k for k in idx.instances if names is None or k[0] in names]
        if not keys:
            return None
        snap = self.status.snapshot()
        epoch = self._epoch(snap.pid)
        counters = self.watcher.counters.instances
        histories = self.events.histories
        parts: list[str] = [f'<interfaces xmlns="{IF}">']
        cur: tuple[str, int] | None = None
        for key in sorted(keys):
            ifname, family, _ = key
            if cur is None or cur[0] != ifname:
                if cur is not None:
                    parts.append(f"</vrrp></ipv{cur[1]}></interface>")
                parts.append(f"<interface><name>{escape(ifname)}</name>"
                             f'<ipv{family} xmlns="{IP}"><vrrp xmlns="{VRRP}">')
            elif cur[1] != family:
                parts.append(f'</vrrp></ipv{cur[1]}><ipv{family} xmlns="{IP}">'
                             f'<vrrp xmlns="{VRRP}">')
            cur = (ifname, family)
            parts.append(self._instance(idx.instances[key], snap.instances.get(key),
                                        counters.get(key), histories.get(key),
                                        max(epoch, self._first_seen.get(key, self.started))))
        parts.append(f"</vrrp></ipv{cur[1]}></interface></interfaces>")  # type: ignore[index]
        return etree.fromstring("".join(parts).encode())

    @staticmethod
    def _instance(
        cfg: InstanceConfig,
        st: InstanceStatus | None,
        wc: InstanceCounters | None,
        h: History | None,
        discontinuity: float,
    ) -> str:
        """One ``vrrp-instance`` (XML text: 1,000 of them are built per ``<get>``)."""
        if st is not None and st.state == STATE_MASTER:
            state = "master"
        elif st is not None and st.state == STATE_BACKUP:
            state = "backup"
        else:
            state = "initialize"
        owner = cfg.owner or (st is not None and st.base_priority == 255)
        out = [f"<vrrp-instance><vrid>{cfg.vrid}</vrid>"
               f'<state xmlns:vrrp="{VRRP}">vrrp:{state}</state>'
               f"<is-owner>{'true' if owner else 'false'}</is-owner>"]
        if wc is not None and wc.last_adv is not None:
            out.append(f"<last-adv-source>{wc.last_adv.source}</last-adv-source>")
        if state != "initialize":
            up = h.up_since if h is not None and h.up_since is not None else (
                st.last_transition if st is not None else None)
            if up:
                out.append(f"<up-datetime>{datetime_str(up)}</up-datetime>")
        if st is not None:
            mai, prio = st.master_adver_int, st.effective_priority
        else:
            mai, prio = cfg.interval_cs / 100, cfg.priority
        mdi, skew = master_down_interval_cs(cfg.version, mai, prio)
        ks = st.stats if st is not None else {}
        w = wc or _NO_COUNTERS
        out.append(
            f"<master-down-interval>{mdi}</master-down-interval><skew-time>{skew}</skew-time>"
            f'<last-event xmlns:vrrp="{VRRP}">vrrp:'
            f"{h.last_event if h is not None else 'vrrp-event-none'}</last-event>"
            "<new-master-reason>"
            f"{h.new_master_reason if h is not None else 'not-master'}</new-master-reason>"
            "<statistics>"
            f"<discontinuity-datetime>{datetime_str(discontinuity)}</discontinuity-datetime>"
            f"<master-transitions>{ks.get('become_master', 0)}</master-transitions>"
            f"<advertisement-rcvd>{ks.get('advert_rcvd', 0)}</advertisement-rcvd>"
            f"<advertisement-sent>{ks.get('advert_sent', 0)}</advertisement-sent>"
            f"<interval-errors>{w.interval_errors}</interval-errors>"
            f"<priority-zero-pkts-rcvd>{w.priority_zero_pkts_rcvd}</priority-zero-pkts-rcvd>"
            f"<priority-zero-pkts-sent>{w.priority_zero_pkts_sent}</priority-zero-pkts-sent>"
            f"<invalid-type-pkts-rcvd>{w.invalid_type_pkts_rcvd}</invalid-type-pkts-rcvd>"
            f"<address-list-errors>{w.address_list_errors}</address-list-errors>"
            f"<packet-length-errors>{w.packet_length_errors}</packet-length-errors>"
            "</statistics></vrrp-instance>")
        return "".join(out)

    def vrrp_state(self, names: set[str] | None = None) -> etree._Element:
        """The global ``/vrrp:vrrp`` container."""
        idx = self.index()
        c = self.watcher.counters
        v = f"{{{VRRP}}}"
        root = etree.Element(VRRP_TOP, nsmap={None: VRRP})
        etree.SubElement(root, v + "virtual-routers").text = str(len(idx.instances))
        etree.SubElement(root, v + "interfaces").text = str(len(idx.interfaces))
        s = etree.SubElement(root, v + "statistics")
        g = c.glob
        for name, value in (
            ("discontinuity-datetime", datetime_str(c.since)),
            ("checksum-errors", g.checksum_errors),
            ("version-errors", g.version_errors),
            ("vrid-errors", g.vrid_errors),
            ("ip-ttl-errors", g.ip_ttl_errors),
        ):
            etree.SubElement(s, v + name).text = str(value)
        return root


def attach(server: NetconfServer, ctx: BackendContext, keepalived: KeepalivedLike) -> VrrpState:
    """Serve ietf-vrrp state from ``keepalived`` (the supervisor of ``ctx.netns``).

    Registers the state providers (merged with the Linux backend's interfaces state) and
    starts the FIFO reader and the packet watcher once the event loop runs."""
    svc = VrrpState(lambda: server.datastores["running"].tree, keepalived, server.bus,
                    netns=ctx.netns)
    server.retriever.add_provider(INTERFACES, svc.interfaces_state)
    server.retriever.add_provider(VRRP_TOP, svc.vrrp_state)
    on_restart = getattr(keepalived, "on_restart", None)
    if on_restart is not None:
        on_restart(svc.status.invalidate)

    async def run() -> None:
        svc.start(asyncio.get_running_loop())

    ctx.tasks.append(run)
    ctx.on_stop.append(svc.stop)
    return svc
