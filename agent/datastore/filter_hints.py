"""What a filter can select, proved from its form alone: the top-level nodes and the
list-entry names (``<interface><name>``) a subtree or XPath filter asks for, so that state
providers read only those (a filtered ``<get>`` of one interface among thousands reads that
one link). Conservative: a form that cannot be bounded means "everything"."""

from __future__ import annotations

from lxml import etree

from agent.datastore.xpath import Token, XPathError, tokenize
from agent.protocol.namespaces import NC

#: Names wanted per top-level node: Clark name, or local name for a filter matching any
#: namespace → the list-entry names (``None``: every entry).
NamesWanted = dict[str, set[str] | None]


def top_level_wanted(kind: str | None, spec) -> set[str] | None:
    if kind != "subtree":
        return None
    out: set[str] = set()
    for f in spec:
        if not isinstance(f.tag, str):
            continue
        q = etree.QName(f)
        # no namespace, or the base one inherited from <rpc>: the filter matches any namespace
        out.add(f.tag if q.namespace and q.namespace != NC else "*")
    return out


def names_wanted(kind: str | None, spec) -> NamesWanted | None:
    """For a subtree filter whose top-level list entries all select by their ``name`` key
    (``<interfaces><interface><name>eth0</name>…``): top-level clark → those names
    (``None``: the filter wants every entry). Sibling filters for one node are united."""
    if kind != "subtree":
        return None
    out: NamesWanted = {}
    for top in spec:
        if not isinstance(top.tag, str):
            continue
        names: set[str] | None = set()
        entries = [e for e in top if isinstance(e.tag, str)]
        if not entries:
            names = None  # whole subtree wanted
        for entry in entries:
            name = next((c for c in entry if isinstance(c.tag, str)
                         and etree.QName(c).localname == "name" and len(c) == 0
                         and (c.text or "").strip()), None)
            if name is None:
                names = None
                break
            names.add(name.text.strip())
        q = etree.QName(top)
        key = top.tag if q.namespace and q.namespace != NC else q.localname
        _unite(out, key, names)
    return out


def _unite(out: NamesWanted, key: str, names: set[str] | None) -> None:
    if key not in out:
        out[key] = names
    elif out[key] is not None:
        out[key] = None if names is None else out[key] | names


# --------------------------------------------------------------------------- XPath hints


class _NotSimple(Exception):
    """The expression is not one of the forms whose selection can be bounded."""


_CMP = frozenset({"=", "!=", "<", "<=", ">", ">="})


def xpath_names_wanted(select: str, prefixes: dict[str, str]) -> NamesWanted | None:
    """Which top-level nodes and list entries an XPath filter can select, when that can be
    proved from its form; ``None`` otherwise (read everything).

    Proved forms: a union (``|``) of absolute location paths of child steps
    ``/top/list[p]…/child[p]…`` where a predicate of the list step restricts ``name``
    to literals (``name='a'``, ``… or name='b'``, ``(…) and …``): the entries of
    ``list`` named so (a path without one: every entry; a path of the top only: the whole
    node). Every predicate must be of a small grammar that looks only inside the node
    it filters and can't be a number: ``and``/``or``/``not()``/parentheses over
    comparisons and existence tests of relative child paths (no ``..``, no absolute
    paths, no functions, no positions — those could see other entries or count them)."""
    try:
        toks = tokenize(select)
    except XPathError:
        return None
    p = _XPathHint(toks, prefixes)
    try:
        out = p.union()
    except _NotSimple:
        return None
    return out


