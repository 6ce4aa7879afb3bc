"""Unit tests for the sans-IO NETCONF framer (RFC 6242 §4)."""

from __future__ import annotations

import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.protocol.framing import (
    EOM,
    MAX_CHUNK_SIZE,
    Framer,
    FramingError,
    MessageTooLarge,
)

HELLO = (
    b'<?xml version="1.0" encoding="UTF-8"?>'
    b'<hello xmlns="urn:ietf:params:xml:ns:netconf:base:1.0"><capabilities>'
    b"<capability>urn:ietf:params:netconf:base:1.1</capability>"
    b"</capabilities></hello>"
)
RPC = (
    b'<rpc message-id="%d" xmlns="urn:ietf:params:xml:ns:netconf:base:1.0">'
    b"<get-config><source><running/></source></get-config></rpc>"
)


def framer(mode: str = "eom", **kw: int) -> Framer:
    f = Framer(**kw)
    if mode == "chunked":
        f.set_chunked()
    return f


def drain(f: Framer) -> list[bytes]:
    out = []
    while (m := f.next_message()) is not None:
        out.append(m)
    return out


def feed_all(f: Framer, pieces: list[bytes]) -> list[bytes]:
    out: list[bytes] = []
    for p in pieces:
        f.feed(p)
        out += drain(f)
    return out


def chunked(*chunks: bytes) -> bytes:
    return b"".join(b"\n#%d\n%s" % (len(c), c) for c in chunks) + b"\n##\n"


# -- EOM ------------------------------------------------------------------------------


def test_starts_in_eom_mode() -> None:
    f = Framer()
    assert f.mode == "eom"
    assert f.next_message() is None


def test_eom_single_message() -> None:
    f = framer()
    f.feed(HELLO + EOM)
    assert f.next_message() == HELLO
    assert f.next_message() is None
    assert f.buffered == 0


def test_eom_pipelined_in_one_feed() -> None:
    msgs = [RPC % i for i in range(50)]
    f = framer()
    f.feed(b"".join(m + EOM for m in msgs))
    assert drain(f) == msgs


def test_eom_split_at_every_offset() -> None:
    msgs = [RPC % 1, b"", RPC % 2]
    wire = b"".join(m + EOM for m in msgs)
    for cut in range(len(wire) + 1):
        f = framer()
        assert feed_all(f, [wire[:cut], wire[cut:]]) == msgs, cut


def test_eom_split_at_every_pair_of_offsets() -> None:
    msgs = [b"<a/>", b"<b>]]></b>", b"<c/>"]
    wire = b"".join(m + EOM for m in msgs)
    for i in range(len(wire) + 1):
        for j in range(i, len(wire) + 1):
            f = framer()
            assert feed_all(f, [wire[:i], wire[i:j], wire[j:]]) == msgs, (i, j)


def test_eom_byte_by_byte() -> None:
    msgs = [RPC % i for i in range(3)]
    wire = b"".join(m + EOM for m in msgs)
    f = framer()
    assert feed_all(f, [wire[i : i + 1] for i in range(len(wire))]) == msgs


def test_eom_partial_delimiters_inside_message() -> None:
    body = b"]]>]]]>]>]]]]>]"
    assert EOM not in body
    f = framer()
    f.feed(body + EOM)
    assert drain(f) == [body]


def test_eom_empty_feed_is_noop() -> None:
    f = framer()
    f.feed(b"")
    assert f.next_message() is None


def test_eom_accepts_memoryview_and_bytearray() -> None:
    f = framer()
    f.feed(memoryview(b"<a/>]]>"))
    f.feed(bytearray(b"]]>"))
    assert f.next_message() == b"<a/>"


def test_eom_does_not_rescan_buffer() -> None:
    # 8 MiB in 1 KiB feeds without a delimiter: quadratic rescanning would take minutes.
    f = framer()
    piece = b"x" * 1024
    t0 = time.perf_counter()
    for _ in range(8 * 1024):
        f.feed(piece)
        assert f.next_message() is None
    f.feed(EOM)
    msg = f.next_message()
    assert msg is not None and len(msg) == 8 * 2**20
    assert time.perf_counter() - t0 < 2.0


# -- EOM size limit ---------------------------------------------------------------------


def test_eom_message_of_exactly_max_size() -> None:
    f = framer(max_message_size=10)
    f.feed(b"0123456789")
    f.feed(EOM)
    assert f.next_message() == b"0123456789"


