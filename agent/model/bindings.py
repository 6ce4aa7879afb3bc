"""The one place where pyangbind is wrapped: typed binding objects for the agent's data.

The generated classes (``bindings/yang_model.py``, see tools/gen_bindings.py) are
the project's typed model of ietf-interfaces / ietf-ip / ietf-vrrp / macvlan
data.  pyangbind 0.8.7 has bugs and costs that this module works around; use
the classes only through here:

1. **Cost** (~85 ms and ~1-2 MB per interface with an address and a VRRP
   instance).  Every leaf of every object gets a freshly built
   ``RestrictedClassType`` class whose ``__new__`` recompiles its range/pattern
   checks and deep-copies identity dictionaries on each value.
   :func:`install_fast_types` memoises those classes and computes their checks
   once (same checks, same order, same class attributes), which makes a
   VRRP instance ~3x cheaper.  The rest (one ``YANGDynClass`` class per leaf
   instance, state leaves built eagerly) remains, so objects are built
   **lazily**: :class:`ConfigModel` indexes the lxml tree (microseconds per
   interface) and builds a binding only when a backend asks for one.
   pyangbind's ``YANGList.add`` also builds each entry twice; :func:`_add_entry`
   builds it once.
2. **Identityrefs**: a value stored with a prefix (``ianaift:ethernetCsmacd``)
   is serialised as ``iana-if-type:ianaift:ethernetCsmacd``.  We store bare
   identity names, after checking that the XML prefix resolves to the
   identity's own namespace (pyangbind's decoder just drops the prefix);
   :func:`identity` gives ``(module, name, namespace)`` back.
3. **Namespaces**: pyangbind's XML decoder matches elements by local name only
   (``<description xmlns="urn:bogus">`` is accepted).  :func:`fill` matches
   (namespace, name) and raises :class:`BindingError` on anything unknown, and
   on ``config false`` nodes in configuration.
4. **List keys**: after pyangbind's XML decode, keys are strings
   (``vrrp_instance["10"]``) although they are ints after a JSON decode or
   ``add(10)``.  Here keys are converted to the key leaf's type
   (``vrrp_instance[10]``).
5. **Module wrapper**: pyangbind's XML encoder wraps its output in an extra
   ``<ietf-interfaces>`` element and gets identity prefixes wrong.
   :func:`to_element` returns the data node itself, every element with its
   module's prefix, identityrefs as ``prefix:name`` with the prefix declared.

Binding objects are read-only snapshots of the tree they were built from.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from decimal import Decimal
from typing import Any, NamedTuple

from lxml import etree
from pyangbind.lib import yangtypes as _yt

import bindings.yang_model as _gen

IF_NS = "urn:ietf:params:xml:ns:yang:ietf-interfaces"
IP_NS = "urn:ietf:params:xml:ns:yang:ietf-ip"
VRRP_NS = "urn:ietf:params:xml:ns:yang:ietf-vrrp"
IANAIFT_NS = "urn:ietf:params:xml:ns:yang:iana-if-type"
MACVLAN_NS = "urn:netconf-vrrp-agent:yang:macvlan"

#: namespace → the module's own prefix (used for element names and identityrefs).
PREFIXES: dict[str, str] = {
    IF_NS: "if",
    IP_NS: "ip",
    VRRP_NS: "vrrp",
    IANAIFT_NS: "ianaift",
    MACVLAN_NS: "mv",
}

FAMILIES = ("ipv4", "ipv6")

#: Generated classes the backends use.
Interfaces = _gen.ietf_interfaces  # module class: holds ``.interfaces.interface``
Interface = _gen.yc_interface_ietf_interfaces__interfaces_interface
VRRP_INSTANCE_CLASS: dict[str, type] = {
    "ipv4": _gen.yc_vrrp_instance_ietf_interfaces__interfaces_interface_ipv4_vrrp_vrrp_instance,
    "ipv6": _gen.yc_vrrp_instance_ietf_interfaces__interfaces_interface_ipv6_vrrp_vrrp_instance,
}

_IF = f"{{{IF_NS}}}"
_VRRP = f"{{{VRRP_NS}}}"


class BindingError(ValueError):
    """The lxml data does not fit the bindings (unknown node, wrong identity namespace...)."""


# --------------------------------------------------------------------------------------------
# Workaround 1: the cost of RestrictedClassType


_RCT_ORIG = _yt.RestrictedClassType
_GEN_FILE = _gen.__file__
_rct_cache: dict[tuple, type] = {}
_rct_lock = threading.Lock()


def _fast_restricted_class_type(*args: Any, **kwargs: Any) -> type:
    """Memoised ``RestrictedClassType`` whose ``__new__`` does not rebuild its checks.

    pyangbind's ``RestrictedClass.__new__`` (re)assigns ``_restriction_dict``,
    ``_restriction_tests`` and ``_enumeration_dict`` on the class being built,
    checks the value against the *first* test, then calls the base type's
    ``__new__`` (which, for a nested restriction, reassigns them again).  The
    replacement does exactly that with checks computed once.
    """
    caller = sys._getframe(1)
    if caller.f_code.co_filename == _GEN_FILE:
        # generated code passes only literals (and memoised classes): the call site is the key
        key: tuple = (caller.f_code, caller.f_lasti)
    else:
        key = (
            args,
            kwargs.get("base_type", str),
            kwargs.get("restriction_type"),
            repr(kwargs.get("restriction_arg")),
            repr(kwargs.get("restriction_dict")),
            kwargs.get("int_size"),
        )
    cls = _rct_cache.get(key)
    if cls is not None:
        return cls
    with _rct_lock:
        cls = _rct_cache.get(key)
        if cls is None:
            cls = _rct_cache[key] = _make_fast_class(args, kwargs)
    return cls


def _make_fast_class(args: tuple, kwargs: dict) -> type:
    cls = _RCT_ORIG(*args, **dict(kwargs))
    base = cls.__bases__[0]
    rdict = kwargs.get("restriction_dict")
    if rdict is None:
        rdict = {kwargs.get("restriction_type"): kwargs.get("restriction_arg")}
    # Run pyangbind's own __new__ once on a probe subclass, recording the first value it
    # assigns to each class attribute (later ones come from the nested base type).
    seen: dict[str, Any] = {}

    class _Recorder(type):
        def __setattr__(self, name: str, value: Any) -> None:
            if name not in seen or seen[name] is None:
                seen[name] = value
            type.__setattr__(self, name, value)

    _Recorder("Probe", (cls,), {})()
    tests = seen["_restriction_tests"]
    enum = seen.get("_enumeration_dict")
    has_range = "range" in rdict

    def __new__(klass, *a, **kw):  # noqa: N807 - replaces RestrictedClass.__new__
        klass._restriction_dict = rdict
        klass._restriction_tests = tests
        if enum is not None:
            klass._enumeration_dict = enum
        if a and a[0] is not False:
            val = a[0]
            if has_range and val:
                try:
                    val = base(val)
                except Exception as e:
                    raise TypeError("must specify a numeric type for a range argument") from e
            if tests and tests[0](val) is False:
                raise ValueError(f"{val} does not match a restricted type")
        try:
            return base.__new__(klass, *a, **kw)
        except TypeError:
            return base.__new__(klass)

    cls.__new__ = __new__
    return cls


def install_fast_types(module: Any = _gen) -> None:
    """Make a generated bindings module use the memoised ``RestrictedClassType``."""
    module.RestrictedClassType = _fast_restricted_class_type


install_fast_types()


# --------------------------------------------------------------------------------------------
# Per-class metadata: which child attribute holds which (namespace, name)


class _Child(NamedTuple):
    attr: str
    ns: str
    name: str
    kind: str  # container, list, leaf-list, leaf
    yang_type: str | None
    config: bool
    presence: bool
    is_key: bool
    num: type | None  # int / Decimal when the leaf's Python type is numeric (not bool)


class _Meta(NamedTuple):
    by_qname: dict[tuple[str, str], _Child]
    children: list[_Child]


_meta_cache: dict[type, _Meta] = {}


def _gen_class(obj: Any) -> type:
    for c in type(obj).__mro__:
        if "_pyangbind_elements" in c.__dict__:
            return c
    raise TypeError(f"not a binding object: {type(obj)!r}")


def _kind(child: Any) -> str:
    gen_by = getattr(child, "_pybind_generated_by", None)
    if gen_by == "container":
        return "container"
    if gen_by == "YANGListType":
        return "list"
    if gen_by == "TypedListType":
        return "leaf-list"
    return "leaf"


def _meta(obj: Any) -> _Meta:
    gcls = _gen_class(obj)
    m = _meta_cache.get(gcls)
    if m is None:
        children = []
        for attr in gcls._pyangbind_elements:
            ch = getattr(obj, attr)
            kind = _kind(ch)
            num = None
            if kind == "leaf" and not isinstance(ch, _yt.YANGBool):
                if isinstance(ch, int):
                    num = int
                elif isinstance(ch, Decimal):
                    num = Decimal
            children.append(_Child(
                attr, ch._namespace, ch._yang_name, kind, getattr(ch, "_yang_type", None),
                bool(ch._is_config), bool(getattr(ch, "_presence", False)),
                bool(getattr(ch, "_is_keyval", False)), num,
            ))
        m = _Meta({(c.ns, c.name): c for c in children}, children)
        _meta_cache[gcls] = m
    return m


# --------------------------------------------------------------------------------------------
# lxml → binding


def _split(clark: str) -> tuple[str, str]:
    if clark[0] == "{":
        ns, _, name = clark[1:].partition("}")
        return ns, name
    return "", clark


def _identity_value(leaf: Any, elem: etree._Element, text: str) -> str:
    """Workaround 2: check the identity's namespace, return its bare name."""
    prefix, sep, name = text.strip().rpartition(":")
    ns = elem.nsmap.get(prefix if sep else None)
    allowed = leaf._restriction_dict["dict_key"]
    info = allowed.get(name)
    if info is None or ns is None or info.get("@namespace") != ns:
        raise BindingError(
            f"identity {text!r} (namespace {ns}) is not allowed in {elem.tag}"
        )
    return name


