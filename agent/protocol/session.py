"""One NETCONF session (RFC 6241 §8.1, RFC 6242): hello exchange, framing
negotiation, in-order RPC dispatch and replies, notifications, close.

The session knows nothing about datastores: RPCs go to a :class:`Dispatcher`
and come back as reply content or :class:`RpcError`. Bytes come in through
:meth:`Session.data_received` and go out through ``io.write``.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol

from lxml import etree

from agent.protocol.errors import PROTOCOL, RPC, RpcError, RpcErrors, bad_attribute, bad_element
from agent.protocol.framing import Framer, FramingError
from agent.protocol.namespaces import CAP_BASE_10, CAP_BASE_11, NC
from agent.protocol.xmlparse import parse

log = logging.getLogger(__name__)

RPC_TAG = f"{{{NC}}}rpc"
# Queued RPCs are handled for at most this long in one go; then the session yields to
# the event loop so that a client pipelining expensive RPCs cannot starve other sessions.
DRAIN_SLICE = 0.005
HELLO_TAG = f"{{{NC}}}hello"
Handler = Callable[["RpcContext", etree._Element], object]


@dataclass
class SessionCounters:
    in_rpcs: int = 0
    in_bad_rpcs: int = 0
    out_rpc_errors: int = 0
    out_notifications: int = 0


@dataclass
class RpcContext:
    """What a handler knows about the request it serves."""

    session: Session
    rpc: etree._Element  # the whole <rpc> element

    @property
    def session_id(self) -> int:
        return self.session.session_id


#: The RPC being handled, for code below the handlers that needs to know who asked
#: (e.g. the ``changed-by`` of an RFC 6470 ``netconf-config-change``); None outside RPCs.
current_rpc: contextvars.ContextVar[RpcContext | None] = contextvars.ContextVar(
    "current_rpc", default=None
)


class Dispatcher:
    """Maps an operation's Clark name to its handler."""

    def __init__(self) -> None:
        self.handlers: dict[str, Handler] = {}

    def register(self, ns: str, name: str, handler: Handler) -> None:
        self.handlers[f"{{{ns}}}{name}"] = handler

    def lookup(self, op: etree._Element) -> Handler:
        h = self.handlers.get(op.tag)
        if h is None:
            name = etree.QName(op).localname
            raise RpcError(
                "operation-not-supported",
                f"operation '{name}' is not supported",
                type=PROTOCOL,
                info=[bad_element(name)],
            )
        return h


@dataclass
class SessionConfig:
    capabilities: list[str]
    hello_timeout: float = 30.0
    max_message_size: int = 16 * 2**20
    idle_timeout: float = 0.0  # 0 = never


class SessionIO(Protocol):
    """What the transport gives a session (agent.transport.ssh.SessionIO fits)."""

    username: str
    peer: tuple[str, int]
    write: Callable[[bytes], None]
    close: Callable[[], None]


