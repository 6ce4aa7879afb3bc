"""keepalived's view of its VRRP instances: the JSON dump (signal 36), parsed and cached.

keepalived writes ``/tmp/keepalived.json`` (in its own TMPDIR / mount namespace: the
supervisor's ``root()`` says where the agent finds it) when it gets signal 36. A reader
sends the signal, waits until the file is rewritten (new inode or mtime) and complete
(parses as JSON), and keeps the result ``max_age`` seconds: concurrent ``<get>`` requests
share one dump. ~5-10 ms for 200 instances.
"""

from __future__ import annotations

import ctypes
import json
import logging
import os
import select
import struct
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from agent.backends.vrrp.configured import Key
from agent.backends.vrrp.names import parse_instance_name

log = logging.getLogger(__name__)

SIGJSON = 36
JSON_PATH = "/tmp/keepalived.json"

# keepalived's VRRP_STATE_* values
STATE_INIT, STATE_BACKUP, STATE_MASTER, STATE_FAULT = 0, 1, 2, 3


class KeepalivedLike(Protocol):
    """What the state side needs of the supervisor (agent/backends/vrrp/keepalived.py)."""

    netns: str | None
    fifo_path: Path

    @property
    def pid(self) -> int | None: ...

    @property
    def vrrp_pid(self) -> int | None: ...

    def root(self, path: str | Path) -> Path: ...


@dataclass(frozen=True)
class InstanceStatus:
    """One ``vrrp_instance`` as keepalived reports it."""

    key: Key
    state: int
    base_priority: int
    effective_priority: int
    master_priority: int
    last_transition: float
    adver_int: float  # seconds
    master_adver_int: float  # seconds
    version: int
    stats: dict[str, int]


@dataclass(frozen=True)
class Snapshot:
    time: float  # time.monotonic() of the dump
    pid: int | None  # keepalived's VRRP process that wrote it
    instances: dict[Key, InstanceStatus] = field(default_factory=dict)


def parse_dump(text: str | bytes) -> dict[Key, InstanceStatus]:
    """Instances of a keepalived JSON dump whose names follow ``names.instance_name``."""
    out: dict[Key, InstanceStatus] = {}
    for entry in json.loads(text):
        d: dict[str, Any] = entry.get("data", {})
        key = parse_instance_name(str(d.get("iname", "")))
        if key is None:
            continue
        out[key] = InstanceStatus(
            key=key,
            state=int(d.get("state", 0)),
            base_priority=int(d.get("base_priority", 0)),
            effective_priority=int(d.get("effective_priority", d.get("base_priority", 0))),
            master_priority=int(d.get("master_priority", 0)),
            last_transition=float(d.get("last_transition", 0.0)),
            adver_int=float(d.get("adver_int", 1.0)),
            master_adver_int=float(d.get("master_adver_int", d.get("adver_int", 1.0))),
            version=int(d.get("version", 3)),
            stats={k: int(v) for k, v in entry.get("stats", {}).items()
                   if isinstance(v, (int, float))},
        )
    return out


class StatusReader:
    """Dumps keepalived's state on demand, at most once per ``max_age`` seconds."""

    def __init__(self, keepalived: KeepalivedLike, max_age: float = 0.1,
                 timeout: float = 2.0, resend: float = 0.25) -> None:
        self.keepalived = keepalived
        self.max_age = max_age
        self.timeout = timeout
        #: signal again when no dump came after this long: keepalived drops a signal 36
        #: that arrives while it reloads (SIGHUP), which stalled a ``<get>`` after an edit
        #: for the whole ``timeout`` (measured: 1 edit in 8)
        self.resend = resend
        self._lock = threading.Lock()
        self._snap: Snapshot | None = None
        self.dumps = 0  # how many dumps were requested (tests, benchmarks)

    def invalidate(self) -> None:
        self._snap = None

    def snapshot(self, max_age: float | None = None) -> Snapshot:
        """The current instances; an empty snapshot when keepalived is not running."""
        age = self.max_age if max_age is None else max_age
        snap = self._snap
        if snap is not None and time.monotonic() - snap.time <= age:
            return snap
        with self._lock:  # one dump for all the callers that arrive meanwhile
            snap = self._snap
            if snap is not None and time.monotonic() - snap.time <= age:
                return snap
            snap = self._dump()
            self._snap = snap
            return snap

    def _dump(self) -> Snapshot:
        started = time.monotonic()
        ka = self.keepalived
        pid = ka.vrrp_pid
        if pid is None:
            return Snapshot(started, None)
        path = Path(ka.root(JSON_PATH))
        before = _stamp(path)
        watch = _CloseWatch(path)  # keepalived closing the file = the dump is complete
        try:
            try:
                os.kill(pid, SIGJSON)
            except ProcessLookupError:
                return Snapshot(started, None)
            self.dumps += 1
            deadline = started + self.timeout
            resend = started + self.resend
            while time.monotonic() < deadline:
                watch.wait(min(0.05, max(0.0, deadline - time.monotonic())))
                if time.monotonic() >= resend:  # lost while keepalived was reloading
                    resend = time.monotonic() + self.resend
                    try:
                        os.kill(pid, SIGJSON)
                    except ProcessLookupError:
                        return Snapshot(started, None)
                now = _stamp(path)
                if now is not None and now != before:
                    try:
                        text = path.read_bytes()
                        return Snapshot(time.monotonic(), pid, parse_dump(text))
                    except (OSError, ValueError):
                        pass  # still being written
        finally:
            watch.close()
        log.warning("keepalived (pid %s) did not write its JSON dump in %.1f s", pid,
                    self.timeout)
        old = self._snap  # better stale than empty: keep what the same process said last
        return Snapshot(time.monotonic(), pid,
                        old.instances if old is not None and old.pid == pid else {})


_libc = ctypes.CDLL(None, use_errno=True)
IN_CLOSE_WRITE, IN_MOVED_TO, IN_NONBLOCK = 0x8, 0x80, 0o4000


class _CloseWatch:
    """inotify on the dump's directory: wakes up when a writer closes (or renames into)
    the dump file, so the reader neither polls a half-written file nor sleeps too long."""

    def __init__(self, path: Path) -> None:
        self.name = path.name.encode()
        self.fd = _libc.inotify_init1(IN_NONBLOCK)
        if self.fd >= 0 and _libc.inotify_add_watch(
                self.fd, str(path.parent).encode(), IN_CLOSE_WRITE | IN_MOVED_TO) < 0:
            os.close(self.fd)
            self.fd = -1

    def wait(self, timeout: float) -> bool:
        """True when the file was closed after writing / renamed into place."""
        if self.fd < 0:
            time.sleep(min(timeout, 0.002))
            return False
        end = time.monotonic() + timeout
        while True:
            left = end - time.monotonic()
            if left <= 0 or not select.select([self.fd], [], [], left)[0]:
                return False
            try:
                data = os.read(self.fd, 65536)
            except BlockingIOError:
                continue
            off = 0
            while off + 16 <= len(data):
                _wd, _mask, _cookie, length = struct.unpack_from("iIII", data, off)
                name = data[off + 16: off + 16 + length].rstrip(b"\0")
                off += 16 + length
                if name == self.name:
                    return True

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def _stamp(path: Path) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size)
