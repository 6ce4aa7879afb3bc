"""``edit-config`` semantics (RFC 6241 §7.2) applied to a private copy of a datastore.

The caller gives a tree it owns (a copy of the target); :func:`apply_edit`
mutates it in place and records which elements the request created or
changed (needed for ``when`` → ``unknown-element``, RFC 7950 §8.3.2).
Validation of the whole result is done afterwards by :mod:`validate`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from lxml import etree

from agent.datastore.schema import Choice, Schema, SchemaNode
from agent.datastore.tree import PathMaker, element, insert_child, make_leaf, split
from agent.datastore.yangtypes import TypeMismatch
from agent.protocol.errors import PROTOCOL, RpcError, RpcErrors, bad_attribute, bad_element
from agent.protocol.namespaces import NC, WD_ATTR, YANG_MD

OPERATION = f"{{{NC}}}operation"
WD_DEFAULT = f"{{{WD_ATTR}}}default"
OPS = ("merge", "replace", "create", "delete", "remove", "none")
_MD = f"{{{YANG_MD}}}"  # yang:insert, yang:key, yang:value (RFC 7950 §7.7.9, §7.8.6)
INSERT = f"{_MD}insert"
INSERTS = ("first", "last", "before", "after")
_KEY_PRED = re.compile(r"""\s*\[\s*(?:([\w.-]+):)?([\w.-]+)\s*=\s*(?:'([^']*)'|"([^"]*)")\s*\]""")


@dataclass
class EditResult:
    changed: bool = False
    touched: set = field(default_factory=set)  # elements of the target created/modified
    errors: list[RpcError] = field(default_factory=list)
    #: (parent element, schema node, the removed element) of every node the edit removed
    removed: list[tuple[etree._Element, SchemaNode, etree._Element]] = field(
        default_factory=list)
    #: containers created on the way to an operation "none" (pruned later if left empty)
    created: list[etree._Element] = field(default_factory=list)


#: What the children of one request element held so far, for RFC 7950 §8.3.1 (data of two
#: cases of one choice) and for a leaf or a list entry given twice: leaf clark → None,
#: (list clark, key) → None, choice → (case, its first request element).
_Siblings = dict[str | tuple[str, tuple] | Choice, tuple[str, etree._Element] | None]


