"""Parsing of RPC parameters shared by the operations (source, target, ...)."""

from __future__ import annotations

from lxml import etree

from agent.protocol.errors import PROTOCOL, RpcError, bad_element
from agent.protocol.namespaces import NC, WD

DATASTORES = ("running", "candidate", "startup")


def child(op: etree._Element, name: str, ns: str = NC) -> etree._Element | None:
    return op.find(f"{{{ns}}}{name}")


def check_params(op: etree._Element, allowed: set[str]) -> None:
    """Reject parameters the operation does not define (RFC 6241: unknown-element)."""
    for c in op:
        if not isinstance(c.tag, str):
            continue
        if c.tag not in allowed:
            name = etree.QName(c).localname
            raise RpcError(
                "unknown-element",
                f"unexpected parameter '{name}' in '{etree.QName(op).localname}'",
                type=PROTOCOL,
                info=[bad_element(name)],
            )


def datastore_param(
    op: etree._Element,
    which: str,
    allowed: tuple[str, ...] = DATASTORES,
    *,
    allow_config: bool = False,
) -> str | etree._Element:
    """The datastore named in ``<source>``/``<target>``, or an inline ``<config>``."""
    p = child(op, which)
    if p is None:
        raise RpcError(
            "missing-element", f"missing <{which}> parameter", type=PROTOCOL,
            info=[bad_element(which)],
        )
    inner = [c for c in p if isinstance(c.tag, str)]
    if len(inner) != 1:
        raise RpcError(
            "missing-element" if not inner else "bad-element",
            f"<{which}> must name exactly one datastore",
            type=PROTOCOL,
            info=[bad_element(which)],
        )
    el = inner[0]
    q = etree.QName(el)
    if q.namespace == NC and q.localname == "config" and allow_config:
        return el
    if q.namespace == NC and q.localname == "url":
        raise RpcError(
            "operation-not-supported", "the :url capability is not supported",
            type=PROTOCOL, info=[bad_element("url")],
        )
    if q.namespace != NC or q.localname not in allowed:
        raise RpcError(
            "invalid-value" if q.namespace == NC and q.localname in DATASTORES else "bad-element",
            f"datastore '{q.localname}' cannot be the {which} of this operation",
            type=PROTOCOL,
            info=[bad_element(which)],
        )
    return q.localname


WITH_DEFAULTS_MODES = ("report-all", "report-all-tagged", "trim", "explicit")


def with_defaults_param(op: etree._Element) -> str:
    wd = child(op, "with-defaults", WD)
    if wd is None:
        return "explicit"
    mode = (wd.text or "").strip()
    if mode not in WITH_DEFAULTS_MODES:
        raise RpcError(
            "invalid-value", f"unsupported with-defaults mode '{mode}'",
            type=PROTOCOL, info=[bad_element("with-defaults")],
        )
    return mode


def enum_param(op: etree._Element, name: str, values: tuple[str, ...], default: str) -> str:
    el = child(op, name)
    if el is None:
        return default
    v = (el.text or "").strip()
    if v not in values:
        raise RpcError(
            "invalid-value", f"'{v}' is not a valid {name} (one of {', '.join(values)})",
            type=PROTOCOL, info=[bad_element(name)],
        )
    return v
