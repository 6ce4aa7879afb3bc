"""A small VRRP LAN for the state/statistics tests, built without the config backend.

Namespaces (unique per test process): ``<p>b`` holds the bridge, ``<p>a`` is the router
under test (r1: keepalived through the agent's supervisor, the state side attached to an
in-process server whose running config describes the same instances), ``<p>c`` is the
peer (r2: its own keepalived; crafted packets leave from there).

r1 instances: lan0 IPv4 VRID 10 (v3, 0.1 s, peer has priority 200 → r1 backup),
lan0 IPv4 VRID 20 (v2, 1 s, r1 alone → master), lan0 IPv6 VRID 30 (v3, 0.1 s, alone).
"""

from __future__ import annotations

import itertools
import os
import socket
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from lxml import etree
from polling import wait as wait_for

from agent.backends.nsenter import in_netns
from agent.backends.vrrp.keepalived import Keepalived
from agent.backends.vrrp.names import vmac_address, vmac_ifname
from agent.backends.vrrp.packets import (
    ETH_P_IP,
    ETH_P_IPV6,
    ipv4_packet,
    ipv6_packet,
    multicast_mac,
    vrrp_message,
    vrrp_socket,
)

IF = "urn:ietf:params:xml:ns:yang:ietf-interfaces"
IP = "urn:ietf:params:xml:ns:yang:ietf-ip"
VRRP = "urn:ietf:params:xml:ns:yang:ietf-vrrp"
NC = "urn:ietf:params:xml:ns:netconf:base:1.0"
NS = {"if": IF, "ip": IP, "vrrp": VRRP, "nc": NC}

_seq = itertools.count()

R1_CONFIG = f"""
<interfaces xmlns="{IF}" xmlns:ianaift="urn:ietf:params:xml:ns:yang:iana-if-type">
  <interface><name>lan0</name><type>ianaift:ethernetCsmacd</type>
    <ipv4 xmlns="{IP}">
      <address><ip>10.0.0.1</ip><prefix-length>24</prefix-length></address>
      <vrrp xmlns="{VRRP}">
        <vrrp-instance><vrid>10</vrid><version>vrrp-v3</version><priority>100</priority>
          <advertise-interval-centi-sec>10</advertise-interval-centi-sec>
          <virtual-ipv4-addresses><virtual-ipv4-address><ipv4-address>10.0.0.254</ipv4-address>
          </virtual-ipv4-address></virtual-ipv4-addresses></vrrp-instance>
        <vrrp-instance><vrid>20</vrid><version>vrrp-v2</version><priority>100</priority>
          <advertise-interval-sec>1</advertise-interval-sec>
          <virtual-ipv4-addresses><virtual-ipv4-address><ipv4-address>10.0.0.253</ipv4-address>
          </virtual-ipv4-address></virtual-ipv4-addresses></vrrp-instance>
      </vrrp>
    </ipv4>
    <ipv6 xmlns="{IP}">
      <vrrp xmlns="{VRRP}">
        <vrrp-instance><vrid>30</vrid><version>vrrp-v3</version><priority>100</priority>
          <advertise-interval-centi-sec>10</advertise-interval-centi-sec>
          <virtual-ipv6-addresses>
            <virtual-ipv6-address><ipv6-address>fe80::30</ipv6-address></virtual-ipv6-address>
            <virtual-ipv6-address><ipv6-address>2001:db8::30</ipv6-address></virtual-ipv6-address>
          </virtual-ipv6-addresses></vrrp-instance>
      </vrrp>
    </ipv6>
  </interface>
</interfaces>
"""


def _instance(name: str, ifname: str, vrid: int, prio: int, version: int, advert: str,
              vips: list[str], src: str | None) -> str:
    src_line = f"  mcast_src_ip {src}\n" if src else ""
    vip_lines = "".join(f"    {v}\n" for v in vips)
    return (f"vrrp_instance {name} {{\n  interface {ifname}\n{src_line}  state BACKUP\n"
            f"  virtual_router_id {vrid}\n  priority {prio}\n  version {version}\n"
            f"  advert_int {advert}\n  virtual_ipaddress {{\n{vip_lines}  }}\n}}\n")


def keepalived_conf(fifo: Path, instances: list[str]) -> str:
    return ("global_defs {\n  notify_fifo " + str(fifo) + "\n  dynamic_interfaces\n}\n"
            + "".join(instances))


def sh(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True, timeout=30)


