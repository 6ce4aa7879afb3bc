"""Whole-datastore validation (RFC 7950 §8): when, mandatory, choices, min/max-elements,
unique, must and leafref require-instance, each failure an ``rpc-error`` with the
RFC 7950 §15 error-tag / error-app-tag and the path of the offending node.
"""

from __future__ import annotations

from lxml import etree

from agent.datastore import defaults
from agent.datastore.schema import Schema, SchemaNode
from agent.datastore.tree import PathMaker, split
from agent.protocol.errors import RpcError, RpcErrors, bad_element
from agent.protocol.namespaces import YANG_MD


class Validator:
    def __init__(self, schema: Schema, paths: PathMaker, *, config: bool = True) -> None:
        self.schema = schema
        self.paths = paths
        self.config = config
        self.errors: list[RpcError] = []
        self._leafref_cache: dict[tuple[str, str], set[str]] = {}

    # ------------------------------------------------------------------ entry
    def validate(self, root: etree._Element, touched: set | frozenset = frozenset()) -> None:
        """Validate ``root`` in place (nodes whose ``when`` became false and that the
        request did not touch are deleted, RFC 7950 §7.21.5). Raises :class:`RpcErrors`."""
        added = defaults.add_defaults(root, self.schema, config_only=self.config, keep_empty=True)
        try:
            self._when_pass(root, self.schema.root, touched)
            self._check(root, self.schema.root, root)
        finally:
            defaults.remove(added)
        if self.errors:
            raise RpcErrors(self.errors)

    # ------------------------------------------------------------------ when
    def _when_pass(self, el: etree._Element, snode: SchemaNode, touched) -> None:
        root = el.getroottree().getroot()
        for child in list(el):
            cs = snode.children.get(child.tag) if isinstance(child.tag, str) else None
            if cs is None:
                continue
            if (cs.when or cs.case_of is not None) and not defaults.when_ok(cs, child, el, root):
                if child in touched or any(d in touched for d in child.iterdescendants()):
                    path, ns = self.paths.path(child)
                    self.errors.append(
                        RpcError(
                            "unknown-element",
                            f"'{cs.name}' is not allowed here: its 'when' condition is false",
                            path=path,
                            path_ns=ns,
                            info=[bad_element(cs.name)],
                        )
                    )
                    continue
                el.remove(child)
                continue
            if cs.kind in ("container", "list"):
                self._when_pass(child, cs, touched)

    # ------------------------------------------------------------------ checks
    def _err(self, tag: str, msg: str, path: tuple[str, dict], **kw) -> None:
        self.errors.append(RpcError(tag, msg, path=path[0], path_ns=path[1], **kw))

    def _check(self, el: etree._Element, snode: SchemaNode, root: etree._Element) -> None:
        counts: dict[str, list[etree._Element]] = {}
        for child in el:
            if not isinstance(child.tag, str):
                continue
            counts.setdefault(child.tag, []).append(child)
        present = set(counts)
        for clark, cs in snode.children.items():
            if self.config and not cs.config:
                continue
            items = counts.get(clark, ())
            if cs.kind == "leaf":
                if not items:
                    if cs.mandatory and self._applicable(cs, el, present, root):
                        self._err(
                            "missing-element",
                            f"mandatory leaf '{cs.name}' is missing",
                            self.paths.path(el, [clark]) if el.tag != root.tag
                            else self.paths.schema_path(cs),
                            info=[bad_element(cs.name)],
                        )
                    continue
                leaf = items[0]
                if cs.must:
                    self._must(cs, leaf, root)
                if cs.type is not None and cs.type.leafref_path and cs.type.require_instance:
                    self._leafref(cs, leaf, root)
            elif cs.kind == "leaf-list":
                self._elements(cs, el, items)
                for leaf in items:
                    if cs.must:
                        self._must(cs, leaf, root)
                    if cs.type is not None and cs.type.leafref_path and cs.type.require_instance:
                        self._leafref(cs, leaf, root)
            elif cs.kind == "container":
                for c in items:
                    if cs.must:
                        self._must(cs, c, root)
                    self._check(c, cs, root)
            elif cs.kind == "list":
                self._elements(cs, el, items)
                if cs.unique and len(items) > 1:
                    self._unique(cs, items)
                for c in items:
                    if cs.must:
                        self._must(cs, c, root)
                    self._check(c, cs, root)
        for choice in snode.choices:
            if not choice.mandatory or choice.parent_case is not None:
                continue
            if any(members & present for members in choice.cases.values()):
                continue
            if not all(
                c.compiled.boolean(el, root, current=el) for c in choice.when
            ):
                continue
            self._err(
                "data-missing",
                f"mandatory choice '{choice.name}' has no case",
                self.paths.path(el) if el.tag != root.tag else ("/", {}),
                app_tag="missing-choice",
                info=[(f"{{{YANG_MD}}}missing-choice", choice.name)],
            )

    def _applicable(self, cs: SchemaNode, parent: etree._Element, present: set, root) -> bool:
        """A mandatory leaf is required only if its case is active and its when holds."""
        if cs.case_of is not None:
            active = defaults.active_cases(cs.parent, parent)
            c = cs.case_of
            while c is not None:
                if (id(c[0]), c[1]) not in active:
                    return False
                c = c[0].parent_case
        if cs.when:
            dummy = etree.SubElement(parent, cs.clark)
            try:
                return defaults.when_ok(cs, dummy, parent, root)
            finally:
                parent.remove(dummy)
        return True

    def _elements(self, cs: SchemaNode, parent: etree._Element, items) -> None:
        n = len(items)
        if cs.max_elements is not None and n > cs.max_elements:
            self._err(
                "operation-failed",
                f"too many '{cs.name}' entries: {n}, at most {cs.max_elements}",
                self.paths.path(items[cs.max_elements]),
                app_tag="too-many-elements",
            )
        if n < cs.min_elements and (n or cs.min_elements):
            self._err(
                "operation-failed",
                f"too few '{cs.name}' entries: {n}, at least {cs.min_elements}",
                self.paths.path(parent, [cs.clark]),
                app_tag="too-few-elements",
            )

    def _unique(self, cs: SchemaNode, items) -> None:
        for paths in cs.unique:
            seen: dict[tuple, etree._Element] = {}
            for entry in items:
                vals = []
                for p in paths:
                    e = entry
                    for step in p:
                        e = e.find(step) if e is not None else None
                    if e is None:
                        break
                    vals.append(e.text)
                else:
                    key = tuple(vals)
                    if key in seen:
                        info = []
                        for p in paths:
                            ipath = self.paths.path(entry, list(p))[0]
                            info.append((f"{{{YANG_MD}}}non-unique", ipath))
                        self._err(
                            "operation-failed",
                            f"unique constraint on '{cs.name}' violated",
                            self.paths.path(entry),
                            app_tag="data-not-unique",
                            info=info,
                        )
                    seen[key] = entry

    def _must(self, cs: SchemaNode, el: etree._Element, root) -> None:
        for c in cs.must:
            if not c.compiled.boolean(el, root, current=el):
                self._err(
                    "operation-failed",
                    c.error_message or f"must condition '{c.expr}' of '{cs.name}' is not satisfied",
                    self.paths.path(el),
                    app_tag=c.error_app_tag or "must-violation",
                )

    def _leafref(self, cs: SchemaNode, leaf: etree._Element, root) -> None:
        t = cs.type
        path = t.leafref_path
        ck = (path, "" if "current()" in path else "*")
        values = self._leafref_cache.get(ck) if ck[1] == "*" else None
        if values is None:
            from agent.datastore.xpath import compile_xpath

            mod = t.leafref_module
            prefixes = self.schema.prefixes_of(mod)
            xp = compile_xpath(
                path, prefixes, default_prefix=mod.search_one("prefix").arg,
                oracle=self.schema.identities,
            )
            res = xp.evaluate(leaf, root, current=leaf)
            values = {(n.text or "") for n in res} if isinstance(res, list) else set()
            if ck[1] == "*":
                self._leafref_cache[ck] = values
        if (leaf.text or "") not in values:
            _, name = split(leaf.tag)
            self._err(
                "data-missing",
                f"'{name}' refers to '{leaf.text}', which does not exist ({path})",
                self.paths.path(leaf),
                app_tag="instance-required",
            )
