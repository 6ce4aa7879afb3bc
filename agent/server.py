"""The NETCONF server core: schema, datastores, sessions and RPC handlers wired together.

Transport-independent: :meth:`NetconfServer.new_session` is the session factory
the SSH transport calls for each ``netconf`` subsystem channel.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

from agent.datastore.schema import Schema
from agent.datastore.store import Datastores
from agent.datastore.transaction import Subscriber
from agent.events import EventBus
from agent.protocol.errors import RpcError, RpcErrors
from agent.protocol.namespaces import CAP_BASE_10, CAP_BASE_11
from agent.protocol.session import Dispatcher, Session, SessionConfig, SessionIO
from agent.rpc import config_ops, monitoring, nmda, notifications, session_ops
from agent.rpc.retrieve import Retriever

log = logging.getLogger(__name__)

CAP = "urn:ietf:params:netconf:capability:"


@dataclass
class Limits:
    max_message_size: int = 16 * 2**20
    hello_timeout: float = 30.0
    max_sessions: int = 64
    # RFC 5277 replay log of stream NETCONF (0 entries or bytes: no replay; age 0: no limit)
    replay_log_size: int = 10_000
    replay_log_bytes: int = 64 * 2**20
    replay_log_age: float = 0.0


@dataclass
class GlobalStats:
    start_time: float = field(default_factory=time.time)
    in_bad_hellos: int = 0
    in_sessions: int = 0
    dropped_sessions: int = 0
    # counters of sessions that have ended
    in_rpcs: int = 0
    in_bad_rpcs: int = 0
    out_rpc_errors: int = 0
    out_notifications: int = 0


class NetconfServer:
    def __init__(
        self,
        schema: Schema,
        state_dir: Path | None = None,
        *,
        limits: Limits | None = None,
        subscribers: list[Subscriber] | None = None,
    ) -> None:
        self.schema = schema
        self.limits = limits or Limits()
        self.datastores = Datastores(schema, state_dir, subscribers)
        self.dispatcher = Dispatcher()
        self.retriever = Retriever(schema)
        self.bus = EventBus()  # notifications published by the backends
        self.sessions: dict[int, Session] = {}
        self.stats = GlobalStats()
        self._next_id = 1
        self.content_id = lambda: "0"
        config_ops.register(self)
        session_ops.register(self)
        monitoring.register(self)
        nmda.register(self)  # after config_ops: wraps lock/unlock/validate
        self.notifications = notifications.register(self)  # RFC 5277 + RFC 6470
        self._caps: list[str] | None = None

    # ------------------------------------------------------------------ start
    def load_startup(self) -> None:
        """At start: startup → validated → applied as running (and candidate)."""
        import copy

        from agent.datastore.tree import PathMaker, prune_empty
        from agent.datastore.validate import Validator

        tree = self.datastores.load_startup()
        work = copy.deepcopy(tree)
        try:
            Validator(self.schema, PathMaker(self.schema)).validate(work)
            prune_empty(work, self.schema)
            self.datastores.set_running(work, valid=True)  # later edits validate incrementally
        except (RpcError, RpcErrors) as exc:
            # The device still comes up, so that an operator can repair it over NETCONF:
            # running stays empty, startup is kept as it is (nothing lost).
            errs = exc.errors if isinstance(exc, RpcErrors) else [exc]
            for e in errs:
                log.error("startup configuration not applied: %s (%s) at %s",
                          e.message, e.tag, e.path)
        self.datastores.discard_changes()

    # ------------------------------------------------------------------ capabilities
    def capabilities(self) -> list[str]:
        if self._caps is None:
            caps = [
                CAP_BASE_10,
                CAP_BASE_11,
                CAP + "writable-running:1.0",
                CAP + "candidate:1.0",
                CAP + "rollback-on-error:1.0",
                CAP + "validate:1.0",
                CAP + "validate:1.1",
                CAP + "startup:1.0",
                CAP + "xpath:1.0",
                notifications.CAP_NOTIFICATION,
                notifications.CAP_INTERLEAVE,
                CAP + "with-defaults:1.0?basic-mode=explicit"
                "&also-supported=report-all,report-all-tagged,trim",
                # RFC 8526 §3.1.1.2: with-defaults also on <get-data> of ds:operational
                CAP + "with-operational-defaults:1.0?basic-mode=explicit"
                "&also-supported=report-all,report-all-tagged,trim",
                CAP + f"yang-library:1.0?revision=2019-01-04&module-set-id={self.content_id()}",
                CAP + f"yang-library:1.1?revision=2019-01-04&content-id={self.content_id()}",
            ]
            for m in sorted(self.schema.modules.values(), key=lambda m: m.name):
                c = f"{m.namespace}?module={m.name}"
                if m.revision:
                    c += f"&revision={m.revision}"
                if m.implemented and m.features:
                    c += "&features=" + ",".join(m.features)
                caps.append(c)
            self._caps = caps
        return self._caps

    # ------------------------------------------------------------------ sessions
    def new_session(self, io: SessionIO) -> Session:
        sid = self._next_id
        self._next_id += 1
        self.stats.in_sessions += 1
        cfg = SessionConfig(
            capabilities=self.capabilities(),
            hello_timeout=self.limits.hello_timeout,
            max_message_size=self.limits.max_message_size,
        )
        s = Session(
            sid, io, cfg, self.dispatcher, on_close=self._closed, on_bad_hello=self._bad_hello
        )
        self.sessions[sid] = s
        log.info("session %d: opened for %s from %s", sid, io.username, io.peer[0])
        self.notifications.session_started(s)
        return s

    def _bad_hello(self, s: Session) -> None:
        self.stats.in_bad_hellos += 1

    def _closed(self, s: Session) -> None:
        if self.sessions.pop(s.session_id, None) is None:
            return
        c = s.counters
        self.stats.in_rpcs += c.in_rpcs
        self.stats.in_bad_rpcs += c.in_bad_rpcs
        self.stats.out_rpc_errors += c.out_rpc_errors
        self.stats.out_notifications += c.out_notifications
        if not (s.killed or s.close_requested):  # RFC 6022 dropped-sessions: abnormal ends
            self.stats.dropped_sessions += 1
        self.datastores.release_session(s.session_id)
        log.info("session %d: closed", s.session_id)
        self.notifications.session_ended(s)
