"""Watching VRRP packets (IP protocol 112) in the managed namespace.

keepalived does not count every RFC 8347 statistic (FACTS.md): checksum and version
errors only reach its SNMP MIB, packets for an unknown VRID are dropped silently and a
VRRPv3 interval mismatch is not counted. The watcher sees every VRRP packet that reaches
a VRRP interface (a packet socket per address family, opened inside the namespace, with a
BPF filter for protocol 112), checks it the way RFC 5798 §7.1 orders the checks and
counts what it finds, per instance and globally. It also remembers, per instance, the
last advertisement seen on the LAN (source, priority, time): ``last-adv-source`` and the
``new-master-reason`` come from there.

The module also encodes VRRP packets (``vrrp_message``, ``ipv4_packet``, ``ipv6_packet``):
tests and the lab craft packets with them.
"""

from __future__ import annotations

import ctypes
import ipaddress
import logging
import select
import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from agent.backends.nsenter import in_netns
from agent.backends.vrrp.configured import ConfigIndex, Key
from agent.backends.vrrp.wakeup import Wakeup

log = logging.getLogger(__name__)

PROTO_VRRP = 112
ETH_P_IP = 0x0800
ETH_P_IPV6 = 0x86DD
ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4
PACKET_OTHERHOST = 3
SO_ATTACH_FILTER = 26
VRRP_TYPE_ADVERTISEMENT = 1
MCAST = {4: "224.0.0.18", 6: "ff02::12"}

# RFC 8347 identities of the errors the watcher detects
GLOBAL_ERRORS = ("checksum-error", "ip-ttl-error", "version-error", "vrid-error")
ROUTER_ERRORS = ("address-list-error", "interval-error", "packet-length-error")


# ---------------------------------------------------------------------------- encoding
def inet_checksum(data: bytes) -> int:
    """RFC 1071 one's-complement sum (the VRRP and IPv4 header checksum)."""
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def _pseudo_header(family: int, src: str, dst: str, length: int) -> bytes:
    s, d = ipaddress.ip_address(src).packed, ipaddress.ip_address(dst).packed
    if family == 4:
        return s + d + struct.pack("!BBH", 0, PROTO_VRRP, length)
    return s + d + struct.pack("!I3xB", length, PROTO_VRRP)


def vrrp_checksum(version: int, family: int, src: str, dst: str, msg: bytes) -> int:
    """VRRPv3 (RFC 5798 §5.2.8): with the IP pseudo-header; VRRPv2 (RFC 3768): message only."""
    if version == 2:
        return inet_checksum(msg)
    return inet_checksum(_pseudo_header(family, src, dst, len(msg)) + msg)


def vrrp_message(
    *,
    family: int,
    src: str,
    vrid: int,
    priority: int,
    addresses: list[str],
    interval_cs: int = 100,
    version: int = 3,
    vtype: int = VRRP_TYPE_ADVERTISEMENT,
    dst: str | None = None,
    count: int | None = None,
    checksum: int | None = None,
) -> bytes:
    """A VRRP message (the IP payload). ``interval_cs`` is centiseconds (v2: whole seconds
    are sent). ``count`` / ``checksum`` override the computed values to craft bad packets."""
    dst = dst or MCAST[family]
    n = len(addresses) if count is None else count
    if version == 2:
        head = struct.pack("!BBBBBBH", (version << 4) | vtype, vrid, priority, n, 0,
                           interval_cs // 100, 0)
        tail = b"\0" * 8  # authentication data
    else:
        head = struct.pack("!BBBBHH", (version << 4) | vtype, vrid, priority, n,
                           interval_cs & 0x0FFF, 0)
        tail = b""
    body = b"".join(ipaddress.ip_address(a).packed for a in addresses) + tail
    msg = head + body
    c = vrrp_checksum(version, family, src, dst, msg) if checksum is None else checksum
    return msg[:6] + struct.pack("!H", c) + msg[8:]


def ipv4_packet(src: str, dst: str, payload: bytes, ttl: int = 255,
                proto: int = PROTO_VRRP) -> bytes:
    hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0xC0, 20 + len(payload), 0, 0x4000, ttl, proto,
                      0, ipaddress.IPv4Address(src).packed, ipaddress.IPv4Address(dst).packed)
    c = inet_checksum(hdr)
    return hdr[:10] + struct.pack("!H", c) + hdr[12:] + payload


