"""NETCONF event notifications (RFC 5277) and the base notifications of RFC 6470.

* ``create-subscription`` on the one stream, ``NETCONF``, with an optional subtree or
  XPath filter, and replay (``startTime`` / ``stopTime``, RFC 5277 §2.1.1): every
  notification published on the stream is kept, serialized, in a bounded in-memory
  :class:`ReplayLog` (count, bytes, optionally age: the oldest go first).
* Replay: the logged notifications with ``startTime`` ≤ eventTime ≤ ``stopTime`` that
  pass the filter, in publication order, after the reply; then ``<replayComplete>``; then
  the live ones. Live notifications published while the replay is being sent are held in
  the subscription and sent right after ``<replayComplete>``: the log is read and the live
  listener registered in the same event-loop step, so none is lost or sent twice.
  ``stopTime`` ends the subscription with ``<notificationComplete>`` (at once when it is
  already past, after the replay); the session may then subscribe again.
* ``:interleave``: a subscribed session keeps serving RPCs. Notifications go through the
  session's output queue as whole frames, so they never land inside a reply's bytes.
* Delivery: each subscribed session has its own listener on ``server.bus``; a
  notification is serialized once per publication, whatever the number of subscribers.
* ietf-netconf-notifications (RFC 6470): ``netconf-config-change`` after every change of
  ``running`` or ``startup`` (with the edit list, computed from the old and new trees),
  ``netconf-session-start`` and ``netconf-session-end``. Capability changes and confirmed
  commits never happen in this server, so their notifications are never due.

A filter decides whether a notification is sent (RFC 5277 §3.6: "event notifications
need to pass all specified filters in order to be sent"); a notification that passes is
sent whole, so it stays valid against its YANG definition.
"""

from __future__ import annotations

import asyncio
import copy
import ipaddress
import logging
import re
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from lxml import etree

from agent.datastore.filters import parse_filter, subtree_filter, xpath_filter
from agent.datastore.schema import Schema, SchemaNode
from agent.datastore.tree import PathMaker, new_root, schema_of, xpath_quote
from agent.protocol.errors import PROTOCOL, RpcError, bad_element
from agent.protocol.namespaces import NC, NOTIF
from agent.protocol.session import RpcContext, Session, current_rpc
from agent.rpc.params import check_params

if TYPE_CHECKING:
    from agent.server import NetconfServer

log = logging.getLogger(__name__)

NCN = "urn:ietf:params:xml:ns:yang:ietf-netconf-notifications"
CAP_NOTIFICATION = "urn:ietf:params:netconf:capability:notification:1.0"
CAP_INTERLEAVE = "urn:ietf:params:netconf:capability:interleave:1.0"
STREAMS = ("NETCONF",)
# RFC 5277 nc-notifications (§2.2.1): replayComplete and notificationComplete
NCEVENT = "urn:ietf:params:xml:ns:netmod:notification"

DEFAULT_REPLAY_LOG_SIZE = 10_000  # notifications
DEFAULT_REPLAY_LOG_BYTES = 64 * 2**20  # serialized bytes, all entries together
REPLAY_BATCH = 256  # logged notifications looked at per event-loop step of a replay

_P_STREAM = f"{{{NOTIF}}}stream"
_P_START = f"{{{NOTIF}}}startTime"
_P_STOP = f"{{{NOTIF}}}stopTime"
_P_FILTERS = (f"{{{NOTIF}}}filter", f"{{{NC}}}filter")  # ncclient puts it in the base ns
_PATH_NS = {"notif": NOTIF}
# ietf-yang-types date-and-time (RFC 3339 with a mandatory offset)
_DATE_AND_TIME = re.compile(
    r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})\Z")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_USEC = timedelta(microseconds=1)

Match = Callable[[etree._Element], bool]


# --------------------------------------------------------------------------- formatting


def event_time(t: float) -> str:
    """RFC 3339 date-and-time with microseconds and the UTC offset."""
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="microseconds")


