"""RFC 8526 NMDA operations: ``<get-data>``, ``<edit-data>``, and the ``<datastore>``
form of ``<lock>``/``<unlock>``/``<validate>`` targets (ietf-netconf-nmda).

Datastores: the conventional ``ds:running``, ``ds:candidate`` and ``ds:startup``;
``ds:intended`` (read-only, RFC 8342 §5.1.4: running after the configuration
transformations, and this server has none — no templates, no inactive configuration —
so it is running's content); and ``ds:operational`` (RFC 8342 §5.3: the values in use:
running — which is what the backends apply — merged with what the providers report, the
reported value winning for a leaf both have, and without the configured list entries a
provider reports completely but not now, e.g. an interface configured but absent from
the system). ``get-data`` reuses the ``get``/``get-config`` retrieval path (filters,
with-defaults) and post-processes its result for ``config-filter``, the origin
filters, ``with-origin`` and ``max-depth``; ``edit-data`` is ``edit-config``'s code path.

Origin (RFC 8342 §5.3.4, ietf-origin): in ``<operational>`` a configuration node that
is in ``running`` with the value in use has origin ``or:intended``; a leaf not configured
in a configured node that holds its schema default, or one with-defaults added, has
``or:default``; a list entry the system learned (an ietf-ip address from DHCP, a
dynamic neighbour) has ``or:learned``; anything else the system reports — not
configured, or in use with another value than running's — has ``or:system``. State
(``config false``) nodes carry no origin. The
annotation is put on every top-level configuration node and on descendants whose
origin differs from their parent's.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import TYPE_CHECKING

from lxml import etree

from agent.datastore.filters import parse_filter, xpath_filter
from agent.datastore.schema import SchemaNode
from agent.datastore.xpath import UnknownPrefixError, XPathError, compile_xpath
from agent.protocol.errors import PROTOCOL, RpcError, bad_element
from agent.protocol.namespaces import NC, WD
from agent.protocol.session import RpcContext
from agent.protocol.xmlparse import parse
from agent.rpc.config_ops import ConfigOps
from agent.rpc.params import WITH_DEFAULTS_MODES, check_params
from agent.rpc.retrieve import ADDED_DEFAULT

if TYPE_CHECKING:
    from agent.server import NetconfServer

NMDA = "urn:ietf:params:xml:ns:yang:ietf-netconf-nmda"
DS = "urn:ietf:params:xml:ns:yang:ietf-datastores"
OR = "urn:ietf:params:xml:ns:yang:ietf-origin"
IP = "urn:ietf:params:xml:ns:yang:ietf-ip"
ORIGIN = f"{{{OR}}}origin"
_MARK = "nmda-selected"  # transient, unqualified: data elements carry no attributes

#: Every datastore identity of ietf-datastores, and the ones this server implements.
KNOWN_DATASTORES = ("running", "candidate", "startup", "intended", "operational")
IMPLEMENTED_DATASTORES = ("running", "candidate", "startup", "intended", "operational")

#: Error-path prefix for RPC parameters. Paths start at the operation element: a prefix
#: for the base namespace (``/nc:rpc/...``) would not survive, as lxml drops a declaration
#: that repeats the reply's default namespace when the error is put into it.
_PATH_NS = {"nmda": NMDA}

_NC_DATA = f'<data xmlns="{NC}"'.encode()
_NMDA_DATA = f'<data xmlns="{NMDA}"'.encode()

Handler = Callable[[RpcContext, etree._Element], object]


def _n(name: str) -> str:
    return f"{{{NMDA}}}{name}"


def register(server: NetconfServer) -> None:
    ops = NmdaOps(server)
    d = server.dispatcher
    d.register(NMDA, "get-data", ops.get_data)
    d.register(NMDA, "edit-data", ops.edit_data)
    # RFC 8526 §3.3: lock, unlock and validate also take an NMDA <datastore>
    for name, param, allowed in (
        ("lock", "target", ("running", "candidate", "startup")),
        ("unlock", "target", ("running", "candidate", "startup")),
        ("validate", "source", ("running", "candidate", "startup")),
    ):
        clark = f"{{{NC}}}{name}"
        inner = d.handlers.get(clark)
        if inner is not None:
            d.register(NC, name, _with_datastore_param(inner, name, param, allowed))


def _with_datastore_param(
    inner: Handler, op_name: str, param: str, allowed: tuple[str, ...]
) -> Handler:
    """Wrap a classic handler so that ``<param><datastore>ds:x</datastore></param>`` works
    as ``<param><x/></param>``."""

    def handler(ctx: RpcContext, op: etree._Element):
        p = op.find(f"{{{NC}}}{param}")
        if p is not None:
            inner_els = [c for c in p if isinstance(c.tag, str)]
            if len(inner_els) == 1 and inner_els[0].tag == _n("datastore"):
                name = datastore_ident(inner_els[0], allowed, op_name, None)
                op = copy.deepcopy(op)
                p = op.find(f"{{{NC}}}{param}")
                for c in list(p):
                    p.remove(c)
                etree.SubElement(p, f"{{{NC}}}{name}")
        return inner(ctx, op)

    return handler


def datastore_ident(
    el: etree._Element, allowed: tuple[str, ...], op_name: str, path: str | None
) -> str:
    """The datastore an identityref ``ds:...`` names (RFC 8526: unsupported → invalid-value)."""
    text = (el.text or "").strip()
    prefix, _, name = text.rpartition(":")
    ns = el.nsmap.get(prefix or None)

    def err(msg: str) -> RpcError:
        return RpcError("invalid-value", msg, type=PROTOCOL, path=path, path_ns=_PATH_NS,
                        info=[bad_element("datastore")])

    if not text:
        raise err("empty datastore")
    if ns is None:
        raise err(f"datastore '{text}': prefix '{prefix}' is not declared")
    if ns != DS or name not in KNOWN_DATASTORES:
        raise err(f"unknown datastore '{text}'")
    if name not in IMPLEMENTED_DATASTORES:
        raise err(f"the {name} datastore is not supported by this server")
    if name not in allowed:
        raise err(f"the {name} datastore cannot be used with <{op_name}>")
    return name


def _single(op: etree._Element, name: str, op_name: str) -> etree._Element | None:
    found = op.findall(_n(name))
    if len(found) > 1:
        raise RpcError("bad-element", f"'{name}' appears more than once", type=PROTOCOL,
                       path=f"/nmda:{op_name}/nmda:{name}", path_ns=_PATH_NS,
                       info=[bad_element(name)])
    return found[0] if found else None


def _invalid(op_name: str, name: str, msg: str) -> RpcError:
    return RpcError("invalid-value", msg, type=PROTOCOL,
                    path=f"/nmda:{op_name}/nmda:{name}", path_ns=_PATH_NS,
                    info=[bad_element(name)])


class NmdaOps:
    def __init__(self, server: NetconfServer) -> None:
        self.server = server
        self.schema = server.schema
        self.ds = server.datastores
        self.config_ops = ConfigOps(server)
        self.origin = "origin" in self._features()

    def _features(self) -> list[str]:
        m = self.schema.modules.get("ietf-netconf-nmda")
        return m.features if m is not None else []

    # ------------------------------------------------------------------ edit-data
    def edit_data(self, ctx: RpcContext, op: etree._Element):
        check_params(op, {_n("datastore"), _n("default-operation"), _n("config"), _n("url")})
        ds_el = _single(op, "datastore", "edit-data")
        if ds_el is None:
            raise RpcError("missing-element", "missing <datastore> parameter", type=PROTOCOL,
                           info=[bad_element("datastore")])
        target = datastore_ident(ds_el, ("running", "candidate"), "edit-data",
                                 "/nmda:edit-data/nmda:datastore")
        default_op = "merge"
        dop = _single(op, "default-operation", "edit-data")
        if dop is not None:
            default_op = (dop.text or "").strip()
            if default_op not in ("merge", "replace", "none"):
                raise _invalid("edit-data", "default-operation",
                               f"'{default_op}' is not a valid default-operation "
                               "(one of merge, replace, none)")
        config = _single(op, "config", "edit-data")
        if config is None:
            if op.find(_n("url")) is not None:
                raise RpcError("operation-not-supported", "the :url capability is not supported",
                               type=PROTOCOL, info=[bad_element("url")])
            raise RpcError("missing-element", "missing <config> parameter", type=PROTOCOL,
                           info=[bad_element("config")])
        # error-paths of the edit start below the base namespace's <config> (PathMaker): the
        # request is ours, renaming in place keeps every namespace declaration in scope
        config.tag = f"{{{NC}}}config"
        # RFC 8526: on error the datastore is restored to its state before edit-data
        return self.config_ops.edit(ctx, target, config, default_op,
                                    error_option="rollback-on-error", op_name="edit-data")

    # ------------------------------------------------------------------ get-data
    def get_data(self, ctx: RpcContext, op: etree._Element):
        allowed = {_n(x) for x in (
            "datastore", "subtree-filter", "xpath-filter", "config-filter", "max-depth",
            "with-defaults", "origin-filter", "negated-origin-filter", "with-origin")}
        allowed.add(f"{{{WD}}}with-defaults")  # leniency: the grouping's own namespace
        if not self.origin:
            allowed -= {_n("origin-filter"), _n("negated-origin-filter"), _n("with-origin")}
        check_params(op, allowed)
        ds_el = _single(op, "datastore", "get-data")
        if ds_el is None:
            raise RpcError("missing-element", "missing <datastore> parameter", type=PROTOCOL,
                           info=[bad_element("datastore")])
        ds = datastore_ident(ds_el, IMPLEMENTED_DATASTORES, "get-data",
                             "/nmda:get-data/nmda:datastore")
        filter_elem = self._filter(op)
        config_filter = self._config_filter(op)
        max_depth = self._max_depth(op)
        wd_mode = self._with_defaults(op)
        with_origin, origin_match = self._origin_params(op, ds)

        operational = ds == "operational"
        # intended = running transformed, and there is no transformation here
        source = self.ds["running" if ds in ("intended", "operational") else ds].tree
        need_xpath_marks = max_depth is not None and filter_elem is not None and \
            parse_filter(filter_elem)[0] == "xpath"
        origins = with_origin or origin_match is not None
        if not origins and config_filter is None and max_depth is None:
            # nothing to post-process: the retrieval's bytes with NMDA's <data> around them
            out = self.server.retriever.retrieve(
                source, with_state=operational, filter_elem=filter_elem, wd_mode=wd_mode,
                operational=operational,
            )
            if out.startswith(_NC_DATA):
                return _NMDA_DATA + out[len(_NC_DATA):]
            return _as_nmda_data(parse(out), False)
        if need_xpath_marks:  # filtered below; the filter still tells what state to read
            data = self._retrieve(source, operational, None, wd_mode, origins, filter_elem)
            data, selected = self._xpath_marked(data, filter_elem)
        else:
            data = self._retrieve(source, operational, filter_elem, wd_mode, origins)
            selected = None
        data = _as_nmda_data(data, origins)
        if origins:
            annotate_origin(data, self.ds["running"].tree, self.schema.root)
            if origin_match is not None:
                origin_filter(data, self.schema.root, OR + " unknown", origin_match)
        if config_filter is not None:
            filter_config(data, self.schema.root, config_filter)
        if max_depth is not None:
            if selected is None:
                selected = self._selected(data, filter_elem)
            prune_depth(data, self.schema.root, selected, max_depth)
        if origins and not with_origin:
            for el in data.iter():
                if ORIGIN in el.attrib:
                    del el.attrib[ORIGIN]
        return data

    # ------------------------------------------------------------------ parameters
    def _filter(self, op: etree._Element) -> etree._Element | None:
        sub = _single(op, "subtree-filter", "get-data")
        xp = _single(op, "xpath-filter", "get-data")
        if sub is not None and xp is not None:
            raise RpcError("bad-element", "only one of subtree-filter and xpath-filter may be "
                           "given", type=PROTOCOL, path="/nmda:get-data/nmda:xpath-filter",
                           path_ns=_PATH_NS, info=[bad_element("xpath-filter")])
        if sub is not None:
            f = etree.Element(f"{{{NC}}}filter", type="subtree")
            for c in sub:
                if isinstance(c.tag, str):
                    cc = copy.deepcopy(c)
                    for e in cc.iter():
                        # elements in the inherited default namespace of <get-data> match any
                        # namespace (as those in the base namespace do in <get>'s filter)
                        if isinstance(e.tag, str) and etree.QName(e).namespace == NMDA:
                            e.tag = etree.QName(e).localname
                    f.append(cc)
            return f
        if xp is not None:
            select = (xp.text or "").strip()
            if not select:
                raise _invalid("get-data", "xpath-filter", "empty xpath-filter")
            nsmap = {p: u for p, u in xp.nsmap.items() if p is not None}
            f = etree.Element(f"{{{NC}}}filter", nsmap=nsmap, type="xpath")
            f.set("select", select)
            return f
        return None

    @staticmethod
    def _config_filter(op: etree._Element) -> bool | None:
        el = _single(op, "config-filter", "get-data")
        if el is None:
            return None
        v = (el.text or "").strip()
        if v not in ("true", "false"):
            raise _invalid("get-data", "config-filter", f"'{v}' is not a boolean")
        return v == "true"

    @staticmethod
    def _max_depth(op: etree._Element) -> int | None:
        el = _single(op, "max-depth", "get-data")
        if el is None:
            return None
        v = (el.text or "").strip()
        if v == "unbounded":
            return None
        if v.isdigit() and 1 <= int(v) <= 65535:
            return int(v)
        raise _invalid("get-data", "max-depth", f"'{v}' is not 'unbounded' or 1..65535")

    @staticmethod
    def _with_defaults(op: etree._Element) -> str:
        el = _single(op, "with-defaults", "get-data")
        if el is None:
            el = op.find(f"{{{WD}}}with-defaults")
        if el is None:
            return "explicit"
        mode = (el.text or "").strip()
        if mode not in WITH_DEFAULTS_MODES:
            raise _invalid("get-data", "with-defaults", f"unsupported with-defaults mode '{mode}'")
        return mode

    def _origin_params(
        self, op: etree._Element, ds: str
    ) -> tuple[bool, Callable[[str], bool] | None]:
        with_origin = _single(op, "with-origin", "get-data") is not None
        pos = op.findall(_n("origin-filter"))
        neg = op.findall(_n("negated-origin-filter"))
        if with_origin and ds != "operational":
            raise _invalid("get-data", "with-origin",
                           "with-origin is only valid for the operational datastore")
        if (pos or neg) and ds != "operational":
            name = "origin-filter" if pos else "negated-origin-filter"
            raise _invalid("get-data", name, f"{name} is only valid for the operational datastore")
        if pos and neg:
            raise RpcError("bad-element", "only one of origin-filter and negated-origin-filter "
                           "may be given", type=PROTOCOL,
                           path="/nmda:get-data/nmda:negated-origin-filter",
                           path_ns=_PATH_NS, info=[bad_element("negated-origin-filter")])
        if not (pos or neg):
            return with_origin, None
        name = "origin-filter" if pos else "negated-origin-filter"
        wanted = [self._origin_ident(e, name) for e in (pos or neg)]
        ids = self.schema.identities

        def derived(origin: str) -> bool:
            ns, _, local = origin.partition(" ")
            return any(ids.derived_from(ns, local, w[0], w[1], True) for w in wanted)

        return with_origin, (derived if pos else lambda o: not derived(o))

    def _origin_ident(self, el: etree._Element, name: str) -> tuple[str, str]:
        text = (el.text or "").strip()
        prefix, _, local = text.rpartition(":")
        ns = el.nsmap.get(prefix or None)
        if ns is None or not self.schema.identities.derived_from(ns, local, OR, "origin", False):
            raise _invalid("get-data", name, f"'{text}' is not an origin identity")
        return ns, local

    # ------------------------------------------------------------------ retrieval
    def _retrieve(
        self, source: etree._Element, operational: bool,
        filter_elem: etree._Element | None, wd_mode: str, origins: bool = False,
        state_filter: etree._Element | None = None,
    ) -> etree._Element:
        out = self.server.retriever.retrieve(
            source, with_state=operational, filter_elem=filter_elem, wd_mode=wd_mode,
            operational=operational, state_filter=state_filter,
            mark_added_defaults=origins and operational,
        )
        return parse(out)

    def _xpath_marked(
        self, data: etree._Element, filter_elem: etree._Element
    ) -> tuple[etree._Element, list[etree._Element]]:
        """Apply an XPath filter, returning the output and the nodes the expression selected
        (``max-depth`` counts from those, not from the top)."""
        _, (select, prefixes) = parse_filter(filter_elem)
        ns = {m.name: m.namespace for m in self.schema.modules.values()}
        ns.update(prefixes)
        try:
            result = compile_xpath(select, ns, smart_strings=True).evaluate(data, data)
        except (UnknownPrefixError, XPathError):
            result = None  # xpath_filter below reports the error
        whole = False
        if isinstance(result, list):
            for item in result:
                el = item if isinstance(item, etree._Element) else getattr(item, "getparent",
                                                                            lambda: None)()
                if el is data:
                    whole = True  # the root: depth counts from the top-level nodes
                elif el is not None and isinstance(el.tag, str):
                    el.set(_MARK, "1")
        out = xpath_filter(data, select, ns, self.server.retriever.keys_of)
        selected = []
        for el in out.iter():
            if el.get(_MARK) is not None:
                del el.attrib[_MARK]
                selected.append(el)
        if whole:
            selected += [c for c in out if isinstance(c.tag, str)]
        return out, selected

    @staticmethod
    def _selected(data: etree._Element, filter_elem: etree._Element | None) -> list:
        """The nodes a subtree filter selected in its output (no filter: the top level)."""
        if filter_elem is None:
            return [c for c in data if isinstance(c.tag, str)]
        spec = [c for c in filter_elem if isinstance(c.tag, str)]
        out: list[etree._Element] = []

        def matches(f: etree._Element, d: etree._Element) -> bool:
            fq = etree.QName(f)
            if fq.namespace and fq.namespace != NC:
                return f.tag == d.tag
            return etree.QName(d).localname == fq.localname

        def walk(parent: etree._Element, fnodes: list[etree._Element]) -> None:
            for d in parent:
                if not isinstance(d.tag, str):
                    continue
                hits = [f for f in fnodes if matches(f, d)]
                if not hits:
                    continue  # a list key the output added
                inner = [[c for c in f if isinstance(c.tag, str)] for f in hits]
                # a selection node, a content match node, or only content match children
                if any(not kids or all(len(k) == 0 and (k.text or "").strip() for k in kids)
                       for kids in inner):
                    out.append(d)
                    continue
                walk(d, [k for kids in inner for k in kids])

        walk(data, spec)
        return out


# --------------------------------------------------------------------------- post-processing


def _as_nmda_data(data: etree._Element, with_origin: bool) -> etree._Element:
    nsmap = {p: u for p, u in data.nsmap.items() if p is not None}
    nsmap[None] = NMDA
    if with_origin:
        nsmap["or"] = OR
    out = etree.Element(f"{{{NMDA}}}data", nsmap=nsmap)
    for c in list(data):
        if isinstance(c.tag, str):
            out.append(c)
    return out


def _child_schema(snode: SchemaNode | None, el: etree._Element) -> SchemaNode | None:
    return snode.children.get(el.tag) if snode is not None else None


def filter_config(root: etree._Element, sroot: SchemaNode, want_config: bool) -> None:
    """config-filter: keep only config (True) or only state (False) nodes, with their
    ancestors and the keys of the list entries kept."""

    def walk(el: etree._Element, snode: SchemaNode | None) -> bool:
        """Prune ``el``'s children; True when something selected remains below ``el``."""
        keys = set(snode.keys) if snode is not None and snode.kind == "list" else set()
        kept = False
        for c in list(el):
            if not isinstance(c.tag, str):
                el.remove(c)
                continue
            cs = _child_schema(snode, c)
            is_config = cs.config if cs is not None else (snode.config if snode else True)
            if c.tag in keys:
                continue  # decided with its entry
            if not is_config:
                if want_config:
                    el.remove(c)
                else:
                    kept = True
                continue
            had_children = len(c) > 0
            below = walk(c, cs) if had_children else False
            if want_config:
                # a non-presence container emptied by the pruning goes too
                if had_children and not below and len(c) == 0 and cs is not None and \
                        cs.kind == "container" and not cs.presence:
                    el.remove(c)
                else:
                    kept = True
            elif below:
                kept = True
            else:
                el.remove(c)
        return kept

    walk(root, sroot)


