"""The rtnetlink wire format, shared by the config side (:mod:`.rtnl`) and the state side
(:mod:`.oper_netlink`): constants, message header and attribute encoding and decoding,
error decoding, and opening a ``NETLINK_ROUTE`` socket.

Everything is plain :mod:`struct` work on ``bytes`` / ``memoryview`` buffers: pyroute2
decodes every attribute of every message into Python objects, ~10x slower than reading
only what the caller needs. The higher-level parts (requests, dataclasses, readers) live
with their users.
"""

from __future__ import annotations

import os
import socket
import struct
from collections.abc import Iterator

# --- linux/netlink.h ---------------------------------------------------------------------
NLMSG_ERROR, NLMSG_DONE = 2, 3
NLM_F_REQUEST, NLM_F_MULTI, NLM_F_ACK, NLM_F_ECHO = 0x1, 0x2, 0x4, 0x8
NLM_F_DUMP = 0x300
NLM_F_REPLACE, NLM_F_EXCL, NLM_F_CREATE = 0x100, 0x200, 0x400  # new requests
NLM_F_CAPPED, NLM_F_ACK_TLVS = 0x100, 0x200  # acks
SOL_NETLINK, NETLINK_CAP_ACK, NETLINK_EXT_ACK, NETLINK_GET_STRICT_CHK = 270, 10, 11, 12
NLMSGERR_ATTR_MSG = 1
SO_RCVBUFFORCE = 33

# --- linux/rtnetlink.h -------------------------------------------------------------------
RTM_NEWLINK, RTM_DELLINK, RTM_GETLINK = 16, 17, 18
RTM_NEWADDR, RTM_DELADDR, RTM_GETADDR = 20, 21, 22
RTM_NEWNEIGH, RTM_DELNEIGH, RTM_GETNEIGH = 28, 29, 30
RTM_NEWNETCONF, RTM_DELNETCONF = 80, 81
RTM_NEWSTATS, RTM_GETSTATS = 92, 94
# multicast groups (bit masks: 1 << (RTNLGRP_* - 1))
RTMGRP_LINK, RTMGRP_NEIGH, RTMGRP_IPV4_IFADDR, RTMGRP_IPV4_ROUTE = 0x1, 0x4, 0x10, 0x40
RTMGRP_IPV6_IFADDR, RTMGRP_IPV6_ROUTE = 0x100, 0x400
RTMGRP_IPV4_NETCONF, RTMGRP_IPV6_NETCONF = 1 << 23, 1 << 24  # RTNLGRP_IPV{4,6}_NETCONF

# --- linux/if_link.h, linux/if_addr.h, linux/neighbour.h, linux/if.h, linux/if_arp.h ------
IFLA_ADDRESS, IFLA_IFNAME, IFLA_MTU, IFLA_LINK = 1, 3, 4, 5
IFLA_MASTER, IFLA_OPERSTATE, IFLA_LINKINFO, IFLA_IFALIAS = 10, 16, 18, 20
IFLA_STATS64, IFLA_AF_SPEC, IFLA_GROUP, IFLA_EXT_MASK, IFLA_LINK_NETNSID = 23, 26, 27, 29, 37
IFLA_INFO_KIND, IFLA_INFO_DATA = 1, 2
IFLA_MACVLAN_MODE = 1
IFLA_STATS_LINK_64 = 1
IFLA_INET_CONF = 1  # in IFLA_AF_SPEC / AF_INET
IFLA_INET6_FLAGS, IFLA_INET6_CONF, IFLA_INET6_ADDR_GEN_MODE = 1, 2, 8  # ... / AF_INET6
IN6_ADDR_GEN_MODE_EUI64 = 0
IPV4_DEVCONF_FORWARDING = 1  # IFLA_INET_CONF is indexed from 1 (uapi linux/ip.h)
# IFLA_INET6_CONF indexes (enum DEVCONF_*, uapi linux/ipv6.h)
DEVCONF_FORWARDING, DEVCONF_MTU6, DEVCONF_AUTOCONF, DEVCONF_DAD_TRANSMITS = 0, 2, 5, 6
DEVCONF_USE_TEMPADDR, DEVCONF_TEMP_VALID_LFT, DEVCONF_TEMP_PREFERED_LFT = 10, 11, 12
DEVCONF_DISABLE_IPV6 = 26
#: per-link sysctl → index in the values of IFLA_INET6_CONF
INET6_DEVCONF = {"forwarding": DEVCONF_FORWARDING, "mtu": DEVCONF_MTU6,
                 "autoconf": DEVCONF_AUTOCONF, "dad_transmits": DEVCONF_DAD_TRANSMITS,
                 "use_tempaddr": DEVCONF_USE_TEMPADDR, "temp_valid_lft": DEVCONF_TEMP_VALID_LFT,
                 "temp_prefered_lft": DEVCONF_TEMP_PREFERED_LFT,
                 "disable_ipv6": DEVCONF_DISABLE_IPV6}
