"""Drift repair: netlink events in the managed namespace trigger a reconcile.

A socket subscribed to the link, address and neighbour groups is watched by the
event loop (``add_reader``: no thread, no polling). Events are coalesced: the
first one schedules a reconcile ``delay`` seconds later, the ones arriving
meanwhile ride along. Events caused by the agent's own commits lead to a
reconcile that finds nothing to do. After a failed restore the next attempt
waits longer (up to ``max_backoff``), so a kernel that keeps refusing does not
make the agent spin.
"""

from __future__ import annotations

import asyncio
import errno
import logging

from agent.backends.linux import rtnl as R
from agent.backends.linux.config import LinuxConfig

log = logging.getLogger("agent.linux")

GROUPS = R.GRP_LINK | R.GRP_NEIGH | R.GRP_IPV4_IFADDR | R.GRP_IPV6_IFADDR


class DriftWatcher:
    def __init__(self, backend: LinuxConfig, delay: float = 0.05,
                 max_backoff: float = 10.0) -> None:
        self.backend = backend
        self.delay = delay
        self.max_backoff = max_backoff
        self._backoff = delay
        self._pending: asyncio.TimerHandle | None = None
        self.reconciles = 0

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        sock = self.backend.ns.socket(GROUPS)
        sock.sock.setblocking(False)
        loop.add_reader(sock.fileno(), self._readable, sock, loop)
        try:
            await asyncio.Event().wait()
        finally:
            loop.remove_reader(sock.fileno())
            sock.close()
            if self._pending is not None:
                self._pending.cancel()

    def _relevant(self, typ: int, msg: bytes) -> bool:
        if typ in (R.RTM_NEWNEIGH, R.RTM_DELNEIGH):
            n = R.parse_neigh(msg) if len(msg) >= 28 else None
            return n is not None and bool(n.state & R.NUD_PERMANENT)
        return typ in (R.RTM_NEWLINK, R.RTM_DELLINK, R.RTM_NEWADDR, R.RTM_DELADDR)

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
        try:
            ok = self.backend.reconcile()
        except Exception:  # noqa: BLE001 - the watcher must survive
            log.exception("drift: reconcile failed")
            ok = False
        self._backoff = self.delay if ok else min(self._backoff * 4, self.max_backoff)