def _leaf_value(obj: Any, ch: _Child, elem: etree._Element) -> Any:
    text = elem.text or ""
    if ch.yang_type == "identityref":
        return _identity_value(getattr(obj, ch.attr), elem, text)
    if ch.yang_type == "empty":
        return True
    if ch.num is not None:
        try:
            return ch.num(text.strip())  # pyangbind turns a bad integer into 0
        except (ValueError, ArithmeticError):
            return text  # a union with a non-numeric member
    return text


def _add_entry(lst: Any, key_attr: str, key_value: Any, key_text: str, ns: str) -> Any:
    """Add a list entry building it once (``YANGList.add`` builds it twice) with a typed key."""
    parent = lst._parent
    yname = lst._yang_name
    kyang = lst._yang_keys
    entry = _yt.YANGDynClass(
        base=lst._contained_class, parent=parent, yang_name=yname, is_container="container",
        path_helper=False, namespace=ns,
        register_path=parent._path() + [f"{yname}[{kyang}='{key_text}']"],
        extmethods=parent._extmethods,
    )
    getattr(entry, "_set_" + key_attr)(key_value, load=True)
    native = getattr(entry, key_attr)
    native = int(native) if isinstance(native, int) else str(native)
    if native in lst._members:
        raise BindingError(f"duplicate {yname} entry {key_text!r}")
    lst._members[native] = entry  # workaround 4: the key has the key leaf's type
    return entry


