"""YANG built-in and derived types compiled to fast checker functions.

A :class:`LeafType` checks the text of one leaf instance (RFC 7950 §9, XML
encoding) and returns its canonical text, or raises :class:`TypeMismatch`.
It is compiled once from pyang's resolved ``TypeSpec`` chain; pyang's own
validators are not used on instance data (they treat a leading ``0`` as octal
and check patterns through an XML Schema per value).
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass, field

from pyang import types as pt


class TypeMismatch(ValueError):
    """The value is not valid for the type; the message says why."""


Identity = tuple[str, str]  # (namespace, name)

_INT_RE = re.compile(r"[+-]?[0-9]+\Z")
_DEC_RE = re.compile(r"([+-])?([0-9]+)(?:\.([0-9]+))?\Z")


# --------------------------------------------------------------------------- XSD regex


def xsd_to_python(pattern: str) -> re.Pattern[str]:
    r"""Translate an XSD regular expression (YANG ``pattern``) to a Python one.

    XSD patterns are implicitly anchored; ``^`` and ``$`` are literals; ``\p{L}``,
    ``\p{N}`` and friends are Unicode categories (approximated here).
    """
    out: list[str] = []
    i = 0
    in_class = False
    n = len(pattern)
    while i < n:
        c = pattern[i]
        if c == "\\" and i + 1 < n:
            nxt = pattern[i + 1]
            if nxt in "pP" and i + 2 < n and pattern[i + 2] == "{":
                end = pattern.index("}", i)
                cat = pattern[i + 3 : end]
                cls = _UNICODE_CATEGORIES.get(cat[:1], r"\w")
                if nxt == "P":
                    out.append(f"[^{cls}]" if not in_class else cls)
                else:
                    out.append(cls if in_class else f"[{cls}]")
                i = end + 1
                continue
            if nxt in "iIcC":
                # XML name chars; approximate
                cls = {"i": r"A-Za-z_:", "c": r"\w.\-:"}[nxt.lower()]
                neg = nxt.isupper()
                out.append(f"[{'^' if neg else ''}{cls}]" if not in_class else cls)
                i += 2
                continue
            out.append(pattern[i : i + 2])
            i += 2
            continue
        if in_class:
            if c == "]":
                in_class = False
            elif c == "[":
                c = "\\["
            out.append(c)
        else:
            if c == "[":
                in_class = True
                out.append(c)
                if i + 1 < n and pattern[i + 1] == "^":
                    out.append("^")
                    i += 1
                if i + 1 < n and pattern[i + 1] == "]":
                    out.append("\\]")
                    i += 1
            elif c in "^$":
                out.append("\\" + c)
            else:
                out.append(c)
        i += 1
    return re.compile("(?:" + "".join(out) + r")\Z", re.DOTALL)


_UNICODE_CATEGORIES = {
    "L": r"^\W\d_",  # used inside [...]; see below
    "N": r"0-9",
    "P": r"!-/:-@\[-`{-~",
    "S": r"$+<->^`|~",
    "Z": r"\s",
}
# "^\W\d_" cannot be embedded in a class; use an explicit letter range instead
_UNICODE_CATEGORIES["L"] = "A-Za-z\u00aa\u00b5\u00ba\u00c0-\u00d6\u00d8-\u00f6\u00f8-\u02ff"


# --------------------------------------------------------------------------- LeafType


@dataclass(eq=False)
class LeafType:
    """A compiled YANG type."""

    name: str  # the built-in type name (after typedef resolution)
    check: Callable[[str, dict], str] = field(repr=False)
    # identityref: resolved (ns, name) of the value, see identity_of()
    leafref_path: str | None = None
    leafref_module: object | None = field(default=None, repr=False)  # pyang module stmt
    require_instance: bool = False
    members: list[LeafType] = field(default_factory=list, repr=False)  # union

    def canonical(self, text: str, nsmap: dict) -> str:
        """Canonical text of ``text`` (raises :class:`TypeMismatch`)."""
        return self.check(text, nsmap)

    def is_identityref(self) -> bool:
        return self.name == "identityref" or any(m.is_identityref() for m in self.members)


class IdentityTable:
    """Identities of all loaded modules and their derivation (RFC 7950 §7.18)."""

    def __init__(self) -> None:
        self.bases: dict[Identity, set[Identity]] = {}  # identity -> all ancestors
        self.prefix_of_ns: dict[str, str] = {}

    def add(self, ident: Identity, direct_bases: list[Identity]) -> None:
        self.bases.setdefault(ident, set()).update(direct_bases)

    def close(self) -> None:
        """Make ``bases`` transitive."""
        changed = True
        while changed:
            changed = False
            for bs in self.bases.values():
                extra = set()
                for b in bs:
                    extra |= self.bases.get(b, set())
                if not extra <= bs:
                    bs |= extra
                    changed = True

    def derived_from(
        self, value_ns: str, value_name: str, base_ns: str, base_name: str, or_self: bool
    ) -> bool:
        v = (value_ns, value_name)
        b = (base_ns, base_name)
        if or_self and v == b:
            return True
        return b in self.bases.get(v, ())


def resolve_qname(text: str, nsmap: dict) -> Identity:
    """Resolve an identityref value ``prefix:name`` through an element's nsmap."""
    text = text.strip()
    if ":" in text:
        prefix, name = text.split(":", 1)
        ns = nsmap.get(prefix)
        if ns is None:
            raise TypeMismatch(f"unknown prefix '{prefix}' in identityref value '{text}'")
    else:
        name = text
        ns = nsmap.get(None)
        if ns is None:
            raise TypeMismatch(f"identityref value '{text}' has no namespace")
    return ns, name


