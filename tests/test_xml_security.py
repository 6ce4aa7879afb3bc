"""Hostile XML over real SSH: entity expansion, external entities and DTDs, XInclude, deep
nesting. The agent must answer malformed-message (or close the session), never expand or
fetch anything, never echo a file's contents, and keep serving other sessions."""

from __future__ import annotations

import secrets
import socket
import threading
import time

import pytest
from lxml import etree
from ncraw import BASE_11, RawClient, hello_message, parse, rpc_message

NC = "urn:ietf:params:xml:ns:netconf:base:1.0"
IF = "urn:ietf:params:xml:ns:yang:ietf-interfaces"
IANAIFT = "urn:ietf:params:xml:ns:yang:iana-if-type"
EOM = b"]]>]]>"
GET_CONFIG = "<get-config><source><running/></source></get-config>"


def q(name: str) -> str:
    return f"{{{NC}}}{name}"


# ---- helpers -------------------------------------------------------------------------------


class Listener:
    """A TCP listener that counts connections (did the agent try to fetch a URL?)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.hits = 0
        self._stop = False
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/evil.dtd"

    def _run(self) -> None:
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.hits += 1
            conn.close()

    def close(self) -> None:
        self._stop = True
        self._thread.join(2)
        self.sock.close()


@pytest.fixture
def listener():
    lst = Listener()
    yield lst
    lst.close()


@pytest.fixture
def secret_file(tmp_path):
    """A file the agent (root, same host) could read; its marker must never come back."""
    marker = "XXE-MARKER-" + secrets.token_hex(8)
    path = tmp_path / "secret.txt"
    path.write_text(marker)
    return path, marker


def send_and_read(c: RawClient, message: str | bytes, timeout: float = 10) -> bytes:
    """Send one framed message; return the raw reply message."""
    c.send_message(message)
    return c.recv_message(timeout)


def assert_malformed(raw: bytes) -> etree._Element:
    reply = parse(raw)
    assert reply.tag == q("rpc-reply"), raw[:300]
    tags = [e.findtext(q("error-tag")) for e in reply.iterfind(q("rpc-error"))]
    types = [e.findtext(q("error-type")) for e in reply.iterfind(q("rpc-error"))]
    assert tags == ["malformed-message"], raw[:500]
    assert types == ["rpc"], raw[:500]
    return reply


def assert_alive(c: RawClient) -> None:
    reply = c.rpc(GET_CONFIG, timeout=10)
    assert reply.find(q("data")) is not None, etree.tostring(reply)


def running_config(agent) -> bytes:
    with agent.raw() as c:
        return etree.tostring(c.rpc(GET_CONFIG))


def with_doctype(doctype: str, body: str) -> str:
    return f'<?xml version="1.0"?>\n{doctype}\n{body}'


def edit_description(text: str) -> str:
    """An edit-config rpc body setting eth0's description to ``text`` (raw XML)."""
    return (
        f'<rpc message-id="1" xmlns="{NC}"><edit-config><target><running/></target>'
        f'<config><interfaces xmlns="{IF}"><interface><name>eth0</name>'
        f'<type xmlns:ianaift="{IANAIFT}">ianaift:ethernetCsmacd</type>'
        f"<description>{text}</description></interface></interfaces></config>"
        "</edit-config></rpc>"
    )


LOL = '<!ENTITY lol0 "lollollollollollollollollollol">' + "".join(
    f'<!ENTITY lol{i} "{f"&lol{i - 1};" * 10}">' for i in range(1, 10)
)


# ---- entity expansion ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        edit_description("&lol9;"),
        f'<rpc message-id="&lol9;" xmlns="{NC}">{GET_CONFIG}</rpc>',
        f'<rpc message-id="1" xmlns="{NC}"><get-config><source><running/></source>'
        f'<filter type="subtree"><interfaces xmlns="{IF}"><interface><name>&lol9;</name>'
        "</interface></interfaces></filter></get-config></rpc>",
    ],
    ids=["in-content", "in-attribute", "in-filter"],
)
def test_billion_laughs_refused(fresh, body):
    msg = with_doctype(f"<!DOCTYPE rpc [{LOL}]>", body)
    with fresh.raw(caps=("1.1",)) as c:
        t0 = time.monotonic()
        raw = send_and_read(c, msg)
        assert time.monotonic() - t0 < 2
        assert b"lollol" not in raw
        assert len(raw) < 4000
        assert_malformed(raw)
        assert_alive(c)
    assert b"lollol" not in running_config(fresh)


