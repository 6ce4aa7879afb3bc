"""Default values (RFC 7950 §7.6.1, §7.9.3) and with-defaults modes (RFC 6243).

The datastores hold only what was set explicitly ("explicit" basic mode).
:func:`add_defaults` fills in defaults in place and returns what it added, so
validation can see them and take them out again, and ``report-all`` /
``report-all-tagged`` retrievals can show them.
"""

from __future__ import annotations

from lxml import etree

from agent.datastore.schema import Schema, SchemaNode
from agent.datastore.tree import element, insert_child, make_leaf
from agent.protocol.namespaces import WD_ATTR

DEFAULT_ATTR = f"{{{WD_ATTR}}}default"


def when_ok(snode: SchemaNode, el: etree._Element, parent: etree._Element, root) -> bool:
    """All ``when`` conditions of ``snode`` (incl. its choice/case) hold for element ``el``."""
    for c in snode.when:
        ctx = parent if c.on_parent else el
        if not c.compiled.boolean(ctx, root, current=ctx):
            return False
    chain = snode.case_of
    while chain is not None:
        choice, case = chain
        for c in choice.when:
            if not c.compiled.boolean(parent, root, current=parent):
                return False
        for c in choice.case_when.get(case, ()):
            if not c.compiled.boolean(parent, root, current=parent):
                return False
        chain = choice.parent_case
    return True


def active_cases(snode: SchemaNode, el: etree._Element) -> set[tuple[int, str]]:
    """(id(choice), case) pairs active under ``el``: the case with data, else the default case."""
    active: set[tuple[int, str]] = set()
    if not snode.choices:
        return active
    present = {c.tag for c in el}
    for choice in snode.choices:
        chosen = None
        for case, members in choice.cases.items():
            if members & present:
                chosen = case
                break
        if chosen is None:
            chosen = choice.default_case
        if chosen is not None:
            active.add((id(choice), chosen))
    return active


def _case_allowed(snode: SchemaNode, active: set[tuple[int, str]]) -> bool:
    c = snode.case_of
    while c is not None:
        if (id(c[0]), c[1]) not in active:
            return False
        c = c[0].parent_case
    return True


def _default_children(snode: SchemaNode, config_only: bool) -> list[SchemaNode]:
    """Children of ``snode`` that can receive defaults (cached per schema node)."""
    key = "_dflt_cfg" if config_only else "_dflt_all"
    cached = snode.__dict__.get(key)
    if cached is not None:
        return cached
    out = []
    for cs in snode.children.values():
        if config_only and not cs.config:
            continue
        if cs.kind == "leaf" and cs.default is not None:
            out.append(cs)
        elif cs.kind == "leaf-list" and cs.defaults:
            out.append(cs)
        elif cs.kind == "container" and not cs.presence and _needs_visit(cs, config_only):
            out.append(cs)
    snode.__dict__[key] = out
    return out


default_children = _default_children


def _needs_visit(snode: SchemaNode, config_only: bool) -> bool:
    """True when a non-presence container holds defaults or mandatory nodes below it."""
    for cs in snode.children.values():
        if config_only and not cs.config:
            continue
        if cs.kind == "leaf" and (cs.default is not None or cs.mandatory):
            return True
        if cs.kind == "leaf-list" and (cs.defaults or cs.min_elements):
            return True
        if cs.kind == "list" and cs.min_elements:
            return True
        if cs.kind == "container" and not cs.presence and _needs_visit(cs, config_only):
            return True
    return any(c.mandatory for c in snode.choices)


def add_defaults(
    root: etree._Element,
    schema: Schema,
    *,
    config_only: bool,
    keep_empty: bool = False,
    mark: bool = False,
    start: tuple[etree._Element, SchemaNode] | None = None,
) -> list[etree._Element]:
    """Add default leafs (and the non-presence containers holding them) in place.

    Returns the added elements whose parents were already present (removing
    those removes everything that was added). With ``keep_empty`` the
    non-presence containers are kept even when no default lands in them
    (validation uses that to reach mandatory nodes below them). With ``mark``
    the added leafs get ``wd:default="true"`` (report-all-tagged). ``start``
    (element, its schema node): fill only that subtree (incremental validation).
    """
    added: list[etree._Element] = []
    if mark:
        # report-all-tagged also tags explicit values that equal the default
        _tag_explicit_defaults(root, schema.root)

    def walk(el: etree._Element, snode: SchemaNode, top: list[etree._Element] | None) -> bool:
        """Fill ``el``; returns True when something was added below it."""
        any_added = False
        active = active_cases(snode, el) if snode.choices else set()
        for child in el:
            cs = snode.children.get(child.tag) if isinstance(child.tag, str) else None
            if cs is not None and cs.kind in ("container", "list"):
                if config_only and not cs.config:
                    continue
                if walk(child, cs, None):
                    any_added = True
        for cs in _default_children(snode, config_only):
            clark = cs.clark
            if cs.case_of is not None and not _case_allowed(cs, active):
                continue
            if cs.kind == "leaf" and cs.default is not None:
                if el.find(clark) is not None:
                    continue
                new = make_leaf(schema, cs, cs.default)
                insert_child(el, new, cs)
                if not when_ok(cs, new, el, root):
                    el.remove(new)
                    continue
                if mark:
                    new.set(DEFAULT_ATTR, "true")
                (top if top is not None else added).append(new)
                any_added = True
            elif cs.kind == "leaf-list" and cs.defaults:
                if el.find(clark) is not None:
                    continue
                news = []
                for d in cs.defaults:
                    new = make_leaf(schema, cs, d)
                    insert_child(el, new, cs)
                    news.append(new)
                if not when_ok(cs, news[0], el, root):
                    for n in news:
                        el.remove(n)
                    continue
                for n in news:
                    if mark:
                        n.set(DEFAULT_ATTR, "true")
                    (top if top is not None else added).append(n)
                any_added = True
            elif cs.kind == "container" and not cs.presence:
                if el.find(clark) is not None:
                    continue
                new = element(cs)
                insert_child(el, new, cs)
                if not when_ok(cs, new, el, root):
                    el.remove(new)
                    continue
                inner: list[etree._Element] = []
                got = walk(new, cs, inner)
                if got or keep_empty:
                    (top if top is not None else added).append(new)
                    any_added = True
                else:
                    el.remove(new)
        return any_added

    el0, s0 = start if start is not None else (root, schema.root)
    walk(el0, s0, None)
    return added


def _tag_explicit_defaults(el: etree._Element, snode: SchemaNode) -> None:
    for child in el:
        if not isinstance(child.tag, str):
            continue
        cs = snode.children.get(child.tag)
        if cs is None:
            continue
        if cs.kind == "leaf" and cs.default is not None and (child.text or "") == cs.default:
            child.set(DEFAULT_ATTR, "true")
        elif cs.kind in ("container", "list"):
            _tag_explicit_defaults(child, cs)


def remove(added: list[etree._Element]) -> None:
    for e in added:
        p = e.getparent()
        if p is not None:
            p.remove(e)


def trim(el: etree._Element, snode: SchemaNode) -> None:
    """with-defaults trim: drop leafs whose value equals their default."""
    for child in list(el):
        if not isinstance(child.tag, str):
            continue
        cs = snode.children.get(child.tag)
        if cs is None:
            continue
        if cs.kind == "leaf" and cs.default is not None and (child.text or "") == cs.default:
            el.remove(child)
        elif cs.kind in ("container", "list"):
            trim(child, cs)