def prune_depth(
    root: etree._Element, sroot: SchemaNode, selected: list[etree._Element], max_depth: int
) -> None:
    """max-depth: below each selected node keep ``max_depth - 1`` levels (plus the ancestors
    of other selected nodes and list keys)."""
    sel = set(selected)
    anc: set[etree._Element] = set()
    for s in selected:
        for a in s.iterancestors():
            if a in anc:
                break
            anc.add(a)

    def walk(el: etree._Element, snode: SchemaNode | None, left: int) -> None:
        keys = set(snode.keys) if snode is not None and snode.kind == "list" else set()
        for c in list(el):
            if not isinstance(c.tag, str):
                continue
            if c in sel:
                nl = max(max_depth - 1, left - 1)
            elif left >= 1:
                nl = left - 1
            elif c in anc or c.tag in keys:
                nl = -1
            else:
                el.remove(c)
                continue
            if len(c):
                walk(c, _child_schema(snode, c), nl)

    walk(root, sroot, -1)


def _origin_value(el: etree._Element) -> str | None:
    """``"ns local"`` of an element's own origin annotation."""
    v = el.get(ORIGIN)
    if v is None:
        return None
    prefix, _, local = v.strip().rpartition(":")
    ns = el.nsmap.get(prefix or None)
    return f"{ns} {local}" if ns else None


