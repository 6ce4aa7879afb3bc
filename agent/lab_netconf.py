"""A minimal NETCONF client for ``lab status``: one ``<get>`` over SSH (asyncssh).

Only base:1.0 is offered, so every message ends with ``]]>]]>`` and no chunk parser is
needed. It accepts any host key: the lab's agents make theirs on first start, and the client
only ever talks to the lab's own loopback addresses.
"""

from __future__ import annotations

import asyncio

import asyncssh
from lxml import etree

NC = "urn:ietf:params:xml:ns:netconf:base:1.0"
EOM = b"]]>]]>"
_HELLO = (
    f'<?xml version="1.0" encoding="UTF-8"?><hello xmlns="{NC}"><capabilities>'
    "<capability>urn:ietf:params:netconf:base:1.0</capability></capabilities></hello>"
).encode() + EOM
_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)


class NetconfError(Exception):
    """Connection, authentication or protocol failure, or an rpc-error reply."""


async def _read_message(reader: asyncssh.SSHReader[bytes], buf: bytearray) -> bytes:
    while EOM not in buf:
        chunk = await reader.read(65536)
        if not chunk:
            raise NetconfError("the server closed the session")
        buf += chunk
    end = buf.index(EOM)
    msg = bytes(buf[:end])
    del buf[: end + len(EOM)]
    return msg


async def _get(host: str, port: int, user: str, password: str, filter_xml: str | None) -> bytes:
    async with asyncssh.connect(
        host, port, username=user, password=password, known_hosts=None,
        client_keys=None, agent_path=None,
    ) as conn:
        writer, reader, _ = await conn.open_session(subsystem="netconf", encoding=None)
        buf = bytearray()
        writer.write(_HELLO)
        await _read_message(reader, buf)  # the server's hello
        flt = f'<filter type="subtree">{filter_xml}</filter>' if filter_xml else ""
        writer.write(f'<rpc xmlns="{NC}" message-id="1"><get>{flt}</get></rpc>'.encode() + EOM)
        reply = await _read_message(reader, buf)
        writer.write(f'<rpc xmlns="{NC}" message-id="2"><close-session/></rpc>'.encode() + EOM)
        try:
            await asyncio.wait_for(_read_message(reader, buf), 2.0)
        except (NetconfError, TimeoutError):
            pass
        return reply


def netconf_get(
    host: str, port: int, user: str, password: str, filter_xml: str | None = None,
    timeout: float = 10.0,
) -> etree._Element:
    """The ``<data>`` element of a ``<get>`` (with an optional subtree filter)."""
    try:
        raw = asyncio.run(asyncio.wait_for(_get(host, port, user, password, filter_xml), timeout))
    except (OSError, asyncssh.Error, TimeoutError) as exc:
        raise NetconfError(f"{host} port {port}: {exc or type(exc).__name__}") from None
    reply = etree.fromstring(raw, _PARSER)
    err = reply.find(f"{{{NC}}}rpc-error")
    if err is not None:
        msg = err.findtext(f"{{{NC}}}error-message") or err.findtext(f"{{{NC}}}error-tag")
        raise NetconfError(f"rpc-error: {msg}")
    data = reply.find(f"{{{NC}}}data")
    if data is None:
        raise NetconfError("reply without <data>")
    return data
