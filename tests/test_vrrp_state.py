"""ietf-vrrp operational state from a real keepalived: leaves, cache, notifications.

A LAN in namespaces (tests/vrrp_state_lab.py): r1 runs keepalived through the agent's
supervisor and the VRRP state side attached to an in-process server, r2 is a peer
keepalived. Notifications are read from the server's event bus.
"""

from __future__ import annotations

import time
from datetime import datetime

import pytest
from vrrp_state_lab import NS, VRRP, Lab, Sniffer, get_state, instance, leaf, wait_for

from agent.backends.vrrp.events import EventTracker, History, master_down_interval_cs
from agent.backends.vrrp.packets import Counters, IpPacket, vrrp_message


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    lab = Lab()
    try:
        lab.start_all(tmp_path_factory.mktemp("vrrpstate"))
        yield lab
    finally:
        lab.down()


def _dt(text: str | None) -> float:
    assert text, "missing date-and-time"
    return datetime.fromisoformat(text).timestamp()


def test_every_state_leaf(lab):
    d = get_state(lab.client)
    b = instance(d, 4, 10)  # backup, peer 10.0.0.2 is master with priority 200
    assert leaf(b, "vrrp:state") == "vrrp:backup"
    st = b.find("vrrp:state", NS)
    assert st.nsmap.get("vrrp") == VRRP  # identityref prefix is bound in the reply
    assert leaf(b, "vrrp:is-owner") == "false"
    assert leaf(b, "vrrp:last-adv-source") == "10.0.0.2"
    # RFC 5798: 3 * 10 cs + (256 - 100) * 10 / 256 cs; skew in microseconds
    assert leaf(b, "vrrp:master-down-interval") == "36"
    assert leaf(b, "vrrp:skew-time") == str(156 * 10 * 10_000 // 256)
    assert leaf(b, "vrrp:last-event") == "vrrp:vrrp-event-startup"
    assert leaf(b, "vrrp:new-master-reason") == "not-master"
    assert abs(_dt(leaf(b, "vrrp:up-datetime")) - time.time()) < 120
    s = b.find("vrrp:statistics", NS)
    assert int(leaf(s, "vrrp:advertisement-rcvd")) > 0
    assert leaf(s, "vrrp:advertisement-sent") == "0"
    assert leaf(s, "vrrp:master-transitions") == "0"
    assert _dt(leaf(s, "vrrp:discontinuity-datetime")) >= lab.svc.started - 1

    m = instance(d, 4, 20)  # v2, alone: master, advertising from 10.0.0.1
    assert leaf(m, "vrrp:state") == "vrrp:master"
    assert leaf(m, "vrrp:last-adv-source") == "10.0.0.1"
    assert leaf(m, "vrrp:master-down-interval") == str(300 + 609375 // 10_000)
    assert leaf(m, "vrrp:skew-time") == "609375"
    assert leaf(m, "vrrp:new-master-reason") == "no-response"
    assert leaf(m, "vrrp:last-event") == "vrrp:vrrp-event-master-timeout"
    sm = m.find("vrrp:statistics", NS)
    assert leaf(sm, "vrrp:master-transitions") == "1"
    assert int(leaf(sm, "vrrp:advertisement-sent")) > 0

    v6 = instance(d, 6, 30)
    assert leaf(v6, "vrrp:state") == "vrrp:master"
    assert leaf(v6, "vrrp:last-adv-source") == "fe80::a1"

    g = d.find("vrrp:vrrp", NS)
    assert leaf(g, "vrrp:virtual-routers") == "3"
    assert leaf(g, "vrrp:interfaces") == "1"
    for name in ("checksum-errors", "version-errors", "vrid-errors", "ip-ttl-errors"):
        assert leaf(g, f"vrrp:statistics/vrrp:{name}") is not None


def test_state_filter_and_cache(lab):
    r = lab.client.rpc(
        f'<get><filter><interfaces xmlns="{NS["if"]}"><interface><name>lan0</name>'
        f'<ipv4 xmlns="{NS["ip"]}"><vrrp xmlns="{VRRP}"><vrrp-instance><vrid>20</vrid>'
        "<state/></vrrp-instance></vrrp></ipv4></interface></interfaces></filter></get>")
    states = r.findall(".//vrrp:state", NS)
    assert [s.text for s in states] == ["vrrp:master"]
    # one dump shared by requests within the cache age
    lab.svc.status.invalidate()
    n = lab.svc.status.dumps
    get_state(lab.client)
    get_state(lab.client)
    assert lab.svc.status.dumps == n + 1
    time.sleep(0.15)
    get_state(lab.client)
    assert lab.svc.status.dumps == n + 2


def test_new_master_notification_within_200ms(lab):
    """The peer (master of VRID 10) stops: r1 takes over; the notification reaches the bus
    within 200 ms of r1's first advertisement as seen on the peer's LAN port."""
    sniff = Sniffer(lab.r2)
    try:
        before = len(lab.bus.named("vrrp-new-master-event"))
        t_stop = time.time()
        lab.ka2.stop(timeout=10)
        first = wait_for(lambda: next((t for t, src, vrid, prio in sniff.seen
                                       if src == "10.0.0.1" and vrid == 10 and prio > 0
                                       and t >= t_stop), None), timeout=5, step=0.005)
        wait_for(lambda: len(lab.bus.named("vrrp-new-master-event")) > before, timeout=2,
                 step=0.005)
        arrival, _, content = lab.bus.named("vrrp-new-master-event")[before]
        print(f"new-master notification {arrival - first:+.3f} s from the first advert")
        assert abs(arrival - first) <= 0.2, (arrival, first)
        assert content.nsmap[None] == VRRP
        assert leaf(content, "vrrp:master-ip-address") == "10.0.0.1"
        # the old master sent priority 0: nobody answers any more
        assert leaf(content, "vrrp:new-master-reason") == "no-response"
        b = instance(get_state(lab.client), 4, 10)
        assert leaf(b, "vrrp:state") == "vrrp:master"
        assert leaf(b, "vrrp:new-master-reason") == "no-response"
        assert leaf(b, "vrrp:last-event") == "vrrp:vrrp-event-master-timeout"
        assert leaf(b, "vrrp:statistics/vrrp:master-transitions") == "1"
        assert int(leaf(b, "vrrp:statistics/vrrp:priority-zero-pkts-rcvd")) >= 1
        # the peer comes back with priority 200 and preempts: r1 is backup again
        lab.start_r2()
        wait_for(lambda: leaf(instance(get_state(lab.client), 4, 10), "vrrp:state")
                 == "vrrp:backup", timeout=10)
        b = instance(get_state(lab.client), 4, 10)
        assert leaf(b, "vrrp:last-event") == "vrrp:vrrp-event-higher-priority-backup"
        assert leaf(b, "vrrp:last-adv-source") == "10.0.0.2"
    finally:
        sniff.close()


# ---------------------------------------------------------------------------- units
def test_master_down_interval_rfc5798():
    # v3, 1 s adverts, priority 100: 300 + 156*100/256 = 360.9 cs, skew 609375 us
    assert master_down_interval_cs(3, 1.0, 100) == (360, 609375)
    assert master_down_interval_cs(3, 0.1, 200) == (32, 21875)
    assert master_down_interval_cs(2, 1.0, 255) == (300, 3906)


def test_fifo_lines_drive_history():
    from agent.backends.vrrp.configured import build_index

    published = []
    counters = Counters()
    tracker = EventTracker(lambda: build_index(None), lambda: counters,
                           lambda key: "10.0.0.1", lambda c, t: published.append((c, t)))
    key = ("eth0", 4, 7)
    tracker.on_line('INSTANCE "VI_eth0_4_7" BACKUP 100', 1000.0)
    assert tracker.histories[key] == History("backup", "vrrp-event-startup", "not-master",
                                             1000.0, 0)
    # a lower-priority master was advertising a moment ago: preempted
    msg = vrrp_message(family=4, src="10.0.0.2", vrid=7, priority=50, addresses=[],
                       interval_cs=100)
    counters.count("eth0", IpPacket(4, "10.0.0.2", "224.0.0.18", 255, msg),
                   _index_with(key), 1000.5)
    tracker.index = lambda: _index_with(key)
    tracker.on_line('INSTANCE "VI_eth0_4_7" MASTER 100', 1001.0)
    h = tracker.histories[key]
    assert (h.state, h.new_master_reason, h.last_event) == (
        "master", "preempted", "vrrp-event-lower-priority-master")
    (content, t), = published
    assert t == 1001.0 and leaf(content, "vrrp:new-master-reason") == "preempted"
    tracker.on_line('INSTANCE "VI_eth0_4_7" FAULT 100', 1002.0)
    assert (h.state, h.up_since, h.last_event) == ("initialize", None,
                                                   "vrrp-event-interface-down")
    tracker.on_line('INSTANCE "VI_eth0_4_7" BACKUP 100', 1003.0)
    assert (h.state, h.up_since, h.last_event) == ("backup", 1003.0, "vrrp-event-interface-up")
    tracker.on_line('INSTANCE "VI_eth0_4_7" STOP 100', 1004.0)
    assert h.last_event == "vrrp-event-shutdown"
    tracker.on_line("garbage", 1005.0)
    tracker.on_line('INSTANCE "foreign" MASTER 1', 1005.0)
    assert len(published) == 1


def test_master_timeout_is_not_taken_for_preemption():
    """A higher-priority backup whose lower-priority master went silent takes over
    Master_Down_Interval after the last advert: no-response, even when the watcher
    timestamped that advert late (the margin to Master_Down_Interval is ~2 ms at 0.1 s
    adverts); with preemption off, a recent lower advert never means preempted."""
    from agent.backends.vrrp.configured import build_index

    key = ("eth0", 4, 7)
    for preempt, rx_age, want in ((True, 0.3185, "no-response"), (True, 0.05, "preempted"),
                                  (False, 0.05, "no-response")):
        counters = Counters()
        tracker = EventTracker(lambda: build_index(None), lambda c=counters: c,
                               lambda key: "10.0.0.1", lambda c, t: None)
        tracker.on_line('INSTANCE "VI_eth0_4_7" BACKUP 200', 1000.0)
        msg = vrrp_message(family=4, src="10.0.0.2", vrid=7, priority=100, addresses=[],
                           interval_cs=10)
        counters.count("eth0", IpPacket(4, "10.0.0.2", "224.0.0.18", 255, msg),
                       _index_with(key, priority=200, preempt=preempt), 1001.0)
        tracker.index = lambda p=preempt: _index_with(key, priority=200, preempt=p)
        tracker.on_line('INSTANCE "VI_eth0_4_7" MASTER 200', 1001.0 + rx_age)
        assert tracker.histories[key].new_master_reason == want, (preempt, rx_age)


def _index_with(key, priority: int = 100, preempt: bool = True):
    from agent.backends.vrrp.configured import ConfigIndex, InstanceConfig

    ifname, fam, vrid = key
    return ConfigIndex({key: InstanceConfig(ifname, fam, vrid, 3, 100, priority, preempt, 0,
                                            frozenset(), False)})


_DROPS_FIRST_SIGNAL = r'''
import json, os, signal, sys, time
path = sys.argv[1]
seen = []
def on_json(sig, frame):
    seen.append(sig)
    if len(seen) >= 2:  # the first one is lost, as keepalived loses it while reloading
        with open(path + ".new", "w") as f:
            json.dump([{"data": {"iname": "VI_eth0_4_7", "state": 2, "base_priority": 100},
                        "stats": {"advert_sent": len(seen)}}], f)
        os.replace(path + ".new", path)
signal.signal(36, on_json)
print("ready", flush=True)
while True:
    time.sleep(1)
'''


def test_json_dump_signal_sent_again_when_lost(tmp_path):
    """keepalived drops a signal 36 that arrives during a SIGHUP reload: the reader signals
    again instead of waiting its whole timeout (a ``<get>`` right after an edit)."""
    import subprocess
    import sys
    from pathlib import Path

    from agent.backends.vrrp.status import StatusReader

    dump = tmp_path / "keepalived.json"
    p = subprocess.Popen([sys.executable, "-c", _DROPS_FIRST_SIGNAL, str(dump)],
                         stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().strip() == "ready"

        class Ka:
            netns, fifo_path, pid, vrrp_pid = None, tmp_path / "fifo", p.pid, p.pid

            def root(self, path: str | Path) -> Path:
                return dump

        reader = StatusReader(Ka(), max_age=0, timeout=2.0, resend=0.1)
        t0 = time.monotonic()
        snap = reader.snapshot()
        took = time.monotonic() - t0
        st = snap.instances[("eth0", 4, 7)]
        assert st.state == 2 and st.stats["advert_sent"] == 2
        assert took < 1.0, took
    finally:
        p.kill()
        p.wait()
