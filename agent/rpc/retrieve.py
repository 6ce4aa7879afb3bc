"""Building ``<data>`` replies: config and state, filters, with-defaults (RFC 6243)."""

from __future__ import annotations

import copy
from collections.abc import Callable

from lxml import etree

from agent.datastore import defaults
from agent.datastore.filter_hints import (
    NamesWanted,
    names_wanted,
    top_level_wanted,
    xpath_names_wanted,
)
from agent.datastore.filters import parse_filter, subtree_filter, xpath_filter
from agent.datastore.schema import Schema, SchemaNode
from agent.datastore.tree import new_root, schema_of
from agent.protocol.namespaces import NC, WD_ATTR

#: A state provider builds one top-level operational subtree. It gets the list-entry
#: names the request's filter asks for (``None``: all), so that a filtered ``<get>``
#: of one interface among thousands reads only that one.
StateProvider = Callable[[set[str] | None], etree._Element | None]

#: Transient attribute on the leaves with-defaults added to an operational tree (so that
#: origin annotation tells a default in use from a value the system reported).
ADDED_DEFAULT = "nmda-added-default"

class Retriever:
    """Produces the content of a get / get-config reply."""

    def __init__(self, schema: Schema) -> None:
        self.schema = schema
        self.state: dict[str, StateProvider] = {}  # top-level clark -> provider
        self._cache: tuple[etree._Element, bytes] | None = None
        self._hint: NamesWanted | None = None
        self._wanted: set[str] | None = None
        # top-level clark -> (list paths a provider reports completely, their key tags)
        self._complete: dict[str, list[tuple[tuple[str, ...], tuple[tuple[str, ...], ...]]]] = {}
        self._reported: dict[str, set[tuple] | None] = {}  # what those providers last gave
        self._operational = False

    def add_provider(self, clark: str, provider: StateProvider,
                     complete: tuple[tuple[str, ...], ...] = ()) -> None:
        """Register a state provider for a top-level node. Several providers may serve the
        same node (e.g. interfaces from netlink, VRRP state inside them): their subtrees are
        merged by list keys, the earlier provider winning for a leaf both give.

        ``complete``: paths (Clark names below ``clark``) of configuration lists whose
        entries the provider reports exactly as they are in use, for every entry of the
        nearest enclosing list (or the top node) it reports: in ``<operational>`` a
        configured entry it does not report is not in use and is left out (RFC 8342
        §5.3: an interface configured but not present, an address not applied)."""
        if complete:
            paths = [(p, self._key_tags(clark, p)) for p in complete]
            self._complete.setdefault(clark, []).extend(paths)
            inner = provider

            def provider(names: set[str] | None) -> etree._Element | None:
                el = inner(names)
                if self._operational:  # before another provider's state is merged into it
                    self._reported[clark] = None if el is None else _instances(el, paths)
                return el

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

    def _key_tags(self, clark: str, path: tuple[str, ...]) -> tuple[tuple[str, ...], ...]:
        """The key leaves (Clark names) of each node along ``path`` (``()``: not a list)."""
        node: SchemaNode | None = self.schema.root.children.get(clark)
        out = []
        for tag in path:
            node = node.children.get(tag) if node is not None else None
            if node is None:
                raise ValueError(f"no schema node {tag} on the path {path} below {clark}")
            out.append(tuple(node.keys) if node.kind == "list" else ())
        if not out or not out[-1]:
            raise ValueError(f"{path} below {clark} is not a keyed list")
        return tuple(out)

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
        operational: bool = False,
        state_filter: etree._Element | None = None,
        mark_added_defaults: bool = False,
    ) -> bytes:
        """The ``<data>`` of a reply. ``with_state``: running merged with the providers'
        state, configured values winning (``<get>``); with ``operational`` too, as
        ``<operational>`` has it: the values in use win and configured list entries a
        provider reports completely but not now are left out. ``state_filter``: a filter
        applied later by the caller, that only tells which interfaces to read.
        ``mark_added_defaults``: leaves added by report-all get :data:`ADDED_DEFAULT`."""
        kind, spec = parse_filter(filter_elem) if filter_elem is not None else (None, None)
        if not with_state and kind is None and wd_mode == "explicit":
            return self.serialize_config(config)
        if with_state:
            self._state_wanted(kind, spec, state_filter)
            tree = copy.deepcopy(config)
            self._add_state(tree, operational)
        elif wd_mode in ("report-all", "report-all-tagged", "trim"):
            tree = copy.deepcopy(config)
        else:
            tree = config  # filters never mutate their input
        if wd_mode in ("report-all", "report-all-tagged"):
            added = defaults.add_defaults(
                tree, self.schema, config_only=not with_state, mark=wd_mode == "report-all-tagged"
            )
            if mark_added_defaults:
                for el in added:
                    for leaf in el.iter():
                        if not len(leaf):
                            leaf.set(ADDED_DEFAULT, "1")
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

    def _state_wanted(self, kind: str | None, spec, state_filter: etree._Element | None) -> None:
        """Which top-level nodes (``_wanted``) and entries (``_hint``) the filter needs."""
        if state_filter is not None:
            kind, spec = parse_filter(state_filter)
        if kind == "xpath":
            select, prefixes = spec
            self._hint = xpath_names_wanted(select, self._xpath_prefixes(prefixes))
            self._wanted = None if self._hint is None else set(self._hint)
        else:
            self._wanted = top_level_wanted(kind, spec)
            self._hint = names_wanted(kind, spec)

    def _xpath_prefixes(self, prefixes: dict[str, str]) -> dict[str, str]:
        res = {m.name: m.namespace for m in self.schema.modules.values()}
        res.update(prefixes)
        return res

    def _names_hint(self, clark: str) -> set[str] | None:
        """The entry names wanted below ``clark`` (by its Clark or its local name)."""
        if self._hint is None:
            return None
        found = [self._hint[k] for k in (clark, clark.rpartition("}")[2]) if k in self._hint]
        if not found or any(h is None for h in found):
            return None
        return set().union(*found)

    def _add_state(self, tree: etree._Element, operational: bool = False) -> None:
        wanted = self._wanted
        self._operational = operational
        try:
            for clark, provider in self.state.items():
                if wanted is not None and not wanted & {clark, clark.rpartition("}")[2], "*"}:
                    continue
                self._reported.pop(clark, None)
                el = provider(self._names_hint(clark))
                if el is None:
                    continue
                existing = tree.find(clark)
                if existing is None:
                    tree.append(el)
                    existing = el
                else:
                    merge_state(existing, el, self, prefer_state=operational)
                reported = self._reported.pop(clark, None)
                if operational and reported is not None:
                    for path, key_tags in self._complete[clark]:
                        _prune(existing, path, key_tags, reported)
        finally:
            self._operational = False


