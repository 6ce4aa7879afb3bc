"""A small, fast rtnetlink reader for operational state (links, addresses, neighbours).

pyroute2 decodes every attribute of every message into Python objects: ~0.5 s for a
dump of 1,000 links. Operational state needs a dozen attributes per link, so this
module talks to the kernel over a plain ``AF_NETLINK`` socket opened inside the managed
namespace and unpacks only those attributes with :mod:`struct` (~10x faster).

Only reading here (configuration: :mod:`.rtnl`); the wire format is :mod:`.netlink`'s.
"""

from __future__ import annotations

import errno
import socket
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field

from agent.backends.linux.netlink import (
    HDR,
    IFA_ADDRESS,
    IFA_CACHEINFO,
    IFA_FLAGS,
    IFA_LOCAL,
    IFADDR,
    IFINFO,
    IFLA_ADDRESS,
    IFLA_AF_SPEC,
    IFLA_EXT_MASK,
    IFLA_IFALIAS,
    IFLA_IFNAME,
    IFLA_INET6_ADDR_GEN_MODE,
    IFLA_INET6_CONF,
    IFLA_INET_CONF,
    IFLA_INFO_DATA,
    IFLA_INFO_KIND,
    IFLA_LINK,
    IFLA_LINK_NETNSID,
    IFLA_LINKINFO,
    IFLA_MACVLAN_MODE,
    IFLA_MASTER,
    IFLA_MTU,
    IFLA_OPERSTATE,
    IFLA_STATS64,
    IFLA_STATS_LINK_64,
    IFSTATS,
    IPV4_DEVCONF_FORWARDING,
    NDA_DST,
    NDA_IFINDEX,
    NDA_LLADDR,
    NDMSG,
    NLM_F_DUMP,
    NLM_F_MULTI,
    NLM_F_REQUEST,
    NLMSG_DONE,
    NLMSG_ERROR,
    RTA,
    RTM_DELLINK,
    RTM_DELNETCONF,
    RTM_GETADDR,
    RTM_GETLINK,
    RTM_GETNEIGH,
    RTM_GETSTATS,
    RTM_NEWADDR,
    RTM_NEWLINK,
    RTM_NEWNEIGH,
    RTM_NEWNETCONF,
    RTM_NEWSTATS,
    RTMGRP_IPV4_IFADDR,
    RTMGRP_IPV4_NETCONF,
    RTMGRP_IPV6_IFADDR,
    RTMGRP_IPV6_NETCONF,
    RTMGRP_LINK,
    RTMGRP_NEIGH,
    U32,
    attr,
    error,
    headers,
    nlmsg,
    open_socket,
    text,
    walk,
)
from agent.backends.nsenter import in_netns

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
    """A NETLINK_ROUTE socket opened inside ``netns``, with a large receive buffer and strict
    checking (the kernel honours dump filters)."""
    return in_netns(netns, lambda: open_socket(groups, rcvbuf=8 << 20, force_rcvbuf=True,
                                               strict=True))


# --- parsing ----------------------------------------------------------------------------------
def parse_link(buf: memoryview, off: int, end: int) -> Link:
    _fam, typ, index, flags, _chg = IFINFO.unpack_from(buf, off)
    ln = Link(index=index, arphrd=typ, flags=flags)
    u32 = U32.unpack_from
    rta = RTA.unpack_from
    off += IFINFO.size
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
            ln.name = text(buf, a, b)
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
            ln.alias = text(buf, a, b)
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
    for t, x, y in walk(buf, a, b):
        if t == IFLA_INFO_KIND:
            ln.kind = text(buf, x, y)
        elif t == IFLA_INFO_DATA:
            data = (x, y)
    if data is not None and ln.kind in ("macvlan", "macvtap"):
        for t, x, _y in walk(buf, *data):
            if t == IFLA_MACVLAN_MODE:
                ln.macvlan_mode = U32.unpack_from(buf, x)[0]


def _af_spec(ln: Link, buf: memoryview, a: int, b: int) -> None:
    for fam, x, y in walk(buf, a, b):
        if fam == socket.AF_INET:
            for t, p, q in walk(buf, x, y):
                if t == IFLA_INET_CONF and q - p >= 4 * IPV4_DEVCONF_FORWARDING:
                    at = p + 4 * (IPV4_DEVCONF_FORWARDING - 1)
                    ln.v4_forwarding = U32.unpack_from(buf, at)[0]
        elif fam == socket.AF_INET6:
            for t, p, q in walk(buf, x, y):
                if t == IFLA_INET6_CONF:
                    n = (q - p) // 4
                    st = _I32S.get(n)
                    if st is None:
                        st = _I32S[n] = struct.Struct(f"={n}i")
                    ln.v6_conf = st.unpack_from(buf, p)
                elif t == IFLA_INET6_ADDR_GEN_MODE:
                    ln.v6_addr_gen_mode = buf[p]


