"""A small rtnetlink codec and socket: requests sent in batches, dumps parsed fast.

pyroute2 is convenient but costs ~2.5 ms of Python per request and its synchronous
API cannot be called from a running asyncio loop. The Linux backend needs a few
message types only (links, addresses, neighbours), so it encodes them here with
``struct`` and sends many requests per ``sendmsg``: the kernel processes them in
order and answers each with an ack (or an error carrying the extended-ack text).
"""

from __future__ import annotations

import errno
import os
import socket
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field

# message types
RTM_NEWLINK, RTM_DELLINK, RTM_GETLINK = 16, 17, 18
RTM_NEWADDR, RTM_DELADDR, RTM_GETADDR = 20, 21, 22
RTM_NEWNEIGH, RTM_DELNEIGH, RTM_GETNEIGH = 28, 29, 30
RTM_NEWNETCONF, RTM_DELNETCONF = 80, 81
NLMSG_ERROR, NLMSG_DONE = 2, 3
# header flags
F_REQUEST, F_MULTI, F_ACK, F_ECHO = 1, 2, 4, 8
F_DUMP = 0x300
F_REPLACE, F_EXCL, F_CREATE = 0x100, 0x200, 0x400
F_ACK_TLVS = 0x200
# socket options
SOL_NETLINK, NETLINK_CAP_ACK, NETLINK_EXT_ACK = 270, 10, 11
NLMSGERR_ATTR_MSG = 1
# multicast groups (bit masks) for the watcher
GRP_LINK, GRP_NEIGH, GRP_IPV4_IFADDR, GRP_IPV6_IFADDR = 0x1, 0x4, 0x10, 0x100
GRP_IPV4_NETCONF, GRP_IPV6_NETCONF = 1 << 23, 1 << 24  # RTNLGRP_IPV4/IPV6_NETCONF (24, 25)
# attributes
IFLA_ADDRESS, IFLA_IFNAME, IFLA_MTU, IFLA_LINK = 1, 3, 4, 5
IFLA_LINKINFO, IFLA_IFALIAS, IFLA_AF_SPEC, IFLA_GROUP = 18, 20, 26, 27
IFLA_INET_CONF, IFLA_INET6_CONF = 1, 2  # in IFLA_AF_SPEC / AF_INET, AF_INET6
#: per-link sysctl → index in IFLA_INET6_CONF (enum DEVCONF_*, uapi linux/ipv6.h)
INET6_DEVCONF = {"forwarding": 0, "mtu": 2, "autoconf": 5, "dad_transmits": 6,
                 "use_tempaddr": 10, "temp_valid_lft": 11, "temp_prefered_lft": 12,
                 "disable_ipv6": 26}
#: per-link sysctl → index in IFLA_INET_CONF (IPV4_DEVCONF_* - 1, uapi linux/ip.h)
INET_DEVCONF = {"forwarding": 0}
IFLA_INFO_KIND, IFLA_INFO_DATA = 1, 2
IFLA_MACVLAN_MODE = 1
IFA_ADDRESS, IFA_LOCAL, IFA_FLAGS = 1, 2, 8
NDA_DST, NDA_LLADDR = 1, 2
NUD_PERMANENT = 0x80
IFF_UP = 0x1

MACVLAN_MODES = {"private": 1, "vepa": 2, "bridge": 4, "passthru": 8, "source": 16}
MACVLAN_MODE_NAMES = {v: k for k, v in MACVLAN_MODES.items()}

_HDR = struct.Struct("=IHHII")
_IFI = struct.Struct("=BxHiII")
_IFA = struct.Struct("=BBBBI")
_NDM = struct.Struct("=BxxxiHBB")
_RTA = struct.Struct("=HH")


class NetlinkError(OSError):
    """A request the kernel refused: ``errno`` plus the extended-ack text when given."""

    def __init__(self, code: int, text: str = "") -> None:
        msg = os.strerror(code) + (f" ({text})" if text else "")
        super().__init__(code, msg)
        self.text = msg


# ---------------------------------------------------------------- encoding
def _attr(kind: int, payload: bytes) -> bytes:
    n = 4 + len(payload)
    return _RTA.pack(n, kind) + payload + b"\0" * ((-n) % 4)


def attr_str(kind: int, s: str) -> bytes:
    return _attr(kind, s.encode() + b"\0")


def attr_u32(kind: int, v: int) -> bytes:
    return _attr(kind, struct.pack("=I", v))


def attr_bytes(kind: int, b: bytes) -> bytes:
    return _attr(kind, b)


def attr_nest(kind: int, *attrs: bytes) -> bytes:
    return _attr(kind, b"".join(attrs))


def mac_bytes(mac: str) -> bytes:
    return bytes(int(x, 16) for x in mac.split(":"))


def mac_text(b: bytes) -> str:
    return ":".join(f"{x:02x}" for x in b)


@dataclass
class Request:
    """One rtnetlink request (body = fixed header + attributes, without nlmsghdr)."""

    type: int
    flags: int
    body: bytes

    def encode(self, seq: int) -> bytes:
        return _HDR.pack(16 + len(self.body), self.type, self.flags | F_REQUEST | F_ACK,
                         seq, 0) + self.body