def ipv6_packet(src: str, dst: str, payload: bytes, hop_limit: int = 255,
                next_header: int = PROTO_VRRP) -> bytes:
    hdr = struct.pack("!IHBB16s16s", 6 << 28, len(payload), next_header, hop_limit,
                      ipaddress.IPv6Address(src).packed, ipaddress.IPv6Address(dst).packed)
    return hdr + payload


def multicast_mac(family: int) -> bytes:
    """Destination MAC of the VRRP group (224.0.0.18 / ff02::12)."""
    return bytes.fromhex("01005e000012" if family == 4 else "333300000012")


# ---------------------------------------------------------------------------- decoding
@dataclass(frozen=True)
class IpPacket:
    family: int
    src: str
    dst: str
    ttl: int
    payload: bytes


def parse_ip(family: int, data: bytes) -> IpPacket | None:
    """The IP header fields the checks need; ``None`` for non-VRRP or mangled packets."""
    if family == 4:
        if len(data) < 20 or data[0] >> 4 != 4:
            return None
        ihl = (data[0] & 0x0F) * 4
        total = struct.unpack_from("!H", data, 2)[0]
        frag = struct.unpack_from("!H", data, 6)[0]
        if data[9] != PROTO_VRRP or frag & 0x3FFF or ihl < 20 or total > len(data):
            return None
        return IpPacket(4, socket.inet_ntop(socket.AF_INET, data[12:16]),
                        socket.inet_ntop(socket.AF_INET, data[16:20]), data[8],
                        data[ihl:total])
    if len(data) < 40 or data[0] >> 4 != 6 or data[6] != PROTO_VRRP:
        return None
    plen = struct.unpack_from("!H", data, 4)[0]
    if 40 + plen > len(data):
        return None
    return IpPacket(6, socket.inet_ntop(socket.AF_INET6, data[8:24]),
                    socket.inet_ntop(socket.AF_INET6, data[24:40]), data[7],
                    data[40:40 + plen])


@dataclass(frozen=True)
class Verdict:
    """What one received packet counts as.

    ``error``: the RFC 8347 identity of the error (None: a valid advertisement);
    ``key``: the instance it is attributed to (None for the global errors);
    ``invalid_type`` / ``priority_zero``: per-instance counters that are not errors."""

    error: str | None = None
    key: Key | None = None
    invalid_type: bool = False
    priority_zero: bool = False
    priority: int = 0
    interval_cs: int = 0


def classify(ifname: str, pkt: IpPacket, index: ConfigIndex) -> Verdict:
    """The RFC 5798 §7.1 receive checks, in its order, against the configured instances.

    1. IPv4 TTL / IPv6 hop limit 255 (``ip-ttl-error``);
    2. version: 2 or 3, 3 only over IPv6 (``version-error``);
    3. the complete packet: fixed fields and every address the count announces, plus the
       VRRPv2 authentication data (``packet-length-error``);
    4. the checksum, computed the way the packet's version computes it (``checksum-error``);
    5. the VRID configured on the receiving interface for this family (``vrid-error``);
    6. then the instance's own checks: its version, the message type, the interval and
       the address list.

    RFC 8347 counts ``packet-length-errors`` per virtual router only: a truncated packet
    is counted against the instance its VRID names, and as a ``vrid-error`` when it names
    none configured on the interface (or is too short to name one) — a packet then not
    valid for any virtual router of this router, the only global counter that fits."""
    p = pkt.payload
    if pkt.ttl != 255:
        return Verdict(error="ip-ttl-error")
    if not p:
        return Verdict(error="version-error")
    version, vtype = p[0] >> 4, p[0] & 0x0F
    if version not in (2, 3) or (pkt.family == 6 and version != 3):
        return Verdict(error="version-error")
    inst = index.get(ifname, pkt.family, p[1]) if len(p) >= 2 else None
    alen = 4 if pkt.family == 4 else 16
    count = p[3] if len(p) >= 4 else 0
    need = 8 + count * alen + (8 if version == 2 else 0)
    if len(p) < 8 or len(p) < need:
        if inst is None:
            return Verdict(error="vrid-error")
        return Verdict(error="packet-length-error", key=inst.key)
    if vrrp_checksum(version, pkt.family, pkt.src, pkt.dst, p[:6] + b"\0\0" + p[8:]) != \
            struct.unpack_from("!H", p, 6)[0]:
        return Verdict(error="checksum-error")
    if inst is None:
        return Verdict(error="vrid-error")
    if inst.version != version:
        return Verdict(error="version-error", key=inst.key)
    if vtype != VRRP_TYPE_ADVERTISEMENT:
        return Verdict(key=inst.key, invalid_type=True)
    priority = p[2]
    interval = 100 * p[5] if version == 2 else struct.unpack_from("!H", p, 4)[0] & 0x0FFF
    zero = priority == 0
    if interval != inst.interval_cs:
        return Verdict(error="interval-error", key=inst.key, priority_zero=zero,
                       priority=priority, interval_cs=interval)
    addrs = {str(ipaddress.ip_address(p[8 + i * alen: 8 + (i + 1) * alen]))
             for i in range(count)}
    if addrs != inst.vips:
        return Verdict(error="address-list-error", key=inst.key, priority_zero=zero,
                       priority=priority, interval_cs=interval)
    return Verdict(key=inst.key, priority_zero=zero, priority=priority, interval_cs=interval)


