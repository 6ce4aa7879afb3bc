"""VRRP events: keepalived's notify FIFO → per-instance history → ietf-vrrp notifications.

keepalived writes a line per state change to its ``notify_fifo``
(``INSTANCE "VI_eth0_4_10" MASTER 200``). The reader opens the FIFO read-write, so a
keepalived reload or restart (the writer closing) never gives it EOF, and reopens it when
the path gets a new inode (keepalived recreated it). Each transition updates the
instance's :class:`History` (``last-event``, ``new-master-reason``, ``up-datetime``) and a
transition to MASTER publishes ``vrrp-new-master-event``. Errors found by the packet
watcher become ``vrrp-protocol-error-event`` / ``vrrp-virtual-router-error-event``.
"""

from __future__ import annotations

import logging
import os
import select
import stat
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from lxml import etree

from agent.backends.vrrp.configured import (
    VRRP,
    ConfigIndex,
    InstanceConfig,
    Key,
    committing,
)
from agent.backends.vrrp.names import parse_instance_name
from agent.backends.vrrp.packets import ROUTER_ERRORS, Counters
from agent.backends.vrrp.wakeup import Wakeup

log = logging.getLogger(__name__)

#: ``publish(content, event_time)``: hands a notification's content to the event bus
Publisher = Callable[[etree._Element, float], None]


# ---------------------------------------------------------------------------- contents
def _leaf(parent: etree._Element, name: str, text: str, identity: bool = False) -> None:
    e = etree.SubElement(parent, f"{{{VRRP}}}{name}", nsmap={"vrrp": VRRP} if identity else None)
    e.text = text


def new_master_event(master_ip: str, reason: str) -> etree._Element:
    """``<vrrp-new-master-event>`` (RFC 8347)."""
    root = etree.Element(f"{{{VRRP}}}vrrp-new-master-event", nsmap={None: VRRP})
    _leaf(root, "master-ip-address", master_ip)
    _leaf(root, "new-master-reason", reason)
    return root


def protocol_error_event(reason: str) -> etree._Element:
    """``<vrrp-protocol-error-event>`` with a ``vrrp-error-global`` identity."""
    root = etree.Element(f"{{{VRRP}}}vrrp-protocol-error-event", nsmap={None: VRRP})
    _leaf(root, "protocol-error-reason", f"vrrp:{reason}", identity=True)
    return root


def virtual_router_error_event(key: Key, reason: str) -> etree._Element:
    """``<vrrp-virtual-router-error-event>``: interface, ipv4|ipv6/vrid, the reason."""
    ifname, family, vrid = key
    root = etree.Element(f"{{{VRRP}}}vrrp-virtual-router-error-event", nsmap={None: VRRP})
    _leaf(root, "interface", ifname)
    fam = etree.SubElement(root, f"{{{VRRP}}}ipv{family}")
    _leaf(fam, "vrid", str(vrid))
    _leaf(root, "virtual-router-error-reason", f"vrrp:{reason}", identity=True)
    return root


# ---------------------------------------------------------------------------- history
@dataclass
class History:
    """What the FIFO told about one instance."""

    state: str = "initialize"  # initialize | backup | master
    last_event: str = "vrrp-event-none"
    new_master_reason: str = "not-master"
    up_since: float | None = None  # when it left the initialize state
    transitions: int = 0  # to master, as seen on the FIFO


def master_down_interval_cs(version: int, adver_int_s: float, priority: int) -> tuple[int, int]:
    """``(master-down-interval in centiseconds, skew-time in microseconds)``.

    RFC 5798 §6.1 (v3): Skew_Time = ((256 - Priority) * Master_Adver_Interval) / 256,
    Master_Down_Interval = 3 * Master_Adver_Interval + Skew_Time.
    RFC 3768 §6.1 (v2): Skew_Time = (256 - Priority) / 256 seconds."""
    prio = max(0, min(255, priority))
    if version == 2:
        skew_us = (256 - prio) * 1_000_000 // 256
        return 3 * round(adver_int_s * 100) + skew_us // 10_000, skew_us
    mai_cs = round(adver_int_s * 100)
    skew_us = (256 - prio) * mai_cs * 10_000 // 256
    return 3 * mai_cs + (256 - prio) * mai_cs // 256, skew_us


