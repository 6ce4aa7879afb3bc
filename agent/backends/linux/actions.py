"""Kernel actions and their execution: in stages, batched, every step with its inverse.

An :class:`Action` is one netlink request or one sysctl write, with the YANG node
it serves (for the error-path), a description (for logs) and the actions that
undo it. The :class:`Executor` runs a plan stage by stage: all netlink requests
of a stage go to the kernel in batches (the kernel handles them in order), link
indexes of interfaces created in one stage are known to the next. When anything
fails, everything done so far is undone in reverse order and :class:`ApplyFailed`
names the failing action and the kernel's error text. Undoing batches too: the
inverses' netlink requests go out together (a batch ends at one creating a link,
whose index later ones may need), consecutive sysctl writes go to the namespace
thread together, and links to delete (``del_link`` inverses, e.g. of 1,000 macvlans
just created) are put in an unused link group deleted by a single request (each
RTM_DELLINK waits for an RCU grace period, ~18 ms). An inverse's ``stage`` orders the
undo: lower stages first (link MTUs: the kernel resets the IPv6 MTU, and lowers the
MTU of stacked links, when a link MTU changes), equal stages in reverse order of the
actions undone.

:meth:`Executor.repair` is the best-effort run of drift repair: a failing action is
reported and skipped, the others are executed, nothing is undone.
"""

from __future__ import annotations

import errno
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from itertools import groupby

from agent.backends.linux import netlink as N
from agent.backends.linux.netlink import NetlinkError
from agent.backends.linux.nsthread import NsThread, sysctl_path
from agent.backends.linux.rtnl import Request, RtnlSocket, parse_link

log = logging.getLogger(__name__)


class Names:
    """Interface name → ifindex, kept current while a plan runs."""

    def __init__(self, mapping: dict[str, int]) -> None:
        self.map = dict(mapping)

    def __getitem__(self, name: str) -> int:
        idx = self.map.get(name)
        if idx is None:
            raise NetlinkError(errno.ENODEV, f"interface {name} does not exist")
        return idx


@dataclass
class Action:
    what: str
    path: str
    stage: int  # of an inverse: its place in the undo (lower first)
    nl: Callable[[Names], Request] | None = None
    sysctl: tuple[str, str] | None = None  # (key, value)
    undo: list[Action] = field(default_factory=list)
    creates: str | None = None  # link name whose index comes back in the echo
    deletes: tuple[str, ...] = ()  # link names that disappear
    ok_errors: tuple[int, ...] = ()  # errnos that mean "already done"
    del_link: bool = False  # a plain delete of the link ``deletes[0]`` (may be grouped)

    def __str__(self) -> str:
        return self.what


class ApplyFailed(Exception):
    """``action`` failed; ``error`` is the kernel's text alone (the message names the
    action once: ``sysctl net.ipv6.conf.mv0.mtu=9000: Invalid argument``)."""

    def __init__(self, action: Action, error: str) -> None:
        super().__init__(f"{action.what}: {error}")
        self.action = action
        self.error = error


def _write_sysctls(items: list[tuple[str, str]], keep_going: bool = False
                   ) -> list[tuple[int, str]]:
    """Runs in the namespace thread: write in order; returns the failures (index, error
    text), stopping at the first one unless ``keep_going``."""
    failed: list[tuple[int, str]] = []
    for i, (key, value) in enumerate(items):
        try:
            with open(sysctl_path(key), "w") as f:
                f.write(value)
        except OSError as exc:
            failed.append((i, exc.strerror or str(exc)))
            if not keep_going:
                break
    return failed


