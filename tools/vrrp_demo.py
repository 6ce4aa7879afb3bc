#!/usr/bin/env python3
"""VRRP failover demo on the lab (``netconf-vrrp-agent lab up``), driven over NETCONF.

1. configures, with ncclient, on both routers: the LAN interface with its addresses, a
   VRRPv3 IPv4 instance (VRID 1, virtual IP 192.0.2.1) and a VRRPv3 IPv6 instance (VRID 1,
   virtual addresses fe80::1 and 2001:db8::1), priority 200 on r1 and 100 on r2,
   advertisements every 0.1 s, accept-mode so the host can ping the gateway addresses;
2. waits for the election and shows master and backup (``<get>`` of the ietf-vrrp state);
3. subscribes to notifications on r2 (``create-subscription``);
4. starts ICMP and ICMPv6 echo probes from the host namespace to its default gateways
   (192.0.2.1 and fe80::1);
5. takes the master's LAN link down (``enabled`` false over NETCONF, or ``--fail switch``:
   the switch port goes down, like a pulled cable);
6. shows the failover, the notification r2 sent, and the host's gateway reachability gap;
7. restores the link and shows r1 taking mastership back (preemption).

The last line is machine-readable:
``RESULT failover_ms=... gap_ms=... notification=... gap6_ms=...`` (``gap_ms``: IPv4).
Exit status 0 when the failover happened and the host's gaps were measured, 1 otherwise.

    python3 tools/vrrp_demo.py [--state-dir DIR] [--fail netconf|switch]

``--probe ADDR`` is the probe itself (run by the demo inside the host namespace): it sends an
ICMP (or ICMPv6) echo every ``--interval`` seconds and prints ``<seq> <monotonic time>`` per reply.
"""

from __future__ import annotations

import argparse
import os
import select
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

try:
    from agent import lab as labmod
except ModuleNotFoundError:  # run as `python3 tools/vrrp_demo.py` from a checkout
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from agent import lab as labmod

from lxml import etree

NC = "urn:ietf:params:xml:ns:netconf:base:1.0"
NOTIF = "urn:ietf:params:xml:ns:netconf:notification:1.0"
IF = labmod.IF_NS
IP = labmod.IP_NS
VRRP = labmod.VRRP_NS
VRID = 1
ADVERT_CENTI = 10
PRIORITIES = {"r1": 200, "r2": 100}


# ---- the probe (runs in the host namespace) -----------------------------------------------


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


ECHO_REQUEST = {socket.AF_INET: 8, socket.AF_INET6: 128}
ECHO_REPLY = {socket.AF_INET: 0, socket.AF_INET6: 129}


def _echo(family: int, ident: int, seq: int) -> bytes:
    payload = b"nva-probe" + bytes(23)
    kind = ECHO_REQUEST[family]
    header = struct.pack("!BBHHH", kind, 0, 0, ident, seq & 0xFFFF)
    # ICMPv6: the kernel fills in the checksum (it covers a pseudo-header we don't build)
    csum = _checksum(header + payload) if family == socket.AF_INET else 0
    return struct.pack("!BBHHH", kind, 0, csum, ident, seq & 0xFFFF) + payload


def run_probe(target: str, interval: float) -> int:
    """ICMP / ICMPv6 echo every ``interval`` s to ``target`` (``fe80::1%eth0`` for a
    link-local address); prints ``seq time`` per reply, forever."""
    family = socket.AF_INET6 if ":" in target else socket.AF_INET
    proto = socket.IPPROTO_ICMPV6 if family == socket.AF_INET6 else socket.IPPROTO_ICMP
    dest = socket.getaddrinfo(target, None, family, socket.SOCK_RAW, proto)[0][4]
    sock = socket.socket(family, socket.SOCK_RAW, proto)
    sock.setblocking(False)
    ident = os.getpid() & 0xFFFF
    seq = 0
    sent_at: dict[int, int] = {}  # 16-bit seq on the wire -> full seq
    next_send = time.monotonic()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    while True:
        now = time.monotonic()
        if now >= next_send:
            try:
                sock.sendto(_echo(family, ident, seq), dest)
            except OSError:
                pass  # e.g. EHOSTUNREACH while the neighbour entry fails: a lost probe
            sent_at[seq & 0xFFFF] = seq
            seq += 1
            next_send += interval
            if next_send < now:  # we fell behind (CPU contention): don't burst
                next_send = now + interval
        ready, _, _ = select.select([sock], [], [], max(0.0, next_send - time.monotonic()))
        if not ready:
            continue
        try:
            data = sock.recv(2048)
        except BlockingIOError:
            continue
        # an IPv4 raw socket hands over the IP header too, an IPv6 one does not
        ihl = (data[0] & 0x0F) * 4 if family == socket.AF_INET else 0
        icmp_type, _, _, rid, rseq = struct.unpack("!BBHHH", data[ihl:ihl + 8])
        if icmp_type == ECHO_REPLY[family] and rid == ident and rseq in sent_at:
            print(f"{sent_at[rseq]} {time.monotonic():.6f}", flush=True)