class EventTracker:
    """Turns FIFO lines and watcher errors into history and notifications."""

    def __init__(
        self,
        index: Callable[[], ConfigIndex],
        counters: Callable[[], Counters],
        own_address: Callable[[Key], str | None],
        publish: Publisher,
        error_interval: float = 1.0,
    ) -> None:
        self.index = index
        self.counters = counters
        self.own_address = own_address
        self.publish = publish
        self.error_interval = error_interval  # at most one error notification per
        self.histories: dict[Key, History] = {}  # (reason, instance) per this many s
        self._last_error: dict[tuple[str, Key | None], float] = {}
        self.lock = threading.Lock()

    def history(self, key: Key) -> History:
        h = self.histories.get(key)
        if h is None:
            h = self.histories[key] = History()
        return h

    def forget(self, key: Key) -> None:
        self.histories.pop(key, None)

    # -------------------------------------------------------------- FIFO lines
    def on_line(self, line: str, now: float | None = None) -> None:
        parts = line.split()
        if len(parts) < 3 or parts[0] != "INSTANCE":
            return
        key = parse_instance_name(parts[1].strip('"'))
        if key is None:
            return
        self.transition(key, parts[2], time.time() if now is None else now)

    def transition(self, key: Key, kstate: str, now: float) -> None:
        """keepalived state ``kstate`` (BACKUP, MASTER, FAULT, STOP) reached at ``now``.

        During a commit keepalived already runs the configuration being committed while
        running still holds the old one: the instance is judged by the new one then."""
        idx = self.index()
        inst = idx.get(*key)
        pending = committing(idx)
        if pending is not None:
            inst = pending.get(*key) or inst
        with self.lock:
            h = self.history(key)
            prev = h.state
            if kstate == "MASTER":
                reason, event = self._why_master(key, inst, now)
                h.state, h.last_event, h.new_master_reason = "master", event, reason
                h.transitions += 1
                if h.up_since is None:
                    h.up_since = now
            elif kstate == "BACKUP":
                if prev == "master":
                    h.last_event = "vrrp-event-higher-priority-backup"
                elif h.last_event == "vrrp-event-interface-down":
                    h.last_event = "vrrp-event-interface-up"
                else:
                    h.last_event = "vrrp-event-startup"
                if prev == "initialize":
                    h.up_since = now
                h.state = "backup"
            elif kstate in ("FAULT", "STOP"):
                h.state = "initialize"
                h.up_since = None
                h.last_event = ("vrrp-event-interface-down" if kstate == "FAULT"
                                else "vrrp-event-shutdown")
            else:
                return
            reason = h.new_master_reason
            state, last_event = h.state, h.last_event
        # log-state-change (keepalived has no per-instance switch: the agent logs it)
        log.log(logging.INFO if inst is not None and inst.log_state_change else logging.DEBUG,
                "vrrp %s ipv%d vrid %d: %s -> %s (%s)", key[0], key[1], key[2],
                prev, state, last_event)
        if kstate == "MASTER":
            addr = self.own_address(key) or ("0.0.0.0" if key[1] == 4 else "::")
            self.publish(new_master_event(addr, reason), now)

    def _why_master(self, key: Key, inst: InstanceConfig | None,
                    now: float) -> tuple[str, str]:
        """``(new-master-reason, last-event)`` for a transition to master."""
        c = self.counters().instances.get(key)
        rx = c.last_rx if c is not None else None
        if inst is not None and inst.owner:
            recent = rx is not None and now - rx.time < 3 * rx.interval_cs / 100 + 1
            return "priority", ("vrrp-event-owner-preempt" if recent else "vrrp-event-startup")
        if rx is None or rx.priority == 0:
            return "no-response", "vrrp-event-master-timeout"
        prio = inst.priority if inst is not None else 100
        preempt = inst.preempt if inst is not None else True
        # Preemption follows a lower-priority advert at once (or after the hold-time, while
        # the lower master keeps advertising every interval): the last advert is at most
        # one interval old. A master timeout comes Master_Down_Interval (3 intervals +
        # skew) after it. Two intervals splits them with a whole interval of margin either
        # way: comparing with Master_Down_Interval itself left ~2 ms at 0.1 s adverts, and
        # scheduling delays of the packet watcher turned timeouts into "preempted".
        interval = rx.interval_cs / 100
        if preempt and rx.priority < prio and now - rx.time < 2 * interval:
            hold = inst.hold_time if inst is not None else 0
            return "preempted", ("vrrp-event-preempt-hold-timeout" if hold
                                 else "vrrp-event-lower-priority-master")
        return "no-response", "vrrp-event-master-timeout"

    # -------------------------------------------------------------- watcher errors
    def on_error(self, reason: str, key: Key | None) -> None:
        now = time.time()
        k = (reason, key)
        with self.lock:
            last = self._last_error.get(k)
            if last is not None and now - last < self.error_interval:
                return
            self._last_error[k] = now
        if key is not None and reason in ROUTER_ERRORS:
            self.publish(virtual_router_error_event(key, reason), now)
        else:
            self.publish(protocol_error_event(reason), now)


