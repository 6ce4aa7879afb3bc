"""The configuration datastores: running, candidate, startup.

Content is an immutable-by-convention lxml tree: every change builds a new
tree (a copy edited in private) and swaps it in, so a failed operation leaves
the old tree untouched. ``startup`` is persisted atomically (temp file, fsync,
rename, fsync of the directory). Changes to ``running`` go through the
two-phase :class:`~agent.datastore.transaction.Transaction` so the backends
(kernel, keepalived) accept them before running changes.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from lxml import etree

from agent.datastore.schema import Schema
from agent.datastore.transaction import Subscriber, run_transaction
from agent.datastore.tree import new_root
from agent.protocol.errors import PROTOCOL, RpcError, session_id_info
from agent.protocol.xmlparse import parse

log = logging.getLogger(__name__)

NAMES = ("running", "candidate", "startup")

#: Called after ``running`` or ``startup`` changed: ``(datastore name, old tree, new tree)``.
ChangeObserver = Callable[[str, etree._Element, etree._Element], None]


@dataclass
class Datastore:
    name: str
    tree: etree._Element = field(default_factory=new_root)
    lock_owner: int | None = None
    lock_time: float = 0.0
    path: Path | None = None
    modified_by: int | None = None  # candidate: session that changed it since last commit
    #: ``tree`` when it is known valid and pruned (edits to it may validate incrementally)
    valid_tree: etree._Element | None = None

    @property
    def valid(self) -> bool:
        return self.valid_tree is not None and self.valid_tree is self.tree


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that a crash leaves the old or the new content."""
    tmp = path.with_name(f".{path.name}.tmp.{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        try:
            view = memoryview(data)
            while view:
                n = os.write(fd, view)
                view = view[n:]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)  # e.g. disk full: leave no partial temp file behind
        raise
    dfd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