@dataclass
class Probe:
    """The probe process in the host namespace and the replies it reported."""

    netns: str
    target: str
    interval: float
    replies: list[tuple[int, float]] = field(default_factory=list)
    proc: subprocess.Popen[str] | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> None:
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", self.netns, sys.executable, str(Path(__file__).resolve()),
             "--probe", self.target, "--interval", str(self.interval)],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
            text=True,
        )
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                seq, t = line.split()
                with self._lock:
                    self.replies.append((int(seq), float(t)))
            except ValueError:
                continue

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def count(self) -> int:
        with self._lock:
            return len(self.replies)

    def last(self) -> float | None:
        with self._lock:
            return self.replies[-1][1] if self.replies else None

    def gap(self, since: float) -> tuple[float, int]:
        """Longest silence (s) between two consecutive replies around/after ``since`` and
        the probes lost in it."""
        with self._lock:
            rs = [r for r in self.replies if r[1] >= since]
        best, lost = 0.0, 0
        for (s0, t0), (s1, t1) in zip(rs, rs[1:], strict=False):
            if t1 - t0 > best:
                best, lost = t1 - t0, max(0, s1 - s0 - 1)
        return best, lost


# ---- NETCONF --------------------------------------------------------------------------------


def connect(router: labmod.Router, lab: labmod.Lab) -> Any:
    from ncclient import manager
    from ncclient.transport import session as nc_session

    nc_session.TICK = 0.001  # ncclient waits TICK seconds before each send (default 0.1)
    return manager.connect(
        host=router.listen, port=router.port, username=lab.user, password=lab.password(),
        hostkey_verify=False, look_for_keys=False, allow_agent=False, timeout=30,
    )


def vrrp_xml(router: labmod.Router, family: str, vips: list[str]) -> str:
    """The ietf-vrrp container of the LAN interface's ``family`` (ipv4 / ipv6) with VRID 1."""
    addrs = "".join(f"<virtual-{family}-address><{family}-address>{a}</{family}-address>"
                    f"</virtual-{family}-address>" for a in vips)
    return f"""
        <vrrp xmlns="{VRRP}" xmlns:vrrp="{VRRP}">
          <vrrp-instance>
            <vrid>{VRID}</vrid>
            <version>vrrp:vrrp-v3</version>
            <priority>{PRIORITIES[router.name]}</priority>
            <accept-mode>true</accept-mode>
            <advertise-interval-centi-sec>{ADVERT_CENTI}</advertise-interval-centi-sec>
            <virtual-{family}-addresses>{addrs}</virtual-{family}-addresses>
          </vrrp-instance>
        </vrrp>"""


def router_config(lab: labmod.Lab, router: labmod.Router, enabled: bool = True) -> str:
    v4, v4len = router.lan_ipv4.split("/")
    v6, v6len = router.lan_ipv6.split("/")
    return f"""
<config xmlns="{NC}">
  <interfaces xmlns="{IF}" xmlns:ianaift="urn:ietf:params:xml:ns:yang:iana-if-type">
    <interface>
      <name>{lab.lan_if}</name>
      <type>ianaift:ethernetCsmacd</type>
      <enabled>{str(enabled).lower()}</enabled>
      <ipv4 xmlns="{IP}">
        <address><ip>{v4}</ip><prefix-length>{v4len}</prefix-length></address>
        {vrrp_xml(router, "ipv4", [lab.vip])}
      </ipv4>
      <ipv6 xmlns="{IP}">
        <address><ip>{v6}</ip><prefix-length>{v6len}</prefix-length></address>
        {vrrp_xml(router, "ipv6", [lab.vip6, lab.vip6_global])}
      </ipv6>
    </interface>
  </interfaces>
</config>"""


