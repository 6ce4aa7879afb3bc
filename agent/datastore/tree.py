"""Helpers over the instance-data tree (lxml elements under a ``<data>`` root).

Conventions: a datastore is ``<data xmlns=NC>`` whose children are top-level
data nodes; elements carry no attributes; list entries hold their key leafs
first; identityref values are ``prefix:name`` with that prefix declared on
the leaf element.
"""

from __future__ import annotations

from lxml import etree

from agent.datastore.schema import Schema, SchemaNode
from agent.protocol.namespaces import NC

DATA = f"{{{NC}}}data"


def new_root() -> etree._Element:
    return etree.Element(DATA, nsmap={None: NC})


def split(clark: str) -> tuple[str, str]:
    if clark[0] == "{":
        ns, _, name = clark[1:].partition("}")
        return ns, name
    return "", clark


def key_tuple(entry: etree._Element, snode: SchemaNode) -> tuple[str, ...] | None:
    vals = []
    for k in snode.keys:
        c = entry.find(k)
        if c is None:
            return None
        vals.append(c.text or "")
    return tuple(vals)


def schema_of(schema: Schema, elem: etree._Element) -> SchemaNode | None:
    """Schema node of a data element (walks up to the root)."""
    chain = []
    e = elem
    while e is not None and e.tag != DATA:
        chain.append(e.tag)
        e = e.getparent()
    node = schema.root
    for tag in reversed(chain):
        node = node.children.get(tag)
        if node is None:
            return None
    return node


def insert_child(parent: etree._Element, child: etree._Element, snode: SchemaNode) -> None:
    """Insert ``child`` (schema node ``snode``) in schema order among ``parent``'s children."""
    sparent = snode.parent
    if sparent is None or sparent.kind == "root":
        parent.append(child)
        return
    order = _order(sparent)
    idx = order.get(snode.clark, 1 << 30)
    # fast path: append when the last child sorts before
    if len(parent) == 0 or order.get(parent[-1].tag, 1 << 30) <= idx:
        parent.append(child)
        return
    for i, sib in enumerate(parent):
        if order.get(sib.tag, 1 << 30) > idx:
            parent.insert(i, child)
            return
    parent.append(child)


def _order(snode: SchemaNode) -> dict[str, int]:
    o = snode.__dict__.get("_order")
    if o is None:
        o = {c: i for i, c in enumerate(snode.children)}
        # keys first
        for i, k in enumerate(snode.keys):
            o[k] = -len(snode.keys) + i
        snode.__dict__["_order"] = o
    return o


def element(snode: SchemaNode) -> etree._Element:
    """A new data element, named with its module's own prefix.

    Every element of a data tree is prefixed (``if:interface``, ``vrrp:version``)
    so that a canonical identityref value ``prefix:name`` always resolves: lxml
    folds a redundant prefix declaration into an in-scope default namespace on
    insertion, which would leave such a value's prefix undeclared.
    """
    return etree.Element(snode.clark, nsmap={snode.prefix: snode.ns})


def make_leaf(schema: Schema, snode: SchemaNode, text: str) -> etree._Element:
    """A new leaf element holding canonical ``text`` (declares identityref prefixes)."""
    if snode.type is not None and snode.type.is_identityref() and ":" in text:
        prefix = text.split(":", 1)[0]
        ns = _ns_of_prefix(schema, prefix)
        if ns is not None and prefix != snode.prefix:
            el = etree.Element(snode.clark, nsmap={snode.prefix: snode.ns, prefix: ns})
            el.text = text
            return el
    el = etree.Element(snode.clark, nsmap={snode.prefix: snode.ns})
    el.text = text
    return el


def _ns_of_prefix(schema: Schema, prefix: str) -> str | None:
    cache = schema.__dict__.setdefault("_ns_of_prefix", {})
    if not cache:
        for m in schema.modules.values():
            cache.setdefault(m.prefix, m.namespace)
    return cache.get(prefix)


