"""Building ``<data>`` replies: config and state, filters, with-defaults (RFC 6243)."""

from __future__ import annotations

import copy
from collections.abc import Callable

from lxml import etree

from agent.datastore import defaults
from agent.datastore.filters import parse_filter, subtree_filter, xpath_filter
from agent.datastore.schema import Schema
from agent.datastore.tree import new_root, schema_of
from agent.protocol.namespaces import NC, WD_ATTR

#: A state provider builds one top-level operational subtree. It gets the list-entry
#: names the request's filter asks for (``None``: all), so that a filtered ``<get>``
#: of one interface among thousands reads only that one.
StateProvider = Callable[[set[str] | None], etree._Element | None]


class Retriever:
    """Produces the content of a get / get-config reply."""

    def __init__(self, schema: Schema) -> None:
        self.schema = schema
        self.state: dict[str, StateProvider] = {}  # top-level clark -> provider
        self._cache: tuple[etree._Element, bytes] | None = None
        self._hint: dict[str, set[str]] | None = None

    def add_provider(self, clark: str, provider: StateProvider) -> None:
        """Register a state provider for a top-level node. Several providers may serve the
        same node (e.g. interfaces from netlink, VRRP state inside them): their subtrees are
        merged by list keys, the earlier provider winning for a leaf both give."""
        first = self.state.get(clark)
        if first is None:
            self.state[clark] = provider
            return

        def both(names: set[str] | None) -> etree._Element | None:
            a, b = first(names), provider(names)
            if a is None or b is None:
                return a if b is None else b
            merge_state(a, b, self)
            return a

        self.state[clark] = both

    def keys_of(self, elem: etree._Element) -> list[str]:
        s = schema_of(self.schema, elem)
        return list(s.keys) if s is not None and s.kind == "list" else []

    def serialize_config(self, tree: etree._Element) -> bytes:
        """Serialized unfiltered config, cached per tree object (trees are replaced, not edited)."""
        c = self._cache
        if c is not None and c[0] is tree:
            return c[1]
        data = etree.tostring(tree)
        self._cache = (tree, data)
        return data

    def retrieve(
        self,
        config: etree._Element,
        *,
        with_state: bool,
        filter_elem: etree._Element | None,
        wd_mode: str,
    ) -> bytes:
        kind, spec = parse_filter(filter_elem) if filter_elem is not None else (None, None)
        if not with_state and kind is None and wd_mode == "explicit":
            return self.serialize_config(config)
        wanted = _top_level_wanted(kind, spec)
        self._hint = _names_wanted(kind, spec)
        if with_state:
            tree = copy.deepcopy(config)
            self._add_state(tree, wanted)
        elif wd_mode in ("report-all", "report-all-tagged", "trim"):
            tree = copy.deepcopy(config)
        else:
            tree = config  # filters never mutate their input
        if wd_mode in ("report-all", "report-all-tagged"):
            defaults.add_defaults(
                tree, self.schema, config_only=not with_state, mark=wd_mode == "report-all-tagged"
            )
        elif wd_mode == "trim":
            defaults.trim(tree, self.schema.root)
        if kind == "subtree":
            out = subtree_filter(tree, spec, self.keys_of)
        elif kind == "xpath":
            select, prefixes = spec
            out = xpath_filter(tree, select, self._xpath_prefixes(prefixes), self.keys_of)
        else:
            out = tree
        if wd_mode == "report-all-tagged":
            out = _declare_wd(out)
        return etree.tostring(out)

    def _xpath_prefixes(self, prefixes: dict[str, str]) -> dict[str, str]:
        res = {m.name: m.namespace for m in self.schema.modules.values()}
        res.update(prefixes)
        return res

    def _names_hint(self, clark: str) -> set[str] | None:
        if self._hint is None:
            return None
        hint = self._hint.get(clark)
        return hint if hint is not None else self._hint.get(clark.rpartition("}")[2])

    def _add_state(self, tree: etree._Element, wanted: set[str] | None) -> None:
        for clark, provider in self.state.items():
            if wanted is not None and clark not in wanted and "*" not in wanted:
                continue
            el = provider(self._names_hint(clark))
            if el is None:
                continue
            existing = tree.find(clark)
            if existing is None:
                tree.append(el)
            else:
                merge_state(existing, el, self)


def merge_state(cfg: etree._Element, state: etree._Element, r: Retriever) -> None:
    """Merge an operational subtree into the config subtree of the same node (by list keys)."""
    index: dict[tuple[str, tuple], etree._Element] = {}
    indexed: set[str] = set()
    # leaves (and leaf-lists) the config has: tags appended below from state don't count,
    # or a state leaf-list would keep only its first entry
    cfg_leaves = {c.tag for c in cfg if isinstance(c.tag, str) and not len(c)}
    for sc in state:
        if not isinstance(sc.tag, str):
            continue
        ks = r.keys_of(sc) if len(sc) else []
        match = None
        if ks:
            if sc.tag not in indexed:  # one pass over the config entries per list
                indexed.add(sc.tag)
                for cc in cfg.iterfind(sc.tag):
                    index[(sc.tag, tuple(cc.findtext(k) for k in ks))] = cc
            match = index.get((sc.tag, tuple(sc.findtext(k) for k in ks)))
        elif len(sc):
            match = cfg.find(sc.tag)
        elif sc.tag in cfg_leaves:
            continue  # the configured value wins for a leaf present in both
        if match is None:
            cfg.append(sc)
        else:
            merge_state(match, sc, r)


def _top_level_wanted(kind: str | None, spec) -> set[str] | None:
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


def _names_wanted(kind: str | None, spec) -> dict[str, set[str]] | None:
    """For a subtree filter whose top-level list entries all select by their ``name`` key
    (``<interfaces><interface><name>eth0</name>…``): top-level clark → those names."""
    if kind != "subtree":
        return None
    out: dict[str, set[str]] = {}
    for top in spec:
        if not isinstance(top.tag, str):
            continue
        names: set[str] = set()
        entries = [e for e in top if isinstance(e.tag, str)]
        if not entries:
            continue  # whole subtree wanted
        for entry in entries:
            name = next((c for c in entry if isinstance(c.tag, str)
                         and etree.QName(c).localname == "name" and len(c) == 0
                         and (c.text or "").strip()), None)
            if name is None:
                break
            names.add(name.text.strip())
        else:
            q = etree.QName(top)
            out[top.tag if q.namespace and q.namespace != NC else q.localname] = names
    return out


def _declare_wd(out: etree._Element) -> etree._Element:
    """Put the wd: prefix declaration on the data element (report-all-tagged)."""
    if WD_ATTR in out.nsmap.values():
        return out
    new = etree.Element(out.tag, nsmap={None: NC, "wd": WD_ATTR})
    new.extend(list(out) if out is not None else [])
    return new


def empty_data() -> etree._Element:
    return new_root()