def test_eom_too_big_raises_before_delimiter() -> None:
    f = framer(max_message_size=10)
    f.feed(b"0123456789")
    with pytest.raises(MessageTooLarge):
        f.feed(b"a")


def test_eom_partial_delimiter_at_limit_is_not_an_error() -> None:
    for i in range(1, len(EOM)):
        f = framer(max_message_size=10)
        f.feed(b"0123456789" + EOM[:i])
        f.feed(EOM[i:])
        assert f.next_message() == b"0123456789"


def test_eom_too_big_with_delimiter_in_same_feed() -> None:
    f = framer(max_message_size=10)
    with pytest.raises(MessageTooLarge):
        f.feed(b"0123456789a" + EOM)


def test_eom_too_big_after_complete_message() -> None:
    f = framer(max_message_size=10)
    f.feed(b"ok" + EOM + b"x" * 20)
    assert f.next_message() == b"ok"
    with pytest.raises(MessageTooLarge):
        f.next_message()


def test_error_is_sticky() -> None:
    f = framer(max_message_size=4)
    with pytest.raises(MessageTooLarge):
        f.feed(b"12345")
    with pytest.raises(MessageTooLarge):
        f.feed(EOM)
    with pytest.raises(MessageTooLarge):
        f.next_message()


# -- chunked -----------------------------------------------------------------------------


def test_chunked_single_chunk() -> None:
    f = framer("chunked")
    f.feed(chunked(b"<rpc/>"))
    assert f.next_message() == b"<rpc/>"
    assert f.next_message() is None
    assert f.buffered == 0


def test_chunked_rfc6242_example() -> None:
    # RFC 6242 §4.2 example: one rpc split into three chunks.
    parts = [
        b"<rpc",
        b' message-id="102"\n',
        b'     xmlns="urn:ietf:params:xml:ns:netconf:base:1.0">\n'
        b"       <close-session/>\n     </rpc>",
    ]
    f = framer("chunked")
    f.feed(chunked(*parts))
    assert f.next_message() == b"".join(parts)


def test_chunked_multi_chunk_and_pipelined() -> None:
    msgs = [RPC % i for i in range(20)]
    wire = b"".join(chunked(m[:7], m[7:8], m[8:]) for m in msgs)
    f = framer("chunked")
    f.feed(wire)
    assert drain(f) == msgs


def test_chunked_split_at_every_offset() -> None:
    msgs = [b"<a/>", b"\n##\n]]>]]>", b"<c>" + b"z" * 30 + b"</c>"]
    wire = chunked(msgs[0]) + chunked(msgs[1][:3], msgs[1][3:]) + chunked(msgs[2])
    for cut in range(len(wire) + 1):
        f = framer("chunked")
        assert feed_all(f, [wire[:cut], wire[cut:]]) == msgs, cut


def test_chunked_split_at_every_pair_of_offsets() -> None:
    msgs = [b"<a/>", b"<bb/>"]
    wire = chunked(b"<a", b"/>") + chunked(msgs[1])
    for i in range(len(wire) + 1):
        for j in range(i, len(wire) + 1):
            f = framer("chunked")
            assert feed_all(f, [wire[:i], wire[i:j], wire[j:]]) == msgs, (i, j)


def test_chunked_byte_by_byte() -> None:
    msgs = [RPC % i for i in range(3)]
    wire = b"".join(chunked(m[:50], m[50:]) for m in msgs)
    f = framer("chunked")
    assert feed_all(f, [wire[i : i + 1] for i in range(len(wire))]) == msgs


def test_chunked_max_chunk_size_header_is_valid() -> None:
    f = framer("chunked", max_message_size=2**33)
    f.feed(b"\n#%d\n" % MAX_CHUNK_SIZE + b"abc")
    assert f.next_message() is None


def test_chunked_large_message_is_linear() -> None:
    payload = bytes(range(256)) * (4 * 2**12)  # 4 MiB
    wire = (
        b"".join(
            b"\n#%d\n" % len(payload[i : i + 4000]) + payload[i : i + 4000]
            for i in range(0, len(payload), 4000)
        )
        + b"\n##\n"
    )
    f = framer("chunked")
    view = memoryview(wire)
    t0 = time.perf_counter()
    for i in range(0, len(wire), 1000):
        f.feed(view[i : i + 1000])
    msg = f.next_message()
    assert time.perf_counter() - t0 < 2.0
    assert msg == payload


