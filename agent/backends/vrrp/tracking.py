"""Track networks: keepalived has no equivalent, so the agent watches the routing table.

Each tracked prefix has a keepalived ``vrrp_track_file`` under ``<state>/keepalived/track/``
holding ``0`` while the network is reachable and ``1`` when it is not; each instance tracks
that file with ``weight -<priority-decrement>`` (keepalived adds value × weight to the
priority and re-reads the file on inotify).

A network is reachable when a usable route (unicast, not ``linkdown``) in the main table
covers the prefix; the default route counts only for a tracked ``/0``.
"""

from __future__ import annotations

import ipaddress
import logging
import re
import select
import socket
import threading
from collections.abc import Iterable
from pathlib import Path

from agent.backends.linux.netlink import RTMGRP_IPV4_ROUTE, RTMGRP_IPV6_ROUTE
from agent.backends.linux.netns import open_iproute
from agent.backends.nsenter import in_netns

log = logging.getLogger(__name__)

RTN_UNICAST = 1
RTNH_F_LINKDOWN = 16
MAIN_TABLE = 254


def track_name(prefix: str) -> str:
    """keepalived name of the track file of ``prefix``: ``TN_198_51_100_0_24``."""
    net = ipaddress.ip_network(prefix, strict=False)
    return "TN_" + re.sub(r"[^0-9A-Za-z]", "_", str(net))


def reachable(prefix: str, routes: Iterable[tuple[str, int]]) -> bool:
    """Whether one of ``routes`` ((dst, len) of usable routes) covers ``prefix``."""
    net = ipaddress.ip_network(prefix, strict=False)
    for dst, plen in routes:
        if plen == 0 and net.prefixlen != 0:
            continue
        try:
            r = ipaddress.ip_network(f"{dst}/{plen}", strict=False)
        except ValueError:
            continue
        if r.version == net.version and net.subnet_of(r):  # type: ignore[arg-type]
            return True
    return False


class NetworkTracker:
    """Keeps one track file per tracked prefix up to date from netlink route events."""

    def __init__(self, netns: str | None, track_dir: Path) -> None:
        self.netns = netns
        self.track_dir = track_dir
        self._prefixes: set[str] = set()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self.values: dict[str, int] = {}  # prefix → value written (0 reachable, 1 lost)

    def path(self, prefix: str) -> Path:
        return self.track_dir / track_name(prefix)

    def set_prefixes(self, prefixes: Iterable[str]) -> None:
        """Track exactly ``prefixes``; their files are written now (before keepalived loads
        a config naming them) and the watcher is started when there is something to watch."""
        with self._lock:
            self._prefixes = set(prefixes)
            for old in set(self.values) - self._prefixes:
                self.values.pop(old, None)
                self.path(old).unlink(missing_ok=True)
        self.refresh()
        if self._prefixes and (self._thread is None or not self._thread.is_alive()):
            self._stop.clear()
            self._thread = threading.Thread(target=self._watch, daemon=True,
                                            name=f"route-tracker-{self.netns}")
            self._thread.start()

    def routes(self) -> list[tuple[str, int]]:
        with open_iproute(self.netns) as ipr:
            out = []
            for m in ipr.get_routes(table=MAIN_TABLE):
                if m["type"] != RTN_UNICAST or m["flags"] & RTNH_F_LINKDOWN:
                    continue
                dst = m.get_attr("RTA_DST") or ("0.0.0.0" if m["family"] == 2 else "::")
                out.append((dst, m["dst_len"]))
            return out

    def refresh(self) -> None:
        with self._lock:
            prefixes = set(self._prefixes)
        if not prefixes:
            return
        routes = self.routes()
        self.track_dir.mkdir(parents=True, exist_ok=True)
        for p in prefixes:
            value = 0 if reachable(p, routes) else 1
            if self.values.get(p) != value or not self.path(p).exists():
                self.path(p).write_text(f"{value}\n")
                self.values[p] = value
                log.info("tracked network %s %s", p, "reachable" if value == 0 else "lost")

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(2)
        self._thread = None

    def _watch(self) -> None:
        sock = route_events_socket(self.netns)
        try:
            while not self._stop.is_set():
                r, _, _ = select.select([sock], [], [], 0.2)
                if not r:
                    continue
                try:  # drain: the content does not matter, the table is re-read
                    while sock.recv(1 << 16, socket.MSG_DONTWAIT):
                        pass
                except BlockingIOError:
                    pass
                try:
                    self.refresh()
                except Exception:  # pragma: no cover - keep watching
                    log.exception("route tracking refresh failed")
        finally:
            sock.close()




def route_events_socket(netns: str | None) -> socket.socket:
    """A NETLINK_ROUTE socket subscribed to route changes, opened inside ``netns``
    (the calling thread enters the namespace for the ``socket()`` call, then returns)."""
    groups = RTMGRP_IPV4_ROUTE | RTMGRP_IPV6_ROUTE

    def make() -> socket.socket:
        s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
        s.bind((0, groups))
        return s

    return in_netns(netns, make)