class Datastores:
    """running + candidate + startup, their locks and the commit path to the backends."""

    def __init__(
        self,
        schema: Schema,
        state_dir: Path | None,
        subscribers: list[Subscriber] | None = None,
    ) -> None:
        self.schema = schema
        self.subscribers: list[Subscriber] = list(subscribers or [])
        self.stores = {n: Datastore(n) for n in NAMES}
        if state_dir is not None:
            self.stores["startup"].path = Path(state_dir) / "startup.xml"
        self.last_change = time.time()
        self.observers: list[ChangeObserver] = []  # e.g. RFC 6470 netconf-config-change

    def __getitem__(self, name: str) -> Datastore:
        return self.stores[name]

    # ------------------------------------------------------------------ startup
    def load_startup(self) -> etree._Element:
        """Read the persisted startup configuration (empty when none)."""
        st = self.stores["startup"]
        if st.path is not None:
            # temp files of a write interrupted by a crash (the old startup.xml is intact)
            for stale in st.path.parent.glob(f".{st.path.name}.tmp.*"):
                stale.unlink(missing_ok=True)
        if st.path is not None and st.path.exists():
            root = parse(st.path.read_bytes())
            st.tree = root
        return st.tree

    # ------------------------------------------------------------------ locks
    def check_writable(self, name: str, session_id: int) -> None:
        ds = self.stores[name]
        if ds.lock_owner is not None and ds.lock_owner != session_id:
            raise RpcError(
                "in-use",
                f"the {name} datastore is locked by session {ds.lock_owner}",
                type=PROTOCOL,
                info=[session_id_info(ds.lock_owner)],
            )

    def lock(
        self, name: str, session_id: int, *, alive: Callable[[int], bool] | None = None
    ) -> None:
        """``alive(session id)``: whether that session still exists (error-info of a
        refused candidate lock)."""
        ds = self.stores[name]
        if ds.lock_owner is not None:
            raise RpcError(
                "lock-denied",
                f"the {name} datastore is already locked by session {ds.lock_owner}",
                type=PROTOCOL,
                info=[session_id_info(ds.lock_owner)],
            )
        if name == "candidate" and ds.modified_by is not None:
            # RFC 6241 §8.3.5.1 refuses the lock; like a lock holder's (§7.5), the session-id
            # is that of the session that made the changes (maybe the requester itself),
            # 0 (no NETCONF session) once that session has ended
            who = ds.modified_by
            if alive is not None and not alive(who):
                by, sid = f"session {who}, which has ended", 0
            else:
                by, sid = f"session {who}", who
            raise RpcError(
                "lock-denied",
                f"the candidate datastore has uncommitted changes made by {by}; "
                "commit or discard-changes first",
                type=PROTOCOL,
                info=[session_id_info(sid)],
            )
        ds.lock_owner = session_id
        ds.lock_time = time.time()

    def unlock(self, name: str, session_id: int) -> None:
        ds = self.stores[name]
        if ds.lock_owner is None:
            raise RpcError(
                "operation-failed", f"the {name} datastore is not locked", type=PROTOCOL
            )
        if ds.lock_owner != session_id:
            raise RpcError(
                "lock-denied",
                f"the {name} datastore is locked by session {ds.lock_owner}",
                type=PROTOCOL,
                info=[session_id_info(ds.lock_owner)],
            )
        ds.lock_owner = None
        if name == "candidate":
            # RFC 6241 §8.3.5.2: releasing the candidate lock discards uncommitted changes
            self.discard_changes()

    def release_session(self, session_id: int) -> None:
        """A session ended: release its locks (candidate lock → discard its changes)."""
        for ds in self.stores.values():
            if ds.lock_owner == session_id:
                ds.lock_owner = None
                if ds.name == "candidate":
                    self.discard_changes()

    # ------------------------------------------------------------------ content
    def set_candidate(self, tree: etree._Element, session_id: int, *,
                      valid: bool = False) -> None:
        c = self.stores["candidate"]
        c.tree = tree
        c.valid_tree = tree if valid else None
        c.modified_by = session_id

    def same_as_running(self, tree: etree._Element) -> bool:
        """Whether ``tree`` holds exactly what running holds."""
        run = self.stores["running"].tree
        return tree is run or _canon(tree) == _canon(run)

    def discard_changes(self) -> None:
        c = self.stores["candidate"]
        run = self.stores["running"]
        c.tree = _copy(run.tree)
        c.valid_tree = c.tree if run.valid else None
        c.modified_by = None

    def set_running(
        self,
        tree: etree._Element,
        *,
        valid: bool = False,
        changed: dict[str, set[tuple[str, ...]]] | None = None,
    ) -> None:
        """Apply ``tree`` to the backends (two-phase), then make it running. ``valid``:
        the caller validated (and pruned) it; later edits may validate incrementally.
        ``changed``: the only top-level list entries that differ from running (see
        :func:`change_hint`)."""
        global _hint
        run = self.stores["running"]
        old = run.tree
        _hint = (old, tree, changed) if changed is not None else None
        try:
            run_transaction(self.subscribers, old, tree)
        finally:
            _hint = None
        run.tree = tree
        run.valid_tree = tree if valid else None
        self.last_change = time.time()
        cand = self.stores["candidate"]
        if cand.modified_by is None:
            cand.tree = _copy(tree)
            cand.valid_tree = cand.tree if valid else None
        self._changed("running", old, tree)

    def set_startup(self, tree: etree._Element) -> None:
        st = self.stores["startup"]
        if st.path is not None:
            atomic_write(st.path, etree.tostring(tree, xml_declaration=True, encoding="UTF-8"))
        old, st.tree = st.tree, tree
        self._changed("startup", old, tree)

    def _changed(self, name: str, old: etree._Element, new: etree._Element) -> None:
        for observer in self.observers:
            try:
                observer(name, old, new)
            except Exception:  # an observer's bug never fails a change already made
                log.exception("datastore change observer failed")

    def commit(self, session_id: int, tree: etree._Element | None = None, *,
               valid: bool = False) -> None:
        """Make the candidate (or ``tree``, its validated form) running; candidate = running."""
        cand = self.stores["candidate"]
        new = _copy(cand.tree) if tree is None else tree
        self.set_running(new, valid=valid)
        cand.tree = _copy(new)
        cand.valid_tree = cand.tree if valid else None
        cand.modified_by = None

    def candidate_dirty(self) -> bool:
        return self.stores["candidate"].modified_by is not None


_hint: tuple[etree._Element, etree._Element, dict[str, set[tuple[str, ...]]]] | None = None


def change_hint(
    old: etree._Element, new: etree._Element
) -> dict[str, set[tuple[str, ...]]] | None:
    """For a backend's ``prepare(old, new)``: when this transaction comes from an edit
    that knows what it changed, ``{list clark path: keys}`` of the only top-level list
    entries (e.g. ``"{if}interfaces/{if}interface"``) that may differ between ``old``
    and ``new``, nothing outside them differing; None: unknown, compare everything."""
    h = _hint
    if h is not None and h[0] is old and h[1] is new:
        return h[2]
    return None


def _canon(tree: etree._Element) -> bytes:
    return etree.tostring(tree, method="c14n2", strip_text=True)


def _copy(tree: etree._Element) -> etree._Element:
    import copy

    return copy.deepcopy(tree)
