"""RFC 5277 replay on stream NETCONF, end to end over SSH against real agents
(``--backend none``) with the raw client and ncclient: the logged notifications from
``startTime`` (to ``stopTime``) in order and filtered, ``<replayComplete>``, then the live
ones (none lost or sent twice across the switch, even while others publish), ``stopTime``
→ ``<notificationComplete>`` and the end of the subscription, the parameter errors, and the
replay log's bounds (count, age; size 0: no replay)."""

from __future__ import annotations

import re
import threading
import time
from datetime import UTC, datetime

import pytest
from lxml import etree
from ncraw import NC, RawClient, reply_errors, reply_ok
from test_notifications import next_notification, subscribe

NOTIF = "urn:ietf:params:xml:ns:netconf:notification:1.0"
NCEVENT = "urn:ietf:params:xml:ns:netmod:notification"
NCN = "urn:ietf:params:xml:ns:yang:ietf-netconf-notifications"
IF = "urn:ietf:params:xml:ns:yang:ietf-interfaces"
IANAIFT = "urn:ietf:params:xml:ns:yang:iana-if-type"
EPOCH = "1970-01-01T00:00:00Z"
CONFIG_CHANGES = f'<filter type="subtree"><netconf-config-change xmlns="{NCN}"/></filter>'
RFC3339_FRACTION = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}(Z|[+-]\d\d:\d\d)\Z")


# ---- helpers ------------------------------------------------------------------------------------


def stamp(t: float | None = None) -> str:
    return datetime.fromtimestamp(time.time() if t is None else t, UTC).isoformat(
        timespec="microseconds")


def mark() -> str:
    """The current time as a startTime/stopTime, strictly between what came before and
    what comes after (eventTimes have microseconds)."""
    time.sleep(0.01)
    s = stamp()
    time.sleep(0.01)
    return s


def n(tag: str) -> str:
    return f"{{{NCN}}}{tag}"


def create(name: str) -> str:
    return (f'<edit-config><target><running/></target><config><interfaces xmlns="{IF}" '
            f'xmlns:ianaift="{IANAIFT}"><interface><name>{name}</name>'
            "<type>ianaift:ethernetCsmacd</type></interface></interfaces></config></edit-config>")


def delete(name: str) -> str:
    return (f'<edit-config><target><running/></target><config><interfaces xmlns="{IF}" '
            f'xmlns:nc="{NC}"><interface nc:operation="delete"><name>{name}</name></interface>'
            "</interfaces></config></edit-config>")


def ok(c: RawClient, rpc: str) -> None:
    r = c.rpc(rpc, timeout=30)
    assert reply_ok(r), reply_errors(r)


def recv(c: RawClient, timeout: float = 10.0) -> etree._Element:
    """The next notification; a reply must not come in between."""
    return next_notification(c, timeout)


def nothing_more(c: RawClient, wait: float = 0.5) -> None:
    assert not c.notifications, [describe(x) for x in c.notifications]
    with pytest.raises(TimeoutError):
        msg = c.recv_message(wait)
        pytest.fail(f"unexpected message {msg[:300]!r}")


def content(notification: etree._Element) -> etree._Element:
    kids = [c for c in notification if isinstance(c.tag, str)]
    assert kids[0].tag == f"{{{NOTIF}}}eventTime" and len(kids) == 2, etree.tostring(
        notification)
    return kids[1]


def event_time(notification: etree._Element) -> datetime:
    text = notification.findtext(f"{{{NOTIF}}}eventTime")
    assert RFC3339_FRACTION.match(text), text
    return datetime.fromisoformat(text)


def describe(notification: etree._Element) -> tuple:
    """A comparable summary: ``("replayComplete",)``, ``("cc", datastore, (name, op), ...)``,
    ``("start" | "end", session-id)``."""
    c = content(notification)
    q = etree.QName(c)
    if q.namespace == NCEVENT:
        return (q.localname,)
    assert q.namespace == NCN, q
    if q.localname == "netconf-config-change":
        edits = []
        for e in c.iterfind(n("edit")):
            target = e.findtext(n("target"))
            m = re.search(r"\[if:name='([^']*)'\]$", target)
            edits.append((m.group(1) if m else target, e.findtext(n("operation"))))
        return ("cc", c.findtext(n("datastore")), *edits)
    kind = {"netconf-session-start": "start", "netconf-session-end": "end"}[q.localname]
    return (kind, int(c.findtext(n("session-id"))))


