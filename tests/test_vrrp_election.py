"""VRRP election and failover with real keepalived: two routers and a host on a bridged LAN.

Every router is an in-process agent (NetconfServer + the real backends) configured through
edit-config; keepalived runs in the router's namespace. Adverts every 0.1 s.
"""

from __future__ import annotations

import os
import signal
import time

import pytest
from polling import wait
from vrrplab import VrrpLab, iface_xml, inst, keepalived_reloads, neigh_mac, ping

VIP = "192.0.2.254"


@pytest.fixture(scope="module")
def lab(schema):
    with VrrpLab(schema, routers=2, host=True) as v:
        yield v


def configure(r, *instances4: str, v6: tuple[str, ...] = (), eth1: bool = False) -> None:
    x = iface_xml("eth0", [r.v4], instances4, v6=[r.v6] if v6 else [], instances6=v6)
    if eth1:  # a tracked interface must be configured (leafref) with ipv4 (must)
        e1 = iface_xml("eth1", ["10.9.9.1/24"])
        x = x[: x.rindex("</interfaces>")] + e1[e1.index("<interface>"):]
    r.edit_ok(x, default_operation="replace")


def states(lab, family: int, vrid: int) -> tuple[str | None, str | None]:
    r1, r2 = lab.routers
    return r1.state(family, vrid), r2.state(family, vrid)


def test_election_by_priority_accept_mode_and_virtual_mac(lab):
    r1, r2 = lab.routers
    configure(r1, inst(10, priority=200, accept=True, vips=[VIP]))
    configure(r2, inst(10, priority=100, accept=True, vips=[VIP]))
    wait(lambda: states(lab, 4, 10) == ("MASTER", "BACKUP"), what="r1 master, r2 backup")
    assert r1.vips(4, 10) == [VIP] and r2.vips(4, 10) == []
    assert ping(lab.lab, lab.host, VIP)  # accept-mode: the master answers for the VIP
    assert neigh_mac(lab.lab, lab.host, VIP) == "00:00:5e:00:01:0a"
    # accept-mode false: the master holds the VIP but does not answer packets sent to it
    configure(r1, inst(10, priority=200, accept=False, vips=[VIP]))
    assert r1.state(4, 10) == "MASTER"
    assert not ping(lab.lab, lab.host, VIP, timeout=0.5)


def test_preemption_and_hold_time(lab):
    r1, r2 = lab.routers
    configure(r1)
    configure(r2, inst(11, priority=100, vips=["192.0.2.11"]))
    wait(lambda: r2.state(4, 11) == "MASTER", what="r2 alone master")
    # preempt disabled: r1 (higher priority) stays backup
    configure(r1, inst(11, priority=200, preempt=False, vips=["192.0.2.11"]))
    wait(lambda: r1.state(4, 11) == "BACKUP", what="r1 backup")
    time.sleep(1.0)
    assert states(lab, 4, 11) == ("BACKUP", "MASTER")
    # preempt with a 1 s hold-time: r1 takes over, not before the hold-time
    configure(r1)
    wait(lambda: r2.state(4, 11) == "MASTER" and r1.state(4, 11) is None, what="r1 gone")
    t0 = time.monotonic()
    configure(r1, inst(11, priority=200, hold=1, vips=["192.0.2.11"]))
    wait(lambda: r1.state(4, 11) == "MASTER", timeout=6, what="r1 preempts")
    took = time.monotonic() - t0
    assert took >= 0.9, took
    wait(lambda: r2.state(4, 11) == "BACKUP", what="r2 backup")


def test_tracking_route_and_interface_lower_priority(lab):
    r1, r2 = lab.routers
    net = "198.51.100.0/24"
    lab.lab.run(r1.ns, "ip", "route", "replace", net, "dev", "eth1")
    configure(r1, inst(12, priority=200, vips=["192.0.2.12"],
                       track_if=[("eth1", 150)], track_net=[(net, 120)]), eth1=True)
    configure(r2, inst(12, priority=100, vips=["192.0.2.12"]))
    wait(lambda: states(lab, 4, 12) == ("MASTER", "BACKUP"), what="r1 master")
    # route removed: priority 200 - 120 = 80 < 100, mastership moves
    lab.lab.run(r1.ns, "ip", "route", "del", net)
    wait(lambda: states(lab, 4, 12) == ("BACKUP", "MASTER"), what="route loss moves master")
    d = r1.dump()["VI_eth0_4_12"]["data"]
    assert d["effective_priority"] == 80
    lab.lab.run(r1.ns, "ip", "route", "replace", net, "dev", "eth1")
    wait(lambda: states(lab, 4, 12) == ("MASTER", "BACKUP"), what="route back")
    # tracked interface down (its route goes too): 200 - 150 - 120 → keepalived's floor 1
    lab.lab.run(r1.ns, "ip", "link", "set", "eth1", "down")
    wait(lambda: states(lab, 4, 12) == ("BACKUP", "MASTER"), what="interface down moves")
    lab.lab.run(r1.ns, "ip", "link", "set", "eth1", "up")
    lab.lab.run(r1.ns, "ip", "route", "replace", net, "dev", "eth1")
    wait(lambda: states(lab, 4, 12) == ("MASTER", "BACKUP"), what="interface back")


