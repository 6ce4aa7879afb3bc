"""NETCONF protocol over real SSH with hand-made frames (RFC 6241, RFC 6242).

Every test talks to a real agent process through :class:`ncraw.RawClient`, which sends
exactly the bytes it is given: hellos, chunk headers and delimiters are built here by hand
and split across SSH writes on purpose. A second agent with small limits
(``hello-timeout = 1``, ``max-message-size = 100000``) serves the timeout and size tests.
"""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import pytest
from agentproc import AgentProcess
from lxml import etree
from ncraw import BASE_10, BASE_11, RawClient, hello_message, parse, rpc_message

NC = "urn:ietf:params:xml:ns:netconf:base:1.0"
NCM = "urn:ietf:params:xml:ns:yang:ietf-netconf-monitoring"
IF = "urn:ietf:params:xml:ns:yang:ietf-interfaces"
IANAIFT = "urn:ietf:params:xml:ns:yang:iana-if-type"
EOM = b"]]>]]>"
END = b"\n##\n"
GET_CONFIG = "<get-config><source><running/></source></get-config>"
MAX_MESSAGE = 100_000  # the limited agent's max-message-size


def q(name: str) -> str:
    return f"{{{NC}}}{name}"


# ---- fixtures ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def limited(tmp_path_factory):
    """An agent with hello-timeout = 1 s and max-message-size = 100000."""
    d = tmp_path_factory.mktemp("limited")
    cfg = d / "agent.toml"
    cfg.write_text(f"[netconf]\nhello-timeout = 1\nmax-message-size = {MAX_MESSAGE}\n")
    a = AgentProcess(d / "state", config=cfg)
    a.start()
    try:
        yield a
    finally:
        a.stop()


# ---- helpers -------------------------------------------------------------------------------


def chunked(msg: bytes, size: int | None = None) -> bytes:
    """``msg`` framed as chunks of ``size`` bytes (one chunk if None)."""
    size = size or len(msg)
    parts = [b"\n#%d\n%s" % (len(msg[i : i + size]), msg[i : i + size])
             for i in range(0, len(msg), size)]
    return b"".join(parts) + END


def rpc(inner: str, mid: int | str) -> bytes:
    return rpc_message(inner, str(mid))


def recv_xml(c: RawClient, timeout: float = 10) -> etree._Element:
    return parse(c.recv_message(timeout))


def errors(reply: etree._Element) -> list[dict[str, str]]:
    """Each rpc-error as {error-tag, error-type, ..., info:bad-element, ...}."""
    out = []
    for e in reply.iterfind(q("rpc-error")):
        d = {etree.QName(c).localname: (c.text or "").strip() for c in e}
        info = e.find(q("error-info"))
        if info is not None:
            for c in info:
                d["info:" + etree.QName(c).localname] = (c.text or "").strip()
        out.append(d)
    return out


def expect_closed(c: RawClient, timeout: float = 5) -> list[etree._Element]:
    """Read until the server closes the channel; return what it sent before."""
    got = []
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            pytest.fail(f"session still open after {timeout} s (received {len(got)} messages)")
        try:
            got.append(parse(c.recv_message(remaining)))
        except EOFError:
            return got
        except TimeoutError:
            continue


def assert_alive(c: RawClient) -> None:
    reply = c.rpc(GET_CONFIG, timeout=10)
    assert reply.find(q("data")) is not None, etree.tostring(reply)


def bad_hellos(agent: AgentProcess) -> int:
    with agent.raw() as c:
        reply = c.rpc(f'<get><filter type="subtree"><netconf-state xmlns="{NCM}"><statistics/>'
                      "</netconf-state></filter></get>")
    value = reply.findtext(f".//{{{NCM}}}statistics/{{{NCM}}}in-bad-hellos")
    assert value is not None, etree.tostring(reply)
    return int(value)


def handmade_session(agent: AgentProcess, hello: bytes, caps: tuple[str, ...]) -> RawClient:
    """A session whose client hello is exactly ``hello`` (framing chosen from ``caps``)."""
    c = agent.raw(hello=False)
    c.client_capabilities = list(caps)
    c.send_raw(hello)
    c.read_hello()
    return c