@dataclass
class Lab:
    prefix: str = field(default_factory=lambda: f"t{os.getpid()}s{next(_seq)}")
    ka: dict[str, Keepalived] = field(default_factory=dict)
    dirs: list[str] = field(default_factory=list)

    @property
    def br(self) -> str:
        return self.prefix + "b"

    @property
    def r1(self) -> str:
        return self.prefix + "a"

    @property
    def r2(self) -> str:
        return self.prefix + "c"

    def up(self) -> None:
        for ns in (self.br, self.r1, self.r2):
            sh("ip", "netns", "add", ns)
        sh("ip", "-n", self.br, "link", "add", "br0", "type", "bridge", "mcast_snooping", "0")
        sh("ip", "-n", self.br, "link", "set", "br0", "up")
        for i, (ns, a4, ll) in enumerate(((self.r1, "10.0.0.1/24", "fe80::1/64"),
                                          (self.r2, "10.0.0.2/24", "fe80::2/64"))):
            port = f"p{i}"
            sh("ip", "-n", self.br, "link", "add", port, "type", "veth", "peer", "name", "lan0",
               "netns", ns)
            sh("ip", "-n", self.br, "link", "set", port, "master", "br0", "up")
            sh("ip", "-n", ns, "link", "set", "lo", "up")
            sh("ip", "-n", ns, "link", "set", "lan0", "addrgenmode", "none")
            sh("ip", "-n", ns, "link", "set", "lan0", "up")
            sh("ip", "-n", ns, "addr", "add", a4, "dev", "lan0")
            sh("ip", "-n", ns, "addr", "add", ll, "dev", "lan0", "nodad")
        for ns, vrids in ((self.r1, [(4, 10), (4, 20), (6, 30)]), (self.r2, [(4, 10)])):
            for fam, vrid in vrids:
                name = vmac_ifname("lan0", fam, vrid)
                sh("ip", "-n", ns, "link", "add", name, "link", "lan0", "address",
                   vmac_address(fam, vrid), "type", "macvlan", "mode", "private")
                sh("ip", "-n", ns, "link", "set", name, "addrgenmode", "none")
                if fam == 6:
                    own = "fe80::a1/64" if ns == self.r1 else "fe80::a2/64"
                    sh("ip", "-n", ns, "addr", "add", own, "dev", name, "nodad")
                sh("ip", "netns", "exec", ns, "sysctl", "-qw",
                   f"net/ipv4/conf/{name}/arp_ignore=1")
                sh("ip", "-n", ns, "link", "set", name, "up")

    def start_all(self, state_dir: Path) -> None:
        """Namespaces, an in-process server with R1_CONFIG running, the VRRP state side
        attached to it (bus listener ``self.bus``), keepalived on both routers."""
        from inproc import LocalClient

        from agent.app import BackendContext
        from agent.backends.vrrp import state as vstate
        from agent.datastore.schema import Schema
        from agent.server import NetconfServer

        self.up()
        self.server = NetconfServer(Schema.load(), state_dir)
        self.client = LocalClient(self.server)
        reply = self.client.edit(R1_CONFIG)
        assert reply.find(f"{{{NC}}}ok") is not None, etree.tostring(reply)
        self.ka2 = self.start_r2()
        self.ka1 = self._ka("r1", self.r1)
        ctx = BackendContext(state_dir=self.ka1.dir, netns=self.r1)
        self.svc = vstate.attach(self.server, ctx, self.ka1)
        self.bus = Bus()
        self.server.bus.subscribe(self.bus)
        self.svc.start()  # no event loop here: published from the reader threads
        self.start_r1()
        # r1 settles: master of 20 and 30 (alone), backup of 10 (the peer has 200)
        wait_for(lambda: states(self.client) == ("backup", "master", "master"), timeout=15)

    def start_r1(self) -> Keepalived:
        ka = self._ka("r1", self.r1)
        ka.apply(keepalived_conf(ka.fifo_path, [
            _instance("VI_lan0_4_10", vmac_ifname("lan0", 4, 10), 10, 100, 3, "0.1",
                      ["10.0.0.254/24"], "10.0.0.1"),
            _instance("VI_lan0_4_20", vmac_ifname("lan0", 4, 20), 20, 100, 2, "1",
                      ["10.0.0.253/24"], "10.0.0.1"),
            _instance("VI_lan0_6_30", vmac_ifname("lan0", 6, 30), 30, 100, 3, "0.1",
                      ["fe80::30/64", "2001:db8::30/64"], None),
        ]))
        return ka

    def start_r2(self) -> Keepalived:
        ka = self._ka("r2", self.r2)
        ka.apply(keepalived_conf(ka.fifo_path, [
            _instance("VI_lan0_4_10", vmac_ifname("lan0", 4, 10), 10, 200, 3, "0.1",
                      ["10.0.0.254/24"], "10.0.0.2"),
        ]))
        return ka

    def _ka(self, name: str, ns: str) -> Keepalived:
        ka = self.ka.get(name)
        if ka is None:
            d = tempfile.mkdtemp(prefix=f"vrrp-{name}-", dir="/var/tmp")
            self.dirs.append(d)
            ka = self.ka[name] = Keepalived(Path(d), ns)
            ka.prepare_dirs()
            if not ka.fifo_path.exists():
                os.mkfifo(ka.fifo_path, 0o600)
        return ka

    def down(self) -> None:
        svc = getattr(self, "svc", None)
        if svc is not None:
            svc.stop()
        for ka in self.ka.values():
            try:
                ka.stop(timeout=10)
            except Exception:
                pass
        for ns in (self.r1, self.r2, self.br):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=30)
        for d in self.dirs:
            subprocess.run(["rm", "-rf", d], capture_output=True, timeout=30)