def _list_key(entry_cls_obj_meta: _Meta, elem: etree._Element, lst: Any) -> tuple[_Child, Any, str]:
    if " " in lst._keyval:
        raise NotImplementedError("lists with several keys are not used by these models")
    ch = next(c for c in entry_cls_obj_meta.children if c.attr == lst._keyval)
    kel = elem.find(f"{{{ch.ns}}}{ch.name}")
    if kel is None:
        raise BindingError(f"{elem.tag} entry without its key {ch.name}")
    text = kel.text or ""
    value: Any = text
    if ch.num is not None:
        value = ch.num(text.strip())
    return ch, value, text


_entry_meta_cache: dict[type, _Meta] = {}


def _entry_meta(lst: Any) -> _Meta:
    cls = lst._contained_class
    m = _entry_meta_cache.get(cls)
    if m is None:
        m = _entry_meta_cache[cls] = _meta(cls())
    return m


def fill(obj: Any, elem: etree._Element, *, config: bool = True) -> Any:
    """Set ``obj``'s children from the lxml element ``elem`` (same node); returns ``obj``.

    Elements are matched by namespace and name; ``config=True`` refuses
    ``config false`` nodes.  Keys of ``obj`` itself are expected to be set already.
    """
    meta = _meta(obj)
    for child in elem:
        if not isinstance(child.tag, str):
            continue  # comments, processing instructions
        ch = meta.by_qname.get(_split(child.tag))
        if ch is None:
            raise BindingError(f"unexpected element {child.tag} in {elem.tag}")
        if config and not ch.config:
            raise BindingError(f"config false node {child.tag} in configuration")
        if ch.kind == "container":
            sub = getattr(obj, ch.attr)
            if ch.presence:
                sub._set_present()
            fill(sub, child, config=config)
        elif ch.kind == "list":
            lst = getattr(obj, ch.attr)
            kch, kval, ktext = _list_key(_entry_meta(lst), child, lst)
            entry = _add_entry(lst, kch.attr, kval, ktext, ch.ns)
            fill(entry, child, config=config)
        elif ch.kind == "leaf-list":
            getattr(obj, ch.attr).append(_leaf_value(obj, ch, child))
        elif not ch.is_key:
            getattr(obj, "_set_" + ch.attr)(_leaf_value(obj, ch, child))
    return obj