def test_internal_entity_not_expanded_nor_applied(fresh):
    """Even a harmless-looking internal entity is refused, and the edit is not applied."""
    msg = with_doctype('<!DOCTYPE rpc [<!ENTITY d "set-through-an-entity">]>',
                       edit_description("&d;"))
    with fresh.raw() as c:
        raw = send_and_read(c, msg)
        assert b"set-through-an-entity" not in raw
        assert_malformed(raw)
        assert_alive(c)
    cfg = running_config(fresh)
    assert b"set-through-an-entity" not in cfg and b"eth0" not in cfg


def test_internal_dtd_without_entities_refused(agent):
    msg = with_doctype("<!DOCTYPE rpc [<!ELEMENT rpc ANY>]>",
                       f'<rpc message-id="1" xmlns="{NC}">{GET_CONFIG}</rpc>')
    with agent.raw() as c:
        assert_malformed(send_and_read(c, msg))
        assert_alive(c)


# ---- external entities and DTDs ------------------------------------------------------------


def test_external_entity_etc_passwd_refused(fresh):
    msg = with_doctype('<!DOCTYPE rpc [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>',
                       edit_description("&xxe;"))
    with fresh.raw() as c:
        raw = send_and_read(c, msg)
        assert b"root:" not in raw
        assert_malformed(raw)
        assert_alive(c)
    assert b"root:" not in running_config(fresh)


@pytest.mark.parametrize("where", ["content", "attribute", "filter"])
def test_external_entity_file_never_read_back(fresh, secret_file, where):
    path, marker = secret_file
    decl = f'<!DOCTYPE rpc [<!ENTITY xxe SYSTEM "file://{path}">]>'
    body = {
        "content": edit_description("&xxe;"),
        "attribute": f'<rpc message-id="&xxe;" xmlns="{NC}">{GET_CONFIG}</rpc>',
        "filter": f'<rpc message-id="1" xmlns="{NC}"><get-config><source><running/></source>'
                  f'<filter type="subtree"><interfaces xmlns="{IF}">&xxe;</interfaces>'
                  "</filter></get-config></rpc>",
    }[where]
    with fresh.raw() as c:
        raw = send_and_read(c, with_doctype(decl, body))
        assert marker.encode() not in raw
        assert_malformed(raw)
        assert_alive(c)
    assert marker.encode() not in running_config(fresh)


@pytest.mark.parametrize(
    "doctype",
    [
        '<!DOCTYPE rpc SYSTEM "{url}">',
        '<!DOCTYPE rpc PUBLIC "-//EVIL//DTD x//EN" "{url}">',
        '<!DOCTYPE rpc [<!ENTITY % p SYSTEM "{url}"> %p;]>',
        '<!DOCTYPE rpc [<!ENTITY e SYSTEM "{url}">]>',
    ],
    ids=["system-dtd", "public-dtd", "parameter-entity", "unused-external-entity"],
)
def test_external_dtd_never_fetched(agent, listener, doctype):
    msg = with_doctype(doctype.format(url=listener.url),
                       f'<rpc message-id="1" xmlns="{NC}">{GET_CONFIG}</rpc>')
    with agent.raw() as c:
        assert_malformed(send_and_read(c, msg))
        assert_alive(c)
    time.sleep(0.2)
    assert listener.hits == 0


def test_external_dtd_file_refused(agent, secret_file):
    path, marker = secret_file
    msg = with_doctype('<!DOCTYPE rpc SYSTEM "file:///etc/passwd">',
                       f'<rpc message-id="1" xmlns="{NC}">{GET_CONFIG}</rpc>')
    with agent.raw() as c:
        raw = send_and_read(c, msg)
        assert b"root:" not in raw
        assert_malformed(raw)
        raw = send_and_read(c, msg.replace("/etc/passwd", str(path)))
        assert marker.encode() not in raw
        assert_malformed(raw)


