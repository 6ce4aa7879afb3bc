"""A small, fast rtnetlink reader for operational state (links, addresses, neighbours).

pyroute2 decodes every attribute of every message into Python objects: ~0.5 s for a
dump of 1,000 links. Operational state needs a dozen attributes per link, so this
module talks to the kernel over a plain ``AF_NETLINK`` socket opened inside the managed
namespace and unpacks only those attributes with :mod:`struct` (~10x faster).

Only reading here: configuration goes through pyroute2 (``netns.open_iproute``).
"""

from __future__ import annotations

import errno
import os
import socket
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field

from agent.backends.nsenter import in_netns

# --- constants (linux/netlink.h, linux/rtnetlink.h, linux/if_link.h, ...) --------------------
NLMSG_ERROR, NLMSG_DONE = 2, 3
NLM_F_REQUEST, NLM_F_MULTI, NLM_F_DUMP = 0x1, 0x2, 0x300
RTM_NEWLINK, RTM_DELLINK, RTM_GETLINK = 16, 17, 18
RTM_NEWADDR, RTM_DELADDR, RTM_GETADDR = 20, 21, 22
RTM_NEWNEIGH, RTM_DELNEIGH, RTM_GETNEIGH = 28, 29, 30
RTM_NEWNETCONF, RTM_DELNETCONF = 80, 81
RTM_NEWSTATS, RTM_GETSTATS = 92, 94
IFLA_STATS_LINK_64 = 1
RTMGRP_LINK, RTMGRP_NEIGH, RTMGRP_IPV4_IFADDR, RTMGRP_IPV6_IFADDR = 0x1, 0x4, 0x10, 0x100
RTMGRP_IPV4_NETCONF, RTMGRP_IPV6_NETCONF = 1 << 23, 1 << 24  # RTNLGRP_IPV{4,6}_NETCONF
SOL_NETLINK, NETLINK_GET_STRICT_CHK = 270, 12

IFLA_ADDRESS, IFLA_IFNAME, IFLA_MTU, IFLA_LINK = 1, 3, 4, 5
IFLA_MASTER, IFLA_OPERSTATE, IFLA_LINKINFO, IFLA_IFALIAS = 10, 16, 18, 20
IFLA_STATS64, IFLA_AF_SPEC, IFLA_EXT_MASK, IFLA_LINK_NETNSID = 23, 26, 29, 37
IFLA_INFO_KIND, IFLA_INFO_DATA = 1, 2
IFLA_MACVLAN_MODE = 1
IFLA_INET_CONF = 1
IFLA_INET6_FLAGS, IFLA_INET6_CONF, IFLA_INET6_ADDR_GEN_MODE = 1, 2, 8
IPV4_DEVCONF_FORWARDING = 1  # IFLA_INET_CONF is indexed from 1
DEVCONF_FORWARDING, DEVCONF_MTU6, DEVCONF_DISABLE_IPV6 = 0, 2, 26

IFA_ADDRESS, IFA_LOCAL, IFA_CACHEINFO, IFA_FLAGS = 1, 2, 6, 8
IFA_F_TEMPORARY, IFA_F_NODAD, IFA_F_OPTIMISTIC, IFA_F_DADFAILED = 0x01, 0x02, 0x04, 0x08
IFA_F_DEPRECATED, IFA_F_TENTATIVE, IFA_F_PERMANENT = 0x20, 0x40, 0x80

NDA_DST, NDA_LLADDR, NDA_IFINDEX = 1, 2, 8
NTF_ROUTER = 0x80

_HDR = struct.Struct("=IHHII")  # nlmsghdr: len, type, flags, seq, pid
_IFINFO = struct.Struct("=BxHiII")  # ifinfomsg: family, type, index, flags, change
_IFADDR = struct.Struct("=BBBBI")  # ifaddrmsg: family, prefixlen, flags, scope, index
_NDMSG = struct.Struct("=BxxxiHBB")  # ndmsg: family, ifindex, state, flags, type
_IFSTATS = struct.Struct("=BxxxII")  # if_stats_msg: family, ifindex, filter_mask
_RTA = struct.Struct("=HH")
_U32 = struct.Struct("=I")
_CACHEINFO = struct.Struct("=IIII")  # preferred, valid, cstamp, tstamp
_STATS64 = struct.Struct("=23Q")  # the first 23 fields of rtnl_link_stats64 (kernel ≥ 2.6.35)
_I32S: dict[int, struct.Struct] = {}