def parse_addr(buf: memoryview, off: int, end: int) -> Addr:
    fam, plen, flags, scope, index = IFADDR.unpack_from(buf, off)
    ad = Addr(fam, plen, flags, scope, index)
    local = None
    for t, a, b in walk(buf, off + IFADDR.size, end):
        if t == IFA_ADDRESS:
            ad.address = bytes(buf[a:b])
        elif t == IFA_LOCAL:
            local = bytes(buf[a:b])
        elif t == IFA_FLAGS:
            ad.flags = U32.unpack_from(buf, a)[0]
        elif t == IFA_CACHEINFO:
            ad.preferred, ad.valid, _c, _t = _CACHEINFO.unpack_from(buf, a)
    if local is not None:  # IPv4: IFA_LOCAL is the interface's own address
        ad.address = local
    return ad


def parse_neigh(buf: memoryview, off: int, end: int) -> Neigh:
    fam, index, state, flags, _typ = NDMSG.unpack_from(buf, off)
    nb = Neigh(fam, index, state, flags)
    for t, a, b in walk(buf, off + NDMSG.size, end):
        if t == NDA_DST:
            nb.dst = bytes(buf[a:b])
        elif t == NDA_LLADDR:
            nb.lladdr = bytes(buf[a:b])
    return nb


# --- requests ---------------------------------------------------------------------------------
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
        self.sock.send(nlmsg(mtype, NLM_F_REQUEST | flags, seq, body))
        view = memoryview(self._buf)
        while True:
            n = self.sock.recv_into(self._buf)
            for typ, mflags, mseq, off, end in headers(view, n):
                if mseq != seq:
                    continue
                if typ == NLMSG_DONE:
                    return
                if typ == NLMSG_ERROR:
                    err = error(view, off, end, mflags)
                    if err is not None:
                        raise err
                    return
                yield typ, view, off + HDR.size, end
                if not mflags & NLM_F_MULTI:
                    return

    def dump_links(self) -> list[Link]:
        body = IFINFO.pack(0, 0, 0, 0, 0) + attr(IFLA_EXT_MASK, U32.pack(0))
        return [parse_link(v, a, b) for t, v, a, b in self._request(RTM_GETLINK, NLM_F_DUMP, body)
                if t == RTM_NEWLINK]

    def get_link(self, name: str) -> Link | None:
        body = IFINFO.pack(0, 0, 0, 0, 0) + attr(IFLA_IFNAME, name.encode() + b"\0")
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
        body = IFSTATS.pack(0, 0, 1 << (IFLA_STATS_LINK_64 - 1))
        out: dict[int, tuple[int, ...]] = {}
        unpack = IFSTATS.unpack_from
        for t, v, a, b in self._request(RTM_GETSTATS, NLM_F_DUMP, body):
            if t != RTM_NEWSTATS:
                continue
            index = unpack(v, a)[1]
            for at, x, y in walk(v, a + IFSTATS.size, b):
                if at == IFLA_STATS_LINK_64 and y - x >= _STATS64.size:
                    out[index] = _STATS64.unpack_from(v, x)
        return out

    def dump_addrs(self, index: int = 0) -> list[Addr]:
        body = IFADDR.pack(0, 0, 0, 0, index)
        return [parse_addr(v, a, b) for t, v, a, b in self._request(RTM_GETADDR, NLM_F_DUMP, body)
                if t == RTM_NEWADDR]

    def dump_neighs(self, index: int = 0) -> list[Neigh]:
        out = []
        for fam in (socket.AF_INET, socket.AF_INET6):
            body = NDMSG.pack(fam, 0, 0, 0, 0)
            if index:
                body += attr(NDA_IFINDEX, U32.pack(index))
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
            for typ, _flags, _seq, off, end in headers(view, n):
                if typ in (RTM_NEWLINK, RTM_DELLINK):
                    out.append((typ, parse_link(view, off + HDR.size, end)))
                    self.link_changes += 1
                else:
                    self.other += 1
                    if typ in (RTM_NEWNETCONF, RTM_DELNETCONF):
                        self.link_changes += 1
