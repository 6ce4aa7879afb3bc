"""NETCONF event notifications (RFC 5277) and the base notifications of RFC 6470.

* ``create-subscription`` on the one stream, ``NETCONF``, with an optional subtree or
  XPath filter; no replay (``startTime`` is refused as RFC 5277 §2.1.1 says).
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

import copy
import ipaddress
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
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

_P_STREAM = f"{{{NOTIF}}}stream"
_P_START = f"{{{NOTIF}}}startTime"
_P_STOP = f"{{{NOTIF}}}stopTime"
_P_FILTERS = (f"{{{NOTIF}}}filter", f"{{{NC}}}filter")  # ncclient puts it in the base ns

Match = Callable[[etree._Element], bool]


# --------------------------------------------------------------------------- formatting


def event_time(t: float) -> str:
    """RFC 3339 date-and-time with microseconds and the UTC offset."""
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="microseconds")


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




# --------------------------------------------------------------------------- subscriptions


@dataclass(eq=False)
class Subscription:
    session: Session
    stream: str
    match: Match | None
    unsubscribe: Callable[[], None] = lambda: None


class Notifications:
    """create-subscription, per-session delivery, and the RFC 6470 events."""

    def __init__(self, server: NetconfServer) -> None:
        self.server = server
        self.schema = server.schema
        self.subscriptions: dict[int, Subscription] = {}
        self._memo: tuple[int, bytes, etree._Element] | None = None  # per publication
        self._prefixes = {m.name: m.namespace for m in self.schema.modules.values()}

    # ------------------------------------------------------------------ create-subscription
    def create_subscription(self, ctx: RpcContext, op: etree._Element):
        check_params(op, {_P_STREAM, _P_START, _P_STOP, *_P_FILTERS})
        if ctx.session_id in self.subscriptions:
            # RFC 5277 §6.5: create-subscription while another subscription is active on
            # the session → operation-failed, error-type protocol, no error-info.
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
            if start > time.time():
                # RFC 5277 §2.1.1: a startTime later than the current time → bad-element
                raise RpcError("bad-element", "startTime is in the future", type=PROTOCOL,
                               info=[bad_element("startTime")])
            if stop is not None and stop < start:
                # RFC 5277 §2.1.1: a stopTime earlier than the startTime → bad-element
                raise RpcError("bad-element", "stopTime is earlier than startTime",
                               type=PROTOCOL, info=[bad_element("stopTime")])
            # RFC 5277 §2.1.1: replay requested on a stream that does not support it →
            # operation-failed, error-type protocol.
            raise RpcError("operation-failed", f"stream '{stream}' does not support replay "
                           "(startTime)", type=PROTOCOL)
        fel = next((c for c in op if c.tag in _P_FILTERS), None)
        match = compile_filter(fel, self._prefixes) if fel is not None else None
        sub = Subscription(ctx.session, stream, match)
        sub.unsubscribe = self.server.bus.subscribe(lambda t, c: self._deliver(sub, t, c))
        self.subscriptions[ctx.session_id] = sub
        log.info("session %d: subscribed to stream %s%s", ctx.session_id, stream,
                 " (filtered)" if match is not None else "")
        return None

    def _deliver(self, sub: Subscription, t: float, content: etree._Element) -> None:
        msg, data = self._formatted(t, content)
        if sub.match is not None and not sub.match(data):
            return
        sub.session.send_notification(msg)

    def _formatted(self, t: float, content: etree._Element) -> tuple[bytes, etree._Element]:
        """The message and a ``<data>`` tree holding a copy of the content (for filters),
        built once per publication and shared by every subscriber."""
        key = self.server.bus.published
        m = self._memo
        if m is None or m[0] != key:
            data = new_root()
            data.append(copy.deepcopy(content))
            m = self._memo = (key, format_notification(t, content), data)
        return m[1], m[2]

    # ------------------------------------------------------------------ sessions
    def session_started(self, s: Session) -> None:
        if self.subscriptions:
            root = etree.Element(f"{{{NCN}}}netconf-session-start", nsmap={None: NCN})
            _session_parms(root, s)
            self.server.bus.publish(root)

    def session_ended(self, s: Session) -> None:
        sub = self.subscriptions.pop(s.session_id, None)
        if sub is not None:
            sub.unsubscribe()
        if not self.subscriptions:
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
        if not self.subscriptions:
            return  # nobody listens: skip the diff (big commits stay cheap)
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


def _time_param(op: etree._Element, clark: str, name: str) -> float | None:
    el = op.find(clark)
    if el is None:
        return None
    text = (el.text or "").strip()
    try:
        dt = datetime.fromisoformat(text)
    except ValueError:
        dt = None
    if dt is None or dt.tzinfo is None:  # RFC 3339 times carry an offset
        raise RpcError("bad-element", f"{name} '{text}' is not an RFC 3339 date-time",
                       type=PROTOCOL, info=[bad_element(name)])
    return dt.timestamp()


def register(server: NetconfServer) -> Notifications:
    n = Notifications(server)
    server.dispatcher.register(NOTIF, "create-subscription", n.create_subscription)
    server.datastores.observers.append(n.datastore_changed)
    return n
