"""The YANG schema, compiled once from pyang into a compact tree used everywhere.

pyang parses and resolves the modules (uses, augments, typedefs, features);
this module keeps only what instance-data processing needs: for each data
node its kind, namespace, config flag, keys, type checker, default,
constraints (mandatory, min/max-elements, unique, when, must) and choice
membership. Data nodes inside ``choice``/``case`` are flattened into their
data parent, remembering the (choice, case) chain.
"""

from __future__ import annotations

import os
import site
import sys
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from pyang import context as pyang_context
from pyang import repository as pyang_repository

from agent.datastore.yangtypes import IdentityTable, LeafType, compile_type

PROJECT_YANG_DIR = Path(__file__).resolve().parent.parent.parent / "yang"

#: Modules the agent implements, with the features it supports.
IMPLEMENTED: dict[str, list[str]] = {
    "ietf-interfaces": ["if-mib"],
    "ietf-ip": ["ipv4-non-contiguous-netmasks", "ipv6-privacy-autoconf"],
    "ietf-vrrp": ["validate-interval-errors", "validate-address-list-errors"],
    "iana-if-type": [],
    "netconf-vrrp-agent-macvlan": [],
    "ietf-netconf": ["writable-running", "candidate", "rollback-on-error", "validate",
                     "startup", "xpath"],
    "ietf-netconf-with-defaults": [],
    "ietf-netconf-monitoring": [],
    "ietf-netconf-notifications": [],  # RFC 6470 events: agent/rpc/notifications.py
    "ietf-yang-library": [],
    "ietf-datastores": [],
    # RFC 8526 (agent/rpc/nmda.py): get-data with with-defaults and the origin annotation
    "ietf-netconf-nmda": ["origin", "with-defaults"],
    "ietf-origin": [],
}


def standard_module_dirs() -> list[Path]:
    """Directories where the pyang distribution installed the IETF/IANA modules."""
    prefixes = [sys.prefix, sys.base_prefix, site.getuserbase()]
    import pyang

    p = Path(pyang.__file__).resolve()
    prefixes += [str(parent) for parent in p.parents]
    env = os.environ.get("YANG_MODPATH")
    dirs: list[Path] = [Path(d) for d in env.split(":")] if env else []
    for pre in prefixes:
        base = Path(pre) / "share" / "yang" / "modules"
        if (base / "ietf" / "ietf-interfaces.yang").exists():
            dirs += [base / "ietf", base / "iana"]
            break
    if not dirs:
        raise RuntimeError("YANG modules installed by pyang not found (share/yang/modules)")
    return dirs


@dataclass(eq=False)
class Cond:
    """A ``when`` or ``must`` expression with its evaluation context."""

    expr: str
    prefixes: dict[str, str]
    default_prefix: str
    on_parent: bool  # True: context is the data parent (augment/uses/choice/case when)
    error_message: str | None = None
    error_app_tag: str | None = None
    oracle: IdentityTable | None = field(default=None, repr=False)

    @cached_property
    def compiled(self):
        from agent.datastore.xpath import compile_xpath

        return compile_xpath(
            self.expr, self.prefixes, default_prefix=self.default_prefix, oracle=self.oracle
        )


@dataclass(eq=False)
class Choice:
    name: str
    mandatory: bool
    default_case: str | None
    cases: dict[str, set[str]] = field(default_factory=dict)  # case name -> data child clarks
    when: list[Cond] = field(default_factory=list)  # when on the choice itself
    case_when: dict[str, list[Cond]] = field(default_factory=dict)
    parent_case: tuple[Choice, str] | None = None  # nested choice inside a case