class Executor:
    def __init__(self, sock: RtnlSocket, nsthread: NsThread) -> None:
        self.sock = sock
        self.ns = nsthread

    def run(self, actions: list[Action], names: Names) -> list[Action]:
        """Execute ``actions`` (sorted by stage); on failure undo and raise ApplyFailed."""
        done: list[Action] = []
        for batch, is_nl in self._batches(actions):
            failed = (self._netlink(batch, names, done, False) if is_nl
                      else self._sysctls(batch, done, False))
            if failed:
                self.undo(done, names)
                raise failed[0]
        return done

    def repair(self, actions: list[Action], names: Names
               ) -> tuple[list[Action], list[ApplyFailed]]:
        """Execute ``actions`` best effort: (those done, the failures). A failing action
        is skipped (the kernel's later requests of its batch are still executed), nothing
        is undone."""
        done: list[Action] = []
        failed: list[ApplyFailed] = []
        for batch, is_nl in self._batches(actions):
            failed += (self._netlink(batch, names, done, True) if is_nl
                       else self._sysctls(batch, done, True))
        return done, failed

    @staticmethod
    def _batches(actions: list[Action]) -> Iterator[tuple[list[Action], bool]]:
        """Stage by stage, runs of netlink requests / of sysctl writes: (batch, netlink?)."""
        for _stage, group in groupby(sorted(actions, key=lambda a: a.stage),
                                     key=lambda a: a.stage):
            for is_nl, part in groupby(group, key=lambda a: a.nl is not None):
                yield list(part), is_nl

    def _netlink(self, batch: list[Action], names: Names, done: list[Action],
                 keep_going: bool) -> list[ApplyFailed]:
        reqs: list[Request] = []
        sendable: list[Action] = []
        failed: list[ApplyFailed] = []
        for a in batch:
            try:
                reqs.append(a.nl(names))  # type: ignore[misc]
                sendable.append(a)
            except NetlinkError as exc:
                failed.append(ApplyFailed(a, exc.text))
                if not keep_going:
                    break
        for a, (err, echoed) in zip(sendable, self.sock.batch(reqs), strict=True):
            if err is not None and err.errno not in a.ok_errors:
                failed.append(ApplyFailed(a, err.text))
                continue
            done.append(a)
            if a.creates and echoed:
                names.map[a.creates] = parse_link(echoed[0]).index
            for name in a.deletes:
                names.map.pop(name, None)
        return failed

    def _sysctls(self, batch: list[Action], done: list[Action],
                 keep_going: bool) -> list[ApplyFailed]:
        failures = self.ns.call(_write_sysctls, [a.sysctl for a in batch], keep_going)
        bad = {i for i, _err in failures}
        end = len(batch) if keep_going or not failures else failures[0][0]
        done += [a for i, a in enumerate(batch[:end]) if i not in bad]
        return [ApplyFailed(batch[i], err) for i, err in failures]

    def undo(self, done: list[Action], names: Names) -> None:
        """Run the inverses of ``done``: by stage, in reverse order within a stage (best
        effort, failures logged)."""
        steps = sorted((inv for a in reversed(done) for inv in a.undo), key=lambda s: s.stage)
        i = 0
        while i < len(steps):
            j = i
            if steps[i].nl is None:  # a run of sysctl writes: one trip to the namespace
                while j < len(steps) and steps[j].nl is None:
                    j += 1
                run = [s for s in steps[i:j] if s.sysctl is not None]
                for k, err in self.ns.call(_write_sysctls, [s.sysctl for s in run], True):
                    log.error("rollback step %r failed: %s", run[k].what, err)
                i = j
                continue
            while j < len(steps) and steps[j].nl is not None:
                j += 1
                if steps[j - 1].creates:
                    break
            self._undo_netlink(steps[i:j], names)
            i = j
        done.clear()

    def _undo_netlink(self, steps: list[Action], names: Names) -> None:
        """One batch of netlink inverses; runs of link deletions become a group delete."""
        items: list[tuple[Request, str, Action | None, tuple[str, ...]]] = []
        dels: list[Action] = []

        def add(what: str, build: Callable[[], Request], inv: Action | None,
                deletes: tuple[str, ...] = ()) -> None:
            try:
                items.append((build(), what, inv, deletes))
            except NetlinkError as exc:
                log.error("rollback step %r failed: %s", what, exc)

        def flush_dels() -> None:
            if len(dels) == 1:
                add(dels[0].what, lambda: dels[0].nl(names), dels[0],  # type: ignore[misc]
                    dels[0].deletes)
            elif dels:
                group = self._unused_group()
                for d in dels:
                    add(f"{d.what} (link group {group})", lambda d=d: Request(
                        N.RTM_NEWLINK, 0, N.ifinfo(names[d.deletes[0]])
                        + N.attr_u32(N.IFLA_GROUP, group)), None)
                add(f"delete link group {group} ({len(dels)} links)", lambda: Request(
                    N.RTM_DELLINK, 0, N.ifinfo(0) + N.attr_u32(N.IFLA_GROUP, group)), None,
                    tuple(d.deletes[0] for d in dels))
            dels.clear()

        for inv in steps:
            if inv.del_link and len(inv.deletes) == 1:
                dels.append(inv)
                continue
            flush_dels()
            add(inv.what, lambda inv=inv: inv.nl(names), inv, inv.deletes)  # type: ignore[misc]
        flush_dels()
        failed_group = self._send(items, names)
        if failed_group:  # the group delete failed: one by one then
            items.clear()
            for name in failed_group:
                add(f"delete {name}", lambda name=name: Request(
                    N.RTM_DELLINK, 0, N.ifinfo(names[name])), None, (name,))
            self._send(items, names)

    def _send(self, items: list[tuple[Request, str, Action | None, tuple[str, ...]]],
              names: Names) -> tuple[str, ...]:
        """Send undo requests in one batch; returns the links of a failed group delete."""
        failed: tuple[str, ...] = ()
        for (_req, what, inv, deletes), (err, echoed) in zip(
                items, self.sock.batch([it[0] for it in items]), strict=True):
            if err is not None and (inv is None or err.errno not in inv.ok_errors):
                log.error("rollback step %r failed: %s", what, err.text)
                if inv is None and len(deletes) > 1:
                    failed += deletes
                continue
            if inv is not None and inv.creates and echoed:
                names.map[inv.creates] = parse_link(echoed[0]).index
            for name in deletes:
                names.map.pop(name, None)
        return failed

    def _unused_group(self) -> int:
        used = {lk.group for lk in self.sock.links()}
        return next(g for g in range(0x7B000000, 0x7C000000) if g not in used)