BAD_CHUNKED = {
    "zero size": b"\n#0\nx\n##\n",
    "leading zero": b"\n#01\nx\n##\n",
    "negative": b"\n#-1\nx\n##\n",
    "letters": b"\n#abc\nx\n##\n",
    "plus sign": b"\n#+1\nx\n##\n",
    "space": b"\n# 1\nx\n##\n",
    "empty size": b"\n#\nx\n##\n",
    "missing LF after size": b"\n#12345678901x",
    "missing leading LF": b"#1\nx\n##\n",
    "missing hash": b"\n1\nx\n##\n",
    "end without chunk": b"\n##\n",
    "end missing LF": b"\n#1\nx\n##x",
    "end missing LF twice": b"\n#1\nx\n##\n\n##\n",
    "size above 2^32-1": b"\n#4294967296\nx",
    "too many digits": b"\n#99999999999\nx",
    "junk after chunk": b"\n#1\nxy\n##\n",
    "junk between messages": b"\n#1\nx\n##\n \n#1\ny\n##\n",
    "EOM delimiter in chunked mode": b"<a/>]]>]]>",
}


@pytest.mark.parametrize("wire", BAD_CHUNKED.values(), ids=BAD_CHUNKED.keys())
def test_chunked_bad_framing(wire: bytes) -> None:
    f = framer("chunked", max_message_size=2**40)
    with pytest.raises(FramingError):
        f.feed(wire)
        drain(f)


@pytest.mark.parametrize("wire", BAD_CHUNKED.values(), ids=BAD_CHUNKED.keys())
def test_chunked_bad_framing_byte_by_byte(wire: bytes) -> None:
    f = framer("chunked", max_message_size=2**40)
    with pytest.raises(FramingError):
        for i in range(len(wire)):
            f.feed(wire[i : i + 1])
            drain(f)


@pytest.mark.parametrize(
    "partial", [b"\n#0", b"\n#01", b"\n#-", b"\n#a", b"\nx", b"x", b"\n##x", b"\n#4294967296"]
)
def test_chunked_bad_header_detected_before_lf(partial: bytes) -> None:
    f = framer("chunked", max_message_size=2**40)
    with pytest.raises(FramingError):
        f.feed(partial)


def test_chunked_valid_message_before_error_is_delivered() -> None:
    f = framer("chunked")
    with pytest.raises(FramingError):
        f.feed(chunked(b"<ok/>") + b"\n#0\n")
    # The stream is dead; the error keeps being raised.
    with pytest.raises(FramingError):
        f.next_message()


# -- chunked size limit ----------------------------------------------------------------


def test_chunked_message_of_exactly_max_size() -> None:
    f = framer("chunked", max_message_size=10)
    f.feed(chunked(b"01234", b"56789"))
    assert f.next_message() == b"0123456789"


def test_chunked_too_big_single_chunk_raises_at_header() -> None:
    f = framer("chunked", max_message_size=10)
    with pytest.raises(MessageTooLarge):
        f.feed(b"\n#11\n")  # raised before any chunk data is buffered


def test_chunked_too_big_over_several_chunks() -> None:
    f = framer("chunked", max_message_size=10)
    f.feed(b"\n#6\n012345")
    with pytest.raises(MessageTooLarge):
        f.feed(b"\n#5\n")


def test_chunked_limit_is_per_message() -> None:
    f = framer("chunked", max_message_size=10)
    f.feed(chunked(b"0123456789") * 5)
    assert drain(f) == [b"0123456789"] * 5


# -- mode switch -------------------------------------------------------------------------


def test_mode_switch_with_leftover_messages() -> None:
    rpcs = [RPC % i for i in range(3)]
    wire = HELLO + EOM + b"".join(chunked(r) for r in rpcs)
    f = framer()
    f.feed(wire)
    assert f.next_message() == HELLO
    f.set_chunked()
    assert f.mode == "chunked"
    assert drain(f) == rpcs


def test_mode_switch_leftover_containing_eom_delimiter() -> None:
    # The chunked payload contains "]]>]]>": it must not be cut as an EOM message.
    rpc = b"<rpc><x>]]>]]></x></rpc>"
    f = framer()
    f.feed(HELLO + EOM + chunked(rpc))
    assert f.next_message() == HELLO
    f.set_chunked()
    assert f.next_message() == rpc


@pytest.mark.parametrize("cut", range(len(HELLO) + 20))
def test_mode_switch_split(cut: int) -> None:
    wire = HELLO + EOM + chunked(b"<rpc/>")
    f = framer()
    f.feed(wire[:cut])
    hello = f.next_message()
    if hello is None:
        f.feed(wire[cut:])
        hello = f.next_message()
        rest = b""
    else:
        rest = wire[cut:]
    assert hello == HELLO
    f.set_chunked()
    f.feed(rest)
    assert drain(f) == [b"<rpc/>"]