# ---------------------------------------------------------------------------- counters
@dataclass
class Advert:
    """The last advertisement seen for an instance (received or sent by this router)."""

    time: float
    source: str
    priority: int
    interval_cs: int
    own: bool


@dataclass
class InstanceCounters:
    interval_errors: int = 0
    priority_zero_pkts_rcvd: int = 0
    invalid_type_pkts_rcvd: int = 0
    address_list_errors: int = 0
    packet_length_errors: int = 0
    priority_zero_pkts_sent: int = 0  # this router's, seen leaving the interface
    advertisement_rcvd: int = 0  # valid ones, as seen by the watcher
    last_rx: Advert | None = None  # last advertisement received from another router
    last_adv: Advert | None = None  # last advertisement on the LAN, whoever sent it


@dataclass
class GlobalCounters:
    checksum_errors: int = 0
    version_errors: int = 0
    vrid_errors: int = 0
    ip_ttl_errors: int = 0


_GLOBAL_FIELD = {
    "checksum-error": "checksum_errors",
    "version-error": "version_errors",
    "vrid-error": "vrid_errors",
    "ip-ttl-error": "ip_ttl_errors",
}
_ROUTER_FIELD = {
    "interval-error": "interval_errors",
    "address-list-error": "address_list_errors",
    "packet-length-error": "packet_length_errors",
}

#: ``on_error(reason, key)``: an RFC 8347 error identity, the instance (None: global)
ErrorListener = Callable[[str, Key | None], None]


@dataclass
class Counters:
    """Everything the watcher counted since ``since`` (the discontinuity time)."""

    since: float = field(default_factory=time.time)
    glob: GlobalCounters = field(default_factory=GlobalCounters)
    instances: dict[Key, InstanceCounters] = field(default_factory=dict)

    def instance(self, key: Key) -> InstanceCounters:
        c = self.instances.get(key)
        if c is None:
            c = self.instances[key] = InstanceCounters()
        return c

    def count(self, ifname: str, pkt: IpPacket, index: ConfigIndex, now: float) -> Verdict:
        v = classify(ifname, pkt, index)
        if v.error in _GLOBAL_FIELD:
            f = _GLOBAL_FIELD[v.error]
            setattr(self.glob, f, getattr(self.glob, f) + 1)
            return v
        assert v.key is not None
        c = self.instance(v.key)
        if v.invalid_type:
            c.invalid_type_pkts_rcvd += 1
            return v
        if v.priority_zero:
            c.priority_zero_pkts_rcvd += 1
        if v.error is not None:
            f = _ROUTER_FIELD[v.error]
            setattr(c, f, getattr(c, f) + 1)
        if v.error is None or v.error in ("interval-error", "address-list-error"):
            adv = Advert(now, pkt.src, v.priority, v.interval_cs, own=False)
            c.last_rx = c.last_adv = adv
            if v.error is None:
                c.advertisement_rcvd += 1
        return v

    def sent(self, ifname: str, pkt: IpPacket, index: ConfigIndex, now: float) -> None:
        """An advertisement this router sent: it is now the last one on the LAN."""
        p = pkt.payload
        if len(p) < 8:
            return
        inst = index.get(ifname, pkt.family, p[1])
        if inst is None:
            return
        version = p[0] >> 4
        interval = 100 * p[5] if version == 2 else struct.unpack_from("!H", p, 4)[0] & 0x0FFF
        c = self.instance(inst.key)
        c.last_adv = Advert(now, pkt.src, p[2], interval, own=True)
        if p[2] == 0:
            c.priority_zero_pkts_sent += 1