def recv_raw(c: RawClient, until: bytes, timeout: float = 10) -> bytes:
    """Raw bytes from the channel up to and including ``until``."""
    buf = b""
    deadline = time.monotonic() + timeout
    while until not in buf:
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"no {until!r} in {buf[:200]!r}"
        c.channel.settimeout(remaining)
        data = c.channel.recv(65536)
        assert data, "channel closed"
        buf += data
    return buf


# ---- hello ---------------------------------------------------------------------------------


def test_server_hello_has_session_id_and_both_bases(agent):
    with agent.raw(hello=False) as c:
        hello = c.read_hello()
        sid = hello.findtext(q("session-id"))
        assert sid is not None and sid.strip().isdigit() and int(sid) > 0
        assert BASE_10 in c.capabilities and BASE_11 in c.capabilities
        # the server hello came first, before ours (RFC 6241 §8.1)
        c.send_raw(hello_message([BASE_11]) + EOM)
        c.framer.set_chunked()
        assert_alive(c)


def test_session_ids_are_unique(agent):
    with agent.raw() as a, agent.raw() as b:
        assert a.session_id != b.session_id


def test_base10_only_client_gets_eom_replies(agent):
    with agent.raw(caps=("1.0",)) as c:
        assert not c.chunked
        c.send_raw(rpc(GET_CONFIG, 7) + EOM)
        raw = recv_raw(c, EOM)
        assert not raw.startswith(b"\n#"), raw[:40]
        assert raw.endswith(EOM)
        reply = parse(raw[: -len(EOM)])
        assert reply.tag == q("rpc-reply") and reply.get("message-id") == "7"
        assert reply.find(q("data")) is not None


@pytest.mark.parametrize("caps", [("1.1",), ("1.0", "1.1")], ids=["1.1-only", "both"])
def test_base11_client_gets_chunked_replies(agent, caps):
    with agent.raw(caps=caps) as c:
        assert c.chunked
        c.send_raw(chunked(rpc(GET_CONFIG, 8)))
        raw = recv_raw(c, END)
        assert raw.startswith(b"\n#"), raw[:40]
        assert EOM not in raw
        header, _, rest = raw[2:].partition(b"\n")
        assert header.isdigit()
        reply = parse(rest[: int(header)])
        assert reply.get("message-id") == "8"


@pytest.mark.parametrize(
    "prefix",
    [b"  \n\t", b'<?xml version="1.0" encoding="UTF-8"?>\n',
     b'\n  <?xml version="1.0" encoding="UTF-8"?>\n'],
    ids=["whitespace", "xml-declaration", "whitespace+declaration"],
)
def test_hello_with_leading_whitespace_or_declaration_accepted(agent, prefix):
    body = hello_message([BASE_10, BASE_11]).split(b"?>", 1)[1]  # without its declaration
    c = handmade_session(agent, prefix + body + b"\n" + EOM, (BASE_10, BASE_11))
    with c:
        assert c.chunked
        assert_alive(c)


def test_hello_and_first_rpc_in_one_write(agent):
    """The client may send its first rpc (already chunked) right behind its hello."""
    with agent.raw(hello=False) as c:
        c.client_capabilities = [BASE_10, BASE_11]
        c.send_raw(hello_message(c.client_capabilities) + EOM + chunked(rpc(GET_CONFIG, 1)))
        c.read_hello()
        assert c.chunked
        reply = recv_xml(c)
        assert reply.get("message-id") == "1" and reply.find(q("data")) is not None
    with agent.raw(hello=False) as c:
        c.client_capabilities = [BASE_10]
        c.send_raw(hello_message(c.client_capabilities) + EOM + rpc(GET_CONFIG, 2) + EOM)
        c.read_hello()
        assert not c.chunked
        assert recv_xml(c).get("message-id") == "2"


