"""Pre-agent values of link attributes: what a link goes back to when its config is deleted.

When a commit first makes the agent change an attribute of an existing link (MTU, admin
state, alias), the kernel's value before that change is remembered here; deleting the
configuration (of the leaf, or of the whole interface) restores it and forgets it. The
values live in ``<state_dir>/linux-originals.json`` (written atomically), so an agent
restarted in between still restores them. Changes are staged by the planner and
committed only when the kernel accepted the plan (and reverted with its undo).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from agent.datastore.store import atomic_write

log = logging.getLogger("agent.linux")

FILE = "linux-originals.json"
#: (link name, attribute) → value, or None to forget
Changes = dict[tuple[str, str], Any]


class Originals:
    def __init__(self, state_dir: Path | None = None, netns: str | None = None) -> None:
        self.path = Path(state_dir) / FILE if state_dir is not None else None
        self.netns = netns
        self.links: dict[str, dict[str, Any]] = {}
        if self.path is not None and self.path.exists():
            try:
                doc = json.loads(self.path.read_text())
                if doc.get("netns") == netns:  # another namespace's links are not ours
                    self.links = {str(k): dict(v) for k, v in doc.get("links", {}).items()}
            except (OSError, ValueError, AttributeError) as exc:
                log.error("linux: %s unreadable, pre-agent values forgotten: %s",
                          self.path, exc)

    def get(self, name: str, attr: str) -> Any:
        return self.links.get(name, {}).get(attr)

    def update(self, changes: Changes) -> Changes:
        """Apply ``changes``, persist; returns the changes that revert them."""
        inverse: Changes = {}
        for (name, attr), value in changes.items():
            cur = self.links.get(name, {})
            if cur.get(attr) == value:
                continue
            inverse[(name, attr)] = cur.get(attr)
            if value is None:
                cur.pop(attr, None)
            else:
                cur[attr] = value
            if cur:
                self.links[name] = cur
            else:
                self.links.pop(name, None)
        if inverse:
            self._save()
        return inverse

    def _save(self) -> None:
        if self.path is None:
            return
        doc = {"netns": self.netns, "links": self.links}
        try:
            atomic_write(self.path, json.dumps(doc, indent=1, sort_keys=True).encode())
        except OSError as exc:
            log.error("linux: cannot save pre-agent values to %s: %s", self.path, exc)