def _ident(el: etree._Element, keys: tuple[str, ...]) -> tuple:
    return (el.tag, *((el.findtext(k) or "").strip() for k in keys))


def _instances(top: etree._Element,
               paths: list[tuple[tuple[str, ...], tuple[tuple[str, ...], ...]]]) -> set[tuple]:
    """Identities (the chain of ``(tag, *keys)`` from ``top``) of every node along
    ``paths`` in a provider's subtree."""
    out: set[tuple] = set()
    for path, key_tags in paths:
        frontier: list[tuple[etree._Element, tuple]] = [(top, ())]
        for tag, keys in zip(path, key_tags, strict=True):
            frontier = [(c, chain + (_ident(c, keys),))
                        for node, chain in frontier for c in node.iterfind(tag)]
            out.update(chain for _, chain in frontier)
    return out


def _prune(top: etree._Element, path: tuple[str, ...], key_tags: tuple[tuple[str, ...], ...],
           reported: set[tuple]) -> None:
    """Remove the entries along ``path`` that ``reported`` lacks, where it has the entry of
    the nearest enclosing list (or where that is the top node)."""
    anchor = max((i + 1 for i, k in enumerate(key_tags[:-1]) if k), default=0)
    frontier: list[tuple[etree._Element, tuple]] = [(top, ())]
    for depth, (tag, keys) in enumerate(zip(path, key_tags, strict=True)):
        last = depth == len(path) - 1
        nxt = []
        for node, chain in frontier:
            if last and chain[:anchor] != () and chain[:anchor] not in reported:
                continue  # the enclosing entry is not reported: nothing to judge
            for c in list(node.iterfind(tag)):
                ch = chain + (_ident(c, keys),)
                if last and ch not in reported:
                    node.remove(c)
                else:
                    nxt.append((c, ch))
        frontier = nxt


def merge_state(cfg: etree._Element, state: etree._Element, r: Retriever,
                prefer_state: bool = False) -> None:
    """Merge an operational subtree into the config subtree of the same node (by list keys).
    For a leaf (or leaf-list) both have, the configured value stays; with ``prefer_state``
    the state's replaces it (``<operational>``: the value in use)."""
    index: dict[tuple[str, tuple], etree._Element] = {}
    indexed: set[str] = set()
    # leaves (and leaf-lists) the config has: tags appended below from state don't count,
    # or a state leaf-list would keep only its first entry
    cfg_leaves = {c.tag for c in cfg if isinstance(c.tag, str) and not len(c)}
    last_of: dict[str, etree._Element] = {}  # prefer_state: where a tag's values go
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
            if not prefer_state:
                continue  # the configured value wins for a leaf present in both
            prev = last_of.get(sc.tag)
            if prev is None:  # the first value of the tag takes the configured ones' place
                olds = cfg.findall(sc.tag)
                olds[0].addprevious(sc)
                for o in olds:
                    cfg.remove(o)
            else:
                prev.addnext(sc)
            last_of[sc.tag] = sc
            continue
        if match is None:
            cfg.append(sc)
        else:
            merge_state(match, sc, r, prefer_state)


def _declare_wd(out: etree._Element) -> etree._Element:
    """Put the wd: prefix declaration on the data element (report-all-tagged)."""
    if WD_ATTR in out.nsmap.values():
        return out
    new = etree.Element(out.tag, nsmap={None: NC, "wd": WD_ATTR})
    new.extend(list(out) if out is not None else [])
    return new


def empty_data() -> etree._Element:
    return new_root()
