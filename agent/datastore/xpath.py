"""XPath 1.0 for YANG (``when``/``must``/leafref paths) and NETCONF filters, on lxml.

An expression is tokenized (XPath 1.0 §3.7 lexical rules) and *rewritten*
before lxml compiles it:

* absolute location paths start at the ``<data>`` wrapper, not at the XML
  document root: ``/a/b`` → ``$__root/a/b``, ``//a`` → ``$__root//a``, ``/`` →
  ``$__root``;
* unprefixed name tests get ``default_prefix`` (RFC 7950 §6.4.1); without a
  default prefix (NETCONF filter mode) ``foo`` → ``*[local-name()='foo']``,
  i.e. any namespace. Attribute and namespace name tests are left alone;
* ``current()`` → ``$__current``; the other YANG 1.1 functions (RFC 7950 §10:
  ``re-match``, ``deref``, ``derived-from``, ``derived-from-or-self``,
  ``enum-value``, ``bit-is-set``) → the private function namespace
  :data:`FUNCTIONS_NS`. They are given to lxml as per-expression extensions
  (not a global ``etree.FunctionNamespace``) so each expression carries its own
  prefix map, default namespace and :class:`IdentityOracle`.

Schema-dependent functions ask the oracle: ``derived-from*`` call
``oracle.derived_from``; ``deref`` calls ``oracle.deref(elem)`` and
``enum-value`` calls ``oracle.enum_value(elem)`` when the oracle has them.
Without them ``deref`` only follows instance-identifier values (text starting
with ``/``) and ``enum-value`` returns NaN.

Known limits: variables other than the internal ones are rejected (YANG and
NETCONF define none); ``ancestor::``/``..`` can step above the top-level data
nodes onto the ``<data>`` wrapper. lxml serialises evaluations of one XPath
object with a non-reentrant lock: an oracle's ``deref`` must not evaluate the
very expression that is calling it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from functools import lru_cache
from typing import NamedTuple, Protocol

from lxml import etree

from agent.datastore.yangtypes import xsd_to_python
from agent.protocol.namespaces import NC

__all__ = [
    "FUNCTIONS_NS",
    "CompiledXPath",
    "IdentityOracle",
    "Token",
    "UnknownPrefixError",
    "XPathError",
    "XPathEvalError",
    "XPathSyntaxError",
    "compile_xpath",
    "tokenize",
    "to_boolean",
]

FUNCTIONS_NS = "urn:netconf-vrrp-agent:xpath-functions"
_FP = "__yangfn"  # prefix of FUNCTIONS_NS in rewritten expressions
ROOT_VAR = "__root"
CURRENT_VAR = "__current"


class IdentityOracle(Protocol):
    """Schema knowledge for the YANG functions (the schema's ``IdentityTable`` is one).

    Optionally also ``deref(elem) -> Sequence[etree._Element]`` (leafref targets) and
    ``enum_value(elem) -> int | None``; they are looked up with ``getattr``.
    """

    def derived_from(
        self, value_ns: str, value_name: str, base_ns: str, base_name: str, or_self: bool
    ) -> bool: ...


class XPathError(ValueError):
    """Base of the errors raised by this module."""


class XPathSyntaxError(XPathError):
    """The expression is not valid XPath 1.0 (or uses something unsupported)."""


class UnknownPrefixError(XPathSyntaxError):
    """A prefix used in the expression is not in the prefix map."""

    def __init__(self, prefix: str, expr: str) -> None:
        super().__init__(f"unknown namespace prefix '{prefix}' in XPath expression {expr!r}")
        self.prefix = prefix


class XPathEvalError(XPathError):
    """Evaluation failed (lxml/libxml2 runtime error)."""


# --------------------------------------------------------------------------- tokenizer


class Token(NamedTuple):
    kind: str  # lit num var op punct name func nodetype axis
    text: str
    pos: int


_NCNAME = r"[^\W\d][\w.\-\u00b7]*"
_WS = re.compile(r"[ \t\r\n]*")
_NUMBER = re.compile(r"\d+(?:\.\d*)?|\.\d+")
_NAME = re.compile(rf"({_NCNAME})(?::({_NCNAME}|\*))?")
_VAR = re.compile(rf"\$({_NCNAME}(?::{_NCNAME})?)")
_PUNCT2 = ("..", "::", "//", "!=", "<=", ">=")
_PUNCT1 = "()[].@,/|+-=<>*"
_OPERATOR_NAMES = frozenset({"and", "or", "mod", "div"})
_OPERATORS = frozenset({"/", "//", "|", "+", "-", "=", "!=", "<", "<=", ">", ">="})
_NODE_TYPES = frozenset({"comment", "text", "processing-instruction", "node"})
_OPERAND_START = frozenset({"@", "::", "(", "[", ","})

CORE_FUNCTIONS = frozenset(
    {
        "last", "position", "count", "id", "local-name", "namespace-uri", "name",
        "string", "concat", "starts-with", "contains", "substring-before",
        "substring-after", "substring", "string-length", "normalize-space", "translate",
        "boolean", "not", "true", "false", "lang", "number", "sum", "floor", "ceiling",
        "round",
    }
)  # fmt: skip
YANG_FUNCTIONS = frozenset(
    {"re-match", "deref", "derived-from", "derived-from-or-self", "enum-value", "bit-is-set"}
)


def _operator_context(prev: Token | None) -> bool:
    """True when the previous token ends an operand, so the next one must be an operator."""
    if prev is None:
        return False
    if prev.kind == "op":
        return False
    return not (prev.kind == "punct" and prev.text in _OPERAND_START)


def tokenize(expr: str) -> list[Token]:
    """Split an XPath 1.0 expression into tokens, applying the §3.7 disambiguation rules."""
    toks: list[Token] = []
    i, n = 0, len(expr)
    while True:
        i = _WS.match(expr, i).end()
        if i >= n:
            return toks
        c = expr[i]
        prev = toks[-1] if toks else None
        if c in "'\"":
            end = expr.find(c, i + 1)
            if end < 0:
                raise XPathSyntaxError(f"unterminated string literal at {i} in {expr!r}")
            toks.append(Token("lit", expr[i : end + 1], i))
            i = end + 1
            continue
        m = _NUMBER.match(expr, i)
        if m:
            toks.append(Token("num", m.group(), i))
            i = m.end()
            continue
        if c == "$":
            m = _VAR.match(expr, i)
            if not m:
                raise XPathSyntaxError(f"bad variable reference at {i} in {expr!r}")
            toks.append(Token("var", m.group(), i))
            i = m.end()
            continue
        two = expr[i : i + 2]
        if two in _PUNCT2:
            kind = "op" if two in _OPERATORS else "punct"
            toks.append(Token(kind, two, i))
            i += 2
            continue
        if c == "*":
            # MultiplyOperator or the "*" name test
            toks.append(Token("op" if _operator_context(prev) else "name", c, i))
            i += 1
            continue
        if c in _PUNCT1:
            toks.append(Token("op" if c in _OPERATORS else "punct", c, i))
            i += 1
            continue
        m = _NAME.match(expr, i)
        if not m:
            raise XPathSyntaxError(f"unexpected character {c!r} at {i} in {expr!r}")
        text = m.group()
        j = _WS.match(expr, m.end()).end()
        if _operator_context(prev):
            if text not in _OPERATOR_NAMES:
                raise XPathSyntaxError(f"expected an operator at {i}, found {text!r} in {expr!r}")
            kind = "op"
        elif expr.startswith("::", j) and m.group(2) is None:
            kind = "axis"
        elif expr.startswith("(", j) and not text.endswith("*"):
            kind = "nodetype" if text in _NODE_TYPES else "func"
        else:
            kind = "name"
        toks.append(Token(kind, text, i))
        i = m.end()


# --------------------------------------------------------------------------- rewriting


class _Rewrite(NamedTuple):
    text: str
    uses_root: bool
    uses_current: bool
    functions: frozenset[str]
    identity_literals: tuple[str, ...]


_STEP_START = frozenset({"name", "nodetype", "axis"})


def _rewrite(expr: str, prefixes: dict[str, str], default_prefix: str | None) -> _Rewrite:
    toks = tokenize(expr)
    if not toks:
        raise XPathSyntaxError("empty XPath expression")
    out: list[str] = []
    uses_root = uses_current = False
    funcs: set[str] = set()
    id_lits: list[str] = []
    n = len(toks)
    i = 0
    while i < n:
        t = toks[i]
        prev = toks[i - 1] if i else None
        if t.kind == "op" and t.text in ("/", "//") and not _operator_context(prev):
            uses_root = True
            nxt = toks[i + 1] if i + 1 < n else None
            starts_step = nxt is not None and (
                nxt.kind in _STEP_START or (nxt.kind == "punct" and nxt.text in (".", "..", "@"))
            )
            out.append(f"${ROOT_VAR}")
            if t.text == "//" or starts_step:
                out.append(t.text)
        elif t.kind == "name":
            out.append(
                _name_test(t, prev, toks[i - 2] if i > 1 else None, prefixes, default_prefix, expr)
            )
        elif t.kind == "func":
            name = t.text
            if ":" in name:
                raise XPathSyntaxError(f"unknown function {name}() in {expr!r}")
            if name == "current":
                if i + 2 >= n or toks[i + 1].text != "(" or toks[i + 2].text != ")":
                    raise XPathSyntaxError(f"current() takes no arguments in {expr!r}")
                uses_current = True
                out.append(f"${CURRENT_VAR}")
                i += 3
                continue
            if name in YANG_FUNCTIONS:
                funcs.add(name)
                out.append(f"{_FP}:{name}")
                if name.startswith("derived-from"):
                    lit = _second_literal_arg(toks, i)
                    if lit is not None:
                        id_lits.append(lit)
            elif name in CORE_FUNCTIONS:
                out.append(name)
            else:
                raise XPathSyntaxError(f"unknown function {name}() in {expr!r}")
        elif t.kind == "var":
            raise XPathSyntaxError(f"variable references are not supported: {t.text} in {expr!r}")
        else:
            out.append(t.text)
        i += 1
    for lit in id_lits:
        if ":" in lit:
            p = lit.split(":", 1)[0].strip()
            if p not in prefixes:
                raise UnknownPrefixError(p, expr)
    return _Rewrite(" ".join(out), uses_root, uses_current, frozenset(funcs), tuple(id_lits))


def _name_test(
    t: Token,
    prev: Token | None,
    prev2: Token | None,
    prefixes: dict[str, str],
    default_prefix: str | None,
    expr: str,
) -> str:
    text = t.text
    if ":" in text:
        p = text.split(":", 1)[0]
        if p not in prefixes:
            raise UnknownPrefixError(p, expr)
        return text
    if text == "*":
        return text
    on_attr = prev is not None and (
        prev.text == "@"
        or (prev.text == "::" and prev2 is not None and prev2.text in ("attribute", "namespace"))
    )
    if on_attr:
        return text
    if default_prefix is not None:
        return f"{default_prefix}:{text}"
    return f"*[local-name()='{text}']"


def _second_literal_arg(toks: list[Token], i: int) -> str | None:
    """The string literal given as 2nd argument of the function call at ``toks[i]``, if any."""
    depth = 0
    j = i + 1
    while j < len(toks):
        t = toks[j]
        if t.kind == "punct" and t.text in ("(", "["):
            depth += 1
        elif t.kind == "punct" and t.text in (")", "]"):
            depth -= 1
            if depth == 0:
                return None
        elif t.kind == "punct" and t.text == "," and depth == 1:
            if j + 2 < len(toks) and toks[j + 1].kind == "lit" and toks[j + 2].text == ")":
                return toks[j + 1].text[1:-1]
            return None
        j += 1
    return None


# --------------------------------------------------------------------------- YANG functions


def _node_of(item: object) -> etree._Element | None:
    if isinstance(item, etree._Element):
        return item if isinstance(item.tag, str) else None
    getparent = getattr(item, "getparent", None)  # lxml smart string (text node)
    return getparent() if getparent is not None else None


def _string_value(item: object) -> str:
    if isinstance(item, etree._Element):
        return "".join(item.itertext())
    return str(item)


def to_string(v: object) -> str:
    """XPath ``string()`` of an lxml XPath result."""
    if isinstance(v, list):
        return _string_value(v[0]) if v else ""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        if math.isnan(v):
            return "NaN"
        if math.isinf(v):
            return "Infinity" if v > 0 else "-Infinity"
        if v == int(v):
            return str(int(v))
        return repr(v)
    return str(v)


def to_boolean(v: object) -> bool:
    """XPath ``boolean()`` of an lxml XPath result."""
    if isinstance(v, float):
        return v != 0 and not math.isnan(v)
    return bool(v)


@lru_cache(maxsize=1024)
def _xsd_regex(pattern: str) -> re.Pattern[str]:
    return xsd_to_python(pattern)


def _tag_ns(tag: str) -> str:
    return tag[1:].partition("}")[0] if tag[:1] == "{" else ""


def _data_root_of(elem: etree._Element) -> etree._Element:
    """The ``<data>`` wrapper above ``elem`` (the first ancestor outside any YANG namespace)."""
    top = elem
    for anc in elem.iterancestors():
        top = anc
        if anc.tag == f"{{{NC}}}data":
            return anc
    return top


def _make_functions(
    used: frozenset[str],
    prefixes: dict[str, str],
    default_prefix: str | None,
    oracle: IdentityOracle | None,
) -> dict[tuple[str, str], Callable[..., object]]:
    default_ns = prefixes.get(default_prefix) if default_prefix is not None else None
    ident_cache: dict[str, tuple[str | None, str] | None] = {}
    derive_cache: dict[tuple[str, str, str, str, bool], bool] = {}

    def resolve_base(arg: str) -> tuple[str | None, str] | None:
        r = ident_cache.get(arg, False)
        if r is not False:
            return r  # type: ignore[return-value]
        s = arg.strip()
        if ":" in s:
            p, name = s.split(":", 1)
            ns = prefixes.get(p)
            res = None if ns is None else (ns, name)
        else:
            res = (default_ns, s)  # None: filter mode, same namespace as the value
        ident_cache[arg] = res
        return res

    def derived(nodes: object, ident: object, or_self: bool) -> bool:
        base = resolve_base(ident if type(ident) is str else to_string(ident))
        if base is None or type(nodes) is not list:
            return False
        base_ns, base_name = base
        for item in nodes:
            el = item if type(item) is etree._Element else _node_of(item)
            text = None if el is None else el.text
            if not text:
                continue
            p, colon, vname = text.strip().partition(":")
            if colon:
                vns = el.nsmap.get(p)
                if vns is None:
                    continue
            else:
                vname, vns = p, _tag_ns(el.tag)
            key = (vns, vname, base_ns, base_name, or_self)
            ok = derive_cache.get(key)
            if ok is None:
                bns = vns if base_ns is None else base_ns
                if oracle is not None:
                    ok = bool(oracle.derived_from(vns, vname, bns, base_name, or_self))
                else:
                    ok = or_self and (vns, vname) == (bns, base_name)
                if len(derive_cache) < 4096:
                    derive_cache[key] = ok
            if ok:
                return True
        return False

    def f_derived_from(_ctx: object, nodes: object, ident: object) -> bool:
        return derived(nodes, ident, False)

    def f_derived_from_or_self(_ctx: object, nodes: object, ident: object) -> bool:
        return derived(nodes, ident, True)

    def f_re_match(_ctx: object, value: object, pattern: object) -> bool:
        try:
            rx = _xsd_regex(to_string(pattern))
        except (re.error, ValueError) as exc:
            raise XPathEvalError(f"re-match(): invalid pattern: {exc}") from exc
        return rx.match(to_string(value)) is not None

    def f_bit_is_set(_ctx: object, nodes: object, bit: object) -> bool:
        if not isinstance(nodes, list) or not nodes:
            return False
        return to_string(bit) in _string_value(nodes[0]).split()

    def f_enum_value(_ctx: object, nodes: object) -> float:
        if not isinstance(nodes, list) or not nodes:
            return math.nan
        el = _node_of(nodes[0])
        fn = getattr(oracle, "enum_value", None)
        if el is None or fn is None:
            return math.nan
        v = fn(el)
        return math.nan if v is None else float(v)

    def f_deref(_ctx: object, nodes: object) -> list:
        if not isinstance(nodes, list) or not nodes:
            return []
        el = _node_of(nodes[0])
        if el is None:
            return []
        fn = getattr(oracle, "deref", None)
        if fn is not None:
            return list(fn(el))
        text = (el.text or "").strip()
        if not text.startswith("/"):
            return []
        items = tuple(sorted((k, v) for k, v in el.nsmap.items() if k))
        try:
            res = _instance_identifier(text, items).evaluate(el, _data_root_of(el))
        except XPathError:
            return []
        return res if isinstance(res, list) else []

    table: dict[str, Callable[..., object]] = {
        "derived-from": f_derived_from,
        "derived-from-or-self": f_derived_from_or_self,
        "re-match": f_re_match,
        "bit-is-set": f_bit_is_set,
        "enum-value": f_enum_value,
        "deref": f_deref,
    }
    return {(FUNCTIONS_NS, name): table[name] for name in used}


@lru_cache(maxsize=1024)
def _instance_identifier(text: str, prefix_items: tuple[tuple[str, str], ...]) -> CompiledXPath:
    # Own cache, never shared with compile_xpath(): an lxml XPath object holds a lock while
    # it runs, so evaluating the expression that called deref() again would deadlock.
    return CompiledXPath(text, dict(prefix_items), None, None, False)


# --------------------------------------------------------------------------- compiled form


class CompiledXPath:
    """A rewritten, lxml-compiled expression. Immutable; safe to share and cache."""

    __slots__ = ("source", "rewritten", "_xp", "_xp_bool", "_ns", "_ext", "_rw", "_smart")

    def __init__(
        self,
        source: str,
        prefixes: dict[str, str],
        default_prefix: str | None,
        oracle: IdentityOracle | None,
        smart_strings: bool,
    ) -> None:
        if default_prefix is not None and default_prefix not in prefixes:
            raise UnknownPrefixError(default_prefix, source)
        rw = _rewrite(source, prefixes, default_prefix)
        self.source = source
        self.rewritten = rw.text
        self._rw = rw
        ns = {k: v for k, v in prefixes.items() if k}
        if rw.functions:
            ns[_FP] = FUNCTIONS_NS
        self._ns = ns
        self._ext = _make_functions(rw.functions, prefixes, default_prefix, oracle)
        self._smart = smart_strings
        self._xp = self._compile(rw.text)
        self._xp_bool: etree.XPath | None = None

    def _compile(self, text: str) -> etree.XPath:
        try:
            return etree.XPath(
                text,
                namespaces=self._ns,
                extensions=self._ext or None,
                regexp=False,
                smart_strings=self._smart,
            )
        except etree.XPathSyntaxError as exc:
            raise XPathSyntaxError(f"invalid XPath expression {self.source!r}: {exc}") from exc

    def __repr__(self) -> str:
        return f"CompiledXPath({self.source!r})"

    def _run(
        self,
        xp: etree.XPath,
        context: etree._Element,
        root: etree._Element,
        current: etree._Element | None,
    ) -> object:
        rw = self._rw
        try:
            if rw.uses_root or rw.uses_current:
                # a dict: "__root=" as a keyword would be name-mangled in a class body
                variables: dict[str, object] = {}
                if rw.uses_root:
                    variables[ROOT_VAR] = root
                if rw.uses_current:
                    variables[CURRENT_VAR] = context if current is None else current
                return xp(context, **variables)
            return xp(context)
        except etree.XPathError as exc:
            raise XPathEvalError(f"cannot evaluate XPath {self.source!r}: {exc}") from exc

    def evaluate(
        self,
        context: etree._Element,
        root: etree._Element,
        *,
        current: etree._Element | None = None,
    ) -> object:
        """Node-set (list), str, float or bool. ``root`` is the ``<data>`` wrapper."""
        return self._run(self._xp, context, root, current)

    def boolean(
        self,
        context: etree._Element,
        root: etree._Element,
        *,
        current: etree._Element | None = None,
    ) -> bool:
        """XPath ``boolean()`` of the result (computed inside libxml2: no node proxies)."""
        xp = self._xp_bool
        if xp is None:
            xp = self._xp_bool = self._compile(f"boolean({self.rewritten})")
        return bool(self._run(xp, context, root, current))


# --------------------------------------------------------------------------- cache


@lru_cache(maxsize=8192)
def _compile_cached(
    expr: str,
    prefix_items: tuple[tuple[str, str], ...],
    default_prefix: str | None,
    oracle: IdentityOracle | None,
    smart_strings: bool,
) -> CompiledXPath:
    return CompiledXPath(expr, dict(prefix_items), default_prefix, oracle, smart_strings)


def compile_xpath(
    expr: str,
    prefixes: dict[str, str],
    *,
    default_prefix: str | None = None,
    oracle: IdentityOracle | None = None,
    smart_strings: bool = False,
) -> CompiledXPath:
    """Compile (or fetch from the LRU cache) an expression.

    ``prefixes`` maps every prefix the expression may use (module prefixes or
    module names, as the caller decides) to a namespace. ``default_prefix``
    (one of ``prefixes``) is given to unprefixed names; ``None`` means NETCONF
    filter mode (unprefixed names match any namespace). ``smart_strings``
    makes text nodes in results lxml smart strings (with ``getparent()``).
    """
    items = tuple(sorted((k, v) for k, v in prefixes.items() if k))
    try:
        hash(oracle)
    except TypeError:  # unhashable oracle: no caching
        return CompiledXPath(expr, dict(items), default_prefix, oracle, smart_strings)
    return _compile_cached(expr, items, default_prefix, oracle, smart_strings)


def clear_cache() -> None:
    _compile_cached.cache_clear()