#: per-link sysctl → index in the values of IFLA_INET_CONF (0-based)
INET_DEVCONF = {"forwarding": IPV4_DEVCONF_FORWARDING - 1}
MACVLAN_MODES = {"private": 1, "vepa": 2, "bridge": 4, "passthru": 8, "source": 16}
MACVLAN_MODE_NAMES = {v: k for k, v in MACVLAN_MODES.items()}

IFA_ADDRESS, IFA_LOCAL, IFA_CACHEINFO, IFA_FLAGS = 1, 2, 6, 8
IFA_F_TEMPORARY, IFA_F_NODAD, IFA_F_OPTIMISTIC, IFA_F_DADFAILED = 0x01, 0x02, 0x04, 0x08
IFA_F_DEPRECATED, IFA_F_TENTATIVE, IFA_F_PERMANENT = 0x20, 0x40, 0x80

NDA_DST, NDA_LLADDR, NDA_IFINDEX = 1, 2, 8
NTF_ROUTER = 0x80
NUD_INCOMPLETE, NUD_REACHABLE, NUD_STALE, NUD_DELAY, NUD_PROBE = 0x01, 0x02, 0x04, 0x08, 0x10
NUD_FAILED, NUD_NOARP, NUD_PERMANENT = 0x20, 0x40, 0x80

IFF_UP, IFF_RUNNING = 0x1, 0x40
ARPHRD_ETHER, ARPHRD_LOOPBACK, ARPHRD_IEEE80211 = 1, 772, 801

# --- fixed-size structures ---------------------------------------------------------------
HDR = struct.Struct("=IHHII")  # nlmsghdr: len, type, flags, seq, pid
IFINFO = struct.Struct("=BxHiII")  # ifinfomsg: family, type, index, flags, change
IFADDR = struct.Struct("=BBBBI")  # ifaddrmsg: family, prefixlen, flags, scope, index
NDMSG = struct.Struct("=BxxxiHBB")  # ndmsg: family, ifindex, state, flags, type
IFSTATS = struct.Struct("=BxxxII")  # if_stats_msg: family, ifindex, filter_mask
RTA = struct.Struct("=HH")  # rtattr: len, type
U32 = struct.Struct("=I")
I32 = struct.Struct("=i")


class NetlinkError(OSError):
    """A request the kernel refused: ``errno`` plus the extended-ack text when given."""

    def __init__(self, code: int, text: str = "") -> None:
        msg = os.strerror(code) + (f" ({text})" if text else "")
        super().__init__(code, msg)
        self.text = msg


# --- encoding ----------------------------------------------------------------------------
def nlmsg(mtype: int, flags: int, seq: int, body: bytes) -> bytes:
    """One message: nlmsghdr + ``body`` (the fixed header and attributes)."""
    return HDR.pack(HDR.size + len(body), mtype, flags, seq, 0) + body


def attr(kind: int, payload: bytes) -> bytes:
    """One rtattr, padded to 4 bytes."""
    n = 4 + len(payload)
    return RTA.pack(n, kind) + payload + b"\0" * ((-n) % 4)


def attr_str(kind: int, s: str) -> bytes:
    return attr(kind, s.encode() + b"\0")


def attr_u32(kind: int, v: int) -> bytes:
    return attr(kind, U32.pack(v))


attr_bytes = attr


def attr_nest(kind: int, *attrs: bytes) -> bytes:
    return attr(kind, b"".join(attrs))


def ifinfo(index: int = 0, flags: int = 0, change: int = 0, family: int = 0) -> bytes:
    return IFINFO.pack(family, 0, index, flags, change)


def ifaddr(family: int, prefixlen: int, index: int, flags: int = 0, scope: int = 0) -> bytes:
    return IFADDR.pack(family, prefixlen, flags, scope, index)