def test_xinclude_not_processed(fresh, secret_file):
    path, marker = secret_file
    xi = (f'<xi:include xmlns:xi="http://www.w3.org/2001/XInclude" href="file://{path}" '
          'parse="text"/>')
    with fresh.raw() as c:
        for body in (edit_description(xi),
                     f'<rpc message-id="2" xmlns="{NC}"><get-config><source><running/>'
                     f'</source><filter type="subtree">{xi}</filter></get-config></rpc>'):
            raw = send_and_read(c, body)
            assert marker.encode() not in raw
            assert parse(raw).tag == q("rpc-reply")
        assert_alive(c)
    assert marker.encode() not in running_config(fresh)


@pytest.mark.parametrize("doctype", [f"<!DOCTYPE hello [{LOL}]>",
                                     '<!DOCTYPE hello SYSTEM "file:///etc/passwd">'],
                         ids=["billion-laughs", "external-dtd"])
def test_dtd_in_hello_closes_session(agent, doctype):
    body = hello_message([BASE_11]).split(b"?>", 1)[1].decode()
    body = body.replace("</capabilities>", "<capability>&lol9;</capability></capabilities>")
    c = agent.raw(hello=False)
    with c:
        c.send_raw(with_doctype(doctype, body).encode() + EOM)
        got = []
        deadline = time.monotonic() + 5
        while True:
            assert time.monotonic() < deadline, "session still open"
            try:
                got.append(c.recv_message(deadline - time.monotonic()))
            except EOFError:
                break
        assert len(got) == 1 and b"lollol" not in got[0] and b"root:" not in got[0]
    with agent.raw() as other:
        assert_alive(other)


# ---- nesting -------------------------------------------------------------------------------


@pytest.mark.parametrize("depth", [100_000, 1000, 300])
@pytest.mark.parametrize("where", ["filter", "config", "rpc"])
def test_deeply_nested_xml(fresh, depth, where):
    nest = "<a>" * depth + "x" + "</a>" * depth
    body = {
        "filter": f'<rpc message-id="1" xmlns="{NC}"><get-config><source><running/></source>'
                  f'<filter type="subtree"><interfaces xmlns="{IF}">{nest}</interfaces>'
                  "</filter></get-config></rpc>",
        "config": edit_description(nest),
        "rpc": f'<rpc message-id="1" xmlns="{NC}">{nest}</rpc>',
    }[where]
    with fresh.raw() as bystander:
        c = fresh.raw()
        with c:
            try:
                raw = send_and_read(c, body, timeout=20)
            except EOFError:
                pass  # closing the session is an acceptable answer
            else:
                assert_malformed(raw)
                assert_alive(c)
        assert_alive(bystander)


@pytest.mark.parametrize("where", ["filter", "config"])
def test_nesting_below_parser_limit_handled(fresh, where):
    """250 levels parse fine; whatever the answer, it is an rpc-reply and nobody crashes."""
    nest = "<a>" * 250 + "x" + "</a>" * 250
    body = {
        "filter": f'<rpc message-id="7" xmlns="{NC}"><get-config><source><running/></source>'
                  f'<filter type="subtree"><interfaces xmlns="{IF}"><interface>{nest}'
                  "</interface></interfaces></filter></get-config></rpc>",
        "config": edit_description("d") .replace("<description>d</description>", nest),
    }[where]
    with fresh.raw() as c:
        reply = parse(send_and_read(c, body, timeout=20))
        assert reply.tag == q("rpc-reply") and reply.get("message-id") in ("1", "7")
        assert_alive(c)


def test_many_attributes_and_long_names(agent):
    """Wide rather than deep: 50,000 attributes, a 200 kB element name."""
    attrs = " ".join(f'a{i}="{i}"' for i in range(50_000))
    with agent.raw() as c:
        reply = parse(send_and_read(c, f'<rpc message-id="1" xmlns="{NC}" {attrs}>'
                                       f"{GET_CONFIG}</rpc>", timeout=20))
        assert reply.tag == q("rpc-reply")
        reply = parse(send_and_read(c, rpc_message("<" + "n" * 200_000 + "/>", "2"),
                                    timeout=20))
        assert reply.find(q("rpc-error")) is not None
        assert_alive(c)
