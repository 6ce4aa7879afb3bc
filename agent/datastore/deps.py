"""What each YANG constraint may depend on, for incremental validation.

For every XPath constraint of the schema (``must``, ``when``, choice/case ``when``,
leafref ``path``) the expression's tokens give, conservatively and by *name*:

* ``names``: every element name a location step tests (so a node not named there can
  only influence the result through the string value of an unnamed ``.``/``..``/``*``);
* ``values``: the names whose string value the result may use (the last step of a
  path, unless the whole expression is one path tested for existence).

An expression with an unnamed value step (``.``, ``..``, ``*``, ``node()``, ``text()``
at the end of a path), ``deref()`` or ``id()`` is *global*: it may depend on anything.

A change at schema node X (an X element created, deleted or given a new value)
can alter the expression only if it names X or a node below X (their existence or
value changed), or uses the value of an ancestor of X (whose string value changed).
:func:`affected_owners` gives, per changed schema node, the schema nodes whose
constraints must be evaluated again on all their instances.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from agent.datastore import defaults
from agent.datastore.schema import Cond, Schema, SchemaNode
from agent.datastore.xpath import XPathError, tokenize

_TRAVERSE = ("/", "//")
_GLOBAL_FUNCS = frozenset({"deref", "id"})
_LOCAL_AXES = frozenset({"child", "descendant", "descendant-or-self", "self", "attribute"})
_OPERAND_START = frozenset({"@", "::", "(", "[", ","})


@dataclass(eq=False)
class Deps:
    names: frozenset[str] = frozenset()
    values: frozenset[str] = frozenset()
    is_global: bool = False
    #: how many levels above its context node the expression may read (``..`` steps);
    #: None: anywhere (absolute paths, reverse axes)
    up: int | None = None

    def touches(self, x: SchemaNode, below: frozenset[str], above: frozenset[str]) -> bool:
        """May a change at ``x`` (names ``below`` = x and its descendants, ``above`` =
        its ancestors) alter this expression's result?"""
        return self.is_global or bool(self.names & below) or bool(self.values & above)


def expr_deps(
    expr: str, prefixes: dict[str, str], default_prefix: str, context: str | None,
    *, boolean: bool,
) -> Deps:
    """Dependencies of one expression; ``context`` is the clark name ``current()`` (and a
    leading ``.``) stands for; ``boolean``: the result is only tested for truth."""
    try:
        toks = tokenize(expr)
    except XPathError:
        return Deps(is_global=True)
    names: set[str] = set()
    finals: list[tuple[int, str]] = []  # (bracket depth, clark) of last steps
    depth = 0
    top_single_path = True  # depth 0 holds one location path only
    up: int | None = 0
    n = len(toks)

    def next_after_predicates(i: int) -> str | None:
        j, d = i + 1, 0
        while j < n:
            t = toks[j].text
            if t == "[":
                d += 1
            elif t == "]":
                d -= 1
            elif d == 0:
                return t
            j += 1
        return None

    for i, t in enumerate(toks):
        if t.kind == "punct" and t.text in ("(", "["):
            depth += 1
            continue
        if t.kind == "punct" and t.text in (")", "]"):
            depth -= 1
            continue
        if depth == 0 and (t.kind in ("lit", "num", "func") or (
                t.kind == "op" and t.text not in _TRAVERSE)):
            top_single_path = False
        if t.kind == "nodetype":
            return Deps(is_global=True)
        if t.kind == "op" and t.text in _TRAVERSE and (
                i == 0 or toks[i - 1].kind == "op" or toks[i - 1].text in _OPERAND_START):
            up = None  # an absolute path
        if t.kind == "axis" and t.text not in _LOCAL_AXES:
            up = None
        if t.text == ".." and t.kind == "punct" and up is not None:
            up += 1
        if t.kind == "func":
            if t.text in _GLOBAL_FUNCS:
                return Deps(is_global=True)
            if t.text == "current":
                nxt = toks[i + 3].text if i + 3 < n else None
                if nxt not in _TRAVERSE and context is not None:
                    names.add(context)
                    finals.append((depth, context))
                elif nxt not in _TRAVERSE:
                    return Deps(is_global=True)
            continue
        if t.kind == "punct" and t.text in (".", ".."):
            if next_after_predicates(i) not in _TRAVERSE:
                if t.text == "." and i == 0 and context is not None:
                    names.add(context)
                    finals.append((depth, context))
                else:
                    return Deps(is_global=True)
            continue
        if t.kind != "name":
            continue
        prev = toks[i - 1].text if i else None
        if prev == "@" or (prev == "::" and i > 1 and toks[i - 2].text in ("attribute",
                                                                          "namespace")):
            continue  # attributes: none in instance data
        text = t.text
        if text == "*" or text.endswith(":*"):
            return Deps(is_global=True)
        prefix, _, local = text.rpartition(":")
        ns = prefixes.get(prefix or default_prefix)
        if ns is None:
            return Deps(is_global=True)
        clark = f"{{{ns}}}{local}"
        names.add(clark)
        if next_after_predicates(i) not in _TRAVERSE:
            finals.append((depth, clark))
    values = {c for d, c in finals if not (boolean and top_single_path and d == 0)}
    return Deps(frozenset(names), frozenset(values), up=up)