@dataclass(eq=False)
class Session:
    session_id: int
    io: SessionIO
    config: SessionConfig
    dispatcher: Dispatcher
    on_close: Callable[[Session], None] = lambda s: None
    on_bad_hello: Callable[[Session], None] = lambda s: None
    counters: SessionCounters = field(default_factory=SessionCounters)
    login_time: float = field(default_factory=time.time)
    client_capabilities: list[str] = field(default_factory=list)
    established: bool = False
    closed: bool = False
    killed: bool = False
    # why the session ended, when the session itself decided it (RFC 6470 termination-reason:
    # "timeout", "bad-hello", "other"); kill-session and close-session have their own flags
    end_reason: str | None = None

    def __post_init__(self) -> None:
        self.framer = Framer(self.config.max_message_size)
        self._pending: deque[bytes] = deque()
        self._busy = False
        self._hello_timer: asyncio.TimerHandle | None = None
        self._closing_after_reply = False
        self._eof = False
        self._out: list[bytes] = []
        self._flush_scheduled = False
        self._paused = False  # the transport's output buffer is full
        self._drain_scheduled = False
        self._base11 = False  # both hellos advertised base:1.1
        self._send(self._hello())
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        if loop is not None and self.config.hello_timeout > 0:
            self._hello_timer = loop.call_later(self.config.hello_timeout, self._hello_expired)

    @property
    def username(self) -> str:
        return self.io.username

    # ------------------------------------------------------------------ I/O
    def data_received(self, data: bytes) -> None:
        if self.closed:
            return
        try:
            self.framer.feed(data)
            while True:
                msg = self.framer.next_message()
                if msg is None:
                    break
                if not self.established:
                    self._on_hello(msg)
                    if self.closed:
                        return
                    continue
                self._pending.append(msg)
        except FramingError as exc:
            log.warning("session %d: framing error: %s; closing", self.session_id, exc)
            self.end_reason = "other"
            self.close()
            return
        self._drain()

    def eof_received(self) -> bool:
        """The client half-closed: finish the RPCs already received, then close."""
        self._eof = True
        self._drain()
        return True

    def pause_writing(self) -> None:
        """Optional transport hook: the client stopped reading and our output is piling
        up. Stop handling queued RPCs (so no new replies are produced) until
        :meth:`resume_writing`."""
        self._paused = True

    def resume_writing(self) -> None:
        """Optional transport hook: the output buffer drained; handle queued RPCs again."""
        if self._paused:
            self._paused = False
            self._drain()

    def connection_lost(self) -> None:
        if not self.closed:
            self.closed = True
            self._cancel_timer()
            self.on_close(self)

    def close(self) -> None:
        if self.closed:
            return
        self._flush()  # replies already produced (e.g. to close-session) go out first
        self.closed = True
        self._cancel_timer()
        try:
            self.io.close()
        finally:
            self.on_close(self)

    def _send(self, payload: bytes) -> None:
        """Queue one framed message; everything queued in one event-loop turn is written
        with one ``write`` (one SSH packet for a burst of pipelined replies)."""
        if self.closed:
            return
        self._out.append(self.framer.encode(payload))
        if not self._flush_scheduled:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:  # driven synchronously (unit tests): write now
                self._flush()
                return
            self._flush_scheduled = True
            loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        out, self._out = self._out, []
        if out and not self.closed:
            self.io.write(b"".join(out) if len(out) > 1 else out[0])

    def send_notification(self, notification: etree._Element | bytes) -> None:
        """Queue a whole ``<notification>`` message (element or serialized bytes). It goes
        through the same queue as replies, one whole frame each: never inside a reply."""
        if self.closed or not self.established:
            return
        self.counters.out_notifications += 1
        if not isinstance(notification, bytes):
            notification = etree.tostring(notification)
        self._send(notification)

    # ------------------------------------------------------------------ hello
    def _hello(self) -> bytes:
        hello = etree.Element(HELLO_TAG, nsmap={None: NC})
        caps = etree.SubElement(hello, f"{{{NC}}}capabilities")
        for c in self.config.capabilities:
            etree.SubElement(caps, f"{{{NC}}}capability").text = c
        etree.SubElement(hello, f"{{{NC}}}session-id").text = str(self.session_id)
        return etree.tostring(hello, xml_declaration=True, encoding="UTF-8")

    def _hello_expired(self) -> None:
        if not self.established and not self.closed:
            log.warning("session %d: no hello within %.0fs; closing", self.session_id,
                        self.config.hello_timeout)
            self.end_reason = "timeout"
            self.on_bad_hello(self)
            self.close()

    def _cancel_timer(self) -> None:
        if self._hello_timer is not None:
            self._hello_timer.cancel()
            self._hello_timer = None

    def _on_hello(self, msg: bytes) -> None:
        try:
            hello = parse(msg.strip())
        except RpcError:
            return self._bad_hello("malformed hello")
        if hello.tag != HELLO_TAG:
            return self._bad_hello(f"expected hello, got {hello.tag}")
        if hello.find(f"{{{NC}}}session-id") is not None:
            return self._bad_hello("client hello carries a session-id")
        caps = [
            (c.text or "").strip()
            for c in hello.iterfind(f"{{{NC}}}capabilities/{{{NC}}}capability")
        ]
        if CAP_BASE_10 not in caps and CAP_BASE_11 not in caps:
            return self._bad_hello("no common base capability")
        self.client_capabilities = caps
        self.established = True
        self._cancel_timer()
        if CAP_BASE_11 in caps and CAP_BASE_11 in self.config.capabilities:
            self._base11 = True
            self.framer.set_chunked()
        log.info("session %d: %s@%s established (%s framing)", self.session_id,
                 self.io.username, self.io.peer[0], self.framer.mode)

    def _bad_hello(self, why: str) -> None:
        log.warning("session %d: %s; closing", self.session_id, why)
        self.end_reason = "bad-hello"
        self.on_bad_hello(self)
        self.close()

    # ------------------------------------------------------------------ RPCs
    def _drain(self) -> None:
        self._drain_scheduled = False
        start = time.monotonic()
        while self._pending and not self._busy and not self.closed and not self._paused:
            msg = self._pending.popleft()
            result = self._handle(msg)
            if result is not None:  # an awaitable reply: keep order
                self._busy = True
                asyncio.ensure_future(self._finish(result))
                return
            if self._pending and time.monotonic() - start >= DRAIN_SLICE and self._yield():
                return
        if self._eof and not self._busy and not self._pending:
            self.close()

    def _yield(self) -> bool:
        """Continue draining in a later event loop iteration (False: no loop running,
        as in sans-IO use; then the caller just goes on)."""
        if self._drain_scheduled:
            return True
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return False
        self._drain_scheduled = True
        loop.call_soon(self._drain)
        return True

    async def _finish(self, pending: Awaitable[bytes]) -> None:
        try:
            reply = await pending
            self._send(reply)
        finally:
            self._busy = False
        if self._closing_after_reply:
            self.close()
            return
        self._drain()

    def _handle(self, msg: bytes) -> Awaitable[bytes] | None:
        if msg[:1].isspace():  # e.g. "]]>]]>\n<?xml ...": tolerated as before a hello
            msg = msg.lstrip()
        try:
            rpc = parse(msg)
        except RpcError as exc:
            self.counters.in_bad_rpcs += 1
            self._reply_errors(None, [exc])
            return None
        if rpc.tag != RPC_TAG:
            self.counters.in_bad_rpcs += 1
            name = etree.QName(rpc).localname if isinstance(rpc.tag, str) else "?"
            self._reply_errors(None, [RpcError(
                "unknown-element" if rpc.tag != HELLO_TAG else "operation-not-supported",
                f"expected <rpc>, got <{name}>", type=RPC, info=[bad_element(name)])])
            return None
        # some clients (the `netconf` package) qualify it: nc:message-id
        if rpc.get("message-id") is None and rpc.get(f"{{{NC}}}message-id") is None:
            self.counters.in_bad_rpcs += 1
            self._reply_errors(rpc, [RpcError(
                "missing-attribute", "the rpc element has no message-id attribute", type=RPC,
                info=[bad_attribute("message-id"), bad_element("rpc")])])
            return None
        ops = [c for c in rpc if isinstance(c.tag, str)]
        if len(ops) != 1:
            self.counters.in_bad_rpcs += 1
            self._reply_errors(rpc, [RpcError(
                "malformed-message" if not ops else "bad-element",
                "an rpc must contain exactly one operation", type=RPC,
                info=[bad_element("rpc")] if ops else [])])
            return None
        op = ops[0]
        self.counters.in_rpcs += 1  # RFC 6022: correct <rpc> messages only
        ctx = RpcContext(self, rpc)
        token = current_rpc.set(ctx)
        try:
            handler = self.dispatcher.lookup(op)
            result = handler(ctx, op)
        except RpcErrors as exc:
            self._reply_errors(rpc, exc.errors)
            return None
        except RpcError as exc:
            self._reply_errors(rpc, [exc])
            return None
        except Exception as exc:  # a bug must become an error reply, never a dead session
            log.exception("session %d: handler for %s failed", self.session_id, op.tag)
            self._reply_errors(rpc, [RpcError("operation-failed", f"internal error: {exc}")])
            return None
        finally:
            current_rpc.reset(token)
        if inspect.isawaitable(result):
            return self._await_reply(ctx, result)
        self._send(self._reply(rpc, result))
        if self._closing_after_reply:
            self.close()
        return None

    async def _await_reply(self, ctx: RpcContext, awaitable) -> bytes:
        rpc = ctx.rpc
        current_rpc.set(ctx)  # this task's own context: seen until the reply is built
        try:
            result = await awaitable
        except RpcErrors as exc:
            self.counters.out_rpc_errors += 1
            return self._reply(rpc, [self._error_xml(e) for e in exc.errors], error=True)
        except RpcError as exc:
            self.counters.out_rpc_errors += 1
            return self._reply(rpc, [self._error_xml(exc)], error=True)
        except Exception as exc:
            log.exception("session %d: async handler failed", self.session_id)
            self.counters.out_rpc_errors += 1
            err = RpcError("operation-failed", f"internal error: {exc}")
            return self._reply(rpc, [err.to_xml()], error=True)
        return self._reply(rpc, result)

    def close_after_reply(self) -> None:
        self._closing_after_reply = True

    @property
    def close_requested(self) -> bool:
        return self._closing_after_reply

    def kill(self) -> None:
        """Ended by another session's kill-session (not an abnormal drop, RFC 6022)."""
        self.killed = True
        self.close()

    def _reply_errors(self, rpc: etree._Element | None, errors: list[RpcError]) -> None:
        self.counters.out_rpc_errors += 1
        self._send(self._reply(rpc, [self._error_xml(e) for e in errors], error=True))

    def _error_xml(self, err: RpcError) -> etree._Element:
        if err.tag == "malformed-message" and not self._base11:
            # RFC 6241 App. A: new in base:1.1 and "MUST NOT be sent to old clients"
            err = RpcError("operation-failed", err.message, type=err.type, info=err.info)
        return err.to_xml()

    @staticmethod
    def _reply(rpc: etree._Element | None, result, error: bool = False) -> bytes:
        if rpc is not None and len(rpc.attrib) > 16:
            # lxml adds attributes in quadratic time (50,000 took 24 s): turn the request
            # element itself into the reply instead; it is done with once the handler ran.
            reply = rpc
            for c in list(reply):
                reply.remove(c)
            reply.text = None
            reply.tag = f"{{{NC}}}rpc-reply"
        else:
            reply = etree.Element(f"{{{NC}}}rpc-reply", nsmap={None: NC})
            if rpc is not None:
                for k, v in rpc.attrib.items():  # RFC 6241 §4.2: all rpc attributes come back
                    reply.set(k, v)
        if result is None:
            etree.SubElement(reply, f"{{{NC}}}ok")
        elif isinstance(result, etree._Element):
            reply.append(result)
        elif isinstance(result, bytes):
            # pre-serialised content (fast path for large data)
            head = etree.tostring(reply)
            assert head.endswith(b"/>")
            return head[:-2] + b">" + result + b"</rpc-reply>"
        else:
            for r in result:
                reply.append(r)
        return etree.tostring(reply)