def compile_type(type_stmt, identities: IdentityTable) -> LeafType:
    """Compile the pyang ``type`` statement of a leaf/leaf-list into a :class:`LeafType`."""
    spec = type_stmt.i_type_spec
    lt = _compile_spec(spec, type_stmt, identities)
    canon = _canonicalizer(type_stmt)
    if canon is not None and lt.name == "string":
        check = lt.check

        def check_canon(text: str, nsmap: dict) -> str:
            return canon(check(text, nsmap))

        lt.check = check_canon
    return lt


def _typedef_names(type_stmt) -> list[str]:
    names = []
    t = type_stmt
    while t is not None:
        td = getattr(t, "i_typedef", None)
        if td is None:
            break
        names.append(td.arg)
        t = td.search_one("type")
    return names


def _canon_ipv6(text: str) -> str:
    addr, sep, zone = text.partition("%")
    try:
        return ipaddress.IPv6Address(addr).compressed + sep + zone
    except ValueError as exc:
        raise TypeMismatch(f"'{text}' is not a valid IPv6 address") from exc


def _canon_prefix(text: str) -> str:
    try:
        return ipaddress.ip_network(text, strict=False).compressed
    except ValueError as exc:
        raise TypeMismatch(f"'{text}' is not a valid prefix") from exc


_CANONICAL: dict[str, Callable[[str], str]] = {
    "mac-address": str.lower,
    "phys-address": str.lower,
    "hex-string": str.lower,
    "ipv6-address": _canon_ipv6,
    "ipv6-address-no-zone": _canon_ipv6,
    "ipv4-prefix": _canon_prefix,
    "ipv6-prefix": _canon_prefix,
}


def _canonicalizer(type_stmt) -> Callable[[str], str] | None:
    for name in _typedef_names(type_stmt):
        c = _CANONICAL.get(name)
        if c is not None:
            return c
    return None