@pytest.mark.parametrize(
    "hello",
    [
        pytest.param(
            f'<hello xmlns="{NC}"><capabilities><capability>{BASE_11}</capability>'
            "</capabilities><session-id>4</session-id></hello>", id="with-session-id"),
        pytest.param(
            f'<hello xmlns="{NC}"><capabilities><capability>urn:example:cap</capability>'
            "</capabilities></hello>", id="no-base-capability"),
        pytest.param(
            f'<hello xmlns="{NC}"><capabilities/></hello>', id="no-capabilities"),
        pytest.param(
            "<hello><capabilities><capability>urn:ietf:params:netconf:base:1.1</capability>"
            "</capabilities></hello>", id="no-namespace"),
        pytest.param("this is not XML at all", id="garbage"),
        pytest.param(f'<hello xmlns="{NC}"><capabilities>', id="not-well-formed"),
        pytest.param("", id="empty"),
        pytest.param(rpc(GET_CONFIG, 1).decode(), id="rpc-before-hello"),
    ],
)
def test_bad_hello_closes_session(agent, hello):
    before = bad_hellos(agent)
    with agent.raw() as bystander:
        c = agent.raw(hello=False)
        try:
            c.send_raw(hello.encode() + EOM)
            got = expect_closed(c)
        finally:
            c.close()
        assert [m.tag for m in got] == [q("hello")], "nothing but the server hello"
        assert_alive(bystander)
    assert bad_hellos(agent) == before + 1


def test_chunked_hello_is_refused(agent):
    """The hello is always EOM framed (RFC 6242 §4.1), even from a base:1.1 client."""
    c = agent.raw(hello=False)
    with c:
        c.send_raw(chunked(hello_message([BASE_11])))
        c.send_raw(b"x" * 10 + EOM)  # whatever the server reads as "the hello", it is bad
        got = expect_closed(c)
        assert [m.tag for m in got] == [q("hello")]


def test_no_hello_within_timeout_closes_session(limited):
    before = bad_hellos(limited)
    c = limited.raw(hello=False)
    with c:
        t0 = time.monotonic()
        got = expect_closed(c, timeout=6)
        elapsed = time.monotonic() - t0
    assert [m.tag for m in got] == [q("hello")]
    assert 0.7 <= elapsed <= 4, elapsed
    assert bad_hellos(limited) == before + 1


def test_partial_hello_does_not_extend_timeout(limited):
    """Dripping a hello that never ends does not keep the session alive (slowloris)."""
    c = limited.raw(hello=False)
    with c:
        hello = hello_message([BASE_11])
        t0 = time.monotonic()
        for i in range(0, 12):
            try:
                c.send_raw(hello[i : i + 1])
            except OSError:
                break
            time.sleep(0.2)
        expect_closed(c, timeout=5)
        assert time.monotonic() - t0 < 5


def test_hello_timeout_spares_established_sessions(limited):
    with limited.raw() as c:
        time.sleep(1.6)
        assert_alive(c)


# ---- chunked framing -----------------------------------------------------------------------


@pytest.mark.parametrize("size", [1, 3, 17])
def test_message_in_many_chunks(agent, size):
    with agent.raw(caps=("1.1",)) as c:
        msg = rpc(GET_CONFIG, f"chunks-{size}")
        frame = chunked(msg, size)
        assert frame.count(b"\n#") > len(msg) // size  # really many chunk headers
        c.send_raw(frame)
        reply = recv_xml(c)
        assert reply.get("message-id") == f"chunks-{size}"
        assert reply.find(q("data")) is not None


def test_chunked_frame_split_at_every_position(agent):
    """A multi-chunk message cut into two writes at every byte offset, headers included."""
    with agent.raw(caps=("1.1",)) as c:
        msg = rpc(GET_CONFIG, "x" * 3)
        frame = chunked(msg, 40)
        assert frame.count(b"\n#") >= 4  # several chunks and the end-of-chunks marker
        for k in range(1, len(frame)):
            msg = rpc(GET_CONFIG, f"m{k:03d}")
            frame = chunked(msg, 40)
            c.send_raw(frame[:k])
            c.send_raw(frame[k:])
            reply = recv_xml(c)
            assert reply.get("message-id") == f"m{k:03d}"
            assert reply.find(q("data")) is not None, etree.tostring(reply)