def ifinfo(index: int = 0, flags: int = 0, change: int = 0, family: int = 0) -> bytes:
    return _IFI.pack(family, 0, index, flags, change)


def ifaddr(family: int, prefixlen: int, index: int, flags: int = 0, scope: int = 0) -> bytes:
    return _IFA.pack(family, prefixlen, flags, scope, index)


def ndmsg(family: int, index: int, state: int = 0) -> bytes:
    return _NDM.pack(family, index, state, 0, 0)


# ---------------------------------------------------------------- decoding
def attrs(buf: bytes, off: int, end: int) -> dict[int, bytes]:
    out: dict[int, bytes] = {}
    while off + 4 <= end:
        n, kind = _RTA.unpack_from(buf, off)
        if n < 4:
            break
        out[kind & 0x3FFF] = buf[off + 4:off + n]
        off += (n + 3) & ~3
    return out


def cstr(b: bytes | None) -> str | None:
    return None if b is None else b.split(b"\0", 1)[0].decode(errors="replace")


def u32(b: bytes | None) -> int | None:
    return None if b is None else struct.unpack_from("=I", b)[0]


def messages(buf: bytes) -> Iterator[tuple[int, int, int, bytes, int]]:
    """``(type, flags, seq, buf, offset_of_body)`` for each message in a datagram."""
    off = 0
    while off + 16 <= len(buf):
        n, typ, flags, seq, _pid = _HDR.unpack_from(buf, off)
        if n < 16:
            break
        yield typ, flags, seq, buf[off:off + n], 16
        off += (n + 3) & ~3


def parse_error(msg: bytes, flags: int) -> NetlinkError | None:
    """The error of an NLMSG_ERROR message (None for a plain ack)."""
    code = -struct.unpack_from("=i", msg, 16)[0]
    if code == 0:
        return None
    text = ""
    if flags & F_ACK_TLVS:  # NETLINK_CAP_ACK: the original header only, then TLVs
        text = cstr(attrs(msg, 16 + 4 + 16, len(msg)).get(NLMSGERR_ATTR_MSG)) or ""
    return NetlinkError(code, text)


@dataclass
class Link:
    index: int
    name: str
    flags: int = 0
    mtu: int = 0
    mac: str | None = None
    alias: str = ""
    kind: str | None = None
    lower: int | None = None  # IFLA_LINK (only meaningful for macvlan/vlan in this netns)
    mode: str | None = None  # macvlan mode
    group: int = 0
    extra: dict = field(default_factory=dict)

    @property
    def up(self) -> bool:
        return bool(self.flags & IFF_UP)


def parse_link(msg: bytes) -> Link:
    _fam, _typ, index, flags, _chg = _IFI.unpack_from(msg, 16)
    a = attrs(msg, 32, len(msg))
    link = Link(index=index, name=cstr(a.get(IFLA_IFNAME)) or "", flags=flags,
                mtu=u32(a.get(IFLA_MTU)) or 0, alias=cstr(a.get(IFLA_IFALIAS)) or "",
                lower=u32(a.get(IFLA_LINK)), group=u32(a.get(IFLA_GROUP)) or 0)
    if IFLA_ADDRESS in a:
        link.mac = mac_text(a[IFLA_ADDRESS])
    info = a.get(IFLA_LINKINFO)
    if info is not None:
        ia = attrs(info, 0, len(info))
        link.kind = cstr(ia.get(IFLA_INFO_KIND))
        data = ia.get(IFLA_INFO_DATA)
        if link.kind == "macvlan" and data is not None:
            mode = u32(attrs(data, 0, len(data)).get(IFLA_MACVLAN_MODE))
            link.mode = MACVLAN_MODE_NAMES.get(mode or 0)
    return link


def find_attrs(buf: bytes, off: int, end: int, kinds: tuple[int, ...]) -> dict[int, bytes]:
    """Like :func:`attrs`, keeping only ``kinds`` (cheaper on big messages)."""
    out: dict[int, bytes] = {}
    unpack = _RTA.unpack_from
    while off + 4 <= end:
        n, kind = unpack(buf, off)
        if n < 4:
            break
        if kind & 0x3FFF in kinds:
            out[kind & 0x3FFF] = buf[off + 4:off + n]
        off += (n + 3) & ~3
    return out