def usec(dt: datetime) -> int:
    """Microseconds since the epoch, exactly (no float rounding)."""
    return (dt - _EPOCH) // _USEC


def event_usec(t: float) -> int:
    """The microsecond that :func:`event_time` writes for ``t``: a client that sends an
    eventTime it received back as a startTime gets that notification again."""
    return usec(datetime.fromtimestamp(t, UTC))


def format_notification(t: float, content: etree._Element) -> bytes:
    """The whole ``<notification>`` message for ``content`` (serialized once, sent as is)."""
    return (
        b'<notification xmlns="' + NOTIF.encode() + b'"><eventTime>'
        + event_time(t).encode() + b"</eventTime>"
        + etree.tostring(content, with_tail=False)
        + b"</notification>"
    )


# --------------------------------------------------------------------------- filters


def _no_keys(elem: etree._Element) -> list[str]:
    return []


def compile_filter(filter_elem: etree._Element, prefixes: dict[str, str]) -> Match:
    """A predicate over ``<data>`` holding a notification's content. Raises the RpcError
    a bad filter deserves (type, missing select, XPath syntax or unknown prefix)."""
    kind, spec = parse_filter(filter_elem)
    if kind == "subtree":
        children = spec

        def match(data: etree._Element) -> bool:
            return len(subtree_filter(data, children, _no_keys)) > 0
    else:
        select, own = spec
        scope = {**prefixes, **own}

        def match(data: etree._Element) -> bool:
            return len(xpath_filter(data, select, scope, _no_keys)) > 0

    match(new_root())  # compiles the XPath now: a bad filter fails create-subscription
    return match


# --------------------------------------------------------------------------- RFC 6470 edits


def config_edits(schema: Schema, old: etree._Element, new: etree._Element
                 ) -> list[tuple[str, etree._Element]]:
    """``(operation, element)`` for each topmost difference between two datastore trees:
    ``create`` (element of ``new``), ``delete`` (element of ``old``), ``replace`` (a leaf
    of ``new`` whose value changed)."""
    out: list[tuple[str, etree._Element]] = []
    _diff(old, new, schema.root, out)
    return out


def _ident(c: etree._Element, s: SchemaNode | None) -> tuple:
    if s is not None and s.kind == "list":
        return (c.tag, tuple(c.findtext(k) for k in s.keys))
    if s is not None and s.kind == "leaf-list":
        return (c.tag, c.text or "")
    return (c.tag, None)


def _index(parent: etree._Element, snode: SchemaNode | None) -> dict[tuple, etree._Element]:
    res: dict[tuple, etree._Element] = {}
    for c in parent:
        if isinstance(c.tag, str):
            s = snode.children.get(c.tag) if snode is not None else None
            res.setdefault(_ident(c, s), c)
    return res


def _diff(o: etree._Element, n: etree._Element, snode: SchemaNode | None,
          out: list[tuple[str, etree._Element]]) -> None:
    old, new = _index(o, snode), _index(n, snode)
    for key, nc in new.items():
        oc = old.get(key)
        if oc is None:
            out.append(("create", nc))
            continue
        s = snode.children.get(nc.tag) if snode is not None else None
        if s is not None and s.kind == "leaf-list":
            continue  # same value (it is the identity)
        if (s is not None and s.kind == "leaf") or (s is None and not len(nc) and not len(oc)):
            if (oc.text or "") != (nc.text or ""):
                out.append(("replace", nc))
            continue
        if s is not None and s.kind == "list" and etree.tostring(oc) == etree.tostring(nc):
            continue  # unchanged entry: skip the walk (most entries of a big list)
        _diff(oc, nc, s, out)
    for key, oc in old.items():
        if key not in new:
            out.append(("delete", oc))