def _compile_spec(spec, type_stmt, identities: IdentityTable) -> LeafType:  # noqa: C901
    # peel restrictions, innermost base last
    ranges: list[list] = []
    lengths: list[list] = []
    patterns: list[tuple[re.Pattern[str], bool, str]] = []
    s = spec
    while True:
        if isinstance(s, pt.RangeTypeSpec):
            ranges.append(s.ranges)
            s = s.base
        elif isinstance(s, pt.LengthTypeSpec):
            lengths.append(s.lengths)
            s = s.base
        elif isinstance(s, pt.PatternTypeSpec):
            for p in s.res:
                try:
                    rx = xsd_to_python(p.spec)
                except (re.error, ValueError):  # pragma: no cover - fall back to lxml schema
                    rx = None
                patterns.append((rx, p.invert_match, p.spec, p))
            s = s.base
        elif isinstance(s, pt.PathTypeSpec):
            target = s.i_target_node
            inner = compile_type(target.search_one("type"), identities)
            require = getattr(s, "require_instance", True)
            ri = type_stmt.search_one("require-instance")
            if ri is not None:
                require = ri.arg == "true"
            src = getattr(s, "i_source_stmt", type_stmt)
            return LeafType(
                "leafref",
                inner.check,
                leafref_path=s.path_.arg if hasattr(s.path_, "arg") else str(s.path_),
                leafref_module=getattr(src, "i_orig_module", None) or src.i_module,
                require_instance=require,
                members=inner.members,
            )
        else:
            break

    def range_ok(v) -> bool:
        for rs in ranges:
            if not any(_in_range(v, lo, hi) for lo, hi in rs):
                return False
        return True

    def length_ok(n: int) -> bool:
        for ls in lengths:
            if not any(_in_range(n, lo, hi) for lo, hi in ls):
                return False
        return True

    def patterns_ok(v: str) -> str | None:
        for rx, invert, src, p in patterns:
            ok = bool(rx.match(v)) if rx is not None else bool(p(v))
            if ok == invert:
                return src
        return None

    if isinstance(s, pt.IntTypeSpec):
        lo_b, hi_b = s.min, s.max

        def check_int(text: str, _ns: dict) -> str:
            t = text.strip()
            if not _INT_RE.match(t):
                raise TypeMismatch(f"'{text}' is not a valid {s.name}")
            v = int(t)
            if v < lo_b or v > hi_b:
                raise TypeMismatch(f"'{text}' is out of the {s.name} range {lo_b}..{hi_b}")
            if ranges and not range_ok(v):
                raise TypeMismatch(f"'{text}' is not in the range {_fmt_ranges(ranges)}")
            return str(v)

        return LeafType(s.name, check_int)

    if isinstance(s, pt.Decimal64TypeSpec):
        fd = s.fraction_digits

        def check_dec(text: str, _ns: dict) -> str:
            m = _DEC_RE.match(text.strip())
            if not m or (m.group(3) and len(m.group(3)) > fd):
                raise TypeMismatch(f"'{text}' is not a valid decimal64 with {fd} fraction digits")
            frac = (m.group(3) or "").ljust(fd, "0")
            v = int(m.group(2) + frac) * (-1 if m.group(1) == "-" else 1)
            if not -(2**63) <= v < 2**63:
                raise TypeMismatch(f"'{text}' is out of the decimal64 range")
            if ranges:
                val = pt.Decimal64Value(v, fd=fd)
                if not range_ok(val):
                    raise TypeMismatch(f"'{text}' is not in the range {_fmt_ranges(ranges)}")
            sign = "-" if v < 0 else ""
            digits = str(abs(v)).rjust(fd + 1, "0")
            ip, fp = digits[:-fd], digits[-fd:].rstrip("0") or "0"
            return f"{sign}{ip}.{fp}"

        return LeafType("decimal64", check_dec)

    if isinstance(s, pt.BooleanTypeSpec):

        def check_bool(text: str, _ns: dict) -> str:
            t = text.strip()
            if t not in ("true", "false"):
                raise TypeMismatch(f"'{text}' is not a boolean (true or false)")
            return t

        return LeafType("boolean", check_bool)

    if isinstance(s, pt.EmptyTypeSpec):

        def check_empty(text: str, _ns: dict) -> str:
            if text.strip():
                raise TypeMismatch("a leaf of type empty takes no value")
            return ""

        return LeafType("empty", check_empty)

    if isinstance(s, pt.BinaryTypeSpec):

        def check_bin(text: str, _ns: dict) -> str:
            try:
                raw = base64.b64decode("".join(text.split()), validate=True)
            except (binascii.Error, ValueError) as exc:
                raise TypeMismatch(f"'{text}' is not valid base64") from exc
            if lengths and not length_ok(len(raw)):
                raise TypeMismatch(f"binary length {len(raw)} not in {_fmt_ranges(lengths)}")
            return base64.b64encode(raw).decode()

        return LeafType("binary", check_bin)

    if isinstance(s, pt.EnumTypeSpec):
        names = {n for n, _ in s.enums}

        def check_enum(text: str, _ns: dict) -> str:
            t = text.strip()
            if t not in names:
                raise TypeMismatch(f"'{text}' is not one of: {', '.join(sorted(names))}")
            return t

        return LeafType("enumeration", check_enum)

    if isinstance(s, pt.BitTypeSpec):
        positions = dict(s.bits)

        def check_bits(text: str, _ns: dict) -> str:
            bits = text.split()
            for b in bits:
                if b not in positions:
                    raise TypeMismatch(f"'{b}' is not a bit of this type")
            if len(set(bits)) != len(bits):
                raise TypeMismatch(f"bit repeated in '{text}'")
            return " ".join(sorted(bits, key=positions.__getitem__))

        return LeafType("bits", check_bits)

    if isinstance(s, pt.IdentityrefTypeSpec):
        bases = [
            (b.i_identity.i_module.search_one("namespace").arg, b.i_identity.arg) for b in s.idbases
        ]

        def check_idref(text: str, nsmap: dict) -> str:
            ns, name = resolve_qname(text, nsmap)
            if (ns, name) not in identities.bases:
                raise TypeMismatch(f"'{text}' is not a known identity")
            for bns, bname in bases:
                if not identities.derived_from(ns, name, bns, bname, False):
                    raise TypeMismatch(f"identity '{text}' is not derived from '{bname}'")
            return f"{identities.prefix_of_ns[ns]}:{name}"

        return LeafType("identityref", check_idref)

    if isinstance(s, pt.UnionTypeSpec):
        members = [compile_type(t, identities) for t in s.types]

        def check_union(text: str, nsmap: dict) -> str:
            for m in members:
                try:
                    return m.check(text, nsmap)
                except TypeMismatch:
                    continue
            raise TypeMismatch(f"'{text}' matches none of the union's member types")

        return LeafType("union", check_union, members=members)

    if isinstance(s, pt.InstanceIdentifierTypeSpec):

        def check_ii(text: str, _ns: dict) -> str:
            if not text.strip().startswith("/"):
                raise TypeMismatch(f"'{text}' is not an instance-identifier")
            return text.strip()

        return LeafType("instance-identifier", check_ii)

    # string (and anything unknown treated as string)
    def check_str(text: str, _ns: dict) -> str:
        if lengths and not length_ok(len(text)):
            raise TypeMismatch(f"length {len(text)} of '{text}' is not in {_fmt_ranges(lengths)}")
        if patterns:
            bad = patterns_ok(text)
            if bad is not None:
                raise TypeMismatch(f"'{text}' does not match the pattern '{bad}'")
        return text

    return LeafType("string", check_str)


def _in_range(v, lo, hi) -> bool:
    if lo == "min" or lo is None:
        lo_ok = True
    else:
        lo_ok = v >= lo
    if hi is None:
        return lo_ok and (lo == "min" or lo is None or v == lo)
    if hi == "max":
        return lo_ok
    return lo_ok and v <= hi


def _fmt_ranges(ranges: list[list]) -> str:
    parts = []
    for lo, hi in ranges[-1]:
        parts.append(str(lo) if hi is None else f"{lo}..{hi}")
    return " | ".join(parts)
