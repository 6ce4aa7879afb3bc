"""close-session and kill-session (RFC 6241 §7.8, §7.9)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from lxml import etree

from agent.protocol.errors import PROTOCOL, RpcError, bad_element
from agent.protocol.namespaces import NC
from agent.protocol.session import RpcContext
from agent.rpc.params import check_params, child

if TYPE_CHECKING:
    from agent.server import NetconfServer

log = logging.getLogger(__name__)


def register(server: NetconfServer) -> None:
    def close_session(ctx: RpcContext, op: etree._Element):
        check_params(op, set())
        ctx.session.close_after_reply()
        return None

    def kill_session(ctx: RpcContext, op: etree._Element):
        check_params(op, {f"{{{NC}}}session-id"})
        el = child(op, "session-id")
        if el is None:
            raise RpcError("missing-element", "missing <session-id>", type=PROTOCOL,
                           info=[bad_element("session-id")])
        text = (el.text or "").strip()
        if not text.isdigit() or int(text) == 0:
            raise RpcError("invalid-value", f"invalid session-id '{text}'", type=PROTOCOL,
                           info=[bad_element("session-id")])
        sid = int(text)
        if sid == ctx.session_id:
            raise RpcError("invalid-value", "a session cannot kill itself; use close-session",
                           type=PROTOCOL, info=[bad_element("session-id")])
        victim = server.sessions.get(sid)
        if victim is None:
            raise RpcError("invalid-value", f"no session {sid}", type=PROTOCOL,
                           info=[bad_element("session-id")])
        log.info("session %d: kill-session %d", ctx.session_id, sid)
        victim.kill()  # on_close releases its locks
        return None

    server.dispatcher.register(NC, "close-session", close_session)
    server.dispatcher.register(NC, "kill-session", kill_session)