def test_chunked_frame_one_byte_per_write(agent):
    with agent.raw(caps=("1.1",)) as c:
        frame = chunked(rpc(GET_CONFIG, "drip"), 25)
        for i in range(len(frame)):
            c.send_raw(frame[i : i + 1])
        assert recv_xml(c).get("message-id") == "drip"
        assert_alive(c)


def test_chunked_messages_pipelined_in_one_write(agent):
    with agent.raw(caps=("1.1",)) as c:
        frames = [chunked(rpc(GET_CONFIG, i), size) for i, size in
                  enumerate([1000, 7, 1, 64, 1000, 2, 13, 1000])]
        c.send_raw(b"".join(frames))
        ids = [recv_xml(c).get("message-id") for _ in frames]
        assert ids == [str(i) for i in range(len(frames))]


BAD_CHUNKED = {
    "zero-size": b"\n#0\n",
    "leading-zero": b"\n#01\n<",
    "letters": b"\n#abc\n<rpc/>\n##\n",
    "negative": b"\n#-5\n<rpc/>\n##\n",
    "space": b"\n# 5\n<rpc/>\n##\n",
    "empty-size": b"\n#\n<rpc/>\n##\n",
    "too-large": b"\n#4294967296\n<rpc/>\n##\n",
    "endless-digits": b"\n#123456789012345",
    "missing-leading-lf": b"#%d\n%s\n##\n" % (len(rpc(GET_CONFIG, 1)), rpc(GET_CONFIG, 1)),
    "eom-framed": rpc(GET_CONFIG, 1) + EOM,
    "end-without-chunk": b"\n##\n",
    "chunk-overrun": b"\n#5\n<rpc message-id='1'/>\n##\n",
    "bad-end-marker": b"\n#7\n<rpc/>\n\n#x\n",
}


@pytest.mark.parametrize("frame", list(BAD_CHUNKED.values()), ids=list(BAD_CHUNKED))
def test_bad_chunk_header_ends_session(agent, frame):
    with agent.raw(caps=("1.1",)) as bystander, agent.raw(caps=("1.1",)) as c:
        assert_alive(c)
        c.send_raw(frame)
        got = expect_closed(c)
        assert got == [], [etree.tostring(m) for m in got]
        assert_alive(bystander)
    with agent.raw() as after:  # the agent still accepts new sessions
        assert_alive(after)


def test_bad_chunk_after_good_messages_in_one_write(agent):
    """Replies to messages framed before the error may come; then the session ends."""
    with agent.raw(caps=("1.1",)) as c:
        c.send_raw(chunked(rpc(GET_CONFIG, 1)) + b"\n#0\n" + chunked(rpc(GET_CONFIG, 2)))
        got = expect_closed(c)
        assert [m.get("message-id") for m in got] in ([], ["1"])


# ---- EOM framing ---------------------------------------------------------------------------


def test_eom_delimiter_split_across_writes(agent):
    with agent.raw(caps=("1.0",)) as c:
        for k in range(0, len(EOM) + 1):
            msg = rpc(GET_CONFIG, f"eom{k}")
            c.send_raw(msg + EOM[:k])
            c.send_raw(EOM[k:])
            assert recv_xml(c).get("message-id") == f"eom{k}"
        # and the body itself in pieces, one byte at a time at the end
        msg = rpc(GET_CONFIG, "drip") + EOM
        c.send_raw(msg[:20])
        for i in range(20, len(msg)):
            c.send_raw(msg[i : i + 1])
        assert recv_xml(c).get("message-id") == "drip"


def test_eom_messages_pipelined_in_one_write(agent):
    with agent.raw(caps=("1.0",)) as c:
        c.send_raw(b"".join(rpc(GET_CONFIG, i) + EOM for i in range(10)))
        assert [recv_xml(c).get("message-id") for _ in range(10)] == [str(i) for i in range(10)]