def ndmsg(family: int, index: int, state: int = 0) -> bytes:
    return NDMSG.pack(family, index, state, 0, 0)


# --- decoding ----------------------------------------------------------------------------
def headers(buf: bytes | bytearray | memoryview, n: int
            ) -> Iterator[tuple[int, int, int, int, int]]:
    """``(type, flags, seq, offset, end)`` of each message in ``buf[:n]`` (one datagram);
    ``offset`` is where the message (its nlmsghdr) starts."""
    off = 0
    unpack = HDR.unpack_from
    while off + 16 <= n:
        mlen, typ, flags, seq, _pid = unpack(buf, off)
        if mlen < 16:
            return
        yield typ, flags, seq, off, off + mlen
        off += (mlen + 3) & ~3


def walk(buf: bytes | memoryview, off: int, end: int) -> Iterator[tuple[int, int, int]]:
    """``(type, payload offset, payload end)`` of each rtattr in ``buf[off:end]``."""
    unpack = RTA.unpack_from
    while off + 4 <= end:
        alen, atype = unpack(buf, off)
        if alen < 4:
            return
        yield atype & 0x3FFF, off + 4, off + alen
        off += (alen + 3) & ~3


def attrs(buf: bytes | memoryview, off: int, end: int, only: tuple[int, ...] | None = None
          ) -> dict[int, bytes]:
    """type → payload of the rtattrs in ``buf[off:end]`` (of the types ``only`` when given:
    cheaper on big messages)."""
    out: dict[int, bytes] = {}
    unpack = RTA.unpack_from
    while off + 4 <= end:
        n, kind = unpack(buf, off)
        if n < 4:
            break
        kind &= 0x3FFF
        if only is None or kind in only:
            out[kind] = buf[off + 4:off + n]
        off += (n + 3) & ~3
    return out


def text(buf: bytes | memoryview, a: int, b: int) -> str:
    """The NUL-terminated string in ``buf[a:b]``."""
    return bytes(buf[a:b]).split(b"\0", 1)[0].decode("utf-8", "replace")


def cstr(b: bytes | memoryview | None) -> str | None:
    return None if b is None else text(b, 0, len(b))


def u32(b: bytes | None) -> int | None:
    return None if b is None else U32.unpack_from(b)[0]


def error(buf: bytes | memoryview, off: int, end: int, flags: int) -> NetlinkError | None:
    """The error of the NLMSG_ERROR message at ``buf[off:end]`` (None for a plain ack),
    with the extended-ack text when the kernel added one."""
    code = -I32.unpack_from(buf, off + 16)[0]
    if code == 0:
        return None
    msg = ""
    if flags & NLM_F_ACK_TLVS:  # TLVs after the request: its header only when capped
        orig = 16 if flags & NLM_F_CAPPED else U32.unpack_from(buf, off + 20)[0]
        at = off + 20 + ((orig + 3) & ~3)
        msg = cstr(attrs(buf, at, end).get(NLMSGERR_ATTR_MSG)) or ""
    return NetlinkError(code, msg)


# --- sockets -----------------------------------------------------------------------------
def open_socket(groups: int = 0, *, rcvbuf: int = 0, force_rcvbuf: bool = False,
                strict: bool = False, ext_ack: bool = False) -> socket.socket:
    """A ``NETLINK_ROUTE`` socket in the calling thread's network namespace, bound to the
    multicast ``groups``. ``rcvbuf``: receive buffer size (0: the default), forced beyond
    ``rmem_max`` when allowed with ``force_rcvbuf``; ``strict``: the kernel checks requests
    strictly and honours dump filters; ``ext_ack``: errors carry the original request's
    header only, and the kernel's text."""
    s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC,
                      socket.NETLINK_ROUTE)
    try:
        if ext_ack:
            s.setsockopt(SOL_NETLINK, NETLINK_CAP_ACK, 1)
            s.setsockopt(SOL_NETLINK, NETLINK_EXT_ACK, 1)
        if rcvbuf and force_rcvbuf:
            try:
                s.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, rcvbuf)  # CAP_NET_ADMIN only
            except OSError:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        elif rcvbuf:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        if strict:
            s.setsockopt(SOL_NETLINK, NETLINK_GET_STRICT_CHK, 1)
        s.bind((0, groups))
    except BaseException:
        s.close()
        raise
    return s