# ---------------------------------------------------------------------------- FIFO
class FifoReader:
    """A thread feeding the lines of keepalived's notify FIFO to ``on_line``."""

    def __init__(self, path: Path, on_line: Callable[[str, float], None]) -> None:
        self.path = Path(path)
        self.on_line = on_line
        self._fd: int | None = None
        self._ino: int | None = None
        self._wakeup = Wakeup()
        self._stop = False
        self._thread: threading.Thread | None = None
        self.lines = 0

    def start(self) -> None:
        self._open()
        self._thread = threading.Thread(target=self._run, daemon=True, name="vrrp-fifo")
        self._thread.start()

    def stop(self) -> None:
        self._stop = True
        self._wakeup.wake()
        if self._thread is not None:
            self._thread.join(5)
        self._close()
        self._wakeup.close()

    def _open(self) -> None:
        """Open the FIFO (creating it when keepalived has not yet) read-write: never EOF."""
        self._close()
        try:
            st = os.stat(self.path)
            if not stat.S_ISFIFO(st.st_mode):
                log.warning("%s is not a FIFO", self.path)
                return
        except FileNotFoundError:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.mkfifo(self.path, 0o600)
            except FileExistsError:
                pass
        self._fd = os.open(self.path, os.O_RDWR | os.O_NONBLOCK)
        self._ino = os.fstat(self._fd).st_ino

    def _close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def _replaced(self) -> bool:
        try:
            return os.stat(self.path).st_ino != self._ino
        except FileNotFoundError:
            return False  # keepalived removes it at exit; the next start makes a new one

    def _run(self) -> None:
        buf = b""
        while not self._stop:
            fds = [self._wakeup.fd] + ([self._fd] if self._fd is not None else [])
            try:
                ready, _, _ = select.select(fds, [], [], 0.5)
            except (OSError, ValueError):  # pragma: no cover
                return
            if self._fd is not None and self._fd in ready:
                try:
                    chunk = os.read(self._fd, 65536)
                except BlockingIOError:
                    chunk = b""
                now = time.time()
                buf += chunk
                *lines, buf = buf.split(b"\n")
                for raw in lines:
                    self.lines += 1
                    try:
                        self.on_line(raw.decode(errors="replace"), now)
                    except Exception:  # pragma: no cover - one bad line never stops us
                        log.exception("notify line %r failed", raw)
            elif not ready and (self._fd is None or self._replaced()):
                try:
                    self._open()
                    buf = b""
                except OSError:  # pragma: no cover
                    log.exception("cannot open %s", self.path)