@dataclass(eq=False)
class SchemaNode:
    kind: str  # root, container, list, leaf, leaf-list
    name: str
    ns: str
    module: str
    prefix: str
    config: bool
    parent: SchemaNode | None = field(default=None, repr=False)
    children: dict[str, SchemaNode] = field(default_factory=dict, repr=False)
    keys: tuple[str, ...] = ()
    type: LeafType | None = field(default=None, repr=False)
    default: str | None = None  # leaf default (canonical text, resolved lazily for idrefs)
    defaults: tuple[str, ...] = ()  # leaf-list defaults
    mandatory: bool = False
    presence: bool = False
    min_elements: int = 0
    max_elements: int | None = None
    unique: list[list[tuple[str, ...]]] = field(default_factory=list)
    when: list[Cond] = field(default_factory=list)
    must: list[Cond] = field(default_factory=list)
    choices: list[Choice] = field(default_factory=list)  # choices directly under this node
    case_of: tuple[Choice, str] | None = None  # innermost (choice, case) this node belongs to
    ordered_by_user: bool = False
    is_key: bool = False
    stmt: object = field(default=None, repr=False)

    @property
    def clark(self) -> str:
        return f"{{{self.ns}}}{self.name}"

    def child(self, clark: str) -> SchemaNode | None:
        return self.children.get(clark)

    def path(self) -> str:
        parts = []
        n: SchemaNode | None = self
        while n is not None and n.kind != "root":
            parts.append(f"{n.prefix}:{n.name}")
            n = n.parent
        return "/" + "/".join(reversed(parts))

    @cached_property
    def has_config_descendants(self) -> bool:
        return self.config

    def all_choice_chain(self) -> list[tuple[Choice, str]]:
        chain = []
        c = self.case_of
        while c is not None:
            chain.append(c)
            c = c[0].parent_case
        return chain


@dataclass
class ModuleInfo:
    name: str
    revision: str | None
    namespace: str
    prefix: str
    features: list[str]
    implemented: bool
    path: str
    submodules: list[tuple[str, str | None, str]] = field(default_factory=list)
    deviations: list[str] = field(default_factory=list)

    @property
    def text(self) -> str:
        return Path(self.path).read_text()


