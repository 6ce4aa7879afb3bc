"""Every ietf-vrrp statistic moves when provoked: crafted VRRP packets from the peer.

Packets are built with struct (agent/backends/vrrp/packets.py) and sent from the peer
namespace's LAN port with a packet socket: wrong checksum, version, VRID, TTL, type,
length, address list, interval, priority 0. Each one must move exactly its own counter
by one (read with ``<get>``) and nothing else, and raise the matching notification.
"""

from __future__ import annotations

import time
from datetime import datetime

import pytest
from vrrp_state_lab import NS, Lab, Sender, get_state, instance, leaf, wait_for

from agent.backends.vrrp.configured import build_index
from agent.backends.vrrp.packets import (
    Counters,
    classify,
    inet_checksum,
    ipv4_packet,
    parse_ip,
    vrrp_message,
)

GLOBAL = ("checksum-errors", "version-errors", "vrid-errors", "ip-ttl-errors")
PER_INSTANCE = ("interval-errors", "priority-zero-pkts-rcvd", "priority-zero-pkts-sent",
                "invalid-type-pkts-rcvd", "address-list-errors", "packet-length-errors")
INSTANCES = ((4, 10), (4, 20), (6, 30))
V6 = ["fe80::30", "2001:db8::30"]


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    lab = Lab()
    try:
        lab.start_all(tmp_path_factory.mktemp("vrrpstats"))
        lab.sender = Sender(lab.r2)
        lab.svc.events.error_interval = 0.0  # every error notifies (default: 1/s per kind)
        yield lab
    finally:
        s = getattr(lab, "sender", None)
        if s is not None:
            s.close()
        lab.down()


def counters(lab) -> dict[str, int]:
    d = get_state(lab.client)
    out = {}
    for name in GLOBAL:
        out[name] = int(leaf(d, f"vrrp:vrrp/vrrp:statistics/vrrp:{name}"))
    for fam, vrid in INSTANCES:
        s = instance(d, fam, vrid).find("vrrp:statistics", NS)
        for name in PER_INSTANCE:
            out[f"{vrid}/{name}"] = int(leaf(s, f"vrrp:{name}"))
    return out


def v2(vrid=20, **kw) -> bytes:
    """A VRRPv2 advert for r1's VRID 20 (VIP 10.0.0.253, 1 s), priority 50 unless told."""
    kw.setdefault("priority", 50)
    kw.setdefault("addresses", ["10.0.0.253"])
    kw.setdefault("interval_cs", 100)
    kw.setdefault("version", 2)
    return vrrp_message(family=4, src="10.0.0.9", vrid=vrid, **kw)


def v6(vrid=30, **kw) -> bytes:
    """A VRRPv3 IPv6 advert for r1's VRID 30, priority 50 unless told."""
    kw.setdefault("priority", 50)
    kw.setdefault("addresses", V6)
    kw.setdefault("interval_cs", 10)
    kw.setdefault("version", 3)
    return vrrp_message(family=6, src="fe80::9", vrid=vrid, **kw)


# (counter that moves, how to send it, notification: (event, reason) or None)
CASES = {
    "checksum": ("checksum-errors", lambda s: s.send4(v2(checksum=0x1234)),
                 ("vrrp-protocol-error-event", "checksum-error")),
    "checksum6": ("checksum-errors", lambda s: s.send6(v6(checksum=0x4321)),
                  ("vrrp-protocol-error-event", "checksum-error")),
    "version": ("version-errors", lambda s: s.send4(v2(version=4)),
                ("vrrp-protocol-error-event", "version-error")),
    "version6": ("version-errors", lambda s: s.send6(v6(version=2)),
                 ("vrrp-protocol-error-event", "version-error")),
    "vrid": ("vrid-errors", lambda s: s.send4(v2(vrid=99)),
             ("vrrp-protocol-error-event", "vrid-error")),
    "ttl": ("ip-ttl-errors", lambda s: s.send4(v2(), ttl=64),
            ("vrrp-protocol-error-event", "ip-ttl-error")),
    "hoplimit": ("ip-ttl-errors", lambda s: s.send6(v6(), hop_limit=1),
                 ("vrrp-protocol-error-event", "ip-ttl-error")),
    "interval_v2": ("20/interval-errors", lambda s: s.send4(v2(interval_cs=300)),
                    ("vrrp-virtual-router-error-event", "interval-error")),
    "interval_v3": ("30/interval-errors", lambda s: s.send6(v6(interval_cs=50)),
                    ("vrrp-virtual-router-error-event", "interval-error")),
    "priority0": ("20/priority-zero-pkts-rcvd", lambda s: s.send4(v2(priority=0)), None),
    "type": ("20/invalid-type-pkts-rcvd", lambda s: s.send4(v2(vtype=2)), None),
    "addresses": ("20/address-list-errors", lambda s: s.send4(v2(addresses=["10.0.0.77"])),
                  ("vrrp-virtual-router-error-event", "address-list-error")),
    "addresses6": ("30/address-list-errors", lambda s: s.send6(v6(addresses=V6[:1])),
                   ("vrrp-virtual-router-error-event", "address-list-error")),
    "length": ("20/packet-length-errors", lambda s: s.send4(v2(count=3)),
               ("vrrp-virtual-router-error-event", "packet-length-error")),
    "length_short": ("20/packet-length-errors", lambda s: s.send4(v2()[:6]),
                     ("vrrp-virtual-router-error-event", "packet-length-error")),
}