@dataclass(slots=True)
class Link:
    """What operational state needs of one RTM_NEWLINK message."""

    index: int
    name: str = ""
    arphrd: int = 0
    flags: int = 0
    mtu: int = 0
    address: bytes = b""
    link: int = 0  # IFLA_LINK: the lower device (meaningful for macvlan/vlan)
    link_netns: bool = False  # IFLA_LINK names an index in another namespace
    master: int = 0
    operstate: int = 0
    kind: str = ""
    macvlan_mode: int = 0
    stats: tuple[int, ...] | None = None
    v4_forwarding: int | None = None
    v6_conf: tuple[int, ...] | None = None  # IFLA_INET6_CONF (None: no IPv6 on the link)
    v6_addr_gen_mode: int = 0
    alias: str | None = None


@dataclass(slots=True)
class Addr:
    family: int
    prefixlen: int
    flags: int
    scope: int
    index: int
    address: bytes = b""
    preferred: int = 0xFFFFFFFF
    valid: int = 0xFFFFFFFF


@dataclass(slots=True)
class Neigh:
    family: int
    index: int
    state: int
    flags: int
    dst: bytes = b""
    lladdr: bytes = b""


@dataclass
class Snapshot:
    links: list[Link] = field(default_factory=list)
    addrs: list[Addr] = field(default_factory=list)
    neighs: list[Neigh] = field(default_factory=list)


# --- sockets inside a namespace ---------------------------------------------------------------
def netlink_socket(netns: str | None, groups: int = 0) -> socket.socket:
    def make() -> socket.socket:
        s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC,
                          socket.NETLINK_ROUTE)
        try:
            s.setsockopt(socket.SOL_SOCKET, 33, 8 << 20)  # SO_RCVBUFFORCE (root)
        except OSError:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
        s.setsockopt(SOL_NETLINK, NETLINK_GET_STRICT_CHK, 1)  # honour dump filters
        s.bind((0, groups))
        return s

    return in_netns(netns, make)  # type: ignore[return-value]


# --- attribute walking ------------------------------------------------------------------------
def _attrs(buf: memoryview, off: int, end: int) -> Iterator[tuple[int, int, int]]:
    """(type, payload offset, payload end) of each rtattr in ``buf[off:end]``."""
    unpack = _RTA.unpack_from
    while off + 4 <= end:
        alen, atype = unpack(buf, off)
        if alen < 4:
            return
        yield atype & 0x3FFF, off + 4, off + alen
        off += (alen + 3) & ~3


def _cstr(buf: memoryview, a: int, b: int) -> str:
    return bytes(buf[a:b]).rstrip(b"\0").decode("utf-8", "replace")


def parse_link(buf: memoryview, off: int, end: int) -> Link:
    _fam, typ, index, flags, _chg = _IFINFO.unpack_from(buf, off)
    ln = Link(index=index, arphrd=typ, flags=flags)
    u32 = _U32.unpack_from
    rta = _RTA.unpack_from
    off += _IFINFO.size
    # the attribute walk is inlined: this loop runs ~50 times per link
    while off + 4 <= end:
        alen, t = rta(buf, off)
        if alen < 4:
            break
        a, b = off + 4, off + alen
        off += (alen + 3) & ~3
        t &= 0x3FFF
        if t > IFLA_LINK_NETNSID or t not in _LINK_WANTED:
            continue
        if t == IFLA_IFNAME:
            ln.name = _cstr(buf, a, b)
        elif t == IFLA_STATS64:
            if b - a >= _STATS64.size:
                ln.stats = _STATS64.unpack_from(buf, a)
        elif t == IFLA_MTU:
            ln.mtu = u32(buf, a)[0]
        elif t == IFLA_ADDRESS:
            ln.address = bytes(buf[a:b])
        elif t == IFLA_OPERSTATE:
            ln.operstate = buf[a]
        elif t == IFLA_LINK:
            ln.link = u32(buf, a)[0]
        elif t == IFLA_LINK_NETNSID:
            ln.link_netns = True
        elif t == IFLA_MASTER:
            ln.master = u32(buf, a)[0]
        elif t == IFLA_IFALIAS:
            ln.alias = _cstr(buf, a, b)
        elif t == IFLA_LINKINFO:
            _linkinfo(ln, buf, a, b)
        elif t == IFLA_AF_SPEC:
            _af_spec(ln, buf, a, b)
    return ln


_LINK_WANTED = frozenset({IFLA_IFNAME, IFLA_STATS64, IFLA_MTU, IFLA_ADDRESS, IFLA_OPERSTATE,
                          IFLA_LINK, IFLA_LINK_NETNSID, IFLA_MASTER, IFLA_IFALIAS,
                          IFLA_LINKINFO, IFLA_AF_SPEC})