def instance_identifier(paths: PathMaker, elem: etree._Element) -> tuple[str, dict[str, str]]:
    """The instance-identifier of a data element, with the prefixes it uses."""
    xp, used = paths.path(elem)
    s = schema_of(paths.schema, elem)
    if s is not None and s.kind == "leaf-list":
        xp += f"[.={xpath_quote(elem.text or '')}]"
    return xp, used




# --------------------------------------------------------------------------- replay log


class ReplayLog:
    """The notifications published on stream NETCONF, as the serialized ``<notification>``
    messages sent to subscribers (stored once), with their eventTime in microseconds.

    Bounded: at most ``size`` entries and ``max_bytes`` bytes, and when ``max_age`` (seconds)
    is set none older than that; the oldest go first, so the log always holds the latest
    publications without a gap. ``size`` or ``max_bytes`` 0: no log, no replay."""

    def __init__(self, size: int = DEFAULT_REPLAY_LOG_SIZE,
                 max_bytes: int = DEFAULT_REPLAY_LOG_BYTES, max_age: float | None = None
                 ) -> None:
        self.size = max(0, int(size))
        self.max_bytes = max(0, int(max_bytes))
        self.max_age = max_age if max_age and max_age > 0 else None
        self._entries: deque[tuple[int, bytes]] = deque()
        self.bytes = 0
        self.dropped = 0  # entries that left the log (bounds)

    @property
    def enabled(self) -> bool:
        return self.size > 0 and self.max_bytes > 0

    def __len__(self) -> int:
        return len(self._entries)

    def append(self, t_usec: int, msg: bytes) -> None:
        if not self.enabled:
            return
        if len(msg) > self.max_bytes:  # cannot be kept: nor can anything older, gap-free
            self.dropped += len(self._entries) + 1
            self._entries.clear()
            self.bytes = 0
            return
        self._entries.append((t_usec, msg))
        self.bytes += len(msg)
        while len(self._entries) > self.size or self.bytes > self.max_bytes:
            self._pop()
        self._expire()

    def select(self, start: int, stop: int | None) -> deque[bytes]:
        """The logged messages with ``start`` ≤ eventTime (≤ ``stop``), oldest first."""
        self._expire()
        return deque(m for u, m in self._entries if u >= start and (stop is None or u <= stop))

    def _pop(self) -> None:
        _, m = self._entries.popleft()
        self.bytes -= len(m)
        self.dropped += 1

    def _expire(self) -> None:
        if self.max_age is None:
            return
        cutoff = usec(datetime.now(UTC)) - int(self.max_age * 1e6)
        while self._entries and self._entries[0][0] < cutoff:
            self._pop()


# --------------------------------------------------------------------------- subscriptions


@dataclass(eq=False)
class Subscription:
    session: Session
    stream: str
    match: Match | None
    stop: int | None = None  # stopTime (µs since the epoch)
    unsubscribe: Callable[[], None] = lambda: None
    # live notifications held back while the replay is being sent (None: send at once)
    held: list[bytes] | None = None
    timer: asyncio.TimerHandle | None = None  # stopTime
    active: bool = True