def test_ipv6_instance(lab):
    r1, r2 = lab.routers
    vips = ["fe80::12:1", "2001:db8::254"]
    configure(r1, v6=(inst(13, priority=200, accept=True, vips=vips, family=6),))
    configure(r2, v6=(inst(13, priority=100, accept=True, vips=vips, family=6),))
    wait(lambda: states(lab, 6, 13) == ("MASTER", "BACKUP"), what="IPv6 election")
    assert set(r1.vips(6, 13)) >= set(vips) and not set(r2.vips(6, 13)) & set(vips)
    # each router's macvlan has its own (random) link-local: not the same address twice
    ll1 = [a for a in r1.vips(6, 13) if a.startswith("fe80") and a not in vips]
    ll2 = [a for a in r2.vips(6, 13) if a.startswith("fe80") and a not in vips]
    assert ll1 and ll2 and ll1 != ll2
    assert ping(lab.lab, lab.host, "2001:db8::254")
    assert neigh_mac(lab.lab, lab.host, "2001:db8::254") == "00:00:5e:00:02:0d"


def test_vrrp_v2(lab):
    r1, r2 = lab.routers
    configure(r1, inst(14, version=2, priority=200, secs=1, vips=["192.0.2.14"]))
    configure(r2, inst(14, version=2, priority=100, secs=1, vips=["192.0.2.14"]))
    wait(lambda: states(lab, 4, 14) == ("MASTER", "BACKUP"), timeout=15, step=0.2,
         what="v2 election")
    assert r1.dump()["VI_eth0_4_14"]["data"]["version"] == 2


def test_failover_on_link_down(lab):
    r1, r2 = lab.routers
    configure(r1, inst(15, priority=200, vips=["192.0.2.15"]))
    configure(r2, inst(15, priority=100, vips=["192.0.2.15"]))
    wait(lambda: states(lab, 4, 15) == ("MASTER", "BACKUP"), what="r1 master")
    lab.lab.run(lab.lan, "ip", "link", "set", "r1l0", "down")  # r1's LAN cable
    try:
        t0 = time.monotonic()
        wait(lambda: r2.state(4, 15) == "MASTER", timeout=3, step=0.02, what="failover")
        assert time.monotonic() - t0 < 1.5
    finally:
        lab.lab.run(lab.lan, "ip", "link", "set", "r1l0", "up")
    wait(lambda: states(lab, 4, 15) == ("MASTER", "BACKUP"), what="r1 preempts back")


def test_kill9_failover_restart_and_no_stale_vip(lab):
    r1, r2 = lab.routers
    configure(r1, inst(16, priority=200, vips=["192.0.2.16"]))
    configure(r2, inst(16, priority=100, vips=["192.0.2.16"]))
    wait(lambda: states(lab, 4, 16) == ("MASTER", "BACKUP"), what="r1 master")
    assert r1.vips(4, 16) == ["192.0.2.16"]
    old = r1.ka.pid
    os.kill(old, signal.SIGKILL)
    # the agent takes the VIP off at once (no duplicate address while keepalived restarts)
    wait(lambda: r1.vips(4, 16) == [] or r1.ka.pid not in (None, old), timeout=2, step=0.01,
         what="VIP removed")
    wait(lambda: r2.state(4, 16) == "MASTER", timeout=3, what="r2 takes over")
    wait(lambda: r1.ka.pid not in (None, old), what="keepalived restarted")
    wait(lambda: states(lab, 4, 16) == ("MASTER", "BACKUP"), what="r1 master again")
    assert r2.vips(4, 16) == []  # never two holders once settled
    assert r1.ka.restarts >= 1


def test_no_flap_on_unrelated_edit(lab):
    r1, r2 = lab.routers
    a = inst(20, priority=200, vips=["192.0.2.20"])
    b = inst(21, priority=100, vips=["192.0.2.21"])
    configure(r1, a, b)
    configure(r2, inst(20, priority=100, vips=["192.0.2.20"]),
              inst(21, priority=200, vips=["192.0.2.21"]))
    wait(lambda: states(lab, 4, 20) == ("MASTER", "BACKUP")
         and states(lab, 4, 21) == ("BACKUP", "MASTER"), what="settled")
    s1 = r1.dump()["VI_eth0_4_20"]["stats"]
    s2 = r2.dump()["VI_eth0_4_20"]["stats"]
    reloads = keepalived_reloads(r1)
    pid = r1.ka.pid
    # edits of other instances: change one, add one, remove one
    configure(r1, a, inst(21, priority=150, vips=["192.0.2.21"]),
              inst(22, priority=120, vips=["192.0.2.22"]))
    configure(r1, a, inst(22, priority=130, vips=["192.0.2.22"]))
    wait(lambda: keepalived_reloads(r1) >= reloads + 2, what="two reloads")
    time.sleep(0.5)
    assert r1.ka.pid == pid
    t1 = r1.dump()["VI_eth0_4_20"]["stats"]
    t2 = r2.dump()["VI_eth0_4_20"]["stats"]
    for k in ("become_master", "release_master"):
        assert t1[k] == s1[k] and t2[k] == s2[k], (k, s1, t1, s2, t2)
    assert states(lab, 4, 20) == ("MASTER", "BACKUP")
    assert t2["advert_rcvd"] > s2["advert_rcvd"]
