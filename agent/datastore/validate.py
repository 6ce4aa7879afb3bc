"""Whole-datastore validation (RFC 7950 §8): when, mandatory, choices, min/max-elements,
unique, must and leafref require-instance, each failure an ``rpc-error`` with the
RFC 7950 §15 error-tag / error-app-tag and the path of the offending node.

Incremental mode (:meth:`Validator.validate` with ``changes``): when the tree was
valid before an edit, only what the edit may have invalidated is checked (see
:mod:`agent.datastore.deps`): the subtrees around each change (the new list entry,
or the parent of any other changed node), the count and unique constraints of the
lists changed, the subtrees of the anchors of local ``when``/``must`` expressions
enclosing a change, and every instance of the constraints whose expressions may read
a changed node. That check only proves validity: if it finds anything (an error, or a
node whose ``when`` turned false and must be deleted), or cannot tell, the whole tree
is validated as before, so the errors and deletions are exactly those of a full pass.
"""

from __future__ import annotations

from lxml import etree

from agent.datastore import defaults
from agent.datastore.deps import SchemaDeps
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
        self.incremental = False  # the last validate() proved validity incrementally

    # ------------------------------------------------------------------ entry
    def validate(
        self,
        root: etree._Element,
        touched: set | frozenset = frozenset(),
        *,
        removed: list[tuple[etree._Element, SchemaNode, etree._Element]] | None = None,
        created: list[etree._Element] | None = None,
    ) -> None:
        """Validate ``root`` in place (nodes whose ``when`` became false and that the
        request did not touch are deleted, RFC 7950 §7.21.5). Raises :class:`RpcErrors`.

        With ``removed`` (the edit's removals; ``created``: containers it added without
        touching them), ``root`` is a valid tree changed only there and at ``touched``:
        validation is incremental when that is sound."""
        if removed is not None and self.config:
            self.incremental = self._incremental(root, touched, removed, created or [])
            if self.incremental:
                return
            self.errors = []
            self._leafref_cache.clear()
        added = defaults.add_defaults(root, self.schema, config_only=self.config, keep_empty=True)
        try:
            self._when_pass(root, self.schema.root, touched)
            self._check(root, self.schema.root, root)
        finally:
            defaults.remove(added)
        if self.errors:
            raise RpcErrors(self.errors)

    # ------------------------------------------------------------------ incremental
    def _chain(self, el: etree._Element, root) -> list[tuple[etree._Element, SchemaNode]] | None:
        """(element, schema node) from the top-level node down to ``el``; None when ``el``
        is no longer in the tree (removed or pruned later in the edit: recorded there)."""
        els = []
        while el is not None and el is not root:
            els.append(el)
            el = el.getparent()
        if el is None:
            return None
        out = []
        snode = self.schema.root
        for e in reversed(els):
            snode = snode.children.get(e.tag)
            if snode is None:
                return None
            out.append((e, snode))
        return out

    def _incremental(self, root, touched, removed, created) -> bool:
        """True when the changes provably left ``root`` valid (nothing to delete either)."""
        deps = SchemaDeps.of(self.schema)
        if deps.needs_defaults:
            return False
        regions: dict[etree._Element, tuple[SchemaNode, list]] = {}
        lists: dict[tuple[etree._Element, SchemaNode], None] = {}
        owners: dict[SchemaNode, None] = {}

        def change(chain: list, x: SchemaNode) -> bool:
            aff = deps.affected(x)
            if aff is None:
                return False
            for owner, anchor in aff:
                if anchor is None:
                    owners[owner] = None
                    continue
                for i, (el, sn) in enumerate(chain):
                    if sn is anchor:
                        regions[el] = (sn, chain[:i])
            for i, (_el, sn) in enumerate(chain):
                if sn.kind == "list" and sn.unique:
                    lists[(chain[i - 1][0] if i else root, sn)] = None
            return True

        for el in (*touched, *created):
            chain = self._chain(el, root)
            if chain is None:
                continue
            x = chain[-1][1]
            if x.kind in ("list", "leaf-list") and x.case_of is None:
                regions[el] = (x, chain[:-1])
                lists[(chain[-2][0] if len(chain) > 1 else root, x)] = None
            elif len(chain) > 1:
                regions[chain[-2][0]] = (chain[-2][1], chain[:-2])
            else:
                return False  # a top-level node: its parent is the whole datastore
            if not change(chain, x):
                return False
        for parent, x, _ in removed:
            chain = self._chain(parent, root)
            if chain is None:
                continue
            if x.kind in ("list", "leaf-list") and x.case_of is None:
                lists[(parent, x)] = None
            elif chain:
                regions[parent] = (chain[-1][1], chain[:-1])
            else:
                return False
            if not change(chain, x):
                return False
        # regions inside other regions are checked with them
        for el in list(regions):
            _, above = regions[el]
            if any(a in regions for a, _ in above):
                del regions[el]
        for el, (sn, above) in regions.items():
            if not self._region_ok(el, sn, above[-1][0] if above else root, root):
                return False
        for parent, x in lists:
            items = parent.findall(x.clark)
            self._elements(x, parent, items)
            if x.unique and len(items) > 1:
                self._unique(x, items)
        for owner in owners:
            if not self._owner_ok(owner, root):
                return False
        return not self.errors

    def _own_ok(self, el, sn: SchemaNode, parent, root) -> bool:
        """The node's own when, must and leafref."""
        if (sn.when or sn.case_of is not None) and not defaults.when_ok(sn, el, parent, root):
            return False
        if sn.must:
            self._must(sn, el, root)
        if sn.kind in ("leaf", "leaf-list") and sn.type is not None \
                and sn.type.leafref_path and sn.type.require_instance:
            self._leafref(sn, el, root)
        return not self.errors

    def _region_ok(self, el, sn: SchemaNode, parent, root) -> bool:
        added = defaults.add_defaults(root, self.schema, config_only=True, keep_empty=True,
                                      start=(el, sn))
        try:
            if not self._own_ok(el, sn, parent, root) or not self._when_holds(el, sn, root):
                return False
            self._check(el, sn, root)
        finally:
            defaults.remove(added)
        return not self.errors

    def _when_holds(self, el, snode: SchemaNode, root) -> bool:
        for child in el:
            cs = snode.children.get(child.tag) if isinstance(child.tag, str) else None
            if cs is None:
                continue
            if (cs.when or cs.case_of is not None) and not defaults.when_ok(cs, child, el, root):
                return False
            if cs.kind in ("container", "list") and not self._when_holds(child, cs, root):
                return False
        return True

    def _owner_ok(self, owner: SchemaNode, root) -> bool:
        """Every instance of ``owner`` satisfies its own when, must and leafref."""
        steps = []
        n: SchemaNode | None = owner
        while n is not None and n.kind != "root":
            steps.append(n.clark)
            n = n.parent
        for inst in root.iterfind("/".join(reversed(steps))):
            if not self._own_ok(inst, owner, inst.getparent(), root):
                return False
        return True

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