# --------------------------------------------------------------------------------------------
# binding → lxml


class Identity(NamedTuple):
    module: str
    name: str
    namespace: str

    @property
    def prefixed(self) -> str:
        """``prefix:name`` with the module's own prefix."""
        return f"{PREFIXES.get(self.namespace, self.module)}:{self.name}"


def identity(leaf: Any) -> Identity | None:
    """The identity an identityref leaf holds (None when unset)."""
    value = str(leaf)
    if not value:
        return None
    name = value.rpartition(":")[2]
    info = leaf._restriction_dict["dict_key"].get(name)
    if info is None:
        raise BindingError(f"{value!r} is not an identity of {leaf._yang_name}")
    return Identity(info["@module"], name, info["@namespace"])


def value(leaf: Any, default: Any = None) -> Any:
    """The effective value of a leaf: the configured one, else its YANG default, else ``default``.

    pyangbind reads an unset leaf as its type's zero (``priority`` → 0, not 100) and
    drops a *falsy* YANG default (``accept-mode`` false, ``hold-time`` 0): for those
    the caller's ``default`` is returned.
    """
    if leaf._changed():
        return leaf
    d = leaf._default
    return default if d is False else d


def raw_generated_module(name: str = "bindings_unpatched") -> Any:
    """A separate import of bindings/yang_model.py without :func:`install_fast_types`.

    For tests and benchmarks that compare with (or demonstrate) pyangbind's own behaviour.
    """
    import importlib.util
    import sys

    mod = sys.modules.get(name)
    if mod is None:
        spec = importlib.util.spec_from_file_location(name, _gen.__file__)
        mod = importlib.util.module_from_spec(spec)
        sys.modules[name] = mod
        spec.loader.exec_module(mod)
    return mod


def _leaf_text(leaf: Any, ch: _Child) -> tuple[str | None, dict[str, str]]:
    """(text, extra prefix → namespace declarations) of a leaf value."""
    if ch.yang_type == "empty":
        return None, {}
    if isinstance(leaf, _yt.YANGBool):
        return ("true" if leaf else "false"), {}
    if ch.yang_type == "identityref":
        ident = identity(leaf)
        if ident is None:
            return "", {}
        prefix = PREFIXES.get(ident.namespace, ident.module)
        return f"{prefix}:{ident.name}", {prefix: ident.namespace}
    if isinstance(leaf, int):
        return str(int(leaf)), {}
    return str(leaf), {}


def _new(
    parent: etree._Element | None, ns: str, name: str, extra: dict[str, str] | None = None
) -> etree._Element:
    nsmap = {PREFIXES[ns]: ns} if ns in PREFIXES else {}
    if extra:
        nsmap.update(extra)
    if parent is None:
        return etree.Element(f"{{{ns}}}{name}", nsmap=nsmap or None)
    return etree.SubElement(parent, f"{{{ns}}}{name}", nsmap=nsmap or None)


def _qname_of(obj: Any) -> tuple[str, str]:
    ns = getattr(obj, "_namespace", None)
    name = getattr(obj, "_yang_name", None)
    if ns and name:
        return ns, name
    raise BindingError(f"cannot tell the element name of {type(obj)!r}; pass qname=")


def to_element(
    obj: Any, parent: etree._Element | None = None, *, qname: tuple[str, str] | None = None
) -> etree._Element:
    """The lxml element for a binding container or list entry (only the leaves that are set).

    ``qname`` = (namespace, name) of the node; known for objects made by this module
    and for pyangbind's own containers.  No module wrapper element (workaround 5).
    """
    ns, name = qname or _qname_of(obj)
    el = _new(parent, ns, name)
    _emit_children(obj, el)
    return el


def _emit_leaf(el: etree._Element, ch: _Child, value: Any) -> None:
    text, extra = _leaf_text(value, ch)
    sub = _new(el, ch.ns, ch.name, extra)
    if text is not None:
        sub.text = text


def _emit_children(obj: Any, el: etree._Element) -> None:
    meta = _meta(obj)
    for ch in sorted(meta.children, key=lambda c: not c.is_key):  # keys first
        val = getattr(obj, ch.attr)
        if ch.kind == "container":
            present = ch.presence and bool(val._present())
            if val._changed() or present:
                sub = _new(el, ch.ns, ch.name)
                _emit_children(val, sub)
                if len(sub) == 0 and not present:
                    el.remove(sub)
        elif ch.kind == "list":
            for entry in val._members.values():
                _emit_children(entry, _new(el, ch.ns, ch.name))
        elif ch.kind == "leaf-list":
            for item in val:
                _emit_leaf(el, ch, item)
        elif val._changed():
            _emit_leaf(el, ch, val)