def enabled_config(lab: labmod.Lab, enabled: bool) -> str:
    return (f'<config xmlns="{NC}"><interfaces xmlns="{IF}"><interface>'
            f"<name>{lab.lan_if}</name><enabled>{str(enabled).lower()}</enabled>"
            "</interface></interfaces></config>")


def edit(m: Any, config: str) -> float:
    """edit-config on candidate + commit when the agent has :candidate, else on running;
    returns the time it took in seconds."""
    t0 = time.monotonic()
    if ":candidate" in m.server_capabilities:
        m.edit_config(target="candidate", config=config)
        m.commit()
    else:
        m.edit_config(target="running", config=config)
    return time.monotonic() - t0


FAMILIES = ("ipv4", "ipv6")
State = dict[str, dict[str, str]]  # family -> {"state": "master", "priority": "200", ...}


def vrrp_state(m: Any, lab: labmod.Lab) -> State:
    """The IPv4 and IPv6 instances VRID 1 on the LAN interface, from one ``<get>``
    (state "unknown" when the agent does not report one)."""
    flt = (f'<interfaces xmlns="{IF}"><interface><name>{lab.lan_if}</name>' + "".join(
        f'<{fam} xmlns="{IP}"><vrrp xmlns="{VRRP}"><vrrp-instance><vrid>{VRID}</vrid>'
        f"</vrrp-instance></vrrp></{fam}>" for fam in FAMILIES) + "</interface></interfaces>")

    def unknown(error: str) -> State:
        return {fam: {"state": "unknown", "error": error} for fam in FAMILIES}

    try:
        data = m.get(filter=("subtree", flt)).data_ele
    except Exception as exc:  # noqa: BLE001 - shown as unknown
        return unknown(str(exc))
    found = unknown("no ietf-vrrp state in <get>")
    for inst in labmod.vrrp_instances(data):
        if inst["vrid"] == str(VRID) and inst["family"] in found:
            found[inst["family"]] = inst
    return found


def wait_states(sessions: dict[str, Any], lab: labmod.Lab, want: dict[str, str],
                timeout: float) -> tuple[dict[str, State], float | None]:
    """Poll the routers until both instances of each are in the wanted state;
    (last states, seconds or None)."""
    t0 = time.monotonic()
    states: dict[str, State] = {}
    while True:
        states = {name: vrrp_state(m, lab) for name, m in sessions.items()}
        if all(states[n][fam]["state"] == s for n, s in want.items() for fam in FAMILIES):
            return states, time.monotonic() - t0
        if time.monotonic() - t0 > timeout:
            return states, None
        time.sleep(0.02)


def describe_notification(xml: str) -> tuple[str, str]:
    """(event name, "leaf=value ..." text) of a NETCONF notification."""
    root = etree.fromstring(xml.encode())
    event_time = root.findtext(f"{{{NOTIF}}}eventTime") or "?"
    for child in root:
        if child.tag == f"{{{NOTIF}}}eventTime":
            continue
        name = etree.QName(child).localname
        leaves = [f"{etree.QName(e).localname}={(e.text or '').strip()}"
                  for e in child.iter() if e is not child and len(e) == 0]
        return name, f"{' '.join(leaves)} (eventTime {event_time})"
    return "?", xml


def master_down_ms(priority: int) -> float:
    """RFC 5798 Master_Down_Interval of a backup with ``priority``, at our advert interval."""
    skew = (256 - priority) * ADVERT_CENTI / 256
    return (3 * ADVERT_CENTI + skew) * 10


# ---- the demo ---------------------------------------------------------------------------


def _probes(n: int) -> str:
    return f"{n} probe{'' if n == 1 else 's'}"


def _fmt_state(name: str, st: State) -> str:
    v4, v6 = st["ipv4"], st["ipv6"]
    prio = f" priority {v4['priority']}" if "priority" in v4 else ""
    return f"{name} {v4['state'].upper()} (IPv6 {v6['state'].upper()}){prio}"