class Notifications:
    """create-subscription, per-session delivery, replay, and the RFC 6470 events."""

    def __init__(self, server: NetconfServer, replay_log: ReplayLog | None = None) -> None:
        self.server = server
        self.schema = server.schema
        self.subscriptions: dict[int, Subscription] = {}
        self.log = replay_log if replay_log is not None else ReplayLog()
        # per publication (keyed by the bus's publication count): the message, the filters' tree
        self._msg_memo: tuple[int, bytes] | None = None
        self._data_memo: tuple[int, etree._Element] | None = None
        self._prefixes = {m.name: m.namespace for m in self.schema.modules.values()}
        if self.log.enabled:
            # first listener: a publication is logged before any subscriber sees it
            server.bus.subscribe(self._record)

    @property
    def publishing(self) -> bool:
        """Whether an event is worth building: someone listens now, or the log keeps it."""
        return bool(self.subscriptions) or self.log.enabled

    # ------------------------------------------------------------------ create-subscription
    def create_subscription(self, ctx: RpcContext, op: etree._Element):
        check_params(op, {_P_STREAM, _P_START, _P_STOP, *_P_FILTERS})
        if ctx.session_id in self.subscriptions:
            # RFC 5277 §6.5: create-subscription while another subscription is active on
            # the session → operation-failed, error-type protocol, no error-info. (One that
            # ended at its stopTime is no longer active: the session may subscribe again.)
            raise RpcError("operation-failed", "this session already has an active "
                           "subscription (RFC 5277 allows one per session)", type=PROTOCOL)
        stream_el = op.find(_P_STREAM)
        stream = "NETCONF" if stream_el is None else (stream_el.text or "").strip()
        if stream not in STREAMS:
            # RFC 5277 §2.1.1: "Subscription requests will fail if ... the name of a
            # non-existent stream is provided" (no tag given; a bad parameter value).
            raise RpcError("invalid-value", f"no event stream '{stream}' (streams: "
                           f"{', '.join(STREAMS)})", type=PROTOCOL, info=[bad_element("stream")])
        start = _time_param(op, _P_START, "startTime")
        stop = _time_param(op, _P_STOP, "stopTime")
        if stop is not None and start is None:
            # RFC 5277 §2.1.1: stopTime without startTime → missing-element, protocol,
            # bad-element startTime.
            raise RpcError("missing-element", "stopTime needs a startTime", type=PROTOCOL,
                           info=[bad_element("startTime")])
        if start is not None:
            if start > usec(datetime.now(UTC)):
                # RFC 5277 §2.1.1: a startTime later than the current time → bad-element
                raise _param_error("startTime", "startTime is in the future")
            if stop is not None and stop < start:
                # RFC 5277 §2.1.1: a stopTime earlier than the startTime → bad-element
                raise _param_error("stopTime", "stopTime is earlier than startTime")
            if not self.log.enabled:
                # RFC 5277 §2.1.1: replay requested on a stream that does not support it →
                # operation-failed, error-type protocol.
                raise RpcError("operation-failed", f"stream '{stream}' does not support "
                               "replay (startTime): the replay log is disabled", type=PROTOCOL)
        fel = next((c for c in op if c.tag in _P_FILTERS), None)
        match = compile_filter(fel, self._prefixes) if fel is not None else None
        sub = Subscription(ctx.session, stream, match, stop=stop)
        # Read the log and register the live listener in this same step (no publication can
        # come in between): what the log holds is replayed, what comes later is held.
        replay = None
        if start is not None:
            replay = self.log.select(start, stop)
            sub.held = []
        sub.unsubscribe = self.server.bus.subscribe(lambda t, c: self._deliver(sub, t, c))
        self.subscriptions[ctx.session_id] = sub
        log.info("session %d: subscribed to stream %s%s%s", ctx.session_id, stream,
                 " (filtered)" if match is not None else "",
                 "" if replay is None else f", replay of {len(replay)} logged notification(s)"
                 + (", until stopTime" if stop is not None else ""))
        if replay is not None:
            # after this RPC's reply, which the session queues when the handler returns
            _soon(self._replay, sub, replay)
        return None

    def _deliver(self, sub: Subscription, t: float, content: etree._Element) -> None:
        if not sub.active:
            return
        if sub.stop is not None and event_usec(t) > sub.stop:
            return  # past the stopTime (its timer ends the subscription)
        msg = self._message(t, content)
        if sub.match is not None and not sub.match(self._data(content)):
            return
        if sub.held is not None:
            sub.held.append(msg)  # the replay is still being sent
        else:
            sub.session.send_notification(msg)

    def _record(self, t: float, content: etree._Element) -> None:
        self.log.append(event_usec(t), self._message(t, content))

    def _message(self, t: float, content: etree._Element) -> bytes:
        """The ``<notification>`` message, serialized once per publication (for the log and
        every subscriber)."""
        key = self.server.bus.published
        m = self._msg_memo
        if m is None or m[0] != key:
            m = self._msg_memo = (key, format_notification(t, content))
        return m[1]

    def _data(self, content: etree._Element) -> etree._Element:
        """A ``<data>`` tree holding a copy of the content (for filters), built once per
        publication and shared by every filtered subscriber."""
        key = self.server.bus.published
        m = self._data_memo
        if m is None or m[0] != key:
            data = new_root()
            data.append(copy.deepcopy(content))
            m = self._data_memo = (key, data)
        return m[1]

    # ------------------------------------------------------------------ replay
    def _replay(self, sub: Subscription, pending: deque[bytes]) -> None:
        """Send the next batch of logged notifications; at the end ``<replayComplete>``,
        the live notifications held meanwhile, then live delivery (or the end at stopTime).
        A batch per event-loop step: other sessions are served during a long replay."""
        if not sub.active:
            return
        for _ in range(min(REPLAY_BATCH, len(pending))):
            msg = pending.popleft()
            if sub.match is None or sub.match(_data_of(msg)):
                sub.session.send_notification(msg)
        if pending:
            _soon(self._replay, sub, pending)
            return
        sub.session.send_notification(_complete_message("replayComplete"))
        held, sub.held = sub.held or [], None
        for msg in held:
            sub.session.send_notification(msg)
        log.info("session %d: replay complete (%d live notification(s) held meanwhile)",
                 sub.session.session_id, len(held))
        if sub.stop is not None:
            self._stop_at(sub)

    def _stop_at(self, sub: Subscription) -> None:
        if not sub.active:
            return
        delay = (sub.stop - usec(datetime.now(UTC))) / 1e6
        loop = _loop()
        if delay <= 0 or loop is None:
            self._notification_complete(sub)
        else:  # the loop's clock is monotonic: check the wall clock again when it fires
            sub.timer = loop.call_later(delay, self._stop_at, sub)

    def _notification_complete(self, sub: Subscription) -> None:
        self._end(sub)
        sub.session.send_notification(_complete_message("notificationComplete"))
        log.info("session %d: subscription ended at its stopTime", sub.session.session_id)

    def _end(self, sub: Subscription) -> None:
        sub.active = False
        sub.held = None
        sub.unsubscribe()
        if sub.timer is not None:
            sub.timer.cancel()
            sub.timer = None
        sid = sub.session.session_id
        if self.subscriptions.get(sid) is sub:
            del self.subscriptions[sid]

    # ------------------------------------------------------------------ sessions
    def session_started(self, s: Session) -> None:
        if self.publishing:
            root = etree.Element(f"{{{NCN}}}netconf-session-start", nsmap={None: NCN})
            _session_parms(root, s)
            self.server.bus.publish(root)

    def session_ended(self, s: Session) -> None:
        sub = self.subscriptions.get(s.session_id)
        if sub is not None:
            self._end(sub)
        if not self.publishing:
            return
        root = etree.Element(f"{{{NCN}}}netconf-session-end", nsmap={None: NCN})
        _session_parms(root, s)
        if s.killed:
            reason = "killed"
            killer = current_rpc.get()  # kill-session runs in the killer's RPC
            if killer is not None and killer.session is not s:
                _leaf(root, "killed-by", str(killer.session_id))
        elif s.close_requested:
            reason = "closed"
        else:
            reason = s.end_reason or "dropped"
        _leaf(root, "termination-reason", reason)
        self.server.bus.publish(root)

    # ------------------------------------------------------------------ config change
    def datastore_changed(self, name: str, old: etree._Element, new: etree._Element) -> None:
        if not self.publishing:
            return  # nobody listens, no log: skip the diff (big commits stay cheap)
        edits = config_edits(self.schema, old, new)
        if not edits:
            return
        root = etree.Element(f"{{{NCN}}}netconf-config-change", nsmap={None: NCN})
        by = _leaf(root, "changed-by")
        ctx = current_rpc.get()
        if ctx is None:
            _leaf(by, "server")
        else:
            _session_parms(by, ctx.session)
        _leaf(root, "datastore", name)
        paths = PathMaker(self.schema)
        for op, elem in edits:
            e = _leaf(root, "edit")
            xp, used = instance_identifier(paths, elem)
            target = etree.SubElement(e, f"{{{NCN}}}target", nsmap=used)
            target.text = xp
            _leaf(e, "operation", op)
        self.server.bus.publish(root)


