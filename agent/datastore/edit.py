"""``edit-config`` semantics (RFC 6241 §7.2) applied to a private copy of a datastore.

The caller gives a tree it owns (a copy of the target); :func:`apply_edit`
mutates it in place and records which elements the request created or
changed (needed for ``when`` → ``unknown-element``, RFC 7950 §8.3.2).
Validation of the whole result is done afterwards by :mod:`validate`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from lxml import etree

from agent.datastore.schema import Schema, SchemaNode
from agent.datastore.tree import PathMaker, element, insert_child, make_leaf, split
from agent.datastore.yangtypes import TypeMismatch
from agent.protocol.errors import PROTOCOL, RpcError, RpcErrors, bad_attribute, bad_element
from agent.protocol.namespaces import NC, WD_ATTR

OPERATION = f"{{{NC}}}operation"
WD_DEFAULT = f"{{{WD_ATTR}}}default"
OPS = ("merge", "replace", "create", "delete", "remove", "none")


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


class Editor:
    """One edit-config request against one target tree."""

    def __init__(
        self,
        schema: Schema,
        target: etree._Element,
        *,
        error_option: str = "stop-on-error",
        paths: PathMaker,
    ) -> None:
        self.schema = schema
        self.target = target
        self.continue_on_error = error_option == "continue-on-error"
        self.paths = paths
        self.result = EditResult()
        # keyed by the element itself: holding it keeps lxml's proxy (and so its identity) alive
        self._index: dict[tuple[etree._Element, str], dict[tuple, etree._Element]] = {}

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
        for req in cfg:
            if not isinstance(req.tag, str):
                continue
            try:
                self._node(tgt, sparent, req, op)
            except RpcError as exc:
                self._err(exc)

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
        self, tgt: etree._Element | None, sparent: SchemaNode, req: etree._Element, inherited: str
    ) -> None:
        snode = self._schema_child(sparent, req)
        op = self._op_of(req, inherited)
        if snode.kind == "leaf":
            self._leaf(tgt, snode, req, op)
        elif snode.kind == "leaf-list":
            self._leaf_list(tgt, snode, req, op)
        elif snode.kind == "container":
            self._container(tgt, snode, req, op)
        elif snode.kind == "list":
            self._list(tgt, snode, req, op)
        else:  # pragma: no cover - anydata not in our models
            raise self._error("operation-not-supported", f"'{snode.kind}' not supported", req)

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
        if op in ("delete", "remove"):
            if cur is None:
                if op == "delete":
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
        if op == "create" and cur is not None:
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

    def _leaf_list(self, tgt, snode: SchemaNode, req, op: str) -> None:
        value = self._value(snode, req)
        cur = None
        if tgt is not None:
            for e in tgt.iterfind(snode.clark):
                if e.text == value:
                    cur = e
                    break
        if op in ("delete", "remove"):
            if cur is None:
                if op == "delete":
                    raise self._missing(snode, req)
                return
            self._remove(tgt, cur, snode)
            return
        if op == "none":
            if cur is None:
                raise self._missing(snode, req)
            return
        if op == "create" and cur is not None:
            raise self._exists(snode, req)
        if cur is None:
            new = make_leaf(self.schema, snode, value)
            siblings = tgt.findall(snode.clark)
            if siblings:
                siblings[-1].addnext(new)
            else:
                insert_child(tgt, new, snode)
                self._clear_other_cases(tgt, snode)
            self._touch(new)

    def _container(self, tgt, snode: SchemaNode, req, op: str) -> None:
        cur = tgt.find(snode.clark) if tgt is not None else None
        if op in ("delete", "remove"):
            self._check_nested_ops(req, op)
            if cur is None:
                if op == "delete":
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
        if op == "create" and cur is not None:
            raise self._exists(snode, req)
        if op == "replace" and cur is not None:
            new = element(snode)
            tgt.replace(cur, new)
            cur = new
            self._touch(cur)
        if cur is None:
            cur = element(snode)
            insert_child(tgt, cur, snode)
            self._clear_other_cases(tgt, snode)
            self._touch(cur)
        self._children(cur, snode, req, "merge" if op == "merge" else op)

    def _list(self, tgt, snode: SchemaNode, req, op: str) -> None:
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
        index = self._list_index(tgt, snode)
        cur = index.get(key)
        if op in ("delete", "remove"):
            self._check_nested_ops(req, op)
            if cur is None:
                if op == "delete":
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
        if op == "create" and cur is not None:
            raise self._exists(snode, req)
        if op == "replace" and cur is not None:
            new = self._new_entry(snode, key)
            tgt.replace(cur, new)
            index[key] = new
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
        child_op = "merge" if op == "merge" else op
        for c in req:
            if not isinstance(c.tag, str) or c.tag in snode.keys:
                if isinstance(c.tag, str):
                    own = c.get(OPERATION)
                    if own is not None and own not in OPS[:5]:
                        self._op_of(c, child_op)
                continue
            try:
                self._node(cur, snode, c, child_op)
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