def annotate_origin(data: etree._Element, running: etree._Element, sroot: SchemaNode) -> None:
    """Put ``or:origin`` annotations on the configuration nodes of an operational tree
    (and drop the retrieval's :data:`~agent.rpc.retrieve.ADDED_DEFAULT` marks)."""

    # the data root declares the prefix (see _as_nmda_data)
    prefix = next((p for p, u in data.nsmap.items() if u == OR and p), "or")

    def index(run_el: etree._Element | None, snode: SchemaNode) -> dict:
        idx: dict = {}
        if run_el is None:
            return idx
        for r in run_el:
            if not isinstance(r.tag, str):
                continue
            rs = snode.children.get(r.tag)
            idx[_ident(r, rs)] = r
        return idx

    def walk(el: etree._Element, run_el: etree._Element | None, snode: SchemaNode,
             parent: str | None) -> None:
        idx = index(run_el, snode)
        for c in el:
            if not isinstance(c.tag, str):
                continue
            cs = snode.children.get(c.tag)
            if cs is None or not cs.config:
                continue  # state: no origin
            rc = idx.get(_ident(c, cs))
            if c.attrib.pop(ADDED_DEFAULT, None) is not None:
                origin = "default"  # with-defaults put it there: nothing else gives it
            elif rc is not None and (cs.kind != "leaf" or _same_value(c, rc)):
                origin = "intended"
            elif cs.kind == "container" and not cs.presence and parent is not None:
                origin = parent  # no meaning of its own: inherits
            elif rc is None and parent == "intended" and cs.kind == "leaf" and \
                    cs.default is not None and _same_value(c, cs.default):
                origin = "default"  # not configured in a configured node: its default in use
            elif cs.kind == "list" and any((x.text or "").strip() in _LEARNED.get(x.tag, ())
                                           for x in c):
                origin = "learned"  # e.g. an address from DHCP, a neighbour from ARP/ND
            else:
                origin = "system"  # reported by the system, or in use with another value
            if origin != parent:
                c.set(ORIGIN, f"{prefix}:{origin}")
            if len(c):
                walk(c, rc, cs, origin)

    walk(data, running, sroot, None)
    for el in data.iter():  # state leaves may carry it too
        if ADDED_DEFAULT in el.attrib:
            del el.attrib[ADDED_DEFAULT]


