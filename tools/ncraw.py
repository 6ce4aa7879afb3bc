"""A raw NETCONF-over-SSH client (RFC 6241 / RFC 6242) on paramiko, for tests and benchmarks.

Unlike ncclient it hides nothing: it can send hand-made or broken frames
(:meth:`RawClient.send_raw`), read single messages with a deadline
(:meth:`RawClient.recv_message`) and keep many RPCs in flight
(:meth:`RawClient.pipeline`). It accepts any server host key: it is a test tool,
not a production client.

Depends only on paramiko, lxml and ``agent.protocol.framing`` (when run as a
script from the repository, the repository root is put on ``sys.path``).

    c = RawClient.connect("127.0.0.1", 830, "admin", password="admin")
    reply = c.rpc("<get-config><source><running/></source></get-config>")
    c.close()
"""

from __future__ import annotations

import itertools
import socket
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from types import TracebackType
from xml.sax.saxutils import quoteattr

import paramiko
from lxml import etree

try:
    from agent.protocol.framing import Framer
except ModuleNotFoundError:  # run as `python tools/ncraw.py` from a checkout
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from agent.protocol.framing import Framer

NC = "urn:ietf:params:xml:ns:netconf:base:1.0"
NOTIF = "urn:ietf:params:xml:ns:netconf:notification:1.0"
BASE_10 = "urn:ietf:params:netconf:base:1.0"
BASE_11 = "urn:ietf:params:netconf:base:1.1"
DEFAULT_CAPS: tuple[str, ...] = (BASE_10, BASE_11)
_SHORT_CAPS = {"1.0": BASE_10, "1.1": BASE_11}
RECV_SIZE = 65536

_RPC_REPLY = f"{{{NC}}}rpc-reply"
_NOTIFICATION = f"{{{NOTIF}}}notification"
_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=True)


class NetconfClientError(Exception):
    """The server's answer made no sense (bad hello, unexpected reply, ...)."""


def hello_message(caps: Iterable[str]) -> bytes:
    """A client ``<hello>`` advertising ``caps``."""
    body = "".join(f"<capability>{c}</capability>" for c in caps)
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        f'<hello xmlns="{NC}"><capabilities>{body}</capabilities></hello>'
    ).encode()


def rpc_message(inner_xml: str | bytes, message_id: str) -> bytes:
    """Wrap ``inner_xml`` in an ``<rpc>`` element in the base namespace."""
    if isinstance(inner_xml, str):
        inner_xml = inner_xml.encode()
    return b'<rpc message-id=%s xmlns="%s">%s</rpc>' % (
        quoteattr(message_id).encode(),
        NC.encode(),
        inner_xml,
    )


def parse(data: bytes) -> etree._Element:
    """Parse one message; whitespace around it (some servers send a leading LF) is ignored."""
    return etree.fromstring(data.strip(), _PARSER)