def until_replay_complete(c: RawClient, timeout: float = 30.0) -> list[etree._Element]:
    """The notifications up to and including ``<replayComplete>``."""
    out: list[etree._Element] = []
    deadline = time.monotonic() + timeout
    while not out or describe(out[-1]) != ("replayComplete",):
        out.append(recv(c, max(0.1, deadline - time.monotonic())))
    return out


def rpc_error(reply: etree._Element) -> tuple[dict[str, str], etree._Element]:
    errs = reply.findall(f"{{{NC}}}rpc-error")
    assert len(errs) == 1, etree.tostring(reply)
    e = errs[0]
    d = {etree.QName(c).localname: (c.text or "").strip() for c in e if len(c) == 0}
    for c in e.iterfind(f"{{{NC}}}error-info/*"):
        d["info:" + etree.QName(c).localname] = (c.text or "").strip()
    return d, e


@pytest.fixture(scope="module")
def agent_with(tmp_path_factory):
    """Agents with a given ``[netconf]`` configuration, started on first use."""
    from agentproc import AgentProcess

    started: dict[str, AgentProcess] = {}

    def get(settings: str) -> AgentProcess:
        if settings not in started:
            d = tmp_path_factory.mktemp("replay-agent")
            cfg = d / "agent.toml"
            cfg.write_text(f"[netconf]\n{settings}\n")
            a = AgentProcess(d, config=cfg)
            a.start()
            started[settings] = a
        return started[settings]

    try:
        yield get
    finally:
        for a in started.values():
            a.stop()


# ---- replay ------------------------------------------------------------------------------------


def test_replay_in_order_then_replay_complete_then_live(fresh):
    with fresh.raw() as ed:
        ok(ed, create("keep"))
        t0 = mark()
        ok(ed, create("a"))
        ok(ed, "<copy-config><target><startup/></target><source><running/></source>"
               "</copy-config>")
        ok(ed, delete("a"))
        with fresh.raw() as other:
            other_id = other.session_id
        sub = fresh.raw()
        try:
            subscribe(sub, f"<startTime>{t0}</startTime>")
            assert sub.notifications == []  # the reply comes before the replay
            got = until_replay_complete(sub)
            assert [describe(x) for x in got] == [
                ("cc", "running", ("a", "create")),
                ("cc", "startup", ("/if:interfaces", "create")),
                ("cc", "running", ("a", "delete")),
                ("start", other_id), ("end", other_id), ("start", sub.session_id),
                ("replayComplete",),
            ]
            times = [event_time(x) for x in got]
            assert times[:-1] == sorted(times[:-1]) and times[0] >= datetime.fromisoformat(t0)
            done = got[-1]
            assert done.nsmap[None] == NOTIF and content(done).nsmap[None] == NCEVENT
            assert len(content(done)) == 0 and times[-1] >= times[-2]
            # then live, once each
            ok(ed, create("b"))
            assert describe(recv(sub)) == ("cc", "running", ("b", "create"))
            nothing_more(sub)
            # the session still serves RPCs (:interleave)
            ok(sub, "<get-config><source><running/></source></get-config>")
        finally:
            sub.close()


def test_replay_from_before_the_log_sends_what_the_log_has(fresh):
    with fresh.raw() as sub:
        subscribe(sub, f"<startTime>{EPOCH}</startTime>")
        got = [describe(x) for x in until_replay_complete(sub)]
        # everything since the agent started, ending with this session's own start
        assert got[-2:] == [("start", sub.session_id), ("replayComplete",)]
        assert len(got) > 3 and got[0][0] == "start"


def test_filter_applies_to_replayed_and_live(fresh):
    with fresh.raw() as ed:
        ok(ed, create("keep"))
        t0 = mark()
        ok(ed, create("f1"))
        ok(ed, "<copy-config><target><startup/></target><source><running/></source>"
               "</copy-config>")
        ok(ed, delete("f1"))
        with fresh.raw() as sub, fresh.raw() as xp:
            subscribe(sub, f'<startTime>{t0}</startTime><filter type="subtree">'
                           f'<netconf-config-change xmlns="{NCN}"><datastore>running</datastore>'
                           "</netconf-config-change></filter>")
            subscribe(xp, f"<startTime>{t0}</startTime>"
                          f'<filter type="xpath" xmlns:ncn="{NCN}" '
                          "select=\"/ncn:netconf-session-start | /ncn:netconf-config-change"
                          "[ncn:datastore='startup']\"/>")
            assert [describe(x) for x in until_replay_complete(sub)] == [
                ("cc", "running", ("f1", "create")), ("cc", "running", ("f1", "delete")),
                ("replayComplete",)]
            assert [describe(x) for x in until_replay_complete(xp)] == [
                ("cc", "startup", ("/if:interfaces", "create")),
                ("start", sub.session_id), ("start", xp.session_id), ("replayComplete",)]
            ok(ed, "<delete-config><target><startup/></target></delete-config>")
            ok(ed, create("f2"))
            assert describe(recv(sub)) == ("cc", "running", ("f2", "create"))
            assert describe(recv(xp)) == ("cc", "startup", ("/if:interfaces", "delete"))
            nothing_more(sub, 0.2)
            nothing_more(xp, 0.2)


def test_ncclient_stop_time_in_the_past_then_subscribe_again(fresh):
    with fresh.raw() as ed, fresh.ncclient() as m:
        ok(ed, create("keep"))
        t0 = mark()
        ok(ed, create("s1"))
        t1 = mark()
        ok(ed, create("s2"))
        # ncclient's XPath filter declares no prefix: module names work as prefixes
        m.create_subscription(
            filter=("xpath", "/ietf-netconf-notifications:netconf-config-change"),
            start_time=t0, stop_time=t1)
        got = []
        for _ in range(3):
            note = m.take_notification(timeout=10)
            assert note is not None, got
            got.append(etree.fromstring(note.notification_xml.encode()))
        assert [describe(x) for x in got] == [
            ("cc", "running", ("s1", "create")), ("replayComplete",), ("notificationComplete",)]
        # the subscription has ended: nothing more, and the session may subscribe again
        ok(ed, create("s3"))
        assert m.take_notification(timeout=0.5) is None
        m.create_subscription()
        ok(ed, create("s4"))
        note = m.take_notification(timeout=10)
        assert note is not None
        assert describe(etree.fromstring(note.notification_xml.encode())) == (
            "cc", "running", ("s4", "create"))
        assert m.get_config("running").ok


def test_stop_time_in_the_future_ends_the_subscription_then(fresh):
    with fresh.raw() as ed, fresh.raw() as sub:
        ok(ed, create("keep"))
        t0 = mark()
        ok(ed, create("u1"))
        stop = time.time() + 1.5
        subscribe(sub, f"<startTime>{t0}</startTime><stopTime>{stamp(stop)}</stopTime>"
                       + CONFIG_CHANGES)
        assert [describe(x) for x in until_replay_complete(sub)] == [
            ("cc", "running", ("u1", "create")), ("replayComplete",)]
        ok(ed, create("u2"))  # live, before stopTime
        assert describe(recv(sub)) == ("cc", "running", ("u2", "create"))
        # a second subscription while this one is active: RFC 5277 §6.5
        e, _ = rpc_error(sub.rpc(f'<create-subscription xmlns="{NOTIF}"/>'))
        assert (e["error-tag"], e["error-type"]) == ("operation-failed", "protocol")
        done = recv(sub, 5)
        assert describe(done) == ("notificationComplete",)
        assert time.time() >= stop - 0.05 and event_time(done).timestamp() >= stop - 1e-3
        ok(ed, create("u3"))  # after stopTime: not sent
        nothing_more(sub)
        subscribe(sub, CONFIG_CHANGES)  # the ended subscription is gone
        ok(ed, create("u4"))
        assert describe(recv(sub)) == ("cc", "running", ("u4", "create"))


def test_switch_from_replay_to_live_loses_and_duplicates_nothing(fresh):
    """Hundreds of logged notifications are replayed (in several event-loop steps) while
    another session keeps editing: every change from startTime on arrives exactly once, in
    order, the live ones published during the replay held until after <replayComplete>. The
    subscriber also sends RPCs meanwhile: every reply comes whole (chunked framing)."""
    prefill, live = 1200, 150
    with fresh.raw() as ed, fresh.raw() as ed2:
        ok(ed, create("keep"))
        t0 = mark()
        rpcs = [create(f"x{i // 2}") if i % 2 == 0 else delete(f"x{i // 2}")
                for i in range(prefill)]
        assert all(reply_ok(r) for r in ed.pipeline(rpcs, window=32, timeout=120))
        expected = [("cc", "running", (f"x{i // 2}", "create" if i % 2 == 0 else "delete"))
                    for i in range(prefill)]
        held_counts = []
        for attempt in range(4):
            names = [f"y{attempt}_{j}" for j in range(live)]
            failures: list[str] = []
            started = threading.Event()

            def editor(names: list[str] = names, failures: list[str] = failures,
                       started: threading.Event = started) -> None:
                try:
                    for k in range(0, len(names), 5):
                        rs = ed2.pipeline([create(x) for x in names[k:k + 5]], timeout=60)
                        failures.extend(e for r in rs for e in reply_errors(r))
                        started.set()
                except Exception as exc:  # noqa: BLE001 - reported by the assertion below
                    failures.append(repr(exc))
                finally:
                    started.set()

            th = threading.Thread(target=editor)
            sub = fresh.raw(caps=("1.1",))
            try:
                th.start()
                started.wait(30)
                subscribe(sub, f"<startTime>{t0}</startTime>" + CONFIG_CHANGES)
                for _ in range(3):  # RPCs during the replay: whole replies between notifications
                    ok(sub, "<get-config><source><running/></source><filter type=\"subtree\">"
                            f'<interfaces xmlns="{IF}"><interface><name>keep</name></interface>'
                            "</interfaces></filter></get-config>")
                th.join(120)
                assert not th.is_alive() and not failures, failures
                expected += [("cc", "running", (x, "create")) for x in names]
                got = until_replay_complete(sub, 60)
                while len(got) < len(expected) + 1:
                    got.append(recv(sub, 10))
                summary = [describe(x) for x in got]
                assert summary.count(("replayComplete",)) == 1
                split = summary.index(("replayComplete",))
                assert summary[:split] + summary[split + 1:] == expected
                assert split >= prefill  # the prefill was all in the log
                nothing_more(sub, 0.3)
                m = re.search(rf"session {sub.session_id}: replay complete \((\d+) live",
                              fresh.log.read_text())
                assert m is not None
                held_counts.append(int(m.group(1)))
            finally:
                sub.close()
            if held_counts[-1] > 0:
                break
        print(f"\nreplay→live switch: {prefill}+ replayed, live notifications held during the "
              f"replay per attempt: {held_counts}")
        assert held_counts[-1] > 0, "no publication ever came during a replay"
    assert "Traceback" not in fresh.log.read_text()


def test_session_closed_during_replay_is_cleaned_up(fresh):
    with fresh.raw() as ed:
        ok(ed, create("keep"))
        t0 = mark()
        assert all(reply_ok(r) for r in ed.pipeline(
            [create(f"d{i}") for i in range(300)], window=32, timeout=60))
        for _ in range(3):
            sub = fresh.raw()
            sub.send_message(f'<rpc message-id="1" xmlns="{NC}"><create-subscription '
                             f'xmlns="{NOTIF}"><startTime>{t0}</startTime></create-subscription>'
                             "</rpc>".encode())
            sub.transport.close()  # gone mid-replay
        with fresh.raw() as sub:
            subscribe(sub, CONFIG_CHANGES)
            ok(ed, create("after"))
            assert describe(recv(sub)) == ("cc", "running", ("after", "create"))
    assert "Traceback" not in fresh.log.read_text()


# ---- errors ------------------------------------------------------------------------------------

PATH = "/notif:create-subscription/notif:"