#: State leaves of a list entry telling it was learned from the network (ietf-ip).
_LEARNED = {f"{{{IP}}}origin": ("dhcp", "dynamic")}


def _same_value(leaf: etree._Element, other: etree._Element | str) -> bool:
    """Whether a leaf holds the value of another leaf (or of a schema default): the same
    text, or the same QName (an identityref written with other prefixes)."""
    a = (leaf.text or "").strip()
    b = other if isinstance(other, str) else (other.text or "").strip()
    if a == b:
        return True
    if isinstance(other, str) or ":" not in a or ":" not in b:
        return False
    pa, _, la = a.partition(":")
    pb, _, lb = b.partition(":")
    return la == lb and leaf.nsmap.get(pa) is not None and \
        leaf.nsmap.get(pa) == other.nsmap.get(pb)


def _ident(el: etree._Element, snode: SchemaNode | None) -> tuple:
    if snode is None:
        return (el.tag,)
    if snode.kind == "list" and snode.keys:
        return (el.tag, *((el.findtext(k) or "").strip() for k in snode.keys))
    if snode.kind == "leaf-list":
        return (el.tag, (el.text or "").strip())
    return (el.tag,)


def origin_filter(
    root: etree._Element, sroot: SchemaNode, unknown: str, match: Callable[[str], bool]
) -> None:
    """Drop configuration nodes whose origin does not match (state nodes stay), keeping the
    ancestors and list keys of what remains."""

    def walk(el: etree._Element, snode: SchemaNode, eff: str) -> bool:
        keys = set(snode.keys) if snode.kind == "list" else set()
        kept = False
        for c in list(el):
            if not isinstance(c.tag, str):
                continue
            cs = snode.children.get(c.tag)
            if cs is None or not cs.config:
                kept = True
                continue
            if c.tag in keys:
                continue  # stays with its entry
            o = _origin_value(c) or eff
            below = walk(c, cs, o) if len(c) else False
            if match(o) or below:
                kept = True
            else:
                el.remove(c)
        return kept

    walk(root, sroot, unknown)