def test_eom_rpc_with_leading_whitespace_and_declaration(agent):
    """Whitespace between messages (e.g. ``]]>]]>\\n``) is tolerated, as before a hello."""
    with agent.raw(caps=("1.0",)) as c:
        decl = b'<?xml version="1.0" encoding="UTF-8"?>'
        c.send_raw(decl + rpc(GET_CONFIG, 1) + EOM + b"\n" + decl + rpc(GET_CONFIG, 2) + EOM)
        for mid in ("1", "2"):
            reply = recv_xml(c)
            assert reply.get("message-id") == mid
            assert reply.find(q("data")) is not None, etree.tostring(reply)


# ---- pipelining ----------------------------------------------------------------------------


@pytest.mark.parametrize("caps", [("1.0",), ("1.1",)], ids=["eom", "chunked"])
def test_200_pipelined_requests_answered_in_order(fresh, caps):
    with fresh.raw(caps=caps) as c:
        n = 200
        # every 10th request fails: errors must keep their place in the order too
        inner = [GET_CONFIG if i % 10 else "<no-such-op/>" for i in range(n)]
        burst = b"".join(c.framer.encode(rpc(inner[i], f"p{i}")) for i in range(n))
        t0 = time.monotonic()
        c.send_raw(burst)
        replies = [recv_xml(c) for _ in range(n)]
        elapsed = time.monotonic() - t0
        assert [r.get("message-id") for r in replies] == [f"p{i}" for i in range(n)]
        for i, r in enumerate(replies):
            if i % 10:
                assert r.find(q("data")) is not None
            else:
                assert errors(r)[0]["error-tag"] == "operation-not-supported"
        assert elapsed < 10, elapsed
        assert_alive(c)


# ---- rpc and rpc-reply ---------------------------------------------------------------------


def test_rpc_reply_echoes_all_rpc_attributes(agent):
    """RFC 6241 §4.2 example: every attribute of <rpc> comes back, in any namespace."""
    with agent.raw() as c:
        c.send_message(
            f'<rpc message-id="101" xmlns="{NC}" xmlns:ex="http://example.net/content/1.0" '
            'ex:user-id="fred" plain="x &amp; y" ex:empty=""><get-config><source><running/>'
            "</source></get-config></rpc>"
        )
        reply = recv_xml(c)
        assert reply.tag == q("rpc-reply")
        assert reply.get("message-id") == "101"
        assert reply.get("{http://example.net/content/1.0}user-id") == "fred"
        assert reply.get("{http://example.net/content/1.0}empty") == ""
        assert reply.get("plain") == "x & y"
        assert reply.find(q("data")) is not None


def test_rpc_reply_echoes_attributes_on_errors(agent):
    with agent.raw() as c:
        c.send_message(f'<rpc message-id="e1" xmlns="{NC}" xmlns:ex="urn:ex" ex:a="1">'
                       "<no-such-op/></rpc>")
        reply = recv_xml(c)
        assert reply.get("message-id") == "e1" and reply.get("{urn:ex}a") == "1"
        assert errors(reply)[0]["error-tag"] == "operation-not-supported"


def test_missing_message_id(agent):
    with agent.raw() as c:
        c.send_message(f'<rpc xmlns="{NC}">{GET_CONFIG}</rpc>')
        reply = recv_xml(c)
        assert reply.tag == q("rpc-reply") and reply.get("message-id") is None
        (err,) = errors(reply)
        assert err["error-tag"] == "missing-attribute"
        assert err["error-type"] == "rpc"
        assert err["error-severity"] == "error"
        assert err["info:bad-attribute"] == "message-id"
        assert err["info:bad-element"] == "rpc"
        assert_alive(c)


MALFORMED = {
    "unclosed": f'<rpc message-id="1" xmlns="{NC}"><get-config>'.encode(),
    "mismatched": f'<rpc message-id="1" xmlns="{NC}"><get></got></rpc>'.encode(),
    "two-roots": rpc(GET_CONFIG, 1) + rpc(GET_CONFIG, 2),
    "text": b"hello world",
    "bad-utf8": f'<rpc message-id="1" xmlns="{NC}"><get/>'.encode() + b"\xff\xfe</rpc>",
    "undefined-prefix": f'<rpc message-id="1" xmlns="{NC}"><x:get/></rpc>'.encode(),
    "undefined-entity": f'<rpc message-id="1" xmlns="{NC}"><get>&nbsp;</get></rpc>'.encode(),
    "nul-byte": f'<rpc message-id="1" xmlns="{NC}"><get/>\x00</rpc>'.encode(),
}