class RawClient:
    """One NETCONF session over one SSH connection."""

    def __init__(
        self,
        transport: paramiko.Transport,
        channel: paramiko.Channel,
        *,
        timeout: float = 10.0,
        max_message_size: int = 256 * 2**20,
    ) -> None:
        self.transport = transport
        self.channel = channel
        self.timeout = timeout
        self.framer = Framer(max_message_size)
        self.server_hello: etree._Element | None = None
        self.session_id: int | None = None
        self.capabilities: list[str] = []
        self.client_capabilities: list[str] = []
        self.notifications: list[etree._Element] = []
        self._ids = itertools.count(1)
        self._closed = False

    # -- session setup ----------------------------------------------------------------

    @classmethod
    def connect(
        cls,
        host: str,
        port: int,
        username: str,
        password: str | None = None,
        key_filename: str | None = None,
        timeout: float = 10,
        *,
        caps: Iterable[str] = DEFAULT_CAPS,
        hello: bool = True,
        max_message_size: int = 256 * 2**20,
    ) -> RawClient:
        """Open SSH, start the ``netconf`` subsystem and (unless ``hello=False``)
        exchange hellos advertising ``caps``."""
        sock = socket.create_connection((host, port), timeout=timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        transport = paramiko.Transport(sock)
        try:
            _prefer_aead(transport)
            transport.start_client(timeout=timeout)
            _authenticate(transport, username, password, key_filename)
            channel = transport.open_session(timeout=timeout)
            channel.invoke_subsystem("netconf")
            client = cls(transport, channel, timeout=timeout, max_message_size=max_message_size)
            if hello:
                client.exchange_hello(caps)
        except BaseException:
            transport.close()
            raise
        return client

    def exchange_hello(self, caps: Iterable[str] = DEFAULT_CAPS) -> etree._Element:
        """Send our hello, read the server's, choose the framing. ``caps`` are URIs;
        ``"1.0"`` and ``"1.1"`` stand for the base capabilities."""
        self.client_capabilities = [_SHORT_CAPS.get(c, c) for c in caps]
        self.send_raw(hello_message(self.client_capabilities) + b"]]>]]>")
        return self.read_hello()

    def read_hello(self, timeout: float | None = None) -> etree._Element:
        """Read the server hello; switch to chunked if both sides sent base:1.1."""
        hello = parse(self.recv_message(timeout))
        if hello.tag != f"{{{NC}}}hello":
            raise NetconfClientError(f"expected <hello>, got {hello.tag}")
        self.server_hello = hello
        self.capabilities = [
            (c.text or "").strip()
            for c in hello.iterfind(f"{{{NC}}}capabilities/{{{NC}}}capability")
        ]
        sid = hello.findtext(f"{{{NC}}}session-id")
        self.session_id = int(sid) if sid and sid.strip().isdigit() else None
        if BASE_11 in self.capabilities and BASE_11 in self.client_capabilities:
            self.framer.set_chunked()
        return hello

    @property
    def chunked(self) -> bool:
        return self.framer.mode == "chunked"

    # -- bytes and messages -------------------------------------------------------------

    def send_raw(self, data: bytes) -> None:
        """Send ``data`` exactly as given (hand-made or broken frames)."""
        self.channel.sendall(data)

    def send_message(self, xml: str | bytes) -> None:
        """Send one message framed in the current mode."""
        if isinstance(xml, str):
            xml = xml.encode()
        self.channel.sendall(self.framer.encode(xml))

    def recv_message(self, timeout: float | None = None) -> bytes:
        """The next complete message. Raises ``TimeoutError`` or ``EOFError``."""
        msg = self.framer.next_message()
        if msg is not None:
            return msg
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        channel = self.channel
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("no complete NETCONF message before the timeout")
            channel.settimeout(remaining)
            try:
                data = channel.recv(RECV_SIZE)
            except TimeoutError:  # socket.timeout
                continue
            if not data:
                raise EOFError("the server closed the NETCONF channel")
            self.framer.feed(data)
            msg = self.framer.next_message()
            if msg is not None:
                return msg

    def recv_reply(self, timeout: float | None = None) -> etree._Element:
        """The next ``<rpc-reply>``; notifications met meanwhile go to ``notifications``."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            root = parse(self.recv_message(max(0.0, deadline - time.monotonic())))
            if root.tag == _NOTIFICATION:
                self.notifications.append(root)
                continue
            if root.tag != _RPC_REPLY:
                raise NetconfClientError(f"expected <rpc-reply>, got {root.tag}")
            return root

    def _buffered_reply(self) -> etree._Element | None:
        """An ``<rpc-reply>`` already received and deframed, without waiting."""
        while (msg := self.framer.next_message()) is not None:
            root = parse(msg)
            if root.tag == _NOTIFICATION:
                self.notifications.append(root)
                continue
            if root.tag != _RPC_REPLY:
                raise NetconfClientError(f"expected <rpc-reply>, got {root.tag}")
            return root
        return None

    # -- RPCs ---------------------------------------------------------------------------

    def next_message_id(self) -> str:
        return str(next(self._ids))

    def rpc(
        self, inner_xml: str | bytes, message_id: str | None = None, timeout: float | None = None
    ) -> etree._Element:
        """Send one ``<rpc>`` and return its ``<rpc-reply>`` element."""
        mid = self.next_message_id() if message_id is None else message_id
        self.send_message(rpc_message(inner_xml, mid))
        reply = self.recv_reply(timeout)
        got = reply.get("message-id")
        if got is not None and got != mid:
            raise NetconfClientError(f"reply message-id {got!r} for request {mid!r}")
        return reply

    def pipeline(
        self, inner_xmls: Sequence[str | bytes], window: int = 64, timeout: float | None = None
    ) -> list[etree._Element]:
        """Send all RPCs keeping up to ``window`` in flight; replies in request order."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        ids = [self.next_message_id() for _ in inner_xmls]
        index = {mid: i for i, mid in enumerate(ids)}
        replies: list[etree._Element | None] = [None] * len(ids)
        sent = received = 0
        while received < len(ids):
            if sent < len(ids) and sent - received <= window // 2:
                batch = min(len(ids), received + window)
                self.send_raw(
                    b"".join(
                        self.framer.encode(rpc_message(inner_xmls[i], ids[i]))
                        for i in range(sent, batch)
                    )
                )
                sent = batch
            reply: etree._Element | None = self.recv_reply(max(0.0, deadline - time.monotonic()))
            while reply is not None:  # also take every reply already received
                pos = index.get(reply.get("message-id", ""))
                if pos is None or replies[pos] is not None:
                    raise NetconfClientError(
                        f"unexpected reply message-id {reply.get('message-id')!r}"
                    )
                replies[pos] = reply
                received += 1
                reply = self._buffered_reply()
        return [r for r in replies if r is not None]

    # -- teardown -----------------------------------------------------------------------

    def close(self, timeout: float = 5.0) -> None:
        """Send ``<close-session/>`` (best effort) and close SSH."""
        if self._closed:
            return
        self._closed = True
        try:
            if not self.channel.closed and self.server_hello is not None:
                self.rpc("<close-session/>", timeout=min(timeout, self.timeout))
        except (OSError, EOFError, TimeoutError, NetconfClientError, paramiko.SSHException):
            pass
        finally:
            self.channel.close()
            self.transport.close()

    def __enter__(self) -> RawClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _prefer_aead(transport: paramiko.Transport) -> None:
    """Offer AES-GCM first: paramiko checks HMACs in pure Python (~50 µs per packet),
    while AEAD ciphers authenticate inside ``cryptography``. Other ciphers stay as fallback."""
    opts = transport.get_security_options()
    ciphers = tuple(opts.ciphers)
    opts.ciphers = tuple(c for c in ciphers if "gcm" in c) + tuple(
        c for c in ciphers if "gcm" not in c
    )


def _authenticate(
    transport: paramiko.Transport,
    username: str,
    password: str | None,
    key_filename: str | None,
) -> None:
    if key_filename is not None:
        try:
            transport.auth_publickey(username, paramiko.PKey.from_path(key_filename))
        except paramiko.AuthenticationException:
            if password is None:
                raise
    if not transport.is_authenticated() and password is not None:
        transport.auth_password(username, password)
    if not transport.is_authenticated():
        transport.auth_none(username)
    if not transport.is_authenticated():
        raise paramiko.AuthenticationException("authentication failed")


def reply_ok(reply: etree._Element) -> bool:
    """True when ``reply`` holds ``<ok/>`` or ``<data>`` and no ``<rpc-error>``."""
    return reply.find(f"{{{NC}}}rpc-error") is None


def reply_errors(reply: etree._Element) -> list[str]:
    """``error-tag: error-message`` for each ``<rpc-error>`` in ``reply``."""
    out = []
    for err in reply.iterfind(f"{{{NC}}}rpc-error"):
        tag = err.findtext(f"{{{NC}}}error-tag") or "?"
        msg = (err.findtext(f"{{{NC}}}error-message") or "").strip()
        out.append(f"{tag}: {msg}" if msg else tag)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """``python tools/ncraw.py HOST PORT USER PASSWORD [RPC-INNER-XML ...]``"""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) < 4:
        print(main.__doc__, file=sys.stderr)
        return 2
    host, port, user, password, *rpcs = args
    with RawClient.connect(host, int(port), user, password=password) as c:
        print(f"session-id {c.session_id}, {'chunked' if c.chunked else 'EOM'} framing")
        for cap in c.capabilities:
            print(" ", cap)
        for inner in rpcs:
            print(etree.tostring(c.rpc(inner), pretty_print=True).decode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