class Editor:
    """One edit-config request against one target tree."""

    def __init__(
        self,
        schema: Schema,
        target: etree._Element,
        *,
        error_option: str = "stop-on-error",
        paths: PathMaker,
        prior: etree._Element | None = None,
    ) -> None:
        """``prior``: ``target`` is an empty tree replacing ``prior`` (default-operation
        replace); create / delete in the request are still checked against ``prior``."""
        self.schema = schema
        self.target = target
        self.continue_on_error = error_option == "continue-on-error"
        self.paths = paths
        self.result = EditResult()
        # keyed by the element itself: holding it keeps lxml's proxy (and so its identity) alive
        self._index: dict[tuple[etree._Element, str], dict[tuple, etree._Element]] = {}
        #: element of the edited tree → the element it replaced: what existed before the
        #: edit below it, for the preconditions of create (data-exists) and delete
        #: (data-missing) under a replace (RFC 6241 §7.2: "exists in the datastore")
        self._prior: dict[etree._Element, etree._Element] = {}
        if prior is not None:
            self._prior[target] = prior

    # ------------------------------------------------------------------ entry
    def apply(self, config: etree._Element, default_op: str) -> EditResult:
        self._children(self.target, self.schema.root, config, default_op)
        if self.result.errors and not self.continue_on_error:
            raise RpcErrors(self.result.errors)
        return self.result

    # ------------------------------------------------------------------ errors
    def _err(self, exc: RpcError) -> None:
        self.result.errors.append(exc)
        if not self.continue_on_error:
            raise RpcErrors(self.result.errors)

    def _error(self, tag: str, msg: str, req: etree._Element, **kw) -> RpcError:
        path, ns = self.paths.path(req)
        return RpcError(tag, msg, path=path, path_ns=ns, **kw)

    # ------------------------------------------------------------------ walk
    def _children(
        self, tgt: etree._Element | None, sparent: SchemaNode, cfg: etree._Element, op: str
    ) -> None:
        seen: _Siblings = {}
        for req in cfg:
            if not isinstance(req.tag, str):
                continue
            try:
                self._node(tgt, sparent, req, op, seen)
            except RpcError as exc:
                self._err(exc)

    def _before(self, tgt: etree._Element | None) -> etree._Element | None:
        """The pre-edit counterpart of ``tgt`` when the edit replaced it, else None."""
        return self._prior.get(tgt) if self._prior else None

    def _op_of(self, req: etree._Element, inherited: str) -> str:
        own = req.get(OPERATION)
        if own is None:
            return inherited
        if own not in OPS[:5]:
            raise self._error(
                "bad-attribute",
                f"invalid operation '{own}'",
                req,
                type=PROTOCOL,
                info=[bad_attribute("operation"), bad_element(split(req.tag)[1])],
            )
        if inherited in ("delete", "remove") and own not in ("delete", "remove"):
            raise self._error(
                "bad-attribute",
                f"operation '{own}' is not allowed inside a '{inherited}'",
                req,
                type=PROTOCOL,
                info=[bad_attribute("operation"), bad_element(split(req.tag)[1])],
            )
        return own

    def _check_nested_ops(self, req: etree._Element, op: str) -> None:
        """A delete/remove drops the whole subtree without walking the request below it;
        the operation attributes there must still be valid (and themselves delete/remove)."""
        for d in req.iterdescendants():
            if isinstance(d.tag, str) and d.get(OPERATION) is not None:
                self._op_of(d, op)

    def _schema_child(self, sparent: SchemaNode, req: etree._Element) -> SchemaNode:
        snode = sparent.children.get(req.tag)
        ns, name = split(req.tag)
        if snode is None:
            if ns not in self.schema.by_ns:
                raise self._error(
                    "unknown-namespace",
                    f"unknown namespace '{ns}'" if ns else f"element '{name}' has no namespace",
                    req,
                    info=[bad_element(name), (f"{{{NC}}}bad-namespace", ns)],
                )
            raise self._error(
                "unknown-element",
                f"unknown element '{name}'"
                + (f" in '{sparent.name}'" if sparent.kind != "root" else ""),
                req,
                info=[bad_element(name)],
            )
        if not snode.config:
            raise self._error(
                "invalid-value",
                f"'{name}' is config false (state data) and cannot be configured",
                req,
                info=[bad_element(name)],
            )
        return snode

    def _node(
        self,
        tgt: etree._Element | None,
        sparent: SchemaNode,
        req: etree._Element,
        inherited: str,
        seen: _Siblings,
    ) -> None:
        snode = self._schema_child(sparent, req)
        op = self._op_of(req, inherited)
        ins = self._insert_of(snode, req) if req.keys() else None
        if snode.kind == "leaf" or snode.case_of is not None:
            self._check_once(snode, req, seen)
        if snode.kind == "leaf":
            self._leaf(tgt, snode, req, op)
        elif snode.kind == "leaf-list":
            self._leaf_list(tgt, snode, req, op, ins)
        elif snode.kind == "container":
            self._container(tgt, snode, req, op)
        elif snode.kind == "list":
            self._list(tgt, snode, req, op, seen, ins)
        else:  # pragma: no cover - anydata not in our models
            raise self._error("operation-not-supported", f"'{snode.kind}' not supported", req)

    # ------------------------------------------------------------------ RFC 7950 §8.3.1
    def _check_once(self, snode: SchemaNode, req: etree._Element, seen: _Siblings) -> None:
        """bad-element for a leaf given twice, or for data of a second case of a choice,
        under the same parent of one request (the last one would silently win)."""
        if snode.kind == "leaf":
            if snode.clark in seen:
                raise self._error(
                    "bad-element", f"'{snode.name}' appears more than once", req,
                    info=[bad_element(snode.name)])
            seen[snode.clark] = None
        c = snode.case_of
        while c is not None:
            choice, case = c
            first = seen.get(choice)
            if first is None:
                seen[choice] = (case, req)
            elif first[0] != case:
                other = split(first[1].tag)[1]
                raise self._error(
                    "bad-element",
                    f"'{snode.name}' (case '{case}') and '{other}' (case '{first[0]}') are "
                    f"data of two cases of choice '{choice.name}'",
                    req,
                    info=[bad_element(snode.name)],
                )
            c = choice.parent_case

    # ------------------------------------------------------------------ yang:insert
    def _attr_error(self, tag: str, msg: str, req: etree._Element, attr: str) -> RpcError:
        # error-type application, like the other payload errors of RFC 7950 §8.3.1
        return self._error(tag, msg, req,
                           info=[bad_attribute(attr), bad_element(split(req.tag)[1])])

    def _insert_of(
        self, snode: SchemaNode, req: etree._Element
    ) -> tuple[str, object] | None:
        """The yang:insert request of ``req`` as ``(where, reference)``: ``where`` one of
        first/last/before/after, ``reference`` the key tuple (list) or value (leaf-list)
        of the entry named by yang:key / yang:value for before/after.

        RFC 7950 §8.3.1: insert attributes on anything but an ``ordered-by user`` list or
        leaf-list are "unknown-attribute" (RFC 6241 App. A: an unexpected attribute), and
        insert values not valid for it are "bad-attribute" (an attribute value is not
        correct); before/after without yang:key / yang:value is "missing-attribute"."""
        md = [a for a in req.keys() if a.startswith(_MD)]
        if not md:
            return None
        user = snode.kind in ("list", "leaf-list") and snode.ordered_by_user
        ref_attr = "key" if snode.kind == "list" else "value"
        for a in md:
            name = a[len(_MD):]
            if not user or name not in ("insert", ref_attr):
                why = (f"'{snode.name}' is not an ordered-by user list or leaf-list"
                       if not user else f"yang:{name} does not apply to a {snode.kind}")
                raise self._attr_error("unknown-attribute", f"unexpected attribute yang:{name}: "
                                       + why, req, name)
        where = req.get(INSERT)
        if where is None:
            return None
        if where not in INSERTS:
            raise self._attr_error(
                "bad-attribute", f"invalid yang:insert value '{where}' (first, last, before "
                "or after)", req, "insert")
        if where in ("first", "last"):
            return where, None
        text = req.get(_MD + ref_attr)
        if text is None:
            raise self._attr_error(
                "missing-attribute", f"yang:insert=\"{where}\" needs a yang:{ref_attr} attribute",
                req, ref_attr)
        try:
            if snode.kind == "leaf-list":
                return where, snode.type.canonical(text, req.nsmap)
            return where, self._key_predicates(snode, text, req)
        except (TypeMismatch, ValueError) as exc:
            raise self._attr_error("bad-attribute", f"invalid yang:{ref_attr} '{text}': {exc}",
                                   req, ref_attr) from None

    def _key_predicates(self, snode: SchemaNode, text: str, req: etree._Element) -> tuple:
        """``[p:k1='v1'][p:k2='v2']`` (RFC 7950 §7.8.6) as a canonical key tuple."""
        vals: dict[str, str] = {}
        pos = 0
        for m in _KEY_PRED.finditer(text):
            if m.start() != pos:
                break
            pos = m.end()
            prefix, name, v1, v2 = m.groups()
            if prefix is not None:
                ns = req.nsmap.get(prefix)
                if ns is None:
                    raise ValueError(f"undeclared prefix '{prefix}'")
                clark = f"{{{ns}}}{name}"
            else:
                clark = next((k for k in snode.keys if split(k)[1] == name), name)
            if clark not in snode.keys or clark in vals:
                raise ValueError(f"'{name}' is not a key of '{snode.name}' or is repeated")
            kn = snode.children[clark]
            vals[clark] = kn.type.canonical(v1 if v1 is not None else v2, req.nsmap)
        if pos != len(text.rstrip()) or len(vals) != len(snode.keys):
            raise ValueError("expected one [prefix:key='value'] predicate per key")
        return tuple(vals[k] for k in snode.keys)

    def _place(
        self, tgt: etree._Element, el: etree._Element, snode: SchemaNode,
        where: str, ref: etree._Element | None,
    ) -> None:
        """Move ``el`` (already a child of ``tgt``) where yang:insert asks."""
        prev = el.getprevious()
        if where == "before":
            ref.addprevious(el)
        elif where == "after":
            ref.addnext(el)
        else:
            others = [s for s in tgt.iterfind(snode.clark) if s is not el]
            if others:
                if where == "first":
                    others[0].addprevious(el)
                else:
                    others[-1].addnext(el)
        if el.getprevious() is not prev:
            self._touch(el)

    def _reference(
        self, tgt: etree._Element | None, snode: SchemaNode, req: etree._Element,
        ins: tuple[str, object] | None, own: object, find,
    ) -> etree._Element | None:
        """The existing entry a yang:insert before/after names (``find(ref)``)."""
        if ins is None or ins[0] not in ("before", "after"):
            return None
        attr = "key" if snode.kind == "list" else "value"
        ref = find(ins[1]) if ins[1] != own and tgt is not None else None
        if ref is None:
            raise self._attr_error(
                "bad-attribute",
                f"yang:{attr} names no other existing entry of '{snode.name}' to insert "
                f"{ins[0]}", req, attr)
        return ref

    # ------------------------------------------------------------------ kinds
    def _value(self, snode: SchemaNode, req: etree._Element) -> str:
        if len(req):
            raise self._error(
                "invalid-value",
                f"leaf '{snode.name}' cannot have child elements",
                req,
                info=[bad_element(snode.name)],
            )
        text = req.text or ""
        try:
            return snode.type.canonical(text, req.nsmap)
        except TypeMismatch as exc:
            raise self._error(
                "invalid-value",
                f"invalid value for '{snode.name}': {exc}",
                req,
                info=[bad_element(snode.name)],
            ) from None

    def _missing(self, snode: SchemaNode, req: etree._Element) -> RpcError:
        return self._error(
            "data-missing",
            f"'{snode.name}' does not exist",
            req,
            info=[bad_element(snode.name)],
        )

    def _exists(self, snode: SchemaNode, req: etree._Element) -> RpcError:
        return self._error(
            "data-exists",
            f"'{snode.name}' already exists",
            req,
            info=[bad_element(snode.name)],
        )

    def _touch(self, el: etree._Element) -> None:
        self.result.touched.add(el)
        self.result.changed = True

    def _remove(self, tgt: etree._Element, cur: etree._Element, snode: SchemaNode) -> None:
        tgt.remove(cur)
        self.result.removed.append((tgt, snode, cur))
        self.result.changed = True

    def _leaf(self, tgt, snode: SchemaNode, req, op: str) -> None:
        cur = tgt.find(snode.clark) if tgt is not None else None
        old = self._prior.get(tgt) if self._prior else None
        existed = cur is not None or (old is not None and old.find(snode.clark) is not None)
        if op in ("delete", "remove"):
            if cur is None:
                if op == "delete" and not existed:
                    raise self._missing(snode, req)
                return
            if snode.is_key:
                return  # keys go with their entry
            self._remove(tgt, cur, snode)
            return
        value = self._value(snode, req)
        if req.get(WD_DEFAULT) in ("true", "1"):
            # RFC 6243 §4.5.2: wd:default="true" asks for the schema default; the value sent
            # must be that default, and the leaf then returns to it (it is not stored).
            if snode.default is None or value != snode.default:
                raise self._error(
                    "invalid-value",
                    f"'{snode.name}' is marked default but '{value}' is not its default value",
                    req,
                    info=[bad_element(snode.name)],
                )
            if op != "none" and cur is not None and not snode.is_key:
                self._remove(tgt, cur, snode)
            return
        if op == "none":
            if cur is None:
                raise self._missing(snode, req)
            return
        if op == "create" and existed:
            raise self._exists(snode, req)
        if cur is not None:
            if cur.text == value or (cur.text is None and value == ""):
                return
            if snode.is_key:
                return
            new = make_leaf(self.schema, snode, value)
            tgt.replace(cur, new)
            self._touch(new)
            return
        new = make_leaf(self.schema, snode, value)
        insert_child(tgt, new, snode)
        self._clear_other_cases(tgt, snode)
        self._touch(new)

    def _leaf_list(self, tgt, snode: SchemaNode, req, op: str, ins=None) -> None:
        value = self._value(snode, req)

        def find(v: str, parent: etree._Element | None = tgt) -> etree._Element | None:
            if parent is not None:
                for e in parent.iterfind(snode.clark):
                    if e.text == v:
                        return e
            return None

        cur = find(value)
        old = self._before(tgt)
        existed = cur is not None or (old is not None and find(value, old) is not None)
        if op in ("delete", "remove"):
            if cur is None:
                if op == "delete" and not existed:
                    raise self._missing(snode, req)
                return
            self._remove(tgt, cur, snode)
            return
        if op == "none":
            if cur is None:
                raise self._missing(snode, req)
            return
        if op == "create" and existed:
            raise self._exists(snode, req)
        ref = self._reference(tgt, snode, req, ins, value, find) if ins else None
        if cur is None:
            new = make_leaf(self.schema, snode, value)
            siblings = tgt.findall(snode.clark)
            if siblings:
                siblings[-1].addnext(new)
            else:
                insert_child(tgt, new, snode)
                self._clear_other_cases(tgt, snode)
            self._touch(new)
            cur = new
        if ins is not None:
            self._place(tgt, cur, snode, ins[0], ref)

    def _container(self, tgt, snode: SchemaNode, req, op: str) -> None:
        cur = tgt.find(snode.clark) if tgt is not None else None
        old = self._prior.get(tgt) if self._prior else None
        if old is not None:
            old = old.find(snode.clark)
        if op in ("delete", "remove"):
            self._check_nested_ops(req, op)
            if cur is None:
                if op == "delete" and old is None:
                    raise self._missing(snode, req)
                return
            self._remove(tgt, cur, snode)
            return
        if op == "none":
            if cur is None:
                if snode.presence:
                    raise self._missing(snode, req)
                cur = element(snode)
                insert_child(tgt, cur, snode)  # pruned later if left empty
                self.result.created.append(cur)
            self._children(cur, snode, req, "none")
            return
        if op == "create" and (cur is not None or old is not None):
            raise self._exists(snode, req)
        if op == "replace" and cur is not None:
            new = element(snode)
            tgt.replace(cur, new)
            self._prior[new] = cur
            cur = new
            self._touch(cur)
        if cur is None:
            cur = element(snode)
            insert_child(tgt, cur, snode)
            self._clear_other_cases(tgt, snode)
            self._touch(cur)
            if old is not None:
                self._prior[cur] = old
        self._children(cur, snode, req, "merge" if op == "merge" else op)

    def _list(self, tgt, snode: SchemaNode, req, op: str, seen: _Siblings, ins=None) -> None:
        keys = []
        for k in snode.keys:
            kreq = req.find(k)
            kname = split(k)[1]
            if kreq is None:
                raise self._error(
                    "missing-element",
                    f"list entry '{snode.name}' lacks its key '{kname}'",
                    req,
                    info=[bad_element(kname)],
                )
            keys.append(self._value(snode.children[k], kreq))
        key = tuple(keys)
        entry = (snode.clark, key)
        if entry in seen:
            raise self._error(
                "bad-element", f"list entry '{snode.name}' appears more than once", req,
                info=[bad_element(snode.name)])
        seen[entry] = None
        index = self._list_index(tgt, snode)
        cur = index.get(key)
        old = self._prior.get(tgt) if self._prior else None
        if old is not None:
            old = self._list_index(old, snode).get(key)
        if op in ("delete", "remove"):
            self._check_nested_ops(req, op)
            if cur is None:
                if op == "delete" and old is None:
                    raise self._missing(snode, req)
                return
            self._remove(tgt, cur, snode)
            del index[key]
            return
        if op == "none":
            if cur is None:
                raise self._missing(snode, req)
            self._children(cur, snode, req, "none")
            return
        if op == "create" and (cur is not None or old is not None):
            raise self._exists(snode, req)
        ref = self._reference(tgt, snode, req, ins, key, index.get) if ins else None
        if op == "replace" and cur is not None:
            new = self._new_entry(snode, key)
            tgt.replace(cur, new)
            index[key] = new
            self._prior[new] = cur
            cur = new
            self._touch(cur)
        if cur is None:
            cur = self._new_entry(snode, key)
            siblings = tgt.findall(snode.clark) if index else []
            if siblings:
                siblings[-1].addnext(cur)
            else:
                insert_child(tgt, cur, snode)
            index[key] = cur
            self._clear_other_cases(tgt, snode)
            self._touch(cur)
            if old is not None:
                self._prior[cur] = old
        if ins is not None:
            self._place(tgt, cur, snode, ins[0], ref)
        child_op = "merge" if op == "merge" else op
        below: _Siblings = {}
        for c in req:
            if not isinstance(c.tag, str):
                continue
            try:
                if c.tag in snode.keys:  # applied with the entry: check what _node would
                    if c.keys():
                        self._op_of(c, child_op)
                        self._insert_of(snode.children[c.tag], c)
                    if c.tag in below:
                        self._check_once(snode.children[c.tag], c, below)  # bad-element
                    below[c.tag] = None
                    continue
                self._node(cur, snode, c, child_op, below)
            except RpcError as exc:
                self._err(exc)

    def _new_entry(self, snode: SchemaNode, key: tuple[str, ...]) -> etree._Element:
        e = element(snode)
        for k, v in zip(snode.keys, key, strict=True):
            e.append(make_leaf(self.schema, snode.children[k], v))
        return e

    def _list_index(self, tgt, snode: SchemaNode) -> dict[tuple, etree._Element]:
        if tgt is None:
            return {}
        ik = (tgt, snode.clark)
        idx = self._index.get(ik)
        if idx is None:
            idx = {}
            for e in tgt.iterfind(snode.clark):
                idx[tuple((e.findtext(k) or "") for k in snode.keys)] = e
            self._index[ik] = idx
        return idx

    def _clear_other_cases(self, tgt: etree._Element, snode: SchemaNode) -> None:
        """Creating a node of one case removes the nodes of the other cases (RFC 7950 §7.9)."""
        c = snode.case_of
        choice_parent = snode.parent
        while c is not None:
            choice, case = c
            for other, members in choice.cases.items():
                if other == case:
                    continue
                for clark in members:
                    for e in tgt.findall(clark):
                        self._remove(tgt, e, choice_parent.children[clark])
            c = choice.parent_case