def _bpf_protocol(ethertype: int, offset: int) -> list[tuple[int, int, int, int]]:
    """Accept a frame of ``ethertype`` whose byte at ``offset`` (from the network header)
    is 112: ``ldh skb->protocol; jeq; ldb [offset]; jeq 112; ret all; ret 0``."""
    return [(0x28, 0, 0, 0xFFFFF000), (0x15, 0, 3, ethertype), (0x30, 0, 0, offset),
            (0x15, 0, 1, PROTO_VRRP), (0x06, 0, 0, 0x40000), (0x06, 0, 0, 0)]


def attach_filter(sock: socket.socket, prog: list[tuple[int, int, int, int]]) -> None:
    raw = b"".join(struct.pack("HBBI", *ins) for ins in prog)
    buf = ctypes.create_string_buffer(raw)
    fprog = struct.pack("HL", len(prog), ctypes.addressof(buf))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)


def vrrp_socket(family: int) -> socket.socket:
    """A packet socket seeing the IP packets of protocol 112 of every interface, both ways.

    ``ETH_P_ALL``: its tap runs before a macvlan's receive handler, so a frame the parent
    hands to one macvlan only (source MAC = that macvlan's virtual MAC) is seen on the
    parent too; and it sees outgoing frames."""
    eth = ETH_P_IP if family == 4 else ETH_P_IPV6
    s = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(ETH_P_ALL))
    attach_filter(s, _bpf_protocol(eth, 9 if family == 4 else 6))
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    s.setblocking(False)
    return s


# ---------------------------------------------------------------------------- watcher
class PacketWatcher:
    """A thread reading VRRP packets in ``netns`` and counting them in ``counters``.

    ``index()`` returns the current :class:`ConfigIndex` (cheap; called per batch);
    ``on_error`` is called (in the watcher thread) for every error found."""

    def __init__(
        self,
        netns: str | None,
        index: Callable[[], ConfigIndex],
        on_error: ErrorListener | None = None,
    ) -> None:
        self.netns = netns
        self.index = index
        self.on_error = on_error
        self.counters = Counters()
        self.lock = threading.Lock()
        self._socks: list[tuple[int, socket.socket]] = []
        self._wakeup = Wakeup()
        self._thread: threading.Thread | None = None
        self._stop = False

    def start(self) -> None:
        for fam in (4, 6):
            self._socks.append((fam, in_netns(self.netns, lambda f=fam: vrrp_socket(f))))
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name=f"vrrp-packets-{self.netns}")
        self._thread.start()

    def stop(self) -> None:
        self._stop = True
        self._wakeup.wake()
        if self._thread is not None:
            self._thread.join(5)
        for _, s in self._socks:
            s.close()
        self._socks.clear()
        self._wakeup.close()

    def _run(self) -> None:
        fams = {s.fileno(): (fam, s) for fam, s in self._socks}
        while not self._stop:
            try:
                ready, _, _ = select.select([*fams, self._wakeup.fd], [], [], 1.0)
            except (OSError, ValueError):
                return
            for fd in ready:
                if fd in fams:
                    fam, s = fams[fd]
                    self._drain(fam, s)

    def _drain(self, family: int, s: socket.socket) -> None:
        index = self.index()
        parents = index.interfaces
        for _ in range(1000):
            try:
                data, addr = s.recvfrom(65535)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:  # pragma: no cover - socket closed under us
                return
            ifname, pkttype = addr[0], addr[2]
            if pkttype == PACKET_OTHERHOST:
                continue
            if ifname not in parents:
                continue  # macvlans get copies of what the parent saw (or sent)
            pkt = parse_ip(family, data)
            if pkt is None:
                continue
            now = time.time()
            with self.lock:
                if pkttype == PACKET_OUTGOING:
                    self.counters.sent(ifname, pkt, index, now)
                    continue
                v = self.counters.count(ifname, pkt, index, now)
            if v.error is not None and self.on_error is not None:
                try:
                    self.on_error(v.error, v.key if v.error in ROUTER_ERRORS else None)
                except Exception:  # pragma: no cover - never stop counting
                    log.exception("VRRP error listener failed")
