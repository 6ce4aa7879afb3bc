"""keepalived notify lines → instance history, notifications and log lines (pure logic).

Real keepalived drives the same code in tests/test_vrrp_state.py; here the
log-state-change switch is checked line by line.
"""

from __future__ import annotations

import logging

from lxml import etree

from agent.backends.vrrp.configured import build_index
from agent.backends.vrrp.events import EventTracker
from agent.backends.vrrp.packets import Counters

IF = "urn:ietf:params:xml:ns:yang:ietf-interfaces"
IP = "urn:ietf:params:xml:ns:yang:ietf-ip"
VRRP = "urn:ietf:params:xml:ns:yang:ietf-vrrp"


def config(log_state_change: str | None) -> etree._Element:
    leaf = (f"<log-state-change>{log_state_change}</log-state-change>"
            if log_state_change is not None else "")
    return etree.fromstring(
        f'<data xmlns="urn:ietf:params:xml:ns:netconf:base:1.0"><interfaces xmlns="{IF}">'
        f'<interface><name>eth0</name><ipv4 xmlns="{IP}"><address><ip>192.0.2.2</ip>'
        f'<prefix-length>24</prefix-length></address><vrrp xmlns="{VRRP}"><vrrp-instance>'
        f"<vrid>7</vrid>{leaf}<virtual-ipv4-addresses><virtual-ipv4-address>"
        "<ipv4-address>192.0.2.1</ipv4-address></virtual-ipv4-address>"
        "</virtual-ipv4-addresses></vrrp-instance></vrrp></ipv4></interface></interfaces>"
        "</data>")


def tracker(cfg: etree._Element, published: list) -> EventTracker:
    idx = build_index(cfg)
    counters = Counters()
    return EventTracker(lambda: idx, lambda: counters, lambda key: "192.0.2.2",
                        lambda content, t: published.append(content))


def test_log_state_change_logs_transitions_at_info(caplog):
    published: list = []
    t = tracker(config("true"), published)
    with caplog.at_level(logging.INFO, logger="agent.backends.vrrp.events"):
        t.on_line('INSTANCE "VI_eth0_4_7" BACKUP 100')
        t.on_line('INSTANCE "VI_eth0_4_7" MASTER 100')
    lines = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert any("eth0 ipv4 vrid 7" in m and "-> backup" in m for m in lines), lines
    assert any("backup -> master" in m for m in lines), lines
    assert [etree.QName(e).localname for e in published] == ["vrrp-new-master-event"]


def test_without_log_state_change_transitions_stay_at_debug(caplog):
    published: list = []
    t = tracker(config(None), published)  # YANG default: false
    with caplog.at_level(logging.INFO, logger="agent.backends.vrrp.events"):
        t.on_line('INSTANCE "VI_eth0_4_7" MASTER 100')
    assert not [r for r in caplog.records if "vrid 7" in r.getMessage()]
    assert len(published) == 1  # the notification does not depend on the log switch
