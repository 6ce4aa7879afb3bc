"""NETCONF ``rpc-error`` as data (RFC 6241 §4.3, Appendix A).

Every layer raises :class:`RpcError` (or collects several in :class:`RpcErrors`);
only the protocol layer turns them into XML.
"""

from __future__ import annotations

from collections.abc import Iterable

from lxml import etree

from agent.protocol.namespaces import NC

# error-type values
TRANSPORT = "transport"
RPC = "rpc"
PROTOCOL = "protocol"
APPLICATION = "application"

ERROR_TAGS = frozenset(
    {
        "in-use",
        "invalid-value",
        "too-big",
        "missing-attribute",
        "bad-attribute",
        "unknown-attribute",
        "missing-element",
        "bad-element",
        "unknown-element",
        "unknown-namespace",
        "access-denied",
        "lock-denied",
        "resource-denied",
        "rollback-failed",
        "data-exists",
        "data-missing",
        "operation-not-supported",
        "operation-failed",
        "partial-operation",
        "malformed-message",
    }
)


class RpcError(Exception):
    """One ``<rpc-error>``.

    ``path`` is an XPath string; ``path_ns`` maps the prefixes used in it to
    namespaces (declared on the ``error-path`` element). ``info`` is a list of
    ``(clark-name, text)`` pairs or ready-made elements for ``error-info``.
    """

    def __init__(
        self,
        tag: str,
        message: str | None = None,
        *,
        type: str = APPLICATION,  # noqa: A002 - RFC name
        severity: str = "error",
        path: str | None = None,
        path_ns: dict[str, str] | None = None,
        app_tag: str | None = None,
        info: Iterable[tuple[str, str] | etree._Element] = (),
    ) -> None:
        assert tag in ERROR_TAGS, tag
        super().__init__(message or tag)
        self.tag = tag
        self.message = message
        self.type = type
        self.severity = severity
        self.path = path
        self.path_ns = dict(path_ns or {})
        self.app_tag = app_tag
        self.info = list(info)

    def __repr__(self) -> str:
        return f"RpcError({self.type}/{self.tag}: {self.message!r} at {self.path!r})"

    def to_xml(self) -> etree._Element:
        e = etree.Element(f"{{{NC}}}rpc-error", nsmap={None: NC})
        etree.SubElement(e, f"{{{NC}}}error-type").text = self.type
        etree.SubElement(e, f"{{{NC}}}error-tag").text = self.tag
        etree.SubElement(e, f"{{{NC}}}error-severity").text = self.severity
        if self.app_tag:
            etree.SubElement(e, f"{{{NC}}}error-app-tag").text = self.app_tag
        if self.path:
            p = etree.SubElement(
                e, f"{{{NC}}}error-path", nsmap={k: v for k, v in self.path_ns.items() if k}
            )
            p.text = self.path
        if self.message:
            m = etree.SubElement(e, f"{{{NC}}}error-message")
            m.set("{http://www.w3.org/XML/1998/namespace}lang", "en")
            m.text = self.message
        if self.info:
            info = etree.SubElement(e, f"{{{NC}}}error-info")
            for item in self.info:
                if isinstance(item, tuple):
                    etree.SubElement(info, item[0]).text = item[1]
                else:
                    info.append(item)
        return e


class RpcErrors(Exception):
    """Several ``rpc-error`` elements in one reply (error-option continue-on-error, validation)."""

    def __init__(self, errors: list[RpcError]) -> None:
        super().__init__("; ".join(str(e) for e in errors))
        self.errors = errors


def bad_element(name: str) -> tuple[str, str]:
    return (f"{{{NC}}}bad-element", name)


def bad_attribute(name: str) -> tuple[str, str]:
    return (f"{{{NC}}}bad-attribute", name)


def session_id_info(sid: int) -> tuple[str, str]:
    return (f"{{{NC}}}session-id", str(sid))