# ---------------------------------------------------------------------------- crafting
class Sender:
    """Sends hand-made IP packets from the peer's lan0 (a packet socket in its namespace)."""

    def __init__(self, netns: str) -> None:
        self.sock = in_netns(
            netns, lambda: socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM))

    def close(self) -> None:
        self.sock.close()

    def send4(self, payload: bytes, src: str = "10.0.0.9", ttl: int = 255,
              dst: str = "224.0.0.18") -> None:
        pkt = ipv4_packet(src, dst, payload, ttl=ttl)
        self.sock.sendto(pkt, ("lan0", ETH_P_IP, 0, 0, multicast_mac(4)))

    def send6(self, payload: bytes, src: str = "fe80::9", hop_limit: int = 255,
              dst: str = "ff02::12") -> None:
        pkt = ipv6_packet(src, dst, payload, hop_limit=hop_limit)
        self.sock.sendto(pkt, ("lan0", ETH_P_IPV6, 0, 0, multicast_mac(6)))

    def advert4(self, vrid: int, *, version: int = 3, priority: int = 50,
                addresses: list[str] | None = None, interval_cs: int = 10, **kw) -> bytes:
        return vrrp_message(family=4, src=kw.pop("src", "10.0.0.9"), vrid=vrid,
                            priority=priority, addresses=addresses or ["10.0.0.254"],
                            interval_cs=interval_cs, version=version, **kw)


class Sniffer:
    """Records (time, family, src, vrid, priority) of VRRP packets seen in a namespace."""

    def __init__(self, netns: str) -> None:
        self.socks = [in_netns(netns, lambda f=f: vrrp_socket(f)) for f in (4, 6)]
        self.seen: list[tuple[float, str, int, int]] = []
        self._stop = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        import select

        from agent.backends.vrrp.packets import parse_ip

        while not self._stop:
            r, _, _ = select.select(self.socks, [], [], 0.1)
            for s in r:
                fam = 4 if s is self.socks[0] else 6
                try:
                    data, addr = s.recvfrom(65535)
                except BlockingIOError:
                    continue
                now = time.time()
                if addr[0] != "lan0":
                    continue
                p = parse_ip(fam, data)
                if p is not None and len(p.payload) >= 3:
                    self.seen.append((now, p.src, p.payload[1], p.payload[2]))

    def close(self) -> None:
        self._stop = True
        self.thread.join(2)
        for s in self.socks:
            s.close()


# ---------------------------------------------------------------------------- reading
class Bus:
    """Collects what the state side publishes on ``server.bus``."""

    def __init__(self) -> None:
        self.items: list[tuple[float, float, etree._Element]] = []  # (arrival, event, content)
        self.lock = threading.Lock()

    def __call__(self, t: float, content: etree._Element) -> None:
        with self.lock:
            self.items.append((time.time(), t, content))

    def named(self, name: str) -> list[tuple[float, float, etree._Element]]:
        with self.lock:
            return [i for i in self.items if etree.QName(i[2]).localname == name]


def states(client) -> tuple[str | None, ...]:
    """State of r1's instances (4, 10), (4, 20), (6, 30)."""
    d = get_state(client)
    out = []
    for fam, vrid in ((4, 10), (4, 20), (6, 30)):
        s = leaf(instance(d, fam, vrid), "vrrp:state")
        out.append(s.split(":")[-1] if s else None)
    return tuple(out)


def get_state(client) -> etree._Element:
    """``<get>`` over the in-process client: the reply's ``<data>``."""
    reply = client.rpc("<get/>")
    d = reply.find(f"{{{NC}}}data")
    assert d is not None, etree.tostring(reply)
    return d


def instance(data: etree._Element, family: int, vrid: int) -> etree._Element:
    e = data.find(f"if:interfaces/if:interface[if:name='lan0']/ip:ipv{family}/vrrp:vrrp/"
                  f"vrrp:vrrp-instance[vrrp:vrid='{vrid}']", NS)
    assert e is not None, etree.tostring(data)[:2000]
    return e


def leaf(e: etree._Element, path: str) -> str | None:
    return e.findtext(path, namespaces=NS)