class Schema:
    """All loaded modules and the compiled data tree."""

    def __init__(self) -> None:
        self.modules: dict[str, ModuleInfo] = {}
        self.by_ns: dict[str, ModuleInfo] = {}
        self.identities = IdentityTable()
        self.root = SchemaNode("root", "", "", "", "", True)
        self.rpcs: dict[str, object] = {}
        self.notifications: dict[str, object] = {}
        self._ctx = None

    # ------------------------------------------------------------------ loading
    @classmethod
    def load(
        cls,
        implemented: dict[str, list[str]] | None = None,
        search_dirs: list[Path] | None = None,
    ) -> Schema:
        implemented = dict(IMPLEMENTED if implemented is None else implemented)
        dirs = [PROJECT_YANG_DIR, *(search_dirs or standard_module_dirs())]
        repo = pyang_repository.FileRepository(":".join(str(d) for d in dirs), use_env=False)
        ctx = pyang_context.Context(repo)
        ctx.features = {m: list(f) for m, f in implemented.items()}
        mods = []
        for name in implemented:
            m = ctx.search_module(None, name)
            if m is None:
                raise RuntimeError(f"YANG module {name} not found in {dirs}")
            mods.append(m)
        ctx.validate()
        errors = [
            (e[0], e[1], e[2])
            for e in ctx.errors
            if pyang_error_is_fatal(e[1])
        ]
        if errors:
            pos, tag, args = errors[0]
            raise RuntimeError(f"YANG error {tag} at {pos}: {args}")
        self = cls()
        self._ctx = ctx
        all_mods = {m.arg: m for m in ctx.modules.values() if m.keyword == "module"}
        for name, m in all_mods.items():
            info = ModuleInfo(
                name=name,
                revision=_revision(m),
                namespace=m.search_one("namespace").arg,
                prefix=m.search_one("prefix").arg,
                features=list(implemented.get(name, [])),
                implemented=name in implemented,
                path=m.pos.ref,
            )
            for inc in m.search("include"):
                sub = ctx.get_module(inc.arg, None) or ctx.search_module(None, inc.arg)
                if sub is not None:
                    info.submodules.append((sub.arg, _revision(sub), sub.pos.ref))
            self.modules[name] = info
            self.by_ns[info.namespace] = info
            self.identities.prefix_of_ns[info.namespace] = info.prefix
        for m in all_mods.values():
            ns = m.search_one("namespace").arg
            for ident in m.i_identities.values():
                bases = []
                for b in ident.search("base"):
                    bi = getattr(b, "i_identity", None)
                    if bi is not None:
                        bases.append((bi.i_module.search_one("namespace").arg, bi.arg))
                self.identities.add((ns, ident.arg), bases)
        self.identities.close()
        for m in mods:
            for ch in m.i_children:
                if ch.keyword in _DATA_KEYWORDS or ch.keyword in ("choice",):
                    self._add(self.root, ch, None)
                elif ch.keyword == "rpc":
                    self.rpcs[f"{{{self.modules[m.arg].namespace}}}{ch.arg}"] = ch
                elif ch.keyword == "notification":
                    self.notifications[f"{{{self.modules[m.arg].namespace}}}{ch.arg}"] = ch
        return self

    def prefixes_of(self, module_stmt) -> dict[str, str]:
        """Prefix → namespace map valid inside a module (own prefix and imports)."""
        key = id(module_stmt)
        cache = self.__dict__.setdefault("_prefix_cache", {})
        if key in cache:
            return cache[key]
        res: dict[str, str] = {}
        for prefix, (modname, rev) in module_stmt.i_prefixes.items():
            mod = self._ctx.get_module(modname, rev) or self._ctx.search_module(None, modname)
            if mod is not None:
                if mod.keyword == "submodule":
                    bt = mod.search_one("belongs-to")
                    mod = self._ctx.get_module(bt.arg)
                res[prefix] = mod.search_one("namespace").arg
        cache[key] = res
        return res

    def _conds(self, owner, keyword: str, on_parent: bool) -> list[Cond]:
        out = []
        for w in owner.search(keyword):
            mod = getattr(w, "i_orig_module", None) or w.i_module
            if mod.keyword == "submodule":
                mod = self._ctx.get_module(mod.search_one("belongs-to").arg)
            prefixes = self.prefixes_of(mod)
            em = w.search_one("error-message")
            at = w.search_one("error-app-tag")
            out.append(
                Cond(
                    w.arg,
                    prefixes,
                    mod.search_one("prefix").arg,
                    on_parent,
                    em.arg if em is not None else None,
                    at.arg if at is not None else None,
                    self.identities,
                )
            )
        return out

    def _add(self, parent: SchemaNode, stmt, case_of: tuple[Choice, str] | None) -> None:
        if stmt.keyword == "choice":
            self._add_choice(parent, stmt, case_of)
            return
        if stmt.keyword not in _DATA_KEYWORDS:
            return
        mod = stmt.i_module
        if mod.keyword == "submodule":
            mod = self._ctx.get_module(mod.search_one("belongs-to").arg)
        info = self.modules[mod.arg]
        node = SchemaNode(
            kind=stmt.keyword,
            name=stmt.arg,
            ns=info.namespace,
            module=info.name,
            prefix=info.prefix,
            config=bool(getattr(stmt, "i_config", True) is not False),
            parent=parent,
            case_of=case_of,
            stmt=stmt,
        )
        node.when = self._conds(stmt, "when", False)
        aug = getattr(stmt, "i_augment", None)
        if aug is not None:
            node.when += self._conds(aug, "when", True)
        for uses in getattr(stmt, "i_uses", []) or []:
            node.when += self._conds(uses, "when", True)
        node.must = self._conds(stmt, "must", False)
        if stmt.keyword in ("leaf", "leaf-list"):
            node.type = compile_type(stmt.search_one("type"), self.identities)
            if stmt.keyword == "leaf":
                node.mandatory = _arg(stmt, "mandatory") == "true"
                d = stmt.search_one("default")
                dflt = d.arg if d is not None else None
                if dflt is None:
                    dflt = _typedef_default(stmt.search_one("type"))
                if dflt is not None and not node.mandatory:
                    node.default = self._canon_default(node, dflt, stmt)
                node.is_key = bool(getattr(stmt, "i_is_key", False))
            else:
                node.defaults = tuple(
                    self._canon_default(node, d.arg, stmt) for d in stmt.search("default")
                )
        if stmt.keyword in ("list", "leaf-list"):
            mn, mx = _arg(stmt, "min-elements"), _arg(stmt, "max-elements")
            node.min_elements = int(mn) if mn else 0
            node.max_elements = int(mx) if mx and mx != "unbounded" else None
            node.ordered_by_user = _arg(stmt, "ordered-by") == "user"
        if stmt.keyword == "container":
            node.presence = stmt.search_one("presence") is not None
        parent.children[node.clark] = node
        if stmt.keyword in ("container", "list"):
            for ch in stmt.i_children:
                self._add(node, ch, None)
        if stmt.keyword == "list":
            key = stmt.search_one("key")
            if key is not None:
                node.keys = tuple(
                    f"{{{node.ns}}}{k.split(':')[-1]}" for k in key.arg.split()
                )
                for k in node.keys:
                    node.children[k].is_key = True
            for u in stmt.search("unique"):
                paths = []
                for p in u.arg.split():
                    paths.append(
                        tuple(f"{{{node.ns}}}{seg.split(':')[-1]}" for seg in p.split("/"))
                    )
                node.unique.append(paths)

    def _canon_default(self, node: SchemaNode, text: str, stmt) -> str:
        if node.type is not None and node.type.is_identityref():
            mod = getattr(stmt, "i_orig_module", None) or stmt.i_module
            prefixes = self.prefixes_of(mod)
            own = mod.search_one("prefix").arg
            nsmap: dict = dict(prefixes)
            nsmap[None] = prefixes.get(own)
            return node.type.canonical(text, nsmap)
        try:
            return node.type.canonical(text, {}) if node.type else text
        except ValueError:
            return text

    def _add_choice(self, parent: SchemaNode, stmt, outer: tuple[Choice, str] | None) -> None:
        d = stmt.search_one("default")
        ch = Choice(
            name=stmt.arg,
            mandatory=_arg(stmt, "mandatory") == "true",
            default_case=d.arg if d is not None else None,
            parent_case=outer,
        )
        ch.when = self._conds(stmt, "when", True)
        aug = getattr(stmt, "i_augment", None)
        if aug is not None:
            ch.when += self._conds(aug, "when", True)
        for uses in getattr(stmt, "i_uses", []) or []:
            ch.when += self._conds(uses, "when", True)
        parent.choices.append(ch)
        for case in stmt.i_children:
            if case.keyword != "case":  # shorthand case
                ch.cases[case.arg] = set()
                before = set(parent.children)
                self._add(parent, case, (ch, case.arg))
                ch.cases[case.arg] |= set(parent.children) - before
                continue
            ch.cases[case.arg] = set()
            ch.case_when[case.arg] = self._conds(case, "when", True)
            before = set(parent.children)
            for c in case.i_children:
                self._add(parent, c, (ch, case.arg))
            ch.cases[case.arg] |= set(parent.children) - before

    # ------------------------------------------------------------------ lookups
    def node_at(self, *clarks: str) -> SchemaNode:
        n = self.root
        for c in clarks:
            n = n.children[c]
        return n

    def module_of_ns(self, ns: str) -> ModuleInfo | None:
        return self.by_ns.get(ns)


_DATA_KEYWORDS = ("container", "list", "leaf", "leaf-list", "anydata", "anyxml")


def _arg(stmt, kw: str) -> str | None:
    s = stmt.search_one(kw)
    return s.arg if s is not None else None


def _revision(m) -> str | None:
    revs = sorted((r.arg for r in m.search("revision")), reverse=True)
    return revs[0] if revs else None


def _typedef_default(type_stmt) -> str | None:
    td = getattr(type_stmt, "i_typedef", None)
    while td is not None:
        d = td.search_one("default")
        if d is not None:
            return d.arg
        td = getattr(td.search_one("type"), "i_typedef", None)
    return None


def pyang_error_is_fatal(tag: str) -> bool:
    from pyang import error as pyang_error

    try:
        return pyang_error.is_error(pyang_error.err_level(tag))
    except Exception:  # pragma: no cover
        return False