def _leaf(parent: etree._Element, name: str, text: str | None = None) -> etree._Element:
    e = etree.SubElement(parent, f"{{{NCN}}}{name}")
    if text is not None:
        e.text = text
    return e


def _session_parms(parent: etree._Element, s: Session) -> None:
    """RFC 6470 common-session-parms: username, session-id, source-host (an IP address)."""
    _leaf(parent, "username", s.username)
    _leaf(parent, "session-id", str(s.session_id))
    host = s.io.peer[0] if s.io.peer else ""
    try:
        _leaf(parent, "source-host", str(ipaddress.ip_address(host.split("%")[0])))
    except ValueError:
        pass  # not an IP address (e.g. a Unix socket): the leaf is optional


def _time_param(op: etree._Element, clark: str, name: str) -> int | None:
    """A startTime / stopTime (yang:date-and-time, RFC 3339) as µs since the epoch."""
    els = op.findall(clark)
    if not els:
        return None
    if len(els) > 1:
        raise _param_error(name, f"{name} appears more than once")
    text = (els[0].text or "").strip()
    m = _DATE_AND_TIME.match(text)
    dt = None
    if m is not None:
        frac = (m.group(1) or "")[:7]  # beyond microseconds: truncated
        offset = "+00:00" if m.group(2) == "Z" else m.group(2)
        try:
            dt = datetime.fromisoformat(text[:19] + (frac.ljust(7, "0") if frac else "")
                                        + offset)
        except ValueError:  # e.g. month 13, hour 24, offset +24:00
            dt = None
    if dt is None:
        raise _param_error(name, f"{name} '{text}' is not an RFC 3339 date-and-time")
    return usec(dt)