def test_mode_switch_partial_chunk_left_over() -> None:
    f = framer()
    f.feed(HELLO + EOM + b"\n#6\n<rp")
    assert f.next_message() == HELLO
    f.set_chunked()
    assert f.next_message() is None
    f.feed(b"c/>\n##\n")
    assert f.next_message() == b"<rpc/>"


def test_mode_switch_bad_leftover() -> None:
    f = framer()
    f.feed(HELLO + EOM + b"<rpc/>]]>]]>")
    assert f.next_message() == HELLO
    f.set_chunked()
    with pytest.raises(FramingError):
        f.next_message()


def test_set_chunked_twice_is_noop() -> None:
    f = framer("chunked")
    f.set_chunked()
    f.feed(chunked(b"<a/>"))
    assert f.next_message() == b"<a/>"


# -- encode ------------------------------------------------------------------------------


def test_encode_eom() -> None:
    f = Framer()
    assert f.encode(b"<a/>") == b"<a/>]]>]]>"


def test_encode_chunked() -> None:
    f = framer("chunked")
    assert f.encode(b"<a/>") == b"\n#4\n<a/>\n##\n"


def test_encode_chunked_empty_refused() -> None:
    with pytest.raises(ValueError):
        framer("chunked").encode(b"")


@pytest.mark.parametrize("mode", ["eom", "chunked"])
def test_encode_round_trip(mode: str) -> None:
    msgs = [RPC % i for i in range(100)] + [b"x" * 100_000]
    tx, rx = framer(mode), framer(mode)
    wire = b"".join(tx.encode(m) for m in msgs)
    rx.feed(wire)
    assert drain(rx) == msgs


# -- randomized --------------------------------------------------------------------------

message = st.binary(min_size=1, max_size=200).filter(lambda m: EOM not in m)


@settings(max_examples=300, deadline=None)
@given(
    mode=st.sampled_from(["eom", "chunked"]),
    msgs=st.lists(message, min_size=1, max_size=8),
    chunk_sizes=st.lists(st.integers(1, 50), min_size=1, max_size=10),
    cuts=st.lists(st.integers(0, 2000), max_size=20),
)
def test_random_split(
    mode: str, msgs: list[bytes], chunk_sizes: list[int], cuts: list[int]
) -> None:
    if mode == "eom":
        wire = b"".join(m + EOM for m in msgs)
    else:
        parts = []
        for k, m in enumerate(msgs):
            size = chunk_sizes[k % len(chunk_sizes)]
            parts.append(chunked(*(m[i : i + size] for i in range(0, len(m), size))))
        wire = b"".join(parts)
    points = sorted({c % (len(wire) + 1) for c in cuts})
    pieces = [wire[a:b] for a, b in zip([0, *points], [*points, len(wire)], strict=True)]
    assert feed_all(framer(mode), pieces) == msgs


@settings(max_examples=200, deadline=None)
@given(
    hello=message,
    msgs=st.lists(st.binary(min_size=1, max_size=100), min_size=1, max_size=5),
    cut=st.integers(0, 1000),
)
def test_random_mode_switch(hello: bytes, msgs: list[bytes], cut: int) -> None:
    tx = Framer()
    wire = tx.encode(hello)
    tx.set_chunked()
    wire += b"".join(tx.encode(m) for m in msgs)
    cut %= len(wire) + 1
    rx = Framer()
    rx.feed(wire[:cut])
    got = rx.next_message()
    rest = wire[cut:]
    if got is None:
        rx.feed(rest)
        rest = b""
        got = rx.next_message()
    assert got == hello
    rx.set_chunked()
    rx.feed(rest)
    assert drain(rx) == msgs


# -- throughput --------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["eom", "chunked"])
def test_throughput_pipelined_small_messages(mode: str) -> None:
    msg = (RPC % 1).ljust(300)
    n = 50_000
    best = 0.0
    for _ in range(3):
        tx, rx = framer(mode), framer(mode)
        t0 = time.perf_counter()
        wire = b"".join([tx.encode(msg) for _ in range(n)])
        view = memoryview(wire)
        count = 0
        for i in range(0, len(wire), 65536):
            rx.feed(view[i : i + 65536])
            while rx.next_message() is not None:
                count += 1
        rate = n / (time.perf_counter() - t0)
        assert count == n
        best = max(best, rate)
    assert best > 100_000, f"{mode}: {best:.0f} msg/s (encode + decode)"