@pytest.mark.parametrize("caps", [("1.1",), ("1.0",)], ids=["base11", "base10"])
@pytest.mark.parametrize("msg", list(MALFORMED.values()), ids=list(MALFORMED))
def test_malformed_xml_gets_error_and_session_stays(agent, msg, caps):
    with agent.raw(caps=caps) as c:
        c.send_message(msg)
        reply = recv_xml(c)
        assert reply.tag == q("rpc-reply")
        (err,) = errors(reply)
        assert err["error-type"] == "rpc"
        if c.chunked:
            assert err["error-tag"] == "malformed-message"
        else:  # RFC 6241 App. A: malformed-message "MUST NOT be sent to old clients"
            assert err["error-tag"] != "malformed-message"
        assert_alive(c)


def test_empty_eom_message(agent):
    with agent.raw(caps=("1.0",)) as c:
        c.send_raw(EOM)
        reply = recv_xml(c)
        assert reply.find(q("rpc-error")) is not None
        assert_alive(c)


@pytest.mark.parametrize(
    "op", ["<no-such-op/>", '<get-config xmlns="urn:example:other"/>', "<GET-CONFIG/>"]
)
def test_unknown_operation(agent, op):
    with agent.raw() as c:
        reply = c.rpc(op, message_id="u1")
        assert reply.get("message-id") == "u1"
        (err,) = errors(reply)
        assert err["error-tag"] == "operation-not-supported"
        assert err["error-type"] == "protocol"
        assert_alive(c)


@pytest.mark.parametrize(
    "inner", [GET_CONFIG + GET_CONFIG, GET_CONFIG + "<lock><target><running/></target></lock>", ""],
    ids=["two-get-config", "get-config+lock", "none"],
)
def test_rpc_without_exactly_one_operation(fresh, inner):
    with fresh.raw() as c:
        reply = c.rpc(inner, message_id="two")
        assert reply.get("message-id") == "two"
        assert errors(reply), etree.tostring(reply)
        assert reply.find(q("data")) is None and reply.find(q("ok")) is None
        # nothing was executed: running is still unlocked for another session
        with fresh.raw() as other:
            lock = other.rpc("<lock><target><running/></target></lock>")
            assert lock.find(q("ok")) is not None, etree.tostring(lock)
            other.rpc("<unlock><target><running/></target></unlock>")
        assert_alive(c)


def test_non_rpc_message_gets_error(agent):
    with agent.raw() as c:
        c.send_message(f'<get-config xmlns="{NC}"><source><running/></source></get-config>')
        reply = recv_xml(c)
        assert reply.tag == q("rpc-reply") and errors(reply)
        c.send_message(f'<rpc message-id="1" xmlns="urn:not:netconf">{GET_CONFIG}</rpc>')
        assert errors(recv_xml(c))
        assert_alive(c)


# ---- message size limit --------------------------------------------------------------------


def padded_rpc(size: int, mid: str) -> bytes:
    """A valid get-config rpc of exactly ``size`` bytes (whitespace padding)."""
    head = rpc(GET_CONFIG, mid)
    cut = head.index(b"</rpc>")
    pad = size - len(head)
    assert pad >= 0
    return head[:cut] + b" " * pad + head[cut:]


@pytest.mark.parametrize("caps", [("1.0",), ("1.1",)], ids=["eom", "chunked"])
def test_message_below_limit_is_served(limited, caps):
    with limited.raw(caps=caps) as c:
        msg = padded_rpc(MAX_MESSAGE - 1000, "big")
        c.send_raw(c.framer.encode(msg))
        assert recv_xml(c).get("message-id") == "big"