def _anchor(context: SchemaNode, up: int | None) -> SchemaNode | None:
    """The schema node ``up`` levels above ``context`` (None: the root or unbounded)."""
    if up is None:
        return None
    n: SchemaNode | None = context
    for _ in range(up):
        n = n.parent if n is not None else None
    return n if n is not None and n.kind != "root" else None


@dataclass(eq=False)
class Dep:
    kind: str  # when, must, leafref, choice
    deps: Deps
    #: the expression reads only inside instances of this node (None: anywhere)
    anchor: SchemaNode | None


@dataclass(eq=False)
class SchemaDeps:
    """Per-schema dependency tables (built once, cached on the schema)."""

    schema: Schema
    #: constraint owner → dependencies of its when/must/leafref
    owners: dict[SchemaNode, list[Dep]] = field(default_factory=dict)
    #: owners whose constraints decide more than their own instances (a mandatory choice's
    #: condition, a mandatory / min-elements / non-presence node under a when)
    unsafe: set[SchemaNode] = field(default_factory=set)
    #: clark names of nodes that validation's default filling may add
    defaultable: set[str] = field(default_factory=set)
    #: some constraint may read a node that default filling adds: never incremental
    needs_defaults: bool = False
    _memo: dict[int, list[tuple[SchemaNode, SchemaNode | None]] | None] = field(
        default_factory=dict)

    @classmethod
    def of(cls, schema: Schema) -> SchemaDeps:
        d = schema.__dict__.get("_deps")
        if d is None:
            d = cls(schema)
            d._defaultables(schema.root)
            d._build(schema.root)
            d.needs_defaults = any(
                dep.deps.is_global or dep.deps.names & d.defaultable
                for deps in d.owners.values() for dep in deps
            )
            schema.__dict__["_deps"] = d
        return d

    def _cond(self, kind: str, c: Cond, context: SchemaNode) -> Dep:
        d = expr_deps(c.expr, c.prefixes, c.default_prefix, context.clark, boolean=True)
        return Dep(kind, d, _anchor(context, d.up))

    def _defaultables(self, snode: SchemaNode) -> None:
        for cs in defaults.default_children(snode, True):
            self.defaultable.add(cs.clark)
        for cs in snode.children.values():
            if cs.config and cs.kind in ("container", "list"):
                self._defaultables(cs)

    def _build(self, snode: SchemaNode) -> None:
        for choice in snode.choices:
            if choice.when and choice.mandatory:
                self.unsafe.add(snode)
                self.owners.setdefault(snode, []).extend(
                    self._cond("choice", c, snode) for c in choice.when)
        for cs in snode.children.values():
            if not cs.config:
                continue
            deps: list[Dep] = []
            for c in cs.when:
                deps.append(self._cond("when", c, snode if c.on_parent else cs))
            chain = cs.case_of
            while chain is not None:
                choice, case = chain
                for c in [*choice.when, *choice.case_when.get(case, ())]:
                    deps.append(self._cond("when", c, snode))
                chain = choice.parent_case
            for c in cs.must:
                deps.append(self._cond("must", c, cs))
            t = cs.type
            if t is not None and t.leafref_path and t.require_instance:
                mod = t.leafref_module
                d = expr_deps(t.leafref_path, self.schema.prefixes_of(mod),
                              mod.search_one("prefix").arg, cs.clark, boolean=False)
                deps.append(Dep("leafref", d, _anchor(cs, d.up)))
            if deps:
                self.owners[cs] = deps
                has_when = any(d.kind == "when" for d in deps)
                if has_when and (cs.mandatory or cs.min_elements or (
                        cs.kind == "container" and not cs.presence)):
                    self.unsafe.add(cs)
            if cs.kind in ("container", "list"):
                self._build(cs)

    def affected(self, x: SchemaNode) -> list[tuple[SchemaNode, SchemaNode | None]] | None:
        """What a change at ``x`` may alter: ``(owner, anchor)`` pairs. With an anchor,
        only the owner's instances inside the anchor instances enclosing the change
        (validate those anchors' subtrees); without, every instance of the owner.
        None: anything (validate the whole datastore)."""
        key = id(x)
        if key in self._memo:
            return self._memo[key]
        below = {x.clark}
        stack = [x]
        while stack:
            n = stack.pop()
            for c in n.children.values():
                below.add(c.clark)
                stack.append(c)
        above = set()
        p = x.parent
        while p is not None and p.kind != "root":
            above.add(p.clark)
            p = p.parent
        fb, fa = frozenset(below), frozenset(above)
        out: list[tuple[SchemaNode, SchemaNode | None]] | None = []
        for owner, deps in self.owners.items():
            hit = [d for d in deps if d.deps.touches(x, fb, fa)]
            if not hit:
                continue
            anchors = {d.anchor for d in hit}
            if None in anchors and owner in self.unsafe:
                out = None
                break
            for a in anchors:
                out.append((owner, a))
        self._memo[key] = out
        return out