class _XPathHint:
    def __init__(self, toks: list[Token], prefixes: dict[str, str]) -> None:
        self.toks = toks
        self.i = 0
        self.prefixes = prefixes

    # tokens
    def peek(self, k: int = 0) -> Token | None:
        j = self.i + k
        return self.toks[j] if j < len(self.toks) else None

    def at(self, text: str, kind: str | None = None, k: int = 0) -> bool:
        t = self.peek(k)
        return t is not None and t.text == text and (kind is None or t.kind == kind)

    def take(self, text: str, kind: str | None = None) -> None:
        if not self.at(text, kind):
            raise _NotSimple
        self.i += 1

    def name(self, wildcard: bool) -> tuple[str | None, str]:
        """A name test: (namespace or None when unprefixed, local name)."""
        t = self.peek()
        if t is None or t.kind != "name" or (not wildcard and t.text.endswith("*")):
            raise _NotSimple
        self.i += 1
        prefix, _, local = t.text.rpartition(":")
        if not prefix:
            return None, local
        ns = self.prefixes.get(prefix)
        if ns is None:
            raise _NotSimple  # the filter reports the unknown prefix
        return ns, local

    # grammar
    def union(self) -> NamesWanted:
        out: NamesWanted = {}
        while True:
            key, names = self.path()
            _unite(out, key, names)
            if self.peek() is None:
                return out
            self.take("|", "op")

    def path(self) -> tuple[str, set[str] | None]:
        self.take("/", "op")
        ns, local = self.name(wildcard=False)
        key = local if ns is None else f"{{{ns}}}{local}"
        if not self.at("/", "op"):
            return key, None  # the whole top-level node
        self.take("/", "op")
        list_ns, _ = self.name(wildcard=False)
        names: set[str] | None = None
        while self.at("[", "punct"):
            got = self.predicate(list_ns)
            if got is not None:
                names = got if names is None else names & got
        while self.at("/", "op"):  # further child steps only narrow the selection
            self.i += 1
            if self.at("@", "punct"):
                self.i += 1
                self.name(wildcard=True)
            elif self.peek() is not None and self.peek().kind == "nodetype":
                if self.peek().text not in ("text", "node"):
                    raise _NotSimple
                self.i += 1
                self.take("(")
                self.take(")")
            else:
                self.name(wildcard=True)
                while self.at("[", "punct"):
                    self.predicate(None)
        return key, names

    def predicate(self, list_ns: str | None) -> set[str] | None:
        self.take("[", "punct")
        names = self.or_expr(list_ns)
        self.take("]", "punct")
        return names

    def or_expr(self, list_ns: str | None) -> set[str] | None:
        parts = [self.and_expr(list_ns)]
        while self.at("or", "op"):
            self.i += 1
            parts.append(self.and_expr(list_ns))
        if len(parts) == 1:
            return parts[0]
        return None if any(p is None for p in parts) else set().union(*parts)

    def and_expr(self, list_ns: str | None) -> set[str] | None:
        names = self.unary(list_ns)
        while self.at("and", "op"):
            self.i += 1
            got = self.unary(list_ns)
            if got is not None:
                names = got if names is None else names & got
        return names

    def unary(self, list_ns: str | None) -> set[str] | None:
        if self.at("(", "punct"):
            self.i += 1
            names = self.or_expr(list_ns)
            self.take(")", "punct")
            return names
        if self.at("not", "func"):
            self.i += 1
            self.take("(", "punct")
            self.or_expr(list_ns)
            self.take(")", "punct")
            return None  # a negation restricts nothing
        left = self.operand()
        t = self.peek()
        if t is None or t.kind != "op" or t.text not in _CMP:
            if left[0] != "path":
                raise _NotSimple  # a bare number would be a position
            return None
        self.i += 1
        right = self.operand()
        if t.text != "=":
            return None
        for a, b in ((left, right), (right, left)):
            if a[0] == "path" and b[0] == "lit" and len(a[1]) == 1:
                ns, local = a[1][0]
                if local == "name" and (ns is None or list_ns is None or ns == list_ns):
                    return {b[1]}
        return None

    def operand(self) -> tuple:
        t = self.peek()
        if t is None:
            raise _NotSimple
        if t.kind == "lit":
            self.i += 1
            return ("lit", t.text[1:-1])
        if t.kind == "num":
            self.i += 1
            return ("num", t.text)
        steps = []
        while True:
            if self.at(".", "punct"):
                self.i += 1
                steps.append((None, "."))
            elif self.at("@", "punct"):
                self.i += 1
                steps.append((None, "@" + self.name(wildcard=True)[1]))
            else:
                steps.append(self.name(wildcard=True))
            if not self.at("/", "op"):
                return ("path", steps)
            self.i += 1