def _link(lab: labmod.Lab, how: str, up: bool, m_r1: Any) -> float:
    if how == "netconf":
        return edit(m_r1, enabled_config(lab, up))
    t0 = time.monotonic()
    port = lab.routers[0].name  # the switch port facing r1
    subprocess.run(["ip", "-n", lab.lan_netns, "link", "set", port, "up" if up else "down"],
                   check=True)
    return time.monotonic() - t0


class _Abort(Exception):
    """A step failed (already reported): skip to the result line."""


def demo(lab: labmod.Lab, fail: str, interval: float, timeout: float) -> int:
    r1, r2 = lab.routers
    print(f"VRRP demo on the lab in {lab.state_dir}: routers r1 ({r1.listen}:{r1.port}) and "
          f"r2 ({r2.listen}:{r2.port}), host {lab.host_netns}, gateways {lab.vip} and {lab.vip6}")
    sessions = {r.name: connect(r, lab) for r in lab.routers}
    notif_session = None
    gw6 = f"{lab.vip6}%{lab.host_if}"
    probes = {"IPv4": Probe(lab.host_netns, lab.vip, interval),
              "IPv6": Probe(lab.host_netns, gw6, interval)}
    gateways = {"IPv4": lab.vip, "IPv6": gw6}
    failover_ms: float | None = None
    gaps: dict[str, float | None] = {"IPv4": None, "IPv6": None}
    event = "none"
    try:
        print("\n1. configure both routers (edit-config over NETCONF)")
        for r in lab.routers:
            took = edit(sessions[r.name], router_config(lab, r))
            print(f"   {r.name}: {lab.lan_if} {r.lan_ipv4} {r.lan_ipv6}, VRRPv3 vrid {VRID} "
                  f"IPv4 vip {lab.vip} and IPv6 vips {lab.vip6} {lab.vip6_global}, priority "
                  f"{PRIORITIES[r.name]}, adverts every {ADVERT_CENTI / 100:.2f} s ... ok "
                  f"({took * 1000:.0f} ms)")

        print("\n2. election (<get> of the ietf-vrrp state)")
        states, took = wait_states(sessions, lab, {"r1": "master", "r2": "backup"}, timeout)
        line = ", ".join(_fmt_state(n, s) for n, s in states.items())
        if took is None:
            print(f"   no steady master/backup after {timeout:.0f} s: {line}")
            for n, s in states.items():
                for fam in FAMILIES:
                    if s[fam].get("error"):
                        print(f"   {n} {fam}: {s[fam]['error']}")
            raise _Abort
        print(f"   {line}  (steady {took:.2f} s after the edit)")

        print("\n3. subscribe to notifications on r2 (create-subscription, stream NETCONF)")
        notif_session = connect(r2, lab)
        notif_session.create_subscription()
        print("   subscribed")

        print(f"\n4. host {lab.host_netns} probes its gateways {lab.vip} and {gw6} "
              f"(ICMP / ICMPv6 echo every {interval * 1000:.0f} ms)")
        for probe in probes.values():
            probe.start()
        deadline = time.monotonic() + timeout
        while (min(p.count() for p in probes.values()) < 20
               and time.monotonic() < deadline):
            time.sleep(0.02)
        counts = ", ".join(f"{fam} {p.count()}" for fam, p in probes.items())
        if min(p.count() for p in probes.values()) < 20:
            print(f"   a gateway does not answer (replies: {counts})")
            raise _Abort
        print(f"   both answer (replies so far: {counts})")
        while notif_session.take_notification(block=False) is not None:
            pass  # anything from before the failure

        how = ("edit-config: interface lan0 enabled false" if fail == "netconf"
               else f"switch port {r1.name} down in {lab.lan_netns}")
        print(f"\n5. take the master's link down: r1 {how}")
        t_fail = time.monotonic()
        _link(lab, fail, False, sessions["r1"])
        states, took = wait_states({"r2": sessions["r2"]}, lab, {"r2": "master"}, timeout)
        if took is None:
            print(f"   r2 did not become master in {timeout:.0f} s: "
                  f"{_fmt_state('r2', states['r2'])}")
        else:
            failover_ms = (time.monotonic() - t_fail) * 1000
            st1 = vrrp_state(sessions["r1"], lab)
            print(f"   failover: r2 MASTER (IPv4 and IPv6) {failover_ms:.0f} ms after the link "
                  "went down "
                  f"({_fmt_state('r1', st1)}); RFC 5798 Master_Down_Interval for r2: "
                  f"{master_down_ms(PRIORITIES['r2']):.0f} ms")
        deadline = time.monotonic() + 3.0
        masters = 0
        while time.monotonic() < deadline:
            n = notif_session.take_notification(block=True, timeout=0.2)
            if n is None:
                continue
            name, text = describe_notification(n.notification_xml)
            print(f"   notification from r2 (+{(time.monotonic() - t_fail) * 1000:.0f} ms): "
                  f"{name} {text}")
            if name == "vrrp-new-master-event":
                event = name
                masters += 1
                if masters == len(FAMILIES):
                    break
        if masters < len(FAMILIES):
            print(f"   {masters} of {len(FAMILIES)} vrrp-new-master-event notifications from r2 "
                  "within 3 s")
        # let the probes see the gateways come back (or give up)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and failover_ms is not None:
            lasts = [p.last() for p in probes.values()]
            if all(t is not None and t > time.monotonic() - 0.05 for t in lasts):
                break
            time.sleep(0.05)
        time.sleep(0.3)
        for fam, probe in probes.items():
            gap, lost = probe.gap(t_fail - 0.5)
            last = probe.last()
            if last is not None and last > t_fail:
                gaps[fam] = gap * 1000
                print(f"   host -> {fam} gateway {gateways[fam]}: unreachable for "
                      f"{gap * 1000:.0f} ms ({_probes(lost)} lost)")
            else:
                print(f"   host -> {fam} gateway {gateways[fam]}: no reply since the link "
                      "went down")

        print(f"\n6. restore r1's link ({'enabled true' if fail == 'netconf' else 'port up'})")
        t_up = time.monotonic()
        _link(lab, fail, True, sessions["r1"])
        states, took = wait_states(sessions, lab, {"r1": "master", "r2": "backup"}, timeout)
        line = ", ".join(_fmt_state(n, s) for n, s in states.items())
        if took is None:
            print(f"   not back after {timeout:.0f} s: {line}")
        else:
            took_ms = (time.monotonic() - t_up) * 1000
            time.sleep(0.3)
            ups = [(fam, *p.gap(t_up - 0.05)) for fam, p in probes.items()]
            print(f"   {line} after {took_ms:.0f} ms (preempt); host gaps " + ", ".join(
                f"{fam} {g * 1000:.0f} ms ({_probes(n)} lost)" for fam, g, n in ups))
    except _Abort:
        pass
    finally:
        for probe in probes.values():
            probe.stop()
        if fail == "switch":  # never leave the cable pulled
            subprocess.run(["ip", "-n", lab.lan_netns, "link", "set", r1.name, "up"],
                           check=False)
        for m in [*sessions.values(), notif_session]:
            if m is not None:
                try:
                    m.close_session()
                except Exception:  # noqa: BLE001 - closing anyway
                    pass
    ok = failover_ms is not None and None not in gaps.values()

    def ms(v: float | None) -> str:
        return "None" if v is None else str(round(v))

    print(f"\nRESULT failover_ms={ms(failover_ms)} gap_ms={ms(gaps['IPv4'])} "
          f"notification={event} gap6_ms={ms(gaps['IPv6'])}")
    return 0 if ok else 1


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--state-dir", type=Path, default=labmod.DEFAULT_STATE_DIR,
                    help=f"the lab's state directory (default {labmod.DEFAULT_STATE_DIR})")
    ap.add_argument("--fail", choices=("netconf", "switch"), default="netconf",
                    help="how r1's link goes down: netconf (enabled false, default) or "
                         "switch (the bridge port facing r1 goes down)")
    ap.add_argument("--interval", type=float, default=0.01, help="probe interval (s)")
    ap.add_argument("--timeout", type=float, default=10.0, help="seconds to wait per step")
    ap.add_argument("--probe", metavar="ADDR", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.probe:
        try:
            return run_probe(args.probe, args.interval)
        except (KeyboardInterrupt, BrokenPipeError):
            return 0
    lab = labmod.load(args.state_dir)
    if lab is None or lab.status != "up":
        print(f"no lab up in {args.state_dir}: run `netconf-vrrp-agent lab up` first",
              file=sys.stderr)
        return 1
    return demo(lab, args.fail, args.interval, args.timeout)


if __name__ == "__main__":
    sys.exit(main())