@pytest.mark.parametrize("case", list(CASES))
def test_counter_moves(lab, case):
    counter, send, note = CASES[case]
    before = counters(lab)
    n_events = len(lab.bus.items)
    send(lab.sender)
    after = wait_for(lambda: (c := counters(lab))[counter] != before[counter] and c,
                     timeout=5)
    time.sleep(0.1)  # anything else that would move, moves now
    after = counters(lab)
    changed = {k: (before[k], after[k]) for k in before if before[k] != after[k]}
    assert changed == {counter: (before[counter], before[counter] + 1)}
    if note is not None:
        event, reason = note
        got = wait_for(lambda: [c for _, _, c in lab.bus.items[n_events:]
                                if c.tag.endswith("}" + event)], timeout=2)
        c = got[0]
        if event == "vrrp-protocol-error-event":
            assert leaf(c, "vrrp:protocol-error-reason") == f"vrrp:{reason}"
            assert c.find("vrrp:protocol-error-reason", NS).nsmap["vrrp"] == NS["vrrp"]
        else:
            vrid = counter.split("/")[0]
            fam = "ipv6" if vrid == "30" else "ipv4"
            assert leaf(c, "vrrp:interface") == "lan0"
            assert leaf(c, f"vrrp:{fam}/vrrp:vrid") == vrid
            assert leaf(c, "vrrp:virtual-router-error-reason") == f"vrrp:{reason}"


def _stat(lab, fam, vrid, name) -> int:
    return int(leaf(instance(get_state(lab.client), fam, vrid),
                    f"vrrp:statistics/vrrp:{name}"))


def test_keepalived_accepts_crafted_adverts(lab):
    """A valid crafted advert is one keepalived counts (our encoder is RFC-correct)."""
    for fam, vrid, send in ((4, 20, lambda: lab.sender.send4(v2())),
                            (6, 30, lambda: lab.sender.send6(v6()))):
        before = _stat(lab, fam, vrid, "advertisement-rcvd")
        send()
        wait_for(lambda f=fam, v=vrid, b=before: _stat(lab, f, v, "advertisement-rcvd") > b,
                 timeout=5)
    # r1 is master of 20: it advertises every second, the peer's adverts arrive on 10
    sent = _stat(lab, 4, 20, "advertisement-sent")
    rcvd = _stat(lab, 4, 10, "advertisement-rcvd")
    wait_for(lambda: _stat(lab, 4, 20, "advertisement-sent") > sent, timeout=5)
    wait_for(lambda: _stat(lab, 4, 10, "advertisement-rcvd") > rcvd, timeout=5)


def test_restart_priority_zero_sent_and_discontinuity(lab):
    """keepalived restarts: the masters send priority 0, counters restart (discontinuity)."""
    inst = instance(get_state(lab.client), 4, 20)
    disc = datetime.fromisoformat(leaf(inst, "vrrp:statistics/vrrp:discontinuity-datetime"))
    zero = _stat(lab, 4, 20, "priority-zero-pkts-sent")
    lab.ka1.stop(timeout=10)
    wait_for(lambda: _stat(lab, 4, 20, "priority-zero-pkts-sent") == zero + 1, timeout=5)
    assert _stat(lab, 6, 30, "priority-zero-pkts-sent") >= 1
    lab.start_r1()
    wait_for(lambda: leaf(instance(get_state(lab.client), 4, 20), "vrrp:state")
             == "vrrp:master", timeout=10)
    inst = instance(get_state(lab.client), 4, 20)
    assert datetime.fromisoformat(
        leaf(inst, "vrrp:statistics/vrrp:discontinuity-datetime")) > disc
    assert leaf(inst, "vrrp:statistics/vrrp:master-transitions") == "1"


