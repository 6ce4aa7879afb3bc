"""Two-phase application of a configuration change to the backends.

Modelled on FRR's northbound (VALIDATE → PREPARE → APPLY, or ABORT) and
sysrepo's change subscriptions. Each :class:`Subscriber` sees the old and the
new ``running`` tree. ``prepare`` plans the change (and may refuse it with an
:class:`~agent.protocol.errors.RpcError`); ``apply`` performs it and returns an
undo callable. When any prepare or apply fails, every change already applied
is undone in reverse order and the error is raised: nothing is half-applied.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Protocol

from lxml import etree

from agent.protocol.errors import RpcError, RpcErrors

log = logging.getLogger(__name__)

Undo = Callable[[], None]


class Plan(Protocol):
    def apply(self) -> Undo: ...


class Subscriber(Protocol):
    name: str

    def prepare(self, old: etree._Element, new: etree._Element) -> Plan | None: ...


def run_transaction(
    subscribers: list[Subscriber], old: etree._Element, new: etree._Element
) -> None:
    plans: list[tuple[str, Plan]] = []
    for sub in subscribers:
        plan = sub.prepare(old, new)  # RpcError propagates: nothing applied yet
        if plan is not None:
            plans.append((sub.name, plan))
    undos: list[tuple[str, Undo]] = []
    try:
        for name, plan in plans:
            undos.append((name, plan.apply()))
    except (RpcError, RpcErrors):
        _rollback(undos)
        raise
    except Exception as exc:  # a backend bug must not leave a half-applied change
        _rollback(undos)
        log.exception("apply failed")
        raise RpcError("operation-failed", f"apply failed: {exc}") from exc


def _rollback(undos: list[tuple[str, Undo]]) -> None:
    for name, undo in reversed(undos):
        try:
            undo()
        except Exception:  # pragma: no cover - reported, continue undoing the rest
            log.exception("rollback of %s failed", name)
