"""tools/ncraw.py and tools/bench.py against a tiny fake NETCONF server (asyncssh, 127.0.0.1).

The fake server answers the hello, then ``<data/>`` to get/get-config and ``<ok/>`` to
every other rpc, in EOM or chunked framing, and records what it saw.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import asyncssh
import paramiko
import pytest
from lxml import etree

from agent.protocol.framing import Framer, FramingError
from tools import bench
from tools.ncraw import BASE_10, BASE_11, NC, NOTIF, RawClient, hello_message, rpc_message

USER = "bench"
PASSWORD = "secret"


@dataclass
class SessionRecord:
    session_id: int
    client_caps: list[str] = field(default_factory=list)
    mode: str = "eom"
    rpcs: list[str] = field(default_factory=list)
    raw: list[bytes] = field(default_factory=list)
    framing_error: str | None = None
    closed_by_client: bool = False


class FakeNetconfServer:
    """An asyncssh NETCONF server on 127.0.0.1 running in its own thread and event loop."""

    def __init__(self, caps: tuple[str, ...] = (BASE_10, BASE_11)) -> None:
        self.caps = caps
        self.notify_after_hello = False  # send a chunked notification right behind the hello
        self.slow: Callable[[bytes], float] = lambda msg: 0.0  # seconds to wait before replying
        self.sessions: list[SessionRecord] = []
        self.authorized_key: asyncssh.SSHKey | None = None
        self._ids = itertools.count(1)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._acceptor: asyncssh.SSHAcceptor | None = None
        self.port = 0

    # -- lifecycle ----------------------------------------------------------------------

    def start(self) -> int:
        self._thread.start()
        self.port = asyncio.run_coroutine_threadsafe(self._listen(), self._loop).result(10)
        return self.port

    def stop(self) -> None:
        async def close() -> None:
            if self._acceptor is not None:
                self._acceptor.close()
                await self._acceptor.wait_closed()

        asyncio.run_coroutine_threadsafe(close(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    async def _listen(self) -> int:
        server = self

        class Auth(asyncssh.SSHServer):
            def begin_auth(self, username: str) -> bool:
                return True

            def password_auth_supported(self) -> bool:
                return True

            def validate_password(self, username: str, password: str) -> bool:
                return username == USER and password == PASSWORD

            def public_key_auth_supported(self) -> bool:
                return server.authorized_key is not None

            def validate_public_key(self, username: str, key: asyncssh.SSHKey) -> bool:
                ok = server.authorized_key
                return ok is not None and key.public_data == ok.public_data

        self._acceptor = await asyncssh.listen(
            "127.0.0.1",
            0,
            server_factory=Auth,
            server_host_keys=[HOST_KEY],
            process_factory=self._session,
            encoding=None,
        )
        return self._acceptor.get_port()

    # -- one NETCONF session -----------------------------------------------------------

    async def _session(self, process: asyncssh.SSHServerProcess) -> None:
        if process.subsystem != "netconf":
            process.exit(1)
            return
        rec = SessionRecord(next(self._ids))
        self.sessions.append(rec)
        framer = Framer()
        caps = "".join(f"<capability>{c}</capability>" for c in self.caps)
        out = (
            f'<hello xmlns="{NC}"><capabilities>{caps}</capabilities>'
            f"<session-id>{rec.session_id}</session-id></hello>]]>]]>"
        ).encode()
        if self.notify_after_hello:
            tx = Framer()
            tx.set_chunked()
            out += tx.encode(
                f'<notification xmlns="{NOTIF}"><eventTime>2024-01-01T00:00:00Z</eventTime>'
                "<hello-event/></notification>".encode()
            )
        process.stdout.write(out)
        hello_seen = False
        try:
            while True:
                data = await process.stdin.read(65536)
                if not data:
                    break
                framer.feed(data)
                replies = []
                closing = False
                while (msg := framer.next_message()) is not None:
                    root = etree.fromstring(msg.strip())
                    if not hello_seen:
                        hello_seen = True
                        rec.client_caps = [c.text or "" for c in root.iter(f"{{{NC}}}capability")]
                        if BASE_11 in rec.client_caps and BASE_11 in self.caps:
                            framer.set_chunked()
                            rec.mode = "chunked"
                        continue
                    op = etree.QName(root[0]).localname
                    rec.rpcs.append(op)
                    rec.raw.append(msg)
                    if delay := self.slow(msg):
                        await asyncio.sleep(delay)
                    body = "<data/>" if op in ("get", "get-config") else "<ok/>"
                    mid = root.get("message-id")
                    reply = f'<rpc-reply message-id="{mid}" xmlns="{NC}">{body}</rpc-reply>'
                    replies.append(framer.encode(reply.encode()))
                    if op == "close-session":
                        rec.closed_by_client = True
                        closing = True
                        break
                if replies:
                    process.stdout.write(b"".join(replies))
                if closing:
                    break
        except (FramingError, etree.XMLSyntaxError) as exc:
            rec.framing_error = str(exc)
        except (asyncssh.Error, BrokenPipeError, ConnectionError):
            pass
        process.exit(0)


HOST_KEY = asyncssh.generate_private_key("ssh-ed25519")


@pytest.fixture(scope="module")
def server() -> Iterator[FakeNetconfServer]:
    srv = FakeNetconfServer()
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def server_10() -> Iterator[FakeNetconfServer]:
    srv = FakeNetconfServer(caps=(BASE_10,))
    srv.start()
    yield srv
    srv.stop()


def connect(srv: FakeNetconfServer, **kw: object) -> RawClient:
    return RawClient.connect("127.0.0.1", srv.port, USER, password=PASSWORD, timeout=5, **kw)


def record(srv: FakeNetconfServer, client: RawClient) -> SessionRecord:
    (rec,) = [s for s in srv.sessions if s.session_id == client.session_id]
    return rec


# -- hello ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("client_caps", "server_caps", "chunked"),
    [
        ((BASE_10, BASE_11), (BASE_10, BASE_11), True),
        ((BASE_11,), (BASE_10, BASE_11), True),
        ((BASE_10,), (BASE_10, BASE_11), False),
        (("1.0", "1.1"), (BASE_10, BASE_11), True),
        ((BASE_10, BASE_11), (BASE_10,), False),
    ],
)
def test_hello_negotiation(
    server: FakeNetconfServer,
    server_10: FakeNetconfServer,
    client_caps: tuple[str, ...],
    server_caps: tuple[str, ...],
    chunked: bool,
) -> None:
    srv = server if BASE_11 in server_caps else server_10
    with connect(srv, caps=client_caps) as c:
        assert c.chunked is chunked
        assert c.framer.mode == ("chunked" if chunked else "eom")
        assert c.capabilities == list(server_caps)
        assert isinstance(c.session_id, int)
        assert c.server_hello is not None and c.server_hello.tag == f"{{{NC}}}hello"
        reply = c.rpc("<get-config><source><running/></source></get-config>")
        assert reply.find(f"{{{NC}}}data") is not None
        rec = record(srv, c)
        assert rec.client_caps == c.client_capabilities
        assert all(cap.startswith("urn:") for cap in rec.client_caps)
        assert rec.mode == c.framer.mode


def test_manual_hello(server: FakeNetconfServer) -> None:
    with connect(server, hello=False) as c:
        assert c.server_hello is None
        c.send_raw(b"\n  " + hello_message([BASE_10, BASE_11]) + b"]]>]]>")
        c.client_capabilities = [BASE_10, BASE_11]
        c.read_hello()
        assert c.chunked
        assert c.rpc("<lock><target><running/></target></lock>").find(f"{{{NC}}}ok") is not None


def test_message_right_behind_hello_is_read_chunked() -> None:
    srv = FakeNetconfServer()
    srv.notify_after_hello = True
    srv.start()
    try:
        with connect(srv) as c:
            assert c.chunked
            reply = c.rpc("<get/>")
            assert reply.find(f"{{{NC}}}data") is not None
            assert len(c.notifications) == 1
            assert c.notifications[0].find(f"{{{NOTIF}}}eventTime") is not None
    finally:
        srv.stop()


# -- RPCs -----------------------------------------------------------------------------------


@pytest.mark.parametrize("caps", [(BASE_10,), (BASE_10, BASE_11)], ids=["eom", "chunked"])
def test_rpc_message_ids(server: FakeNetconfServer, caps: tuple[str, ...]) -> None:
    with connect(server, caps=caps) as c:
        r1 = c.rpc("<get/>")
        r2 = c.rpc("<get/>", message_id="my-id")
        r3 = c.rpc("<get/>")
        assert [r.get("message-id") for r in (r1, r2, r3)] == ["1", "my-id", "2"]


@pytest.mark.parametrize("caps", [(BASE_10,), (BASE_10, BASE_11)], ids=["eom", "chunked"])
def test_pipeline(server: FakeNetconfServer, caps: tuple[str, ...]) -> None:
    inner = ["<get/>", "<commit/>"] * 150
    with connect(server, caps=caps) as c:
        replies = c.pipeline(inner, window=16)
        assert len(replies) == 300
        assert [r.get("message-id") for r in replies] == [str(i) for i in range(1, 301)]
        assert [etree.QName(r[0]).localname for r in replies] == ["data", "ok"] * 150
        assert record(server, c).rpcs == ["get", "commit"] * 150
        assert c.pipeline([]) == []


def test_send_message_and_recv_message(server: FakeNetconfServer) -> None:
    with connect(server) as c:
        c.send_message(rpc_message("<get/>", "a"))
        c.send_message(rpc_message("<get/>", "b").decode())
        got = [etree.fromstring(c.recv_message()).get("message-id") for _ in range(2)]
        assert got == ["a", "b"]


def test_send_raw_split_chunked_frames(server: FakeNetconfServer) -> None:
    msg = rpc_message("<get-config><source><running/></source></get-config>", "split")
    wire = b"\n#5\n" + msg[:5] + b"\n#%d\n" % (len(msg) - 5) + msg[5:] + b"\n##\n"
    with connect(server) as c:
        assert c.chunked
        for i in range(0, len(wire), 7):
            c.send_raw(wire[i : i + 7])
            time.sleep(0.001)
        reply = etree.fromstring(c.recv_message())
        assert reply.get("message-id") == "split"


def test_send_raw_split_eom_frames(server: FakeNetconfServer) -> None:
    wire = rpc_message("<get/>", "x") + b"]]>]]>" + rpc_message("<get/>", "y") + b"]]>]]>"
    with connect(server, caps=(BASE_10,)) as c:
        for cut in (3, len(wire) // 2 - 3, len(wire) // 2 + 2, len(wire) - 4):
            c.send_raw(wire[:cut])
            time.sleep(0.005)
            c.send_raw(wire[cut:])
            ids = [etree.fromstring(c.recv_message()).get("message-id") for _ in range(2)]
            assert ids == ["x", "y"]


def test_broken_frame_makes_server_drop_session(server: FakeNetconfServer) -> None:
    c = connect(server)
    try:
        c.send_raw(b"\n#01\n<x/>\n##\n")
        with pytest.raises(EOFError):
            c.recv_message(timeout=5)
        assert record(server, c).framing_error
    finally:
        c.close()


def test_recv_timeout(server: FakeNetconfServer) -> None:
    with connect(server) as c:
        t0 = time.monotonic()
        with pytest.raises(TimeoutError):
            c.recv_message(timeout=0.2)
        assert 0.15 < time.monotonic() - t0 < 2


def test_close_sends_close_session(server: FakeNetconfServer) -> None:
    c = connect(server)
    c.close()
    c.close()  # idempotent
    assert record(server, c).closed_by_client
    assert c.channel.closed


def test_eof_after_close_session(server: FakeNetconfServer) -> None:
    with connect(server) as c:
        c.rpc("<close-session/>")
        with pytest.raises(EOFError):
            c.recv_message(timeout=5)


def test_bad_password(server: FakeNetconfServer) -> None:
    with pytest.raises(paramiko.AuthenticationException):
        RawClient.connect("127.0.0.1", server.port, USER, password="wrong", timeout=5)


def test_public_key_auth(server: FakeNetconfServer, tmp_path: Path) -> None:
    key = asyncssh.generate_private_key("ssh-ed25519")
    path = tmp_path / "id_ed25519"
    key.write_private_key(str(path))
    server.authorized_key = key
    try:
        with RawClient.connect("127.0.0.1", server.port, USER, key_filename=str(path)) as c:
            assert c.rpc("<get/>").find(f"{{{NC}}}data") is not None
    finally:
        server.authorized_key = None


# -- bench ----------------------------------------------------------------------------------


def test_bench_config_xml() -> None:
    root = etree.fromstring(bench.bench_config(300))
    ifs = root.findall(f"{{{bench.IF_NS}}}interfaces/{{{bench.IF_NS}}}interface")
    assert len(ifs) == 300
    names = [i.findtext(f"{{{bench.IF_NS}}}name") for i in ifs]
    assert names == bench.bench_names(300)
    last = ifs[-1]
    assert last.findtext(f"{{{bench.IF_NS}}}type") == "ianaift:ethernetCsmacd"
    assert last.find(f"{{{bench.IF_NS}}}type").nsmap["ianaift"] == bench.IANAIFT_NS
    ipv4 = last.find(f"{{{bench.IP_NS}}}ipv4")
    assert ipv4.findtext(f"{{{bench.IP_NS}}}address/{{{bench.IP_NS}}}ip") == "10.1.43.1"
    inst = ipv4.find(f"{{{bench.VRRP_NS}}}vrrp/{{{bench.VRRP_NS}}}vrrp-instance")
    v = bench.VRRP_NS
    assert inst.findtext(f"{{{v}}}vrid") == str(299 % 255 + 1)
    version = inst.find(f"{{{v}}}version")
    assert version.text == "vrrp:vrrp-v3" and version.nsmap["vrrp"] == v
    assert inst.findtext(f"{{{v}}}priority") == "100"
    vip = f"{{{v}}}virtual-ipv4-addresses/{{{v}}}virtual-ipv4-address/{{{v}}}ipv4-address"
    assert inst.findtext(vip) == "10.1.43.254"
    vrids = {int(i.findtext(f".//{{{v}}}vrid")) for i in ifs}
    assert vrids == set(range(1, 256))


def test_bench_remove_config_xml() -> None:
    root = etree.fromstring(bench.bench_remove_config(["bench0", "bench1"]))
    ifs = root.findall(f"{{{bench.IF_NS}}}interfaces/{{{bench.IF_NS}}}interface")
    assert [i.get(f"{{{NC}}}operation") for i in ifs] == ["remove", "remove"]
    edit = etree.fromstring(
        rpc_message(bench.edit_config_rpc(bench.bench_remove_config(["x"])), "1")
    )
    assert edit.find(f"{{{NC}}}edit-config/{{{NC}}}target/{{{NC}}}running") is not None


FIGURE_LINE = re.compile(r"^(?P<label>.+?)\s+(?P<value>\d+(?:\.\d+)?)\s+(?P<unit>ms|s|RPC/s|MB)\s")


def test_bench_main(server: FakeNetconfServer, capsys: pytest.CaptureFixture[str]) -> None:
    before = len(server.sessions)
    rc = bench.main(
        [
            "--host", "127.0.0.1",
            "--port", str(server.port),
            "--user", USER,
            "--password", PASSWORD,
            "--pid", str(os.getpid()),
            "--interfaces", "20",
            "--duration-scale", "0.05",
            "--setup-samples", "3",
            "--get-samples", "2",
            "--sessions", "3",
            "--json",
        ]
    )  # fmt: skip
    out = capsys.readouterr().out.splitlines()
    assert rc == 0
    figures = [m for line in out if (m := FIGURE_LINE.match(line))]
    labels = " | ".join(m["label"] for m in figures)
    for needle in (
        "session setup",
        "sequential small get-config",
        "pipelined get-config",
        "edit-config of one interface",
        "3 sessions get-config",
        "edit-config of 20 interfaces",
        "full get-config, 20 interfaces",
        "server peak RSS",
    ):
        assert needle in labels, (needle, out)
    assert all(float(m["value"]) > 0 for m in figures), out
    results = json.loads(out[-1])
    assert set(results) >= {
        "setup_ms",
        "get_config_seq_rps",
        "get_config_pipelined_rps",
        "edit_config_rps",
        "concurrent_get_config_rps",
        "large_edit_s",
        "large_get_config_ms",
        "server_rss_mb",
    }
    # every session the bench opened was closed with close-session
    new = server.sessions[before:]
    assert len(new) == 3 + 1 + 1 + 1 + 3 + 1  # setup, seq, pipelined, edit, concurrent, large
    deadline = time.monotonic() + 2
    while not all(s.closed_by_client for s in new) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert all(s.closed_by_client for s in new)
    # the large config was removed again
    assert [s.rpcs.count("edit-config") for s in new][-1] == 2


def test_bench_skip_large(server: FakeNetconfServer, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--host", "127.0.0.1", "--port", str(server.port), "--user", USER]
    argv += ["--password", PASSWORD, "--skip-large", "--duration-scale", "0.02"]
    argv += ["--setup-samples", "1", "--sessions", "2"]
    assert bench.main(argv) == 0
    out = capsys.readouterr().out
    assert len([line for line in out.splitlines() if FIGURE_LINE.match(line)]) == 5
    assert "interfaces" not in out


def test_bench_unreachable(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--host", "127.0.0.1", "--port", "1", "--user", USER, "--password", "x", "--json"]
    assert bench.main(argv) == 1
    captured = capsys.readouterr()
    assert "bench failed" in captured.err
    assert json.loads(captured.out) == {}


def test_bench_large_cleans_up_after_timeout(server: FakeNetconfServer) -> None:
    # The large edit-config is answered too late: the cleanup must not read that stale
    # reply as its own, but remove the interfaces on a fresh session.
    server.slow = lambda msg: 1.0 if b"<name>bench0</name>" in msg and b"remove" not in msg else 0
    before = len(server.sessions)
    opts = bench.Options("127.0.0.1", server.port, USER, PASSWORD, None, 5)
    try:
        with pytest.raises(TimeoutError):
            bench.bench_large(opts, 5, 1, rpc_timeout=0.3)
    finally:
        server.slow = lambda msg: 0.0
    new = server.sessions[before:]
    assert len(new) == 2
    assert new[0].rpcs[0] == "edit-config"
    (remove,) = [m for m in new[1].raw if b"edit-config" in m]
    assert remove.count(b'operation="remove"') == 5
