"""An in-process NETCONF client for fast logic tests (no sockets, no SSH).

It drives :class:`agent.protocol.session.Session` through the same bytes a
transport would deliver. The proof that features work over SSH lives in the
``test_ssh_*`` / ``test_ncclient_*`` files; these tests pin down semantics.
"""

from __future__ import annotations

import itertools

from lxml import etree

from agent.protocol.framing import Framer
from agent.protocol.namespaces import CAP_BASE_10, CAP_BASE_11, NC
from agent.protocol.session import Session
from agent.server import NetconfServer
from agent.transport.ssh import SessionIO

NS = {
    "nc": NC,
    "if": "urn:ietf:params:xml:ns:yang:ietf-interfaces",
    "ip": "urn:ietf:params:xml:ns:yang:ietf-ip",
    "vrrp": "urn:ietf:params:xml:ns:yang:ietf-vrrp",
    "ianaift": "urn:ietf:params:xml:ns:yang:iana-if-type",
    "mv": "urn:netconf-vrrp-agent:yang:macvlan",
    "ncm": "urn:ietf:params:xml:ns:yang:ietf-netconf-monitoring",
    "yl": "urn:ietf:params:xml:ns:yang:ietf-yang-library",
    "wd": "urn:ietf:params:xml:ns:netconf:default:1.0",
}
IF = NS["if"]


class LocalClient:
    def __init__(self, server: NetconfServer, *, base11: bool = True) -> None:
        self.out = Framer(1 << 30)
        self.closed = False
        self._ids = itertools.count(1)
        io = SessionIO("tester", ("127.0.0.1", 1), self._write, self._close)
        self.session: Session = server.new_session(io)
        self.hello = self.recv()
        caps = [CAP_BASE_10] + ([CAP_BASE_11] if base11 else [])
        body = "".join(f"<capability>{c}</capability>" for c in caps)
        self.send(f'<hello xmlns="{NC}"><capabilities>{body}</capabilities></hello>'.encode())
        if base11:
            self.out.set_chunked()
            self._chunked = True
        else:
            self._chunked = False

    @property
    def session_id(self) -> int:
        return self.session.session_id

    def _write(self, data: bytes) -> None:
        self.out.feed(data)

    def _close(self) -> None:
        self.closed = True

    def send(self, payload: bytes) -> None:
        if self.session.established and self._chunked:
            frame = b"\n#%d\n%s\n##\n" % (len(payload), payload)
        else:
            frame = payload + b"]]>]]>"
        self.session.data_received(frame)

    def recv(self) -> etree._Element:
        msg = self.out.next_message()
        assert msg is not None, "no reply"
        return etree.fromstring(msg)

    def rpc(self, inner: str) -> etree._Element:
        mid = next(self._ids)
        self.send(f'<rpc message-id="{mid}" xmlns="{NC}">{inner}</rpc>'.encode())
        reply = self.recv()
        assert reply.get("message-id") == str(mid), etree.tostring(reply)
        return reply

    # conveniences -----------------------------------------------------
    def edit(self, config: str, target: str = "running", **opts: str) -> etree._Element:
        extra = "".join(
            f"<{k.replace('_', '-')}>{v}</{k.replace('_', '-')}>" for k, v in opts.items()
        )
        return self.rpc(
            f"<edit-config><target><{target}/></target>{extra}"
            f'<config xmlns:nc="{NC}">{config}</config></edit-config>'
        )

    def get_config(
        self, source: str = "running", filt: str = "", extra: str = ""
    ) -> etree._Element:
        f = f"<filter>{filt}</filter>" if filt else ""
        return self.rpc(f"<get-config><source><{source}/></source>{f}{extra}</get-config>")


def ok(reply: etree._Element) -> bool:
    return reply.find(f"{{{NC}}}ok") is not None


def errors(reply: etree._Element) -> list[dict[str, str]]:
    out = []
    for e in reply.iterfind(f"{{{NC}}}rpc-error"):
        d = {etree.QName(c).localname: (c.text or "") for c in e}
        info = e.find(f"{{{NC}}}error-info")
        if info is not None:
            for c in info:
                d["info:" + etree.QName(c).localname] = c.text or ""
        path = e.find(f"{{{NC}}}error-path")
        if path is not None:
            d["path-ns"] = dict(path.nsmap)
        out.append(d)
    return out


def data(reply: etree._Element) -> etree._Element:
    d = reply.find(f"{{{NC}}}data")
    assert d is not None, etree.tostring(reply)
    return d


def iface(name: str, body: str = "", typ: str = "ianaift:ethernetCsmacd") -> str:
    return (
        f'<interfaces xmlns="{IF}" xmlns:ianaift="{NS["ianaift"]}"><interface><name>{name}</name>'
        f"<type>{typ}</type>{body}</interface></interfaces>"
    )