# --------------------------------------------------------------------------------------------
# The lazily-built model of a configuration tree


class VrrpKey(NamedTuple):
    interface: str
    family: str  # "ipv4" / "ipv6"
    vrid: int


class ConfigModel:
    """Typed view of a validated config tree (root ``<nc:data>``), built on demand.

    Indexing is cheap (a dict of interface elements); a pyangbind object is built
    the first time it is asked for and kept for the model's lifetime.  ``built``
    counts the binding objects built so far.
    """

    def __init__(self, data: etree._Element) -> None:
        self.data = data
        self._if_elems: dict[str, etree._Element] | None = None
        self._root: Any = None
        self._vrrp: dict[VrrpKey, Any] = {}
        self.built = 0

    # -- interfaces
    def _index(self) -> dict[str, etree._Element]:
        if self._if_elems is None:
            idx: dict[str, etree._Element] = {}
            ifs = self.data.find(f"{_IF}interfaces")
            if ifs is not None:
                for e in ifs.iterfind(f"{_IF}interface"):
                    idx[e.findtext(f"{_IF}name") or ""] = e
            self._if_elems = idx
        return self._if_elems

    def interface_names(self) -> list[str]:
        return list(self._index())

    def interface_element(self, name: str) -> etree._Element | None:
        return self._index().get(name)

    @property
    def root(self) -> Any:
        """The pyangbind ``ietf_interfaces`` object holding the interfaces built so far."""
        if self._root is None:
            self._root = Interfaces()
        return self._root

    def interface(self, name: str) -> Any | None:
        """The binding of interface ``name`` (with its ipv4/ipv6/vrrp/macvlan), or None."""
        lst = self.root.interfaces.interface
        if name in lst._members:
            return lst._members[name]
        elem = self._index().get(name)
        if elem is None:
            return None
        entry = _add_entry(lst, "name", name, name, IF_NS)
        fill(entry, elem)
        self.built += 1
        return entry

    def interfaces(self) -> Iterator[Any]:
        for name in self._index():
            yield self.interface(name)

    # -- VRRP instances
    def vrrp_keys(self) -> Iterator[VrrpKey]:
        """Every VRRP instance's (interface, family, vrid), without building bindings."""
        for name, elem in self._index().items():
            for fam in FAMILIES:
                for inst in elem.iterfind(f"{{{IP_NS}}}{fam}/{_VRRP}vrrp/{_VRRP}vrrp-instance"):
                    yield VrrpKey(name, fam, int(inst.findtext(f"{_VRRP}vrid")))

    def vrrp_element(self, key: VrrpKey) -> etree._Element | None:
        elem = self._index().get(key.interface)
        if elem is None:
            return None
        for inst in elem.iterfind(f"{{{IP_NS}}}{key.family}/{_VRRP}vrrp/{_VRRP}vrrp-instance"):
            if int(inst.findtext(f"{_VRRP}vrid")) == key.vrid:
                return inst
        return None

    def vrrp_instance(self, key: VrrpKey) -> Any | None:
        """The binding of one VRRP instance (built alone, not with its whole interface)."""
        got = self._vrrp.get(key)
        if got is not None:
            return got
        lst = self.root.interfaces.interface
        if key.interface in lst._members:  # the interface is built already: reuse it
            fam = getattr(lst._members[key.interface], key.family)
            got = fam.vrrp.vrrp_instance._members.get(key.vrid)
            if got is not None:
                self._vrrp[key] = got
            return got
        elem = self.vrrp_element(key)
        if elem is None:
            return None
        got = _yt.YANGDynClass(
            base=VRRP_INSTANCE_CLASS[key.family], yang_name="vrrp-instance",
            is_container="container", path_helper=False, namespace=VRRP_NS,
            register_path=["interfaces", f"interface[name='{key.interface}']", key.family,
                           "vrrp", f"vrrp-instance[vrid='{key.vrid}']"],
        )
        got._set_vrid(key.vrid, load=True)
        fill(got, elem)
        self.built += 1
        self._vrrp[key] = got
        return got

    def vrrp_instances(self) -> Iterator[tuple[str, str, Any]]:
        """(interface name, family, binding) for every VRRP instance, built one at a time."""
        for key in self.vrrp_keys():
            yield key.interface, key.family, self.vrrp_instance(key)
