"""One keepalived process per managed namespace: check, start, reload, supervise, stop.

Public interface (the VRRP state engineer builds on it):

- ``Keepalived(state_dir, netns)``; files live under ``<state_dir>/keepalived/``:
  ``keepalived.conf``, ``keepalived.pid``, ``vrrp.pid``, ``notify.fifo`` (``fifo_path``),
  ``tmp/`` (keepalived's TMPDIR: its dump files ``keepalived.json`` / ``.stats`` / ``.data``
  land there, private to this keepalived) and ``track/`` (track files).
- ``pid`` / ``vrrp_pid``: the parent / VRRP child pid, or None when not running.
- ``root(path)``: the path the agent opens for a path as keepalived sees it;
  ``root("/tmp/keepalived.json")`` is the JSON dump of THIS keepalived.
- ``on_restart(cb)``: ``cb()`` runs after every (re)start of keepalived (new pids, new fifo
  writer, counters reset: a statistics discontinuity). It runs in the thread that
  started keepalived (the supervisor thread after a crash), so an asyncio user must hop
  with ``loop.call_soon_threadsafe``.
- ``before_restart(cb)``: ``cb()`` runs after keepalived died unexpectedly, before the
  restart (the backend removes the virtual addresses there: no stale VIP).
- ``check(text)`` raises :class:`KeepalivedRefused` when ``keepalived -t`` refuses a config;
  ``apply(text)`` writes it and starts keepalived or reloads it (SIGHUP) only when the text
  changed; ``stop()``; ``signal(sig)`` sends a signal to the parent (e.g. 36 for JSON).
- ``reap()``: stops every keepalived still running OUR configuration file that this object
  did not start (left by an agent killed with SIGKILL: keepalived runs in its own session
  and survives it); ``apply`` does it before a start. Other keepalived processes (another
  agent's, the system's) are never touched: only a command line naming our file counts.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import signal as _signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger(__name__)

KEEPALIVED = shutil.which("keepalived") or "/usr/sbin/keepalived"
SIGJSON = 36  # keepalived --signum=JSON on Linux


class KeepalivedRefused(Exception):
    """``keepalived -t`` refused a configuration; ``str(exc)`` is its complaint."""


class Keepalived:
    def __init__(self, state_dir: Path, netns: str | None = None) -> None:
        self.netns = netns
        self.dir = Path(state_dir) / "keepalived"
        self.conf_path = self.dir / "keepalived.conf"
        self.pid_path = self.dir / "keepalived.pid"
        self.vrrp_pid_path = self.dir / "vrrp.pid"
        self.fifo_path = self.dir / "notify.fifo"
        self.tmp_dir = self.dir / "tmp"
        self.track_dir = self.dir / "track"
        self.log_path = self.dir / "keepalived.log"
        self._proc: subprocess.Popen | None = None
        self._lock = threading.RLock()
        self._stopping = False
        self._restart_cbs: list[Callable[[], None]] = []
        self._before_restart_cbs: list[Callable[[], None]] = []
        self._text: str | None = None  # the config keepalived runs with
        self._supervisor: threading.Thread | None = None
        self.restarts = 0

    # ------------------------------------------------------------------ identity
    @property
    def pid(self) -> int | None:
        p = self._proc
        return p.pid if p is not None and p.poll() is None else None

    @property
    def vrrp_pid(self) -> int | None:
        if self.pid is None:
            return None
        try:
            v = int(self.vrrp_pid_path.read_text().strip())
        except (OSError, ValueError):
            return None
        return v if Path(f"/proc/{v}").exists() else None

    def root(self, path: str | Path) -> Path:
        """Where the agent finds ``path`` as keepalived sees it (its /tmp is ``tmp_dir``)."""
        p = str(path)
        if p == "/tmp" or p.startswith("/tmp/"):
            return self.tmp_dir / p[len("/tmp"):].lstrip("/")
        return Path(p)

    def on_restart(self, cb: Callable[[], None]) -> None:
        self._restart_cbs.append(cb)

    def before_restart(self, cb: Callable[[], None]) -> None:
        self._before_restart_cbs.append(cb)

    @property
    def running(self) -> bool:
        return self.pid is not None

    # ------------------------------------------------------------------ commands
    def _ns_prefix(self) -> list[str]:
        return ["ip", "netns", "exec", self.netns] if self.netns else []

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["TMPDIR"] = str(self.tmp_dir)
        return env

    def prepare_dirs(self) -> None:
        for d in (self.dir, self.tmp_dir, self.track_dir):
            d.mkdir(parents=True, exist_ok=True)

    def check(self, text: str) -> None:
        """Run ``keepalived -t`` on ``text`` (in the namespace); raise when refused."""
        self.prepare_dirs()
        fd, name = tempfile.mkstemp(prefix="check-", suffix=".conf", dir=self.dir)
        try:
            with os.fdopen(fd, "w") as f:
                f.write(text)
            p = subprocess.run(
                [*self._ns_prefix(), KEEPALIVED, "-t", "-l", "-f", name],
                capture_output=True, text=True, env=self._env(), timeout=30,
            )
        finally:
            os.unlink(name)
        if p.returncode != 0:
            lines = [re.sub(r"^\(.*?: Line \d+\) ", "", ln).strip()
                     for ln in (p.stderr + p.stdout).splitlines() if ln.strip()]
            bad = [ln for ln in lines if "WARNING" not in ln] or lines
            raise KeepalivedRefused("; ".join(bad[-3:]) or f"keepalived -t exited {p.returncode}")

    def apply(self, text: str) -> bool:
        """Make keepalived run ``text``: start it, or SIGHUP it when the text changed.

        Returns True when something was done."""
        with self._lock:
            if self.running and text == self._text:
                return False
            if not self.running:
                self.reap()  # before the file it runs (and its VIPs) is overwritten
            self.prepare_dirs()
            tmp = self.conf_path.with_suffix(".new")
            tmp.write_text(text)
            os.replace(tmp, self.conf_path)
            self._text = text
            if self.running:
                self.signal(_signal.SIGHUP)
            else:
                self._start()
            return True

    def signal(self, sig: int) -> None:
        pid = self.pid
        if pid is not None:
            os.kill(pid, sig)

    def stop(self, timeout: float = 40.0) -> None:
        """SIGTERM keepalived (it sends priority 0 and removes its VIPs) and wait."""
        with self._lock:
            self._stopping = True
            p = self._proc
            if p is not None and p.poll() is None:
                p.terminate()
                try:
                    p.wait(timeout)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
            self._proc = None
            self._text = None
        sup = self._supervisor
        if sup is not None and sup is not threading.current_thread():
            sup.join(5)
        self._supervisor = None

    # ------------------------------------------------------------------ strays
    def strays(self) -> list[int]:
        """Live keepalived processes running our configuration file that are not the one
        this object started (nor its children): parents and VRRP children alike."""
        conf = str(self.conf_path).encode()
        mine = self.pid
        out = []
        for d in os.listdir("/proc"):
            if not d.isdigit():
                continue
            pid = int(d)
            try:
                argv = Path(f"/proc/{d}/cmdline").read_bytes().split(b"\0")
                stat = Path(f"/proc/{d}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if os.path.basename(argv[0]) != b"keepalived" or stat[0] in ("Z", "X"):
                continue
            if not any(a == b"-f" and argv[i + 1:i + 2] == [conf] for i, a in enumerate(argv)):
                continue
            if mine is not None and mine in (pid, int(stat[1])):
                continue
            out.append(pid)
        return out

    def reap(self, timeout: float = 35.0) -> bool:
        """Stop :meth:`strays`: SIGTERM their parents (keepalived gives its VIPs up and
        sends priority 0), SIGKILL what is left after ``timeout``. After a SIGKILL the
        virtual addresses of our configuration file are removed here. True when some
        were found."""
        with self._lock:
            pids = self.strays()
            if not pids:
                return False
            ppid = {p: _ppid(p) for p in pids}
            tops = [p for p in pids if ppid[p] not in ppid]
            log.warning("stopping keepalived left by an earlier agent (pids %s, netns %s)",
                        " ".join(map(str, sorted(pids))), self.netns)
            for p in tops:
                _kill(p, _signal.SIGTERM)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and any(_alive(p) for p in pids):
                time.sleep(0.02)
            left = [p for p in pids if _alive(p)]
            if left:
                log.warning("keepalived %s did not stop: killed", left)
                for p in left:
                    _kill(p, _signal.SIGKILL)
                end = time.monotonic() + 5
                while time.monotonic() < end and any(_alive(p) for p in left):
                    time.sleep(0.02)
                self._remove_vips_of(self._file_text())
            return True

    def _file_text(self) -> str:
        try:
            return self.conf_path.read_text()
        except OSError:
            return ""

    def _remove_vips_of(self, text: str) -> None:
        """Take the virtual addresses of the keepalived.conf ``text`` off its interfaces
        (a keepalived killed with SIGKILL leaves them behind)."""
        lines = []
        for ifname, vip in configured_vips(text):
            plen = 128 if ":" in vip else 32
            lines.append(f"addr del {vip}/{plen} dev {ifname}")
        if lines:
            cmd = ["ip"] + (["-n", self.netns] if self.netns else []) + ["-force", "-batch", "-"]
            subprocess.run(cmd, input="\n".join(lines) + "\n", capture_output=True, text=True)

    # ------------------------------------------------------------------ internals
    def _start(self) -> None:
        for f in (self.pid_path, self.vrrp_pid_path):
            f.unlink(missing_ok=True)
        self._stopping = False
        logf = open(self.log_path, "ab")
        # no ``-D`` (detailed log): with 1,000 instances it more than doubled the time from
        # start to all-MASTER (14 s against 6 s measured); state changes are logged anyway
        cmd = [*self._ns_prefix(), KEEPALIVED, "-n", "-l", "-f", str(self.conf_path),
               "-p", str(self.pid_path), "-r", str(self.vrrp_pid_path)]
        # ``ip netns exec`` execs keepalived: the Popen pid is keepalived's parent pid
        self._proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=logf,
                                      stderr=subprocess.STDOUT, env=self._env(),
                                      start_new_session=True)
        logf.close()
        log.info("keepalived started (pid %d, netns %s)", self._proc.pid, self.netns)
        self._wait_started()
        for cb in list(self._restart_cbs):
            try:
                cb()
            except Exception:  # pragma: no cover - a listener bug must not stop VRRP
                log.exception("keepalived restart callback failed")
        if self._supervisor is None or not self._supervisor.is_alive():
            self._supervisor = threading.Thread(target=self._supervise, daemon=True,
                                                name=f"keepalived-{self.netns}")
            self._supervisor.start()

    def _wait_started(self, timeout: float = 10.0) -> None:
        """Until the VRRP child wrote its pid (the fifo writer exists then)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc is None or self._proc.poll() is not None:
                return
            if self.vrrp_pid is not None:
                return
            time.sleep(0.01)

    def _supervise(self) -> None:
        while True:
            p = self._proc
            if p is None:
                return
            rc = p.wait()
            with self._lock:
                if self._stopping or p is not self._proc:
                    if self._proc is None or self._stopping:
                        return
                    continue
                log.warning("keepalived exited (rc %s): restarting", rc)
                self._kill_orphans()
                for cb in list(self._before_restart_cbs):
                    try:
                        cb()
                    except Exception:  # pragma: no cover
                        log.exception("keepalived before-restart callback failed")
                self.restarts += 1
                self._proc = None
                if self._text is None:
                    return
                self._start_after_crash()

    def _start_after_crash(self) -> None:
        self._stopping = False
        try:
            self._start()
        except OSError:  # pragma: no cover
            log.exception("keepalived restart failed")

    def _kill_orphans(self) -> None:
        """A VRRP child left behind by a killed parent would keep the VIPs: end it."""
        try:
            v = int(self.vrrp_pid_path.read_text().strip())
        except (OSError, ValueError):
            return
        try:
            cmdline = Path(f"/proc/{v}/cmdline").read_bytes()
        except OSError:
            return
        if b"keepalived" in cmdline and str(self.conf_path).encode() in cmdline:
            try:
                os.kill(v, _signal.SIGKILL)
            except ProcessLookupError:
                pass
            deadline = time.monotonic() + 2
            while Path(f"/proc/{v}").exists() and time.monotonic() < deadline:
                time.sleep(0.01)


def configured_vips(text: str) -> list[tuple[str, str]]:
    """``(interface, virtual address)`` of every instance of a keepalived.conf rendered by
    :mod:`agent.backends.vrrp.render`."""
    out: list[tuple[str, str]] = []
    ifname: str | None = None
    in_vips = False
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("vrrp_instance "):
            ifname, in_vips = None, False
        elif line.startswith("interface ") and not in_vips:
            ifname = line.split()[1]
        elif line.startswith("virtual_ipaddress"):
            in_vips = True
        elif in_vips and line == "}":
            in_vips = False
        elif in_vips and line and ifname is not None:
            out.append((ifname, line.split()[0].split("/")[0]))
    return out


def _ppid(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None


def _alive(pid: int) -> bool:
    """``pid`` exists and is no zombie (nobody may reap a process that is not our child)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def _kill(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass
