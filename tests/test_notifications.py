"""RFC 5277 notifications (create-subscription, filters, :interleave) and the RFC 6470
events (netconf-config-change, netconf-session-start/-end): formatting in process, then
end to end over SSH against a real agent with ncclient and the raw client."""

from __future__ import annotations

import re
import statistics
import threading
import time
from datetime import datetime

import pytest
from inproc import LocalClient, iface, ok
from lxml import etree
from ncraw import NC, RawClient, reply_errors, reply_ok

from agent.rpc.notifications import config_edits, event_time, format_notification

NOTIF = "urn:ietf:params:xml:ns:netconf:notification:1.0"
NCN = "urn:ietf:params:xml:ns:yang:ietf-netconf-notifications"
IF = "urn:ietf:params:xml:ns:yang:ietf-interfaces"
IANAIFT = "urn:ietf:params:xml:ns:yang:iana-if-type"
NCM = "urn:ietf:params:xml:ns:yang:ietf-netconf-monitoring"
RFC3339_FRACTION = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}(Z|[+-]\d\d:\d\d)\Z")
SUBSCRIBE = f'<create-subscription xmlns="{NOTIF}"/>'


def n(tag: str) -> str:
    return f"{{{NCN}}}{tag}"


def content_of(notification: etree._Element) -> etree._Element:
    """The event element of a ``<notification>`` (the child after eventTime)."""
    assert notification.tag == f"{{{NOTIF}}}notification", notification.tag
    kids = [c for c in notification if isinstance(c.tag, str)]
    assert kids[0].tag == f"{{{NOTIF}}}eventTime"
    assert len(kids) == 2, etree.tostring(notification)
    return kids[1]


def targets(change: etree._Element) -> list[tuple[str, str]]:
    return [(e.findtext(n("target")), e.findtext(n("operation")))
            for e in change.iterfind(n("edit"))]


def ifaces_xml(names: list[str], desc: str = "") -> str:
    body = "".join(
        f"<interface><name>{nm}</name><type>ianaift:ethernetCsmacd</type>"
        + (f"<description>{desc}</description>" if desc else "") + "</interface>"
        for nm in names
    )
    return f'<interfaces xmlns="{IF}" xmlns:ianaift="{IANAIFT}">{body}</interfaces>'


def edit_rpc(config: str, target: str = "running") -> str:
    return f"<edit-config><target><{target}/></target><config>{config}</config></edit-config>"


def subscribe(c: RawClient, inner: str = "") -> None:
    r = c.rpc(f'<create-subscription xmlns="{NOTIF}">{inner}</create-subscription>')
    assert reply_ok(r), reply_errors(r)


def next_notification(c: RawClient, timeout: float = 5.0) -> etree._Element:
    """The next notification (raw client); replies must not come in between."""
    if c.notifications:
        return c.notifications.pop(0)
    msg = etree.fromstring(c.recv_message(timeout).strip())
    assert msg.tag == f"{{{NOTIF}}}notification", etree.tostring(msg)
    return msg


def rpc_error(reply: etree._Element) -> dict[str, str]:
    errs = reply.findall(f"{{{NC}}}rpc-error")
    assert len(errs) == 1, etree.tostring(reply)
    e = errs[0]
    d = {etree.QName(c).localname: (c.text or "").strip() for c in e if len(c) == 0}
    for c in e.iterfind(f"{{{NC}}}error-info/*"):
        d["info:" + etree.QName(c).localname] = (c.text or "").strip()
    return d


# ---- in process: formatting, filters, edit lists ----------------------------------------------


def test_notification_format_from_a_bus_publish(server):
    c = LocalClient(server)
    assert ok(c.rpc(SUBSCRIBE))
    ev = etree.Element("{urn:example:ev}thing-happened", nsmap={"ex": "urn:example:ev"})
    etree.SubElement(ev, "{urn:example:ev}what").text = "a <b> & c"
    t = 1_700_000_000.123456
    server.bus.publish(ev, event_time=t)
    got = c.recv()
    assert got.nsmap[None] == NOTIF
    stamp = got.findtext(f"{{{NOTIF}}}eventTime")
    assert RFC3339_FRACTION.match(stamp), stamp
    assert abs(datetime.fromisoformat(stamp).timestamp() - t) < 1e-6
    body = content_of(got)
    assert body.tag == "{urn:example:ev}thing-happened"
    assert body.findtext("{urn:example:ev}what") == "a <b> & c"
    assert c.session.counters.out_notifications == 1
    # the published element is untouched (it is shared by every subscriber)
    assert ev.getparent() is None and len(ev) == 1
    raw = format_notification(t, ev)
    assert raw.startswith(b'<notification xmlns="' + NOTIF.encode() + b'"><eventTime>')
    assert event_time(0) == "1970-01-01T00:00:00.000000+00:00"


def test_unsubscribed_session_gets_nothing_and_one_serialization_for_many(server):
    subs = [LocalClient(server) for _ in range(3)]
    idle = LocalClient(server)
    for c in subs:
        assert ok(c.rpc(SUBSCRIBE))
    ev = etree.Element("{urn:example:ev}e")
    server.bus.publish(ev)
    texts = {etree.tostring(c.recv()) for c in subs}
    assert len(texts) == 1  # identical bytes: serialized once
    assert idle.out.next_message() is None


def test_filters_select_and_drop_in_process(server):
    sub = LocalClient(server)
    xp = LocalClient(server)
    assert ok(sub.rpc(f'<create-subscription xmlns="{NOTIF}"><filter type="subtree">'
                      '<ev xmlns="urn:example:ev"><kind>up</kind></ev></filter>'
                      "</create-subscription>"))
    assert ok(xp.rpc(f'<create-subscription xmlns="{NOTIF}"><filter type="xpath" '
                     "xmlns:ex='urn:example:ev' select=\"/ex:ev[ex:kind='down']\"/>"
                     "</create-subscription>"))
    for kind in ("down", "up", "sideways"):
        ev = etree.Element("{urn:example:ev}ev")
        etree.SubElement(ev, "{urn:example:ev}kind").text = kind
        server.bus.publish(ev)
    assert content_of(sub.recv()).findtext("{urn:example:ev}kind") == "up"
    assert sub.out.next_message() is None
    assert content_of(xp.recv()).findtext("{urn:example:ev}kind") == "down"
    assert xp.out.next_message() is None


def test_config_edits_lists_topmost_changes(schema):
    from agent.datastore.tree import PathMaker
    from agent.rpc.notifications import instance_identifier

    def tree(xml: str) -> etree._Element:
        return etree.fromstring(f'<data xmlns="{NC}">{xml}</data>')

    ip = "urn:ietf:params:xml:ns:yang:ietf-ip"
    old = tree(f'<if:interfaces xmlns:if="{IF}"><if:interface><if:name>a</if:name>'
               "<if:description>x</if:description></if:interface>"
               "<if:interface><if:name>b</if:name></if:interface>"
               "<if:interface><if:name>d</if:name>"
               f'<ip:ipv4 xmlns:ip="{ip}"><ip:address><ip:ip>10.0.0.1</ip:ip>'
               "<ip:prefix-length>24</ip:prefix-length></ip:address></ip:ipv4>"
               "</if:interface></if:interfaces>")
    new = tree(f'<if:interfaces xmlns:if="{IF}"><if:interface><if:name>a</if:name>'
               "<if:description>y</if:description><if:enabled>false</if:enabled>"
               "</if:interface><if:interface><if:name>c</if:name></if:interface>"
               "<if:interface><if:name>d</if:name>"
               f'<ip:ipv4 xmlns:ip="{ip}"><ip:address><ip:ip>10.0.0.1</ip:ip>'
               "<ip:prefix-length>25</ip:prefix-length></ip:address></ip:ipv4>"
               "</if:interface></if:interfaces>")
    paths = PathMaker(schema)
    got = [(op, instance_identifier(paths, e)[0]) for op, e in config_edits(schema, old, new)]
    assert got == [
        ("replace", "/if:interfaces/if:interface[if:name='a']/if:description"),
        ("create", "/if:interfaces/if:interface[if:name='a']/if:enabled"),
        ("create", "/if:interfaces/if:interface[if:name='c']"),
        ("replace", "/if:interfaces/if:interface[if:name='d']/ip:ipv4/"
                    "ip:address[ip:ip='10.0.0.1']/ip:prefix-length"),
        ("delete", "/if:interfaces/if:interface[if:name='b']"),
    ]
    assert config_edits(schema, old, old) == []
    assert [op for op, _ in config_edits(schema, tree(""), new)] == ["create"]


def test_subscription_ends_with_the_session(server):
    a, b = LocalClient(server), LocalClient(server)
    base = len(server.bus._listeners)  # the replay log's own listener
    assert ok(a.rpc(SUBSCRIBE))
    assert len(server.bus._listeners) == base + 1
    assert ok(a.rpc("<close-session/>"))
    assert a.closed and server.notifications.subscriptions == {}
    assert len(server.bus._listeners) == base
    assert ok(b.edit(iface("eth0")))  # nobody subscribed: nothing computed, nothing sent
    assert a.out.next_message() is None


def test_out_notifications_in_monitoring_statistics(server):
    a, b = LocalClient(server), LocalClient(server)
    assert ok(a.rpc(SUBSCRIBE))
    for i in range(3):
        assert ok(b.edit(iface("eth0", f"<description>{i}</description>")))
        assert content_of(a.recv()).tag == n("netconf-config-change")
    flt = (f'<filter><netconf-state xmlns="{NCM}"><statistics/><sessions/></netconf-state>'
           "</filter>")
    d = b.rpc(f"<get>{flt}</get>")
    stats = d.find(f".//{{{NCM}}}statistics")
    assert stats.findtext(f"{{{NCM}}}out-notifications") == "3"
    per = {s.findtext(f"{{{NCM}}}session-id"): s.findtext(f"{{{NCM}}}out-notifications")
           for s in d.iter(f"{{{NCM}}}session")}
    assert per[str(a.session_id)] == "3" and per[str(b.session_id)] == "0"
    assert ok(a.rpc("<close-session/>"))  # the count survives the session's end
    d = b.rpc(f"<get>{flt}</get>")
    assert d.find(f".//{{{NCM}}}statistics").findtext(f"{{{NCM}}}out-notifications") == "3"


# ---- over SSH: a real agent ---------------------------------------------------------------------


def test_capabilities_advertised(agent):
    with agent.raw() as c:
        assert "urn:ietf:params:netconf:capability:notification:1.0" in c.capabilities
        assert "urn:ietf:params:netconf:capability:interleave:1.0" in c.capabilities
        assert any(cap.startswith(NCN + "?module=ietf-netconf-notifications")
                   for cap in c.capabilities)


@pytest.mark.parametrize(
    "inner, tag, info",
    [
        ("<stream>NOPE</stream>", "invalid-value", "stream"),
        ("<stopTime>2020-01-01T00:00:00Z</stopTime>", "missing-element", "startTime"),
        ("<startTime>2999-01-01T00:00:00+02:00</startTime>", "bad-element", "startTime"),
        ("<startTime>2020-01-02T00:00:00Z</startTime><stopTime>2020-01-01T00:00:00Z"
         "</stopTime>", "bad-element", "stopTime"),
        ("<startTime>yesterday</startTime>", "bad-element", "startTime"),
        ("<bogus/>", "unknown-element", "bogus"),
        ('<filter type="regex"/>', "bad-attribute", "type"),
        ('<filter type="xpath"/>', "missing-attribute", "select"),
        ('<filter type="xpath" select="/x:y"/>', "invalid-value", None),
        ('<filter type="xpath" select="/*["/>', "invalid-value", None),
    ],
)
def test_create_subscription_errors(agent, inner, tag, info):
    with agent.raw() as c:
        e = rpc_error(c.rpc(f'<create-subscription xmlns="{NOTIF}">{inner}</create-subscription>'))
        assert e["error-tag"] == tag, e
        if tag != "invalid-value" or info:
            assert e["error-type"] == "protocol", e
        if info:
            assert info in (e.get("info:bad-element"), e.get("info:bad-attribute")), e
        # the failed request created nothing: a good one still works
        subscribe(c)


def test_second_subscription_on_a_session_fails(agent):
    with agent.ncclient() as m:
        assert m.create_subscription() is not None
        from ncclient.operations.rpc import RPCError

        with pytest.raises(RPCError) as exc:
            m.create_subscription()
        # RFC 5277 §6.5
        assert exc.value.tag == "operation-failed" and exc.value.type == "protocol"


def test_config_change_with_ncclient_and_latency(fresh):
    # the editor is the raw client: ncclient only sends every 0.1 s (its I/O loop's tick)
    with fresh.ncclient() as sub, fresh.raw() as ed:
        sub.create_subscription(stream_name="NETCONF")
        edit_latency, stamp_latency = [], []
        for i in range(15):
            t0 = time.time()
            assert reply_ok(ed.rpc(edit_rpc(ifaces_xml(["eth0"], f"d{i}"))))
            note = sub.take_notification(timeout=5)
            t1 = time.time()
            assert note is not None, f"no notification for edit {i}"
            root = etree.fromstring(note.notification_xml.encode())
            change = content_of(root)
            assert change.tag == n("netconf-config-change")
            by = change.find(n("changed-by"))
            assert by.findtext(n("session-id")) == str(ed.session_id)
            assert by.findtext(n("username")) == fresh.user
            assert by.findtext(n("source-host")) == "127.0.0.1"
            assert change.findtext(n("datastore")) == "running"
            want = ("/if:interfaces", "create") if i == 0 else (
                "/if:interfaces/if:interface[if:name='eth0']/if:description", "replace")
            assert targets(change) == [want]
            tgt = change.find(f"{n('edit')}/{n('target')}")
            assert tgt.nsmap["if"] == IF  # the instance-identifier's prefix is declared
            stamp = datetime.fromisoformat(root.findtext(f"{{{NOTIF}}}eventTime")).timestamp()
            assert t0 - 0.001 <= stamp <= t1 + 0.001
            edit_latency.append(t1 - t0)
            stamp_latency.append(t1 - stamp)
    med, worst = statistics.median(stamp_latency), max(stamp_latency)
    emed, eworst = statistics.median(edit_latency), max(edit_latency)
    print(f"\nnotification latency, eventTime → received by ncclient: median {med * 1000:.1f} "
          f"ms, max {worst * 1000:.1f} ms; edit-config sent → its reply and the notification "
          f"received: median {emed * 1000:.1f} ms, max {eworst * 1000:.1f} ms")
    assert med < 0.2 and emed < 0.2


def test_filters_select_and_drop_over_ssh(fresh):
    with fresh.raw() as st, fresh.raw() as run, fresh.raw() as ses, fresh.raw() as ed:
        subscribe(st, f'<filter type="subtree"><netconf-config-change xmlns="{NCN}">'
                      "<datastore>startup</datastore></netconf-config-change></filter>")
        # ncclient-style filter in the base namespace, XPath
        subscribe(run, f'<filter xmlns="{NC}" xmlns:ncn="{NCN}" type="xpath" '
                       "select=\"/ncn:netconf-config-change[ncn:datastore='running']\"/>")
        subscribe(ses, f'<filter type="subtree"><netconf-session-start xmlns="{NCN}"/>'
                       f'<netconf-session-end xmlns="{NCN}"/></filter>')
        assert reply_ok(ed.rpc(edit_rpc(ifaces_xml(["eth1"]))))
        assert reply_ok(ed.rpc("<copy-config><target><startup/></target>"
                               "<source><running/></source></copy-config>"))
        assert reply_ok(ed.rpc(edit_rpc(ifaces_xml(["eth2"]))))
        # startup-only: the first it gets is the startup change (running ones dropped)
        c = content_of(next_notification(st))
        assert c.findtext(n("datastore")) == "startup"
        assert targets(c) == [("/if:interfaces", "create")]
        # running-only: eth1, then eth2 (the startup change between them was dropped)
        assert targets(content_of(next_notification(run))) == [("/if:interfaces", "create")]
        assert targets(content_of(next_notification(run))) == [
            ("/if:interfaces/if:interface[if:name='eth2']", "create")]
        # sessions-only: nothing from the three changes; a session that comes and goes
        with fresh.raw() as other:
            sid = other.session_id
        start = content_of(next_notification(ses))
        assert start.tag == n("netconf-session-start")
        assert start.findtext(n("session-id")) == str(sid)
        assert start.findtext(n("username")) == fresh.user
        end = content_of(next_notification(ses))
        assert end.tag == n("netconf-session-end")
        assert end.findtext(n("session-id")) == str(sid)
        assert end.findtext(n("termination-reason")) == "closed"
        assert st.notifications == [] and run.notifications == []


def test_session_end_reasons_killed_dropped_bad_hello(fresh):
    with fresh.raw() as sub, fresh.raw() as killer:
        subscribe(sub, f'<filter type="subtree"><netconf-session-end xmlns="{NCN}"/></filter>')
        victim = fresh.raw()
        assert reply_ok(killer.rpc(f"<kill-session><session-id>{victim.session_id}"
                                   "</session-id></kill-session>"))
        end = content_of(next_notification(sub))
        assert end.findtext(n("session-id")) == str(victim.session_id)
        assert end.findtext(n("termination-reason")) == "killed"
        assert end.findtext(n("killed-by")) == str(killer.session_id)
        victim.transport.close()
        dropper = fresh.raw()
        dropper.transport.close()  # no close-session: dropped
        end = content_of(next_notification(sub))
        assert end.findtext(n("session-id")) == str(dropper.session_id)
        assert end.findtext(n("termination-reason")) == "dropped"
        assert end.find(n("killed-by")) is None
        bad = fresh.raw(hello=False)
        bad.read_hello()
        bad.send_raw(f'<hello xmlns="{NC}"><capabilities><capability>urn:x</capability>'
                     "</capabilities></hello>]]>]]>".encode())  # no base capability
        end = content_of(next_notification(sub))
        assert end.findtext(n("termination-reason")) == "bad-hello"
        assert end.findtext(n("session-id")) == bad.server_hello.findtext(f"{{{NC}}}session-id")
        bad.transport.close()


def test_interleave_pipelined_rpcs_and_a_notification_burst(fresh):
    """One base:1.1 session pipelines 160 RPCs (its own edits make notifications) while
    another session edits concurrently: every reply comes back whole and in order, every
    notification whole, none inside a reply (the chunked framer and XML parser would fail)."""
    with fresh.raw(caps=("1.1",)) as c, fresh.raw() as other:
        assert c.chunked
        subscribe(c)
        n_edits, n_other = 80, 60
        rpcs: list[str] = []
        for i in range(n_edits):
            rpcs.append(edit_rpc(ifaces_xml([f"p{i}"])))
            rpcs.append(f'<get-config><source><running/></source><filter type="xpath" '
                        f"xmlns:if='{IF}' select=\"/if:interfaces/if:interface"
                        f"[if:name='p{i}']\"/></get-config>")
        done = threading.Event()
        failures: list[str] = []

        def burst() -> None:
            try:
                for j in range(n_other):
                    r = other.rpc(edit_rpc(ifaces_xml([f"o{j}"])))
                    if not reply_ok(r):
                        failures.append(str(reply_errors(r)))
            finally:
                done.set()

        th = threading.Thread(target=burst)
        th.start()
        replies = c.pipeline(rpcs, window=32, timeout=60)
        th.join(60)
        assert done.is_set() and not failures, failures
        assert len(replies) == len(rpcs)
        for i in range(n_edits):
            assert reply_ok(replies[2 * i]), reply_errors(replies[2 * i])
            names = [e.text for e in replies[2 * i + 1].iter(f"{{{IF}}}name")]
            assert names == [f"p{i}"], names
        deadline = time.monotonic() + 10
        while len(c.notifications) < n_edits + n_other and time.monotonic() < deadline:
            try:
                c.notifications.append(etree.fromstring(c.recv_message(1).strip()))
            except TimeoutError:
                pass
        got = [targets(content_of(x)) for x in c.notifications]
        assert len(got) == n_edits + n_other, len(got)
        flat = [path for t in got for path, _ in t]
        # the very first edit (of either session) created the interfaces container
        assert flat[0] == "/if:interfaces" and len(flat) == len(set(flat)) == len(got)
        want = {f"/if:interfaces/if:interface[if:name='p{i}']" for i in range(n_edits)}
        want |= {f"/if:interfaces/if:interface[if:name='o{j}']" for j in range(n_other)}
        assert set(flat[1:]) < want and len(want - set(flat)) == 1
        # each session's changes are notified in the order it made them
        for k in "po":
            order = [int(p.split(f"'{k}")[1].split("'")[0]) for p in flat if f"'{k}" in p]
            assert order == sorted(order), k
        print(f"\ninterleave: {len(rpcs)} pipelined replies + {len(got)} notifications "
              "on one chunked session, all whole and in order")


def test_no_notification_after_close_session(fresh):
    with fresh.raw() as ed:
        c = fresh.raw()
        subscribe(c)
        assert reply_ok(ed.rpc(edit_rpc(ifaces_xml(["c0"]))))
        next_notification(c)
        c.send_message(b'<rpc message-id="99" xmlns="%s"><close-session/></rpc>' % NC.encode())
        reply = etree.fromstring(c.recv_message(5).strip())
        assert reply.get("message-id") == "99" and reply_ok(reply)
        for i in range(5):
            assert reply_ok(ed.rpc(edit_rpc(ifaces_xml([f"c{i + 1}"]))))
        with pytest.raises(EOFError):
            msg = c.recv_message(5)
            pytest.fail(f"got a message after close-session: {msg[:200]!r}")
        c.channel.close()
        c.transport.close()
        # and the agent still notifies the live sessions
        with fresh.raw() as s2:
            subscribe(s2)
            assert reply_ok(ed.rpc(edit_rpc(ifaces_xml(["c9"]))))
            assert targets(content_of(next_notification(s2))) == [
                ("/if:interfaces/if:interface[if:name='c9']", "create")]


def test_slow_subscriber_does_not_block_others(fresh):
    """A subscriber that never reads gets megabytes of notifications queued until the agent
    sees its SSH channel backed up; another subscriber still gets each notification promptly
    and the editing session is not slowed, before and after that point."""
    long = "x" * 300
    sets = [[f"{k}{long}{i}" for i in range(400)] for k in "ab"]
    slow = fresh.raw()
    try:
        subscribe(slow)  # and never read again
        with fresh.ncclient() as fast, fresh.raw() as ed:
            fast.create_subscription()
            lat, sizes, backed_up_at = [], 0, None
            for r in range(120):
                t0 = time.time()
                reply = ed.rpc("<copy-config><target><running/></target><source><config>"
                               + ifaces_xml(sets[r % 2]) + "</config></source></copy-config>",
                               timeout=30)
                assert reply_ok(reply), reply_errors(reply)
                note = fast.take_notification(timeout=10)
                assert note is not None, f"round {r}: no notification"
                lat.append(time.time() - t0)
                sizes += len(note.notification_xml)
                edits = content_of(note.notification_ele).findall(n("edit"))
                assert len(edits) == (1 if r == 0 else 800), r
                if backed_up_at is None and "client is not reading" in fresh.log.read_text():
                    backed_up_at = r
                if backed_up_at is not None and r >= backed_up_at + 5:
                    break
            assert backed_up_at is not None, "the slow subscriber's channel never filled up"
            print(f"\nslow subscriber: {sizes / 1e6:.1f} MB of notifications for a client that "
                  f"does not read (backed up after round {backed_up_at}); the other subscriber "
                  f"got each in median {statistics.median(lat) * 1000:.0f} ms (copy-config of "
                  f"800 interface changes included), max {max(lat) * 1000:.0f} ms")
            after = lat[backed_up_at + 1:]
            assert len(after) == 5 and max(after) < 5 * statistics.median(lat[:backed_up_at + 1])
    finally:
        slow.transport.close()