# ---------------------------------------------------------------------------- units
def test_checksums_and_parse():
    msg = vrrp_message(family=4, src="10.0.0.9", vrid=7, priority=100,
                       addresses=["10.0.0.254"], interval_cs=100)
    pkt = ipv4_packet("10.0.0.9", "224.0.0.18", msg)
    assert inet_checksum(pkt[:20]) == 0  # a header with its checksum sums to zero
    ip = parse_ip(4, pkt + b"\0" * 14)  # Ethernet padding is ignored
    assert ip is not None and ip.payload == msg and ip.ttl == 255
    assert parse_ip(4, ipv4_packet("10.0.0.9", "224.0.0.18", msg, proto=17)) is None


def test_classify_order():
    from lxml import etree
    from vrrp_state_lab import R1_CONFIG

    from agent.datastore.schema import Schema  # noqa: F401  (config parsed as plain XML)

    root = etree.fromstring(f'<data xmlns="{NS["nc"]}">{R1_CONFIG}</data>')
    idx = build_index(root)
    assert set(idx.instances) == {("lan0", 4, 10), ("lan0", 4, 20), ("lan0", 6, 30)}
    assert idx.get("lan0", 4, 20).interval_cs == 100
    assert idx.get("lan0", 6, 30).vips == frozenset(V6)

    def verdict(payload, ttl=255, fam=4):
        from agent.backends.vrrp.packets import IpPacket

        src, dst = ("10.0.0.9", "224.0.0.18") if fam == 4 else ("fe80::9", "ff02::12")
        return classify("lan0", IpPacket(fam, src, dst, ttl, payload), idx)

    # RFC 5798 §7.1: TTL, version, complete packet, checksum, VRID, then the instance's
    # checks (its version, type, interval, addresses). Each packet below fails two
    # checks: the earlier one must win.
    assert verdict(v2(checksum=1), ttl=1).error == "ip-ttl-error"
    assert verdict(v2(version=1, checksum=1)).error == "version-error"
    assert verdict(v2(version=1, count=9)).error == "version-error"
    # length before checksum (a truncated packet is not checksummed) ...
    v = verdict(v2(count=9, checksum=1))
    assert (v.error, v.key) == ("packet-length-error", ("lan0", 4, 20))
    # ... and before the instance's version: a VRRPv3 packet cut short for v2 instance 20
    v = verdict(v2(version=3)[:6])
    assert (v.error, v.key) == ("packet-length-error", ("lan0", 4, 20))
    # checksum before VRID: a corrupt packet for an unknown VRID is a checksum error
    assert verdict(v2(vrid=99, checksum=1)).error == "checksum-error"
    assert verdict(v6(vrid=99, checksum=1), fam=6).error == "checksum-error"
    assert verdict(v6(vrid=20), fam=6).error == "vrid-error"  # 20 is an IPv4 instance
    # checksum before the instance's version (v3 packet, v2 instance 20)
    assert verdict(v2(version=3, checksum=1)).error == "checksum-error"
    v = verdict(v2(version=3, interval_cs=100))
    assert (v.error, v.key) == ("version-error", ("lan0", 4, 20))
    # a truncated packet for no configured VRID: no instance to count a length error in
    assert verdict(v2(vrid=99, count=9)).error == "vrid-error"
    assert verdict(v2()[:1]).error == "vrid-error"
    assert verdict(v2(vrid=99)).error == "vrid-error"
    assert verdict(v2(checksum=1)).error == "checksum-error"
    # VRID (and checksum) before the type
    assert verdict(v2(vrid=99, vtype=3)).error == "vrid-error"
    assert verdict(v2(vtype=3, checksum=1)).error == "checksum-error"
    assert verdict(v2(vtype=3)).invalid_type
    v = verdict(v2(priority=0, interval_cs=200))
    assert (v.error, v.priority_zero) == ("interval-error", True)
    assert verdict(v2()).error is None
    assert verdict(v6(), fam=6).error is None
    assert verdict(v6(version=2), fam=6).error == "version-error"
    c = Counters()
    c.count("lan0", parse_ip(4, ipv4_packet("10.0.0.9", "224.0.0.18", v2())), idx, 1.0)
    assert c.instances[("lan0", 4, 20)].last_adv.source == "10.0.0.9"