class PathMaker:
    """Builds XPath instance identifiers for error-path, in the client's prefixes.

    ``client_prefixes`` maps namespace → prefix as the client declared them;
    namespaces the client did not name use the module's own prefix.
    """

    def __init__(self, schema: Schema, client_prefixes: dict[str, str] | None = None) -> None:
        self.schema = schema
        self.client = dict(client_prefixes or {})
        self._taken = set(self.client.values())
        self._fallback: dict[str, str] = {}

    def prefix(self, ns: str) -> str:
        p = self.client.get(ns)
        if p or not ns:
            return p or ""  # an element in no namespace has no prefix
        p = self._fallback.get(ns)
        if p is None:
            # the module's own prefix, unless the client bound it to another namespace
            m = self.schema.by_ns.get(ns)
            base = p = m.prefix if m else "ns"
            n = 1
            while p in self._taken:
                p = f"{base}{n}"
                n += 1
            self._taken.add(p)
            self._fallback[ns] = p
        return p

    def path(
        self, elem: etree._Element, tail: list[str] | None = None
    ) -> tuple[str, dict[str, str]]:
        """``(xpath, prefix→ns)`` for a data element (in a datastore or a request)."""
        used: dict[str, str] = {}
        parts: list[str] = []
        e = elem
        chain = []
        while e is not None and not (isinstance(e.tag, str) and e.tag.startswith(f"{{{NC}}}")):
            chain.append(e)
            e = e.getparent()
        chain.reverse()
        snode: SchemaNode | None = self.schema.root
        for el in chain:
            ns, name = split(el.tag)
            p = self.prefix(ns)
            if p:
                used[p] = ns
            step = f"{p}:{name}" if p else name
            snode = snode.children.get(el.tag) if snode is not None else None
            if snode is not None and snode.kind == "list":
                for k in snode.keys:
                    kel = el.find(k)
                    if kel is not None:
                        kns, kname = split(k)
                        kp = self.prefix(kns)
                        used[kp] = kns
                        step += f"[{kp}:{kname}={xpath_quote(kel.text or '')}]"
            elif snode is not None and snode.kind == "leaf-list" and el is not elem:
                step += f"[.={xpath_quote(el.text or '')}]"
            parts.append(step)
        for clark in tail or []:
            ns, name = split(clark)
            p = self.prefix(ns)
            if p:
                used[p] = ns
            parts.append(f"{p}:{name}" if p else name)
        return "/" + "/".join(parts), used

    def schema_path(self, snode: SchemaNode) -> tuple[str, dict[str, str]]:
        used: dict[str, str] = {}
        parts = []
        n: SchemaNode | None = snode
        while n is not None and n.kind != "root":
            p = self.prefix(n.ns)
            used[p] = n.ns
            parts.append(f"{p}:{n.name}")
            n = n.parent
        return "/" + "/".join(reversed(parts)), used


def xpath_quote(v: str) -> str:
    """``v`` as an XPath string literal (``concat()`` when it holds both quote kinds)."""
    if "'" not in v:
        return f"'{v}'"
    if '"' not in v:
        return f'"{v}"'
    return "concat('" + "', \"'\", '".join(v.split("'")) + "')"


def client_prefixes(elem: etree._Element) -> dict[str, str]:
    """Namespace → prefix as declared by the client anywhere in ``elem``'s subtree."""
    res: dict[str, str] = {}
    for e in elem.iter():
        if not isinstance(e.tag, str):
            continue
        for p, ns in e.nsmap.items():
            if p and ns not in res:
                res[ns] = p
    return res


def prune_empty(root: etree._Element, schema: Schema) -> None:
    """Remove empty non-presence containers (they carry no information)."""

    def walk(el: etree._Element, snode: SchemaNode) -> bool:
        for child in list(el):
            cs = snode.children.get(child.tag)
            if cs is None:
                continue
            if cs.kind in ("container", "list"):
                empty = walk(child, cs)
                if empty and cs.kind == "container" and not cs.presence:
                    el.remove(child)
        return len(el) == 0

    walk(root, schema.root)
