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
``reconcile()`` plans running against the kernel again: drift is restored, best
effort — every action that can be executed is (one difference the kernel refuses to
restore, e.g. an IPv6 MTU above a link MTU lowered behind the agent's back, does not
keep the others from being restored); each failure is logged once, as long as it
keeps failing the same way (:attr:`LinuxConfig.failures`).

Deleting an interface's configuration (RFC 8343: it is then no longer configured)
deletes a macvlan; a link the agent did not create gets back its values from before
the agent first changed them (MTU, admin state, alias; kept across restarts by
:mod:`~agent.backends.linux.originals`), its managed addresses and neighbours are
removed and its managed sysctls go back to the namespace's ``conf/default`` values.
When no pre-agent admin state is known (the agent never changed it, or its record
was lost), a link the configuration had disabled is brought up: the YANG default of
``enabled`` is true; otherwise it is left as it is.

Sysctls raise no netlink event except forwarding (RTM_NEWNETCONF): the drift watcher
also compares the other managed sysctls with running every few seconds
(:meth:`LinuxConfig.sysctl_drift`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from lxml import etree

from agent.backends.linux import intent
from agent.backends.linux.actions import Action, ApplyFailed, Executor, Names
from agent.backends.linux.nsthread import NsThread
from agent.backends.linux.originals import Changes, Originals
from agent.backends.linux.planner import Kernel, Planner, read_conf_dirs, sysctl_intent
from agent.datastore.store import change_hint
from agent.protocol.errors import RpcError

if TYPE_CHECKING:
    from agent.app import BackendContext
    from agent.server import NetconfServer

log = logging.getLogger("agent.linux")

IF_LIST = f"{{{intent.IF}}}interfaces/{{{intent.IF}}}interface"


class LinuxPlan:
    def __init__(self, backend: LinuxConfig, actions: list[Action], names: Names,
                 originals: Changes | None = None) -> None:
        self.backend = backend
        self.actions = actions
        self.names = names
        self.originals = originals or {}

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
        revert = b.originals.update(self.originals)

        def undo() -> None:
            log.info("linux: undoing %d actions", len(done))
            b.executor.undo(list(done), self.names)
            b.originals.update(revert)

        return undo


class LinuxConfig:
    """Subscriber applying ietf-interfaces / ietf-ip / macvlan config in ``netns``."""

    name = "linux"
    #: at most this many changed interfaces are planned alone (more: plan everything)
    PARTIAL_MAX = 64

    def __init__(self, netns: str | None, state_dir: Path | None = None) -> None:
        """``state_dir``: where the links' pre-agent values are kept (None: in memory)."""
        self.netns = netns
        self.ns = NsThread(netns)
        self.sock = self.ns.socket()
        # queries about some links only: the kernel filters dumps by link (strict checking)
        self.qsock = self.ns.socket(strict=True)
        self.executor = Executor(self.sock, self.ns)
        self.originals = Originals(state_dir, netns)
        self.before_apply: Callable[[], None] | None = None
        self.running: Callable[[], etree._Element] | None = None
        self._last_warnings: set[str] = set()
        #: what the last reconcile could not restore: "action: kernel error" → action path
        self.failures: dict[str, str] = {}
        self._sysctl_cache: tuple[etree._Element | None, dict[str, str]] = (None, {})

    def close(self) -> None:
        self.sock.close()
        self.qsock.close()
        self.ns.close()

    def _planner(self, kernel: Kernel, undo: bool = True) -> Planner:
        return Planner(kernel, self.ns.read_sysctls, self.originals,
                       lambda dirs: self.ns.call(read_conf_dirs, dirs), undo)

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
        if not res.actions and not res.originals:
            return None
        return LinuxPlan(self, res.actions, kernel.names(), res.originals)

    def _involved(self, old: etree._Element, new: etree._Element, changed: set[str]
                  ) -> tuple[dict[str, intent.IfIntent], dict[str, intent.IfIntent]]:
        """Intents (old, new) of the changed interfaces, plus what planning them reads:
        the lower chains of the macvlans among them, and the macvlans stacked on a
        changed macvlan (their base interface may change with it) or on an interface
        whose configured MTU changes (the kernel may lower theirs and reset their IPv6
        MTU: the plan re-applies it), transitively."""
        o = intent.parse(old, changed)
        n = intent.parse(new, changed)

        def macvlan(name: str) -> bool:
            return any(it is not None and it.macvlan for it in (o.get(name), n.get(name)))

        def mtu_changes(name: str) -> bool:  # the kernel lowers the links stacked on it
            a, b = o.get(name), n.get(name)
            return (a.mtu if a else None) != (b.mtu if b else None)

        down = {name for name in changed if macvlan(name) or mtu_changes(name)}
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
        """Restore what differs from running, best effort; True when the kernel now
        matches (all planned actions done), False when something could not be restored
        (:attr:`failures`)."""
        if self.running is None:
            return True
        want = intent.parse(self.running())
        kernel = Kernel.read(self.sock)
        res = self._planner(kernel, undo=False).plan(want, want, set())
        new_warnings = set(res.warnings) - self._last_warnings
        for w in sorted(new_warnings):
            log.warning("drift: %s: cannot restore", w)
        self._last_warnings = set(res.warnings)
        if not res.actions:
            self.originals.update(res.originals)
            self.failures = {}
            return True
        done, failed = self.executor.repair(res.actions, kernel.names())
        self.originals.update(res.originals)
        for a in done:
            log.warning("drift: %s: restored", a.what)
        failures = {str(f): f.action.path for f in failed}
        for msg in failures:
            if msg in self.failures:  # reported already: not again at every attempt
                log.debug("drift: restoring still fails: %s", msg)
            else:
                log.error("drift: restoring failed: %s", msg)
        self.failures = failures
        return not failed

    # ------------------------------------------------------------ sysctl drift
    #: sysctls whose changes the kernel announces (RTM_NEWNETCONF): no need to poll them
    EVENT_SYSCTLS = ("/forwarding",)

    def managed_sysctls(self) -> dict[str, str]:
        """key → value running asks for, of the managed sysctls that raise no netlink
        event (parsed again only when running changed)."""
        if self.running is None:
            return {}
        tree = self.running()
        cached_tree, keys = self._sysctl_cache
        if cached_tree is not tree:
            keys = {k: v for it in intent.parse(tree).values()
                    for k, (v, _path) in sysctl_intent(it).items()
                    if not k.endswith(self.EVENT_SYSCTLS)}
            self._sysctl_cache = (tree, keys)
        return keys

    def sysctl_drift(self, keys: dict[str, str], have: dict[str, str | None]) -> set[str]:
        """The keys whose value differs from ``keys`` (those that exist: a missing link is
        the link watcher's business)."""
        return {k for k, v in keys.items() if have.get(k) is not None and have[k] != v}


def attach(server: NetconfServer, ctx: BackendContext) -> LinuxConfig:
    """Wire the backend in: first subscriber (the VRRP backend builds on its interfaces),
    drift watcher task, shutdown."""
    from agent.backends.linux.drift import DriftWatcher

    backend = LinuxConfig(ctx.netns, ctx.state_dir)
    backend.running = lambda: server.datastores["running"].tree
    server.datastores.subscribers.insert(0, backend)
    ctx.tasks.append(DriftWatcher(backend).run)
    ctx.on_stop.append(backend.close)
    return backend