def link_devconf(msg: bytes, names: set[str] | None = None
                 ) -> tuple[str, dict[int, tuple[int, ...]]] | None:
    """(name, {AF_INET: values, AF_INET6: values}) of an RTM_NEWLINK's per-link sysctls
    (``IFLA_AF_SPEC``, indexed as in :data:`INET_DEVCONF` / :data:`INET6_DEVCONF`);
    None for a link not among ``names``."""
    a = find_attrs(msg, 32, len(msg), (IFLA_IFNAME, IFLA_AF_SPEC))
    name = cstr(a.get(IFLA_IFNAME)) or ""
    if names is not None and name not in names:
        return None
    out: dict[int, tuple[int, ...]] = {}
    spec = a.get(IFLA_AF_SPEC)
    if spec is not None:
        fams = find_attrs(spec, 0, len(spec), (socket.AF_INET, socket.AF_INET6))
        for fam, conf_attr in ((socket.AF_INET, IFLA_INET_CONF),
                               (socket.AF_INET6, IFLA_INET6_CONF)):
            fa = fams.get(fam)
            conf = find_attrs(fa, 0, len(fa), (conf_attr,)).get(conf_attr) if fa else None
            if conf is not None:
                out[fam] = struct.unpack_from(f"={len(conf) // 4}i", conf)
    return name, out


@dataclass(frozen=True)
class Addr:
    index: int
    family: int
    ip: str
    prefixlen: int


def parse_addr(msg: bytes) -> Addr:
    family, plen, _flags, _scope, index = _IFA.unpack_from(msg, 16)
    a = attrs(msg, 24, len(msg))
    raw = a.get(IFA_LOCAL) or a.get(IFA_ADDRESS) or b""
    return Addr(index, family, socket.inet_ntop(family, raw), plen)


@dataclass(frozen=True)
class Neigh:
    index: int
    family: int
    ip: str
    lladdr: str | None
    state: int


def parse_neigh(msg: bytes) -> Neigh | None:
    family, index, state, _flags, _typ = _NDM.unpack_from(msg, 16)
    a = attrs(msg, 28, len(msg))
    dst = a.get(NDA_DST)
    if dst is None or family not in (socket.AF_INET, socket.AF_INET6):
        return None
    ll = a.get(NDA_LLADDR)
    return Neigh(index, family, socket.inet_ntop(family, dst), mac_text(ll) if ll else None,
                 state)


# ---------------------------------------------------------------- socket
class RtnlSocket:
    """A NETLINK_ROUTE socket (created in the calling thread's network namespace)."""

    CHUNK = 64  # requests per sendmsg: keeps the replies well within the receive buffer

    def __init__(self, groups: int = 0) -> None:
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
        self.sock.setsockopt(SOL_NETLINK, NETLINK_CAP_ACK, 1)
        self.sock.setsockopt(SOL_NETLINK, NETLINK_EXT_ACK, 1)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        self.sock.bind((0, groups))
        self.seq = 0

    def close(self) -> None:
        self.sock.close()

    def fileno(self) -> int:
        return self.sock.fileno()

    def _recv(self) -> bytes:
        return self.sock.recv(1 << 20)

    def batch(self, reqs: list[Request]) -> list[tuple[NetlinkError | None, list[bytes]]]:
        """Send ``reqs`` in order; per request: its error (None = done) and echoed messages."""
        out: list[tuple[NetlinkError | None, list[bytes]]] = []
        for start in range(0, len(reqs), self.CHUNK):
            chunk = reqs[start:start + self.CHUNK]
            first = self.seq + 1
            data = b"".join(r.encode(first + i) for i, r in enumerate(chunk))
            self.seq += len(chunk)
            self.sock.send(data)
            results: dict[int, tuple[NetlinkError | None, list[bytes]]] = {}
            echoes: dict[int, list[bytes]] = {}
            while len(results) < len(chunk):
                for typ, flags, seq, msg, _ in messages(self._recv()):
                    if not first <= seq < first + len(chunk):
                        continue  # a stale reply
                    if typ == NLMSG_ERROR:
                        results[seq] = (parse_error(msg, flags), echoes.pop(seq, []))
                    else:
                        echoes.setdefault(seq, []).append(msg)
            out += [results[first + i] for i in range(len(chunk))]
        return out

    def request(self, req: Request) -> list[bytes]:
        err, echoed = self.batch([req])[0]
        if err is not None:
            raise err
        return echoed

    def dump(self, typ: int, body: bytes) -> list[bytes]:
        self.seq += 1
        seq = self.seq
        self.sock.send(_HDR.pack(16 + len(body), typ, F_REQUEST | F_DUMP, seq, 0) + body)
        out: list[bytes] = []
        while True:
            for mtyp, flags, mseq, msg, _ in messages(self._recv()):
                if mseq != seq:
                    continue
                if mtyp == NLMSG_DONE:
                    return out
                if mtyp == NLMSG_ERROR:
                    err = parse_error(msg, flags)
                    if err is None:
                        return out
                    if err.errno == errno.EINTR:  # dump interrupted: retry
                        return self.dump(typ, body)
                    raise err
                out.append(msg)

    # dumps ---------------------------------------------------------------
    def links(self) -> list[Link]:
        return [parse_link(m) for m in self.dump(RTM_GETLINK, ifinfo())]

    def addrs(self) -> list[Addr]:
        return [parse_addr(m) for m in self.dump(RTM_GETADDR, ifaddr(0, 0, 0))]

    def neighs(self) -> list[Neigh]:
        out = []
        for m in self.dump(RTM_GETNEIGH, ndmsg(0, 0)):
            n = parse_neigh(m)
            if n is not None:
                out.append(n)
        return out