@pytest.mark.parametrize(
    "inner, tag, bad, path",
    [
        ("<startTime>{future}</startTime>", "bad-element", "startTime", PATH + "startTime"),
        ("<startTime>2020-01-02T00:00:00Z</startTime><stopTime>2020-01-01T23:59:59.999999Z"
         "</stopTime>", "bad-element", "stopTime", PATH + "stopTime"),
        ("<startTime>2020-01-01T02:00:00+02:00</startTime>"  # = 00:00Z: earlier
         "<stopTime>2020-01-01T00:00:00.5+01:00</stopTime>", "bad-element", "stopTime",
         PATH + "stopTime"),
        ("<stopTime>2020-01-01T00:00:00Z</stopTime>", "missing-element", "startTime", None),
        ("<startTime>yesterday</startTime>", "bad-element", "startTime", PATH + "startTime"),
        ("<startTime>2020-01-01T00:00:00</startTime>", "bad-element", "startTime",
         PATH + "startTime"),  # no offset
        ("<startTime>2020-01-01 00:00:00Z</startTime>", "bad-element", "startTime",
         PATH + "startTime"),
        ("<startTime>20200101T000000Z</startTime>", "bad-element", "startTime",
         PATH + "startTime"),
        ("<startTime>2020-01-01T00:00Z</startTime>", "bad-element", "startTime",
         PATH + "startTime"),
        ("<startTime>2020-13-01T00:00:00Z</startTime>", "bad-element", "startTime",
         PATH + "startTime"),
        ("<startTime>2020-01-01T00:00:00+24:00</startTime>", "bad-element", "startTime",
         PATH + "startTime"),
        ("<startTime/>", "bad-element", "startTime", PATH + "startTime"),
        ("<startTime>2020-01-01T00:00:00Z</startTime><stopTime>soon</stopTime>",
         "bad-element", "stopTime", PATH + "stopTime"),
        ("<startTime>2020-01-01T00:00:00Z</startTime><startTime>2020-01-01T00:00:00Z"
         "</startTime>", "bad-element", "startTime", PATH + "startTime"),
    ],
)
def test_time_parameter_errors(agent, inner, tag, bad, path):
    inner = inner.format(future=stamp(time.time() + 3600))
    with agent.raw() as c:
        e, el = rpc_error(c.rpc(f'<create-subscription xmlns="{NOTIF}">{inner}'
                                "</create-subscription>"))
        assert (e["error-tag"], e["error-type"], e["info:bad-element"]) == (
            tag, "protocol", bad), e
        assert e.get("error-path") == path, e
        if path is not None:
            assert el.find(f"{{{NC}}}error-path").nsmap["notif"] == NOTIF
        # no subscription was made: the session subscribes now
        subscribe(c)


def test_accepted_time_forms(agent):
    """RFC 3339 forms: Z or an offset, any number of fraction digits; stopTime = startTime
    (before the agent started: nothing to replay)."""
    for inner in ("<startTime>2020-01-01T00:00:00.123456789Z</startTime>",
                  "<startTime>1999-12-31T19:00:00-05:00</startTime>"):
        with agent.raw() as c:
            subscribe(c, inner)
            assert describe(until_replay_complete(c)[-1]) == ("replayComplete",)
    with agent.raw() as c:
        subscribe(c, "<startTime>2020-01-01T01:00:00+01:00</startTime>"
                     "<stopTime>2020-01-01T00:00:00.000Z</stopTime>")
        assert [describe(recv(c)) for _ in range(2)] == [
            ("replayComplete",), ("notificationComplete",)]
        subscribe(c)


# ---- the log's bounds ---------------------------------------------------------------------------


def test_replay_log_bounded_by_count(agent_with):
    a = agent_with("replay-log-size = 5")
    with a.raw() as ed:
        for name in ["keep"] + [f"k{i}" for i in range(7)]:
            ok(ed, create(name))
        with a.raw() as sub:  # its session-start is the 5th logged one
            subscribe(sub, f"<startTime>{EPOCH}</startTime>")
            assert [describe(x) for x in until_replay_complete(sub)] == [
                *[("cc", "running", (f"k{i}", "create")) for i in range(3, 7)],
                ("start", sub.session_id), ("replayComplete",)]
            ok(ed, create("k7"))  # live as usual
            assert describe(recv(sub)) == ("cc", "running", ("k7", "create"))


def test_replay_log_bounded_by_age(agent_with):
    a = agent_with("replay-log-age = 1.0")
    with a.raw() as ed:
        ok(ed, create("old"))
        time.sleep(1.3)
        ok(ed, create("new"))
        with a.raw() as sub:
            subscribe(sub, f"<startTime>{EPOCH}</startTime>")
            assert [describe(x) for x in until_replay_complete(sub)] == [
                ("cc", "running", ("new", "create")), ("start", sub.session_id),
                ("replayComplete",)]


def test_replay_log_size_zero_means_no_replay(agent_with):
    a = agent_with("replay-log-size = 0")
    with a.raw() as c:
        e, _ = rpc_error(c.rpc(f'<create-subscription xmlns="{NOTIF}"><startTime>{EPOCH}'
                               "</startTime></create-subscription>"))
        assert (e["error-tag"], e["error-type"]) == ("operation-failed", "protocol"), e
        subscribe(c)  # a live subscription still works
