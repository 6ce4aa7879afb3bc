"""Kernel actions and their execution: in stages, batched, every step with its inverse.

An :class:`Action` is one netlink request or one sysctl write, with the YANG node
it serves (for the error-path), a description (for logs) and the actions that
undo it. The :class:`Executor` runs a plan stage by stage: all netlink requests
of a stage go to the kernel in batches (the kernel handles them in order), link
indexes of interfaces created in one stage are known to the next. When anything
fails, everything done so far is undone in reverse order and :class:`ApplyFailed`
names the failing action and the kernel's error text. Undoing batches too: the
inverses' netlink requests go out together (a batch ends at one creating a link,
whose index later ones may need), and links to delete (``del_link`` inverses, e.g.
of 1,000 macvlans just created) are put in an unused link group deleted by a single
request (each RTM_DELLINK waits for an RCU grace period, ~18 ms).
"""

from __future__ import annotations

import errno
import logging
from collections.abc import Callable
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
    stage: int
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
    def __init__(self, action: Action, error: str) -> None:
        super().__init__(f"{action.what}: {error}")
        self.action = action
        self.error = error


def _write_sysctls(items: list[tuple[str, str]]) -> tuple[int, str | None]:
    """Runs in the namespace thread: write in order, stop at the first failure."""
    for i, (key, value) in enumerate(items):
        try:
            with open(sysctl_path(key), "w") as f:
                f.write(value)
        except OSError as exc:
            return i, f"sysctl {key.replace('/', '.')}={value}: {exc.strerror or exc}"
    return len(items), None


class Executor:
    def __init__(self, sock: RtnlSocket, nsthread: NsThread) -> None:
        self.sock = sock
        self.ns = nsthread

    def run(self, actions: list[Action], names: Names) -> list[Action]:
        """Execute ``actions`` (sorted by stage); on failure undo and raise ApplyFailed."""
        done: list[Action] = []
        for _stage, group in groupby(sorted(actions, key=lambda a: a.stage),
                                     key=lambda a: a.stage):
            acts = list(group)
            for is_nl, part in groupby(acts, key=lambda a: a.nl is not None):
                batch = list(part)
                failure = (self._netlink(batch, names, done) if is_nl
                           else self._sysctls(batch, done))
                if failure is not None:
                    self.undo(done, names)
                    raise ApplyFailed(*failure)
        return done

    def _netlink(self, batch: list[Action], names: Names,
                 done: list[Action]) -> tuple[Action, str] | None:
        reqs: list[Request] = []
        sendable: list[Action] = []
        failure: tuple[Action, str] | None = None
        for a in batch:
            try:
                reqs.append(a.nl(names))  # type: ignore[misc]
                sendable.append(a)
            except NetlinkError as exc:
                failure = failure or (a, exc.text)
                break
        for a, (err, echoed) in zip(sendable, self.sock.batch(reqs), strict=True):
            if err is not None and err.errno not in a.ok_errors:
                failure = failure or (a, err.text)
                continue
            done.append(a)
            if a.creates and echoed:
                names.map[a.creates] = parse_link(echoed[0]).index
            for name in a.deletes:
                names.map.pop(name, None)
        return failure

    def _sysctls(self, batch: list[Action], done: list[Action]) -> tuple[Action, str] | None:
        items = [a.sysctl for a in batch]
        n, err = self.ns.call(_write_sysctls, items)
        done += batch[:n]
        return None if err is None else (batch[n], err)

    def undo(self, done: list[Action], names: Names) -> None:
        """Run the inverses of ``done`` in reverse order (best effort, failures logged)."""
        steps = [inv for a in reversed(done) for inv in a.undo]
        i = 0
        while i < len(steps):
            inv = steps[i]
            if inv.nl is None:
                if inv.sysctl is not None:
                    _n, err = self.ns.call(_write_sysctls, [inv.sysctl])
                    if err:
                        log.error("rollback step %r failed: %s", inv.what, err)
                i += 1
                continue
            j = i
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
            if err is not None:
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