def _linkinfo(ln: Link, buf: memoryview, a: int, b: int) -> None:
    data = None
    for t, x, y in _attrs(buf, a, b):
        if t == IFLA_INFO_KIND:
            ln.kind = _cstr(buf, x, y)
        elif t == IFLA_INFO_DATA:
            data = (x, y)
    if data is not None and ln.kind in ("macvlan", "macvtap"):
        for t, x, _y in _attrs(buf, *data):
            if t == IFLA_MACVLAN_MODE:
                ln.macvlan_mode = _U32.unpack_from(buf, x)[0]


def _af_spec(ln: Link, buf: memoryview, a: int, b: int) -> None:
    for fam, x, y in _attrs(buf, a, b):
        if fam == socket.AF_INET:
            for t, p, q in _attrs(buf, x, y):
                if t == IFLA_INET_CONF and q - p >= 4 * IPV4_DEVCONF_FORWARDING:
                    at = p + 4 * (IPV4_DEVCONF_FORWARDING - 1)
                    ln.v4_forwarding = _U32.unpack_from(buf, at)[0]
        elif fam == socket.AF_INET6:
            for t, p, q in _attrs(buf, x, y):
                if t == IFLA_INET6_CONF:
                    n = (q - p) // 4
                    st = _I32S.get(n)
                    if st is None:
                        st = _I32S[n] = struct.Struct(f"={n}i")
                    ln.v6_conf = st.unpack_from(buf, p)
                elif t == IFLA_INET6_ADDR_GEN_MODE:
                    ln.v6_addr_gen_mode = buf[p]


def parse_addr(buf: memoryview, off: int, end: int) -> Addr:
    fam, plen, flags, scope, index = _IFADDR.unpack_from(buf, off)
    ad = Addr(fam, plen, flags, scope, index)
    local = None
    for t, a, b in _attrs(buf, off + _IFADDR.size, end):
        if t == IFA_ADDRESS:
            ad.address = bytes(buf[a:b])
        elif t == IFA_LOCAL:
            local = bytes(buf[a:b])
        elif t == IFA_FLAGS:
            ad.flags = _U32.unpack_from(buf, a)[0]
        elif t == IFA_CACHEINFO:
            ad.preferred, ad.valid, _c, _t = _CACHEINFO.unpack_from(buf, a)
    if local is not None:  # IPv4: IFA_LOCAL is the interface's own address
        ad.address = local
    return ad


def parse_neigh(buf: memoryview, off: int, end: int) -> Neigh:
    fam, index, state, flags, _typ = _NDMSG.unpack_from(buf, off)
    nb = Neigh(fam, index, state, flags)
    for t, a, b in _attrs(buf, off + _NDMSG.size, end):
        if t == NDA_DST:
            nb.dst = bytes(buf[a:b])
        elif t == NDA_LLADDR:
            nb.lladdr = bytes(buf[a:b])
    return nb


# --- requests ---------------------------------------------------------------------------------
def _rta(atype: int, payload: bytes) -> bytes:
    raw = _RTA.pack(4 + len(payload), atype) + payload
    return raw + b"\0" * (-len(raw) % 4)