def _param_error(name: str, msg: str) -> RpcError:
    """RFC 5277 §2.1.1: a bad startTime / stopTime value → bad-element, error-type protocol,
    error-info bad-element (and the parameter's path)."""
    return RpcError("bad-element", msg, type=PROTOCOL, path=f"/notif:create-subscription/"
                    f"notif:{name}", path_ns=_PATH_NS, info=[bad_element(name)])


def _complete_message(name: str) -> bytes:
    """``<replayComplete/>`` / ``<notificationComplete/>`` (RFC 5277 §2.2.1), now."""
    return format_notification(time.time(),
                               etree.Element(f"{{{NCEVENT}}}{name}", nsmap={None: NCEVENT}))


def _data_of(msg: bytes) -> etree._Element:
    """A ``<data>`` tree holding the content of a serialized notification (for filters)."""
    content = [c for c in etree.fromstring(msg) if isinstance(c.tag, str)][-1]
    data = new_root()
    data.append(content)
    return data


def _loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:  # driven synchronously (sans-IO unit tests)
        return None


def _soon(fn: Callable[..., None], *args: object) -> None:
    """Run ``fn`` in a later event-loop step (at once when no loop is running)."""
    loop = _loop()
    if loop is None:
        fn(*args)
    else:
        loop.call_soon(fn, *args)


def register(server: NetconfServer) -> Notifications:
    lim = server.limits
    n = Notifications(server, ReplayLog(lim.replay_log_size, lim.replay_log_bytes,
                                        lim.replay_log_age))
    server.dispatcher.register(NOTIF, "create-subscription", n.create_subscription)
    server.datastores.observers.append(n.datastore_changed)
    return n
