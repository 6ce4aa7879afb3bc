"""Safe XML parsing: no DTD loading, no entity expansion, no network, bounded trees."""

from __future__ import annotations

from lxml import etree

from agent.protocol.errors import PROTOCOL, RPC, RpcError

_PARSER = etree.XMLParser(
    resolve_entities=False,
    no_network=True,
    load_dtd=False,
    dtd_validation=False,
    huge_tree=False,
    remove_blank_text=False,
    remove_comments=True,
    remove_pis=True,
)


def parse(data: bytes) -> etree._Element:
    """Parse one NETCONF message. Any DTD or entity declaration is refused."""
    try:
        root = etree.fromstring(data, _PARSER)
    except etree.XMLSyntaxError as exc:
        raise RpcError("malformed-message", f"XML parse error: {exc}", type=RPC) from exc
    tree = root.getroottree()
    if tree.docinfo.internalDTD is not None or tree.docinfo.doctype:
        raise RpcError("malformed-message", "DTDs are not allowed", type=RPC)
    if _has_entity(root):
        raise RpcError("malformed-message", "entity references are not allowed", type=PROTOCOL)
    return root


def _has_entity(root: etree._Element) -> bool:
    for node in root.iter(etree.Entity):
        del node
        return True
    return False