class RtReader:
    """Dumps and single gets over one netlink socket (not thread-safe: one caller)."""

    def __init__(self, netns: str | None) -> None:
        self.netns = netns
        self.sock = netlink_socket(netns)
        self._seq = 0
        self._buf = bytearray(1 << 20)

    def close(self) -> None:
        self.sock.close()

    def _request(self, mtype: int, flags: int, body: bytes) -> Iterator[tuple[int, memoryview,
                                                                            int, int]]:
        """Send one request, yield ``(type, buffer, payload offset, end)`` of each reply."""
        self._seq = seq = (self._seq + 1) & 0x7FFFFFFF
        msg = _HDR.pack(_HDR.size + len(body), mtype, NLM_F_REQUEST | flags, seq, 0) + body
        self.sock.send(msg)
        view = memoryview(self._buf)
        while True:
            n = self.sock.recv_into(self._buf)
            off = 0
            while off + _HDR.size <= n:
                mlen, typ, mflags, mseq, _pid = _HDR.unpack_from(view, off)
                if mlen < _HDR.size:
                    break
                end = off + mlen
                if mseq == seq:
                    if typ == NLMSG_DONE:
                        return
                    if typ == NLMSG_ERROR:
                        err = -struct.unpack_from("=i", view, off + _HDR.size)[0]
                        if err:
                            raise OSError(err, os.strerror(err))
                        return
                    yield typ, view, off + _HDR.size, end
                    if not mflags & NLM_F_MULTI:
                        return
                off += (mlen + 3) & ~3

    def dump_links(self) -> list[Link]:
        body = _IFINFO.pack(0, 0, 0, 0, 0) + _rta(IFLA_EXT_MASK, _U32.pack(0))
        return [parse_link(v, a, b) for t, v, a, b in self._request(RTM_GETLINK, NLM_F_DUMP, body)
                if t == RTM_NEWLINK]

    def get_link(self, name: str) -> Link | None:
        body = _IFINFO.pack(0, 0, 0, 0, 0) + _rta(IFLA_IFNAME, name.encode() + b"\0")
        try:
            for t, v, a, b in self._request(RTM_GETLINK, 0, body):
                if t == RTM_NEWLINK:
                    return parse_link(v, a, b)
        except OSError as e:
            if e.errno in (errno.ENODEV, errno.EINVAL, errno.ERANGE):
                return None
            raise
        return None

    def dump_stats(self) -> dict[int, tuple[int, ...]]:
        """ifindex → rtnl_link_stats64 of every link (RTM_GETSTATS: one small message per
        link, far cheaper to read than a link dump)."""
        body = _IFSTATS.pack(0, 0, 1 << (IFLA_STATS_LINK_64 - 1))
        out: dict[int, tuple[int, ...]] = {}
        unpack = _IFSTATS.unpack_from
        for t, v, a, b in self._request(RTM_GETSTATS, NLM_F_DUMP, body):
            if t != RTM_NEWSTATS:
                continue
            index = unpack(v, a)[1]
            for at, x, y in _attrs(v, a + _IFSTATS.size, b):
                if at == IFLA_STATS_LINK_64 and y - x >= _STATS64.size:
                    out[index] = _STATS64.unpack_from(v, x)
        return out

    def dump_addrs(self, index: int = 0) -> list[Addr]:
        body = _IFADDR.pack(0, 0, 0, 0, index)
        return [parse_addr(v, a, b) for t, v, a, b in self._request(RTM_GETADDR, NLM_F_DUMP, body)
                if t == RTM_NEWADDR]

    def dump_neighs(self, index: int = 0) -> list[Neigh]:
        out = []
        for fam in (socket.AF_INET, socket.AF_INET6):
            body = _NDMSG.pack(fam, 0, 0, 0, 0)
            if index:
                body += _rta(NDA_IFINDEX, _U32.pack(index))
            out += [parse_neigh(v, a, b)
                    for t, v, a, b in self._request(RTM_GETNEIGH, NLM_F_DUMP, body)
                    if t == RTM_NEWNEIGH]
        return out


class LinkEvents:
    """A non-blocking socket subscribed to link notifications, and to address, neighbour and
    per-interface sysctl (netconf) ones, which only count as "something changed"."""

    GROUPS = (RTMGRP_LINK | RTMGRP_NEIGH | RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR
              | RTMGRP_IPV4_NETCONF | RTMGRP_IPV6_NETCONF)

    def __init__(self, netns: str | None) -> None:
        self.sock = netlink_socket(netns, self.GROUPS)
        self.other = 0  # non-link notifications seen (a change counter)
        self.link_changes = 0  # link and per-interface sysctl (netconf) notifications seen
        self.sock.setblocking(False)
        self._buf = bytearray(1 << 20)

    def fileno(self) -> int:
        return self.sock.fileno()

    def close(self) -> None:
        self.sock.close()

    def drain(self) -> tuple[list[tuple[int, Link]], bool]:
        """Pending ``(RTM_NEWLINK|RTM_DELLINK, link)`` events; ``True`` when the kernel
        dropped some (socket overrun: the caller must resynchronise from a dump)."""
        out: list[tuple[int, Link]] = []
        view = memoryview(self._buf)
        while True:
            try:
                n = self.sock.recv_into(self._buf)
            except BlockingIOError:
                return out, False
            except OSError as e:
                if e.errno == errno.ENOBUFS:
                    self.other += 1
                    self.link_changes += 1
                    return out, True
                raise
            off = 0
            while off + _HDR.size <= n:
                mlen, typ, _f, _s, _p = _HDR.unpack_from(view, off)
                if mlen < _HDR.size:
                    break
                if typ in (RTM_NEWLINK, RTM_DELLINK):
                    out.append((typ, parse_link(view, off + _HDR.size, off + mlen)))
                    self.link_changes += 1
                else:
                    self.other += 1
                    if typ in (RTM_NEWNETCONF, RTM_DELNETCONF):
                        self.link_changes += 1
                off += (mlen + 3) & ~3
