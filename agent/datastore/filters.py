"""NETCONF ``<filter>``: subtree (RFC 6241 §6) and XPath (RFC 6241 §8.9) filtering.

Both work in two steps: first a *selection* is computed over the data tree
without copying anything — a nested ``dict`` mapping a data element to
:data:`FULL` (the whole subtree) or to the selection of its children — then
only the selected parts are copied into a new ``<data>`` tree. The input is
never modified. Partially included list entries get their key leafs first
(from the :data:`KeyOracle`, in schema order), as RFC 6241 §6.2.5 allows and
real controllers expect.

Subtree details:

* a filter element without a namespace (``xmlns=""``) — or, leniently, in the
  NETCONF base namespace, where no data node can live — matches any namespace;
* attribute match expressions compare attributes really present on the data;
* content match text is compared with leading/trailing whitespace ignored; a
  ``prefix:name`` value also matches the same QName written with another
  prefix (identityref);
* several filter siblings matching the same data node are united;
* at the top level a sibling set of only content match nodes selects just the
  matching leafs (not the whole datastore).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from lxml import etree

from agent.datastore.xpath import UnknownPrefixError, XPathError, compile_xpath
from agent.protocol.errors import PROTOCOL, RpcError, bad_attribute, bad_element
from agent.protocol.namespaces import NC

KeyOracle = Callable[[etree._Element], Sequence[str]]

__all__ = ["KeyOracle", "parse_filter", "subtree_filter", "xpath_filter"]


class _Full:
    __slots__ = ()

    def __repr__(self) -> str:
        return "FULL"


FULL = _Full()
Selection = dict  # dict[etree._Element, "Selection | _Full"]

_SEL, _CM, _CONT = 0, 1, 2
_PREFILTER_MIN = 16  # children of a data node above which content matches are pre-tested in C
_SPLIT_MIN = 1000  # descendants above which a fully selected subtree is copied piecewise
_COUNT = etree.XPath("count(descendant::*)")
_QNAME = re.compile(r"([^\W\d][\w.\-]*):([^\W\d][\w.\-]*)\Z")


# --------------------------------------------------------------------------- parse


def parse_filter(filter_elem: etree._Element) -> tuple[str, object]:
    """``("subtree", [children])`` or ``("xpath", (select, prefixes))`` from a ``<filter>``."""
    ftype = filter_elem.get("type")
    if ftype is None:
        ftype = filter_elem.get(f"{{{NC}}}type", "subtree")
    if ftype == "subtree":
        return "subtree", [c for c in filter_elem if isinstance(c.tag, str)]
    if ftype == "xpath":
        select = filter_elem.get("select")
        if select is None:
            select = filter_elem.get(f"{{{NC}}}select")
        if select is None:
            raise RpcError(
                "missing-attribute",
                "an XPath filter needs a 'select' attribute",
                type=PROTOCOL,
                info=[bad_attribute("select"), bad_element("filter")],
            )
        prefixes = {p: ns for p, ns in filter_elem.nsmap.items() if p is not None}
        return "xpath", (select, prefixes)
    raise RpcError(
        "bad-attribute",
        f"unsupported filter type '{ftype}' (supported: subtree, xpath)",
        type=PROTOCOL,
        info=[bad_attribute("type"), bad_element("filter")],
    )


# --------------------------------------------------------------------------- subtree


@dataclass(eq=False, slots=True)
class _FNode:
    ns: str | None  # None: any namespace
    local: str
    tag: str  # Clark name (or local name when ns is None)
    attrs: tuple[tuple[str, str], ...]
    kind: int
    text: str = ""  # content match value, whitespace-stripped
    qname: tuple[str, str] | None = None  # content match value resolved as a QName
    cms: list[_FNode] = field(default_factory=list)
    others: list[_FNode] = field(default_factory=list)  # selection + containment children
    prefilter: etree.XPath | None = None
    prefilter_vars: dict[str, str] = field(default_factory=dict)


def _compile_filter(elem: etree._Element) -> _FNode:
    tag = elem.tag
    if tag[0] == "{":
        ns, _, local = tag[1:].partition("}")
    else:
        ns, local = "", tag
    children = [c for c in elem if isinstance(c.tag, str)]
    text = (elem.text or "").strip()
    kind = _CONT if children else (_CM if text else _SEL)
    node = _FNode(
        ns=ns if ns and ns != NC else None,
        local=local,
        tag=tag if ns and ns != NC else local,
        attrs=tuple(elem.attrib.items()),
        kind=kind,
    )
    if kind == _CM:
        node.text = text
        m = _QNAME.match(text)
        if m:
            uri = elem.nsmap.get(m.group(1))
            if uri is not None:
                node.qname = (uri, m.group(2))
    _add_children(node, [_compile_filter(c) for c in children])
    return node


def _add_children(node: _FNode, children: list[_FNode]) -> None:
    for ch in children:
        if ch.kind == _CM:
            node.cms.append(ch)
            continue
        node.others.append(ch)


def _local(tag: str) -> str:
    return tag[tag.rfind("}") + 1 :]


def _attrs_match(f: _FNode, d: etree._Element) -> bool:
    get = d.get
    return all(get(k) == v for k, v in f.attrs)


def _cm_candidates(d: etree._Element, cm: _FNode):
    if cm.ns is not None:
        return d.iterchildren(cm.tag)
    return (c for c in d if isinstance(c.tag, str) and _local(c.tag) == cm.local)


def _text_matches(c: etree._Element, cm: _FNode) -> bool:
    if len(c):
        return False
    t = c.text or ""
    if t == cm.text or t.strip() == cm.text:
        return True
    if cm.qname is not None:
        m = _QNAME.match(t.strip())
        if m:
            return (c.nsmap.get(m.group(1)), m.group(2)) == cm.qname
    return False


def _merge(a: Selection | _Full, b: Selection | _Full) -> Selection | _Full:
    if a is FULL or b is FULL:
        return FULL
    for k, v in b.items():
        old = a.get(k)
        a[k] = v if old is None else _merge(old, v)
    return a


def _eval(d: etree._Element, f: _FNode, top: bool = False) -> Selection | _Full | None:
    """Selection of data element ``d`` by containment node ``f`` (name already matched)."""
    sel: Selection = {}
    for cm in f.cms:
        hit = False
        for c in _cm_candidates(d, cm):
            if _text_matches(c, cm) and (not cm.attrs or _attrs_match(cm, c)):
                sel[c] = FULL
                hit = True
        if not hit:
            return None  # AND of the content match nodes failed
    if not f.others:
        # only content match nodes: the whole parent (RFC 6241 §6.2.5)
        return sel if top else FULL
    for g in f.others:
        for c in _matching_children(d, g):
            if g.attrs and not _attrs_match(g, c):
                continue
            r = FULL if g.kind == _SEL else _eval(c, g)
            if r is None:
                continue
            old = sel.get(c)
            sel[c] = r if old is None else _merge(old, r)
    return sel or None


def _matching_children(d: etree._Element, g: _FNode) -> Iterable[etree._Element]:
    """Children of ``d`` named like ``g`` (for a list, only entries that may pass its content
    match nodes: pre-selected in C by an XPath that over-approximates the test)."""
    if g.cms and len(d) > _PREFILTER_MIN:
        xp = g.prefilter
        if xp is None:
            xp = g.prefilter = _prefilter(g)
        return xp(d, **g.prefilter_vars)
    if g.ns is not None:
        return d.iterchildren(g.tag)
    return [c for c in d if isinstance(c.tag, str) and _local(c.tag) == g.local]


def _prefilter(g: _FNode) -> etree.XPath:
    ns: dict[str, str] = {}

    def step(n: _FNode, i: int) -> str:
        if n.ns is None:
            return f"*[local-name()='{n.local}']"
        ns[f"n{i}"] = n.ns
        return f"n{i}:{n.local}"

    preds = []
    for i, cm in enumerate(g.cms, 1):
        g.prefilter_vars[f"v{i}"] = ":" + cm.qname[1] if cm.qname else cm.text
        preds.append(f"[{step(cm, i)}[contains(., $v{i})]]")
    if g.ns is None:  # local-name() is slow in libxml2: test it after the predicates
        expr = "*" + "".join(preds) + f"[local-name()='{g.local}']"
    else:
        expr = step(g, 0) + "".join(preds)
    return etree.XPath(expr, namespaces=ns, regexp=False)


def subtree_filter(
    data: etree._Element, filter_children: Sequence[etree._Element], keys: KeyOracle
) -> etree._Element:
    """A new ``<data>`` tree holding what the subtree filter selects from ``data``."""
    top = _FNode(ns=None, local="", tag="", attrs=(), kind=_CONT)
    _add_children(top, [_compile_filter(c) for c in filter_children if isinstance(c.tag, str)])
    out = _new_root(data)
    if not top.cms and not top.others:
        return out  # empty filter: nothing selected (RFC 6241 §6.4.2)
    sel = _eval(data, top, top=True)
    return out if sel is None or sel is FULL else _output(data, sel, keys)


# --------------------------------------------------------------------------- xpath


def xpath_filter(
    data: etree._Element, select: str, prefixes: dict[str, str], keys: KeyOracle
) -> etree._Element:
    """A new ``<data>`` tree holding the nodes ``select`` picks, with their ancestors."""
    try:
        cx = compile_xpath(select, prefixes, smart_strings=True)
        result = cx.evaluate(data, data)
    except UnknownPrefixError as exc:
        raise RpcError(
            "invalid-value",
            f"XPath filter: unknown namespace prefix '{exc.prefix}' (declare it with xmlns:"
            f"{exc.prefix}=... on the filter element)",
        ) from exc
    except XPathError as exc:
        raise RpcError("invalid-value", f"invalid XPath filter: {exc}") from exc
    if not isinstance(result, list):
        kind = {bool: "a boolean", float: "a number"}.get(type(result), "a string")
        raise RpcError(
            "invalid-value",
            f"XPath filter {select!r} must select a node-set, but it evaluates to {kind}",
        )
    sel: Selection = {}
    for item in result:
        elem = _selected_element(item)
        if elem is None:
            continue
        if elem is data:
            return _deepcopy(data)
        _select_path(data, elem, sel)
    return _output(data, sel, keys)


def _selected_element(item: object) -> etree._Element | None:
    if isinstance(item, etree._Element):
        return item if isinstance(item.tag, str) else None
    if isinstance(item, str) and hasattr(item, "getparent"):  # text or attribute node
        if getattr(item, "is_tail", False):
            return None
        return item.getparent()
    return None  # namespace node


def _select_path(data: etree._Element, elem: etree._Element, sel: Selection) -> None:
    chain = []
    for anc in elem.iterancestors():
        if anc is data:
            break
        chain.append(anc)
    else:
        return  # not inside the datastore
    cur = sel
    for anc in reversed(chain):
        nxt = cur.get(anc)
        if nxt is FULL:
            return
        if nxt is None:
            nxt = cur[anc] = {}
        cur = nxt
    cur[elem] = FULL


# --------------------------------------------------------------------------- output


def _new_root(data: etree._Element) -> etree._Element:
    return etree.Element(data.tag, nsmap=data.nsmap)


def _output(data: etree._Element, sel: Selection, keys: KeyOracle) -> etree._Element:
    tops = [c for c in data if isinstance(c.tag, str)]
    if tops and all(sel.get(c) is FULL for c in tops):
        return _deepcopy(data)  # everything: one C-level copy
    out = _new_root(data)
    _build(data, sel, out, keys, data.nsmap, is_root=True)
    return out


def _deepcopy(c: etree._Element) -> etree._Element:
    cp = c.__deepcopy__(None)  # lxml ignores the memo; skips copy.deepcopy's bookkeeping
    cp.tail = None
    return cp


def _shallow(c: etree._Element, out: etree._Element, parent_nsmap: dict) -> etree._Element:
    """Append a copy of ``c`` without children, re-declaring the namespaces ``c`` declares."""
    own = {p: u for p, u in c.nsmap.items() if parent_nsmap.get(p) != u}
    return etree.SubElement(out, c.tag, attrib=dict(c.attrib), nsmap=own)


def _copy_full(c: etree._Element, out: etree._Element, parent_nsmap: dict) -> None:
    # Moving a big copied subtree into another document costs lxml time quadratic in its
    # namespace declarations (one per identityref leaf, ...): copy large ones piecewise.
    if len(c) > 1 and _COUNT(c) > _SPLIT_MIN:
        o = _shallow(c, out, parent_nsmap)
        o.text = c.text
        c_nsmap = c.nsmap
        for ch in c:
            if isinstance(ch.tag, str):
                _copy_full(ch, o, c_nsmap)
        return
    out.append(_deepcopy(c))


def _build(
    src: etree._Element,
    sel: Selection,
    out: etree._Element,
    keys: KeyOracle,
    src_nsmap: dict,
    is_root: bool = False,
) -> None:
    key_tags: Sequence[str] = () if is_root else keys(src)
    for kt in key_tags:
        k = src.find(kt)
        if k is not None:
            out.append(_deepcopy(k))
    if len(sel) * 4 < len(src):  # few selected: visit only them, in document order
        items: Iterable = sorted(sel.items(), key=lambda kv: src.index(kv[0]))
    else:
        items = ((c, sel.get(c)) for c in src)
    for c, s in items:
        if s is None or c.tag in key_tags:
            continue
        if s is FULL:
            _copy_full(c, out, src_nsmap)
            continue
        o = _shallow(c, out, src_nsmap)
        _build(c, s, o, keys, c.nsmap)