def prune_changed(root: etree._Element, schema: Schema, result: EditResult) -> None:
    """:func:`~agent.datastore.tree.prune_empty` limited to where ``result``'s edit could
    have left an empty non-presence container (the tree held none before); the pruned
    containers are recorded in ``result.removed``."""
    from agent.datastore.tree import schema_of

    def walk(el: etree._Element, snode: SchemaNode) -> bool:
        for child in list(el):
            cs = snode.children.get(child.tag)
            if cs is not None and cs.kind in ("container", "list"):
                if walk(child, cs) and cs.kind == "container" and not cs.presence:
                    el.remove(child)
        return len(el) == 0

    starts = [*result.touched, *result.created, *(p for p, _, _ in result.removed)]
    for el in starts:
        snode = schema_of(schema, el) if _attached(el, root) else None
        if snode is None or snode.kind not in ("container", "list"):
            continue
        walk(el, snode)
        while (snode.kind == "container" and not snode.presence and len(el) == 0):
            parent = el.getparent()
            if parent is None:
                break
            parent.remove(el)
            result.removed.append((parent, snode, el))
            el, snode = parent, snode.parent
            if snode is None:
                break


def _attached(el: etree._Element, root: etree._Element) -> bool:
    while el is not None:
        if el is root:
            return True
        el = el.getparent()
    return False


def changed_entries(
    schema: Schema, root: etree._Element, result: EditResult
) -> dict[str, set[tuple[str, ...]]] | None:
    """The top-level list entries an edit may have changed: ``{list clark path: keys}``
    (e.g. ``"{if}interfaces/{if}interface" → {("eth0",)}``), from what ``result``
    recorded (after :func:`prune_changed`); None when a change lies outside such an
    entry (a backend must then compare everything)."""
    out: dict[str, set[tuple[str, ...]]] = {}
    points = [(e, None) for e in (*result.touched, *result.created)]
    points += [(p, r) for p, _, r in result.removed]
    for el, removed in points:
        chain = []
        if removed is not None:
            chain.append(removed)
        e = el
        while e is not None and e is not root:
            chain.append(e)
            e = e.getparent()
        if e is None:
            continue  # no longer in the tree: its removal is recorded too
        chain.reverse()
        snode = schema.root
        path: list[str] = []
        for c in chain:
            snode = snode.children.get(c.tag) if snode is not None else None
            if snode is None:
                return None
            path.append(snode.clark)
            if snode.kind == "list":
                key = tuple((c.findtext(k) or "") for k in snode.keys)
                out.setdefault("/".join(path), set()).add(key)
                break
        else:
            return None
    return out