@pytest.mark.parametrize(
    "how",
    ["eom-no-delimiter", "eom-with-delimiter", "one-chunk-header", "many-small-chunks",
     "chunk-dribble"],
)
def test_message_over_limit_ends_only_that_session(limited, how):
    eom = how.startswith("eom")
    with limited.raw(caps=("1.1",)) as bystander, \
            limited.raw(caps=("1.0",) if eom else ("1.1",)) as c:
        big = padded_rpc(2 * MAX_MESSAGE, "too-big")
        if how == "eom-no-delimiter":
            c.send_raw(big)
        elif how == "eom-with-delimiter":
            c.send_raw(big + EOM)
        elif how == "one-chunk-header":
            c.send_raw(b"\n#%d\n" % len(big))  # refused before any data arrives
        elif how == "many-small-chunks":
            c.send_raw(chunked(big, 1000))
        else:
            try:
                for i in range(0, len(big), 5000):
                    c.send_raw(b"\n#5000\n" + big[i : i + 5000])
                    assert_alive(bystander) if i == 50_000 else None
            except OSError:
                pass
        got = expect_closed(c)
        assert got == []
        assert_alive(bystander)


# ---- concurrency ---------------------------------------------------------------------------


def test_stalled_connections_do_not_delay_new_sessions(agent):
    """Idle TCP, SSH banner only, SSH without hello, half a hello: a new client still gets
    SSH + hello + get-config done in under a second."""
    held: list = []
    try:
        for _ in range(3):
            held.append(socket.create_connection((agent.host, agent.port)))
        s = socket.create_connection((agent.host, agent.port))
        s.sendall(b"SSH-2.0-stalled_client\r\n")
        held.append(s)
        held.append(agent.raw(hello=False))  # SSH done, never says hello, never reads
        half = agent.raw(hello=False)
        half.send_raw(hello_message([BASE_11])[:40])
        held.append(half)
        times = []
        for _ in range(3):
            t0 = time.monotonic()
            with agent.raw() as c:
                assert_alive(c)
                times.append(time.monotonic() - t0)
        assert max(times) < 1.0, times
    finally:
        for h in held:
            h.close()


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_client_that_never_reads_does_not_block_others(fresh):
    """2,000 pipelined <get>s of 1,000 interfaces from a client that never reads its
    replies: another session's RPCs keep completing quickly, the agent's memory stays
    bounded, and the agent serves normally once the stalled client is gone."""
    ifs = "".join(
        f"<interface><name>eth{i}</name><description>interface number {i}</description>"
        f'<type xmlns:ianaift="{IANAIFT}">ianaift:ethernetCsmacd</type></interface>'
        for i in range(1000)
    )
    with fresh.raw() as c:
        r = c.rpc(f'<edit-config><target><running/></target><config xmlns="{NC}">'
                  f'<interfaces xmlns="{IF}">{ifs}</interfaces></config></edit-config>',
                  timeout=60)
        assert r.find(q("ok")) is not None, etree.tostring(r)
    rss0 = _rss_kib(fresh.pid)
    other = fresh.raw()
    stalled = fresh.raw()
    burst = b"".join(stalled.framer.encode(rpc("<get/>", i)) for i in range(2000))

    def send() -> None:
        try:
            stalled.send_raw(burst)
        except Exception:  # noqa: BLE001 - the server may drop this client
            pass

    sender = threading.Thread(target=send, daemon=True)
    try:
        sender.start()
        latencies = []
        rss_max = rss0
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            t0 = time.monotonic()
            assert_alive(other)
            latencies.append(time.monotonic() - t0)
            rss_max = max(rss_max, _rss_kib(fresh.pid))
            time.sleep(0.05)
        assert max(latencies) < 0.5, [round(x, 3) for x in latencies]
        assert rss_max - rss0 < 300 * 1024, (rss0, rss_max)
    finally:
        stalled.transport.close()
        sender.join(5)
    t0 = time.monotonic()
    assert_alive(other)
    with fresh.raw() as c:
        assert_alive(c)
    assert time.monotonic() - t0 < 2
    other.close()
