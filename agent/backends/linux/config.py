"""The Linux backend's configuration side: running → kernel, as a two-phase subscriber.

``prepare(old, new)`` reads the kernel (one dump each of links, addresses and
neighbours), refuses what the kernel cannot hold (an interface that does not
exist and cannot be created, a macvlan without its lower) and plans the actions.
When the datastore says which interfaces an edit changed
(:func:`~agent.datastore.store.change_hint`), only those are planned, with the
macvlans stacked on them and their lowers, and the kernel is asked about those
links only (drift elsewhere is the drift watcher's business: ``reconcile``);
``apply`` executes them, and on the first kernel error undoes everything it did
and raises ``operation-failed`` naming the node and the kernel's error text.
``reconcile()`` plans running against the kernel again: drift is restored.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from lxml import etree

from agent.backends.linux import intent
from agent.backends.linux.actions import Action, ApplyFailed, Executor, Names
from agent.backends.linux.nsthread import NsThread
from agent.backends.linux.planner import Kernel, Planner
from agent.backends.linux.rtnl import SOL_NETLINK
from agent.datastore.store import change_hint
from agent.protocol.errors import RpcError

if TYPE_CHECKING:
    from agent.app import BackendContext
    from agent.server import NetconfServer

log = logging.getLogger("agent.linux")

IF_LIST = f"{{{intent.IF}}}interfaces/{{{intent.IF}}}interface"
NETLINK_GET_STRICT_CHK = 12


class LinuxPlan:
    def __init__(self, backend: LinuxConfig, actions: list[Action], names: Names) -> None:
        self.backend = backend
        self.actions = actions
        self.names = names

    def apply(self) -> Callable[[], None]:
        b = self.backend
        if b.before_apply is not None:  # test hook: change the kernel behind the plan's back
            b.before_apply()
        try:
            done = b.executor.run(self.actions, self.names)
        except ApplyFailed as exc:
            log.warning("linux: apply failed, rolled back: %s", exc)
            raise RpcError("operation-failed", str(exc), path=exc.action.path,
                           path_ns=intent.PATH_NS) from None
        for a in done:
            log.info("linux: %s", a.what)

        def undo() -> None:
            log.info("linux: undoing %d actions", len(done))
            b.executor.undo(list(done), self.names)

        return undo


class LinuxConfig:
    """Subscriber applying ietf-interfaces / ietf-ip / macvlan config in ``netns``."""

    name = "linux"
    #: at most this many changed interfaces are planned alone (more: plan everything)
    PARTIAL_MAX = 64

    def __init__(self, netns: str | None) -> None:
        self.netns = netns
        self.ns = NsThread(netns)
        self.sock = self.ns.socket()
        # queries about some links only: the kernel filters dumps by link (strict checking)
        self.qsock = self.ns.socket()
        self.qsock.sock.setsockopt(SOL_NETLINK, NETLINK_GET_STRICT_CHK, 1)
        self.executor = Executor(self.sock, self.ns)
        self.originals: dict[str, int] = {}  # link MTUs before the agent changed them
        self.before_apply: Callable[[], None] | None = None
        self.running: Callable[[], etree._Element] | None = None
        self._last_warnings: set[str] = set()

    def close(self) -> None:
        self.sock.close()
        self.qsock.close()
        self.ns.close()

    def _planner(self, kernel: Kernel) -> Planner:
        return Planner(kernel, self.ns.read_sysctls, self.originals)

    # ------------------------------------------------------------ subscriber
    def prepare(self, old: etree._Element, new: etree._Element) -> LinuxPlan | None:
        hint = change_hint(old, new)
        changed = hint.get(IF_LIST) if hint is not None else None
        if hint is not None and changed is None:
            return None  # no interface changed
        if changed is not None and len(changed) <= self.PARTIAL_MAX:
            o, n = self._involved(old, new, {k[0] for k in changed})
            lowers = {it.lower for d in (o, n) for it in d.values() if it.lower}
            kernel = Kernel.read_some(self.qsock, set(o) | set(n) | lowers)
        else:
            o, n = intent.parse(old), intent.parse(new)
            kernel = Kernel.read(self.sock)
        strict = {name for name, it in n.items() if o.get(name) != it}
        res = self._planner(kernel).plan(o, n, strict)
        for w in res.warnings:
            log.warning("linux: %s (configuration kept, not applied)", w)
        if not res.actions:
            return None
        return LinuxPlan(self, res.actions, kernel.names())

    def _involved(self, old: etree._Element, new: etree._Element, changed: set[str]
                  ) -> tuple[dict[str, intent.IfIntent], dict[str, intent.IfIntent]]:
        """Intents (old, new) of the changed interfaces, plus what planning them reads:
        the lower chains of the macvlans among them, and the macvlans stacked on a
        changed macvlan (their base interface may change with it), transitively."""
        o = intent.parse(old, changed)
        n = intent.parse(new, changed)

        def macvlan(name: str) -> bool:
            return any(it is not None and it.macvlan for it in (o.get(name), n.get(name)))

        down = {name for name in changed if macvlan(name)}
        while down:
            more = {m for name in down for m in intent.macvlans_on(new, name)} - set(n)
            o.update(intent.parse(old, more))
            n.update(intent.parse(new, more))
            down = more
        up = True
        while up:
            lowers = {it.lower for d in (o, n) for it in d.values() if it.macvlan and it.lower}
            up = lowers - set(o) - set(n) - changed
            if up:
                o.update(intent.parse(old, up))
                n.update(intent.parse(new, up))
                changed = changed | up  # (names not configured: kernel links only)
        return o, n

    # ------------------------------------------------------------ reconcile
    def reconcile(self) -> bool:
        """Restore what differs from running; True when the kernel now matches."""
        if self.running is None:
            return True
        want = intent.parse(self.running())
        kernel = Kernel.read(self.sock)
        res = self._planner(kernel).plan(want, want, set())
        new_warnings = set(res.warnings) - self._last_warnings
        for w in sorted(new_warnings):
            log.warning("drift: %s: cannot restore", w)
        self._last_warnings = set(res.warnings)
        if not res.actions:
            return True
        try:
            done = self.executor.run(res.actions, kernel.names())
        except ApplyFailed as exc:
            log.error("drift: restoring failed: %s", exc)
            return False
        for a in done:
            log.warning("drift: %s: restored", a.what)
        return True


def attach(server: NetconfServer, ctx: BackendContext) -> LinuxConfig:
    """Wire the backend in: first subscriber (the VRRP backend builds on its interfaces),
    drift watcher task, shutdown."""
    from agent.backends.linux.drift import DriftWatcher

    backend = LinuxConfig(ctx.netns)
    backend.running = lambda: server.datastores["running"].tree
    server.datastores.subscribers.insert(0, backend)
    ctx.tasks.append(DriftWatcher(backend).run)
    ctx.on_stop.append(backend.close)
    return backend
