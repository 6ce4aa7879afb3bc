"""The config side's rtnetlink requests and dumps: requests sent in batches, dumps parsed
into small dataclasses (wire format in :mod:`.netlink`).

pyroute2 is convenient but costs ~2.5 ms of Python per request and its synchronous
API cannot be called from a running asyncio loop. The Linux backend needs a few
message types only (links, addresses, neighbours), so it encodes them with
``struct`` and sends many requests per ``sendmsg``: the kernel processes them in
order and answers each with an ack (or an error carrying the extended-ack text).
"""

from __future__ import annotations

import errno
import socket
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field

from agent.backends.linux.netlink import (
    IFA_ADDRESS,
    IFA_LOCAL,
    IFADDR,
    IFF_UP,
    IFINFO,
    IFLA_ADDRESS,
    IFLA_AF_SPEC,
    IFLA_GROUP,
    IFLA_IFALIAS,
    IFLA_IFNAME,
    IFLA_INET6_CONF,
    IFLA_INET_CONF,
    IFLA_INFO_DATA,
    IFLA_INFO_KIND,
    IFLA_LINK,
    IFLA_LINKINFO,
    IFLA_MACVLAN_MODE,
    IFLA_MTU,
    MACVLAN_MODE_NAMES,
    NDA_DST,
    NDA_LLADDR,
    NDMSG,
    NLM_F_ACK,
    NLM_F_DUMP,
    NLM_F_REQUEST,
    NLMSG_DONE,
    NLMSG_ERROR,
    RTM_GETADDR,
    RTM_GETLINK,
    RTM_GETNEIGH,
    NetlinkError,
    attrs,
    cstr,
    error,
    headers,
    ifaddr,
    ifinfo,
    ndmsg,
    nlmsg,
    open_socket,
    u32,
)


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
        return nlmsg(self.type, self.flags | NLM_F_REQUEST | NLM_F_ACK, seq, self.body)


# ---------------------------------------------------------------- decoding
def messages(buf: bytes) -> Iterator[tuple[int, int, int, bytes, int]]:
    """``(type, flags, seq, message, offset_of_body)`` for each message in a datagram."""
    for typ, flags, seq, off, end in headers(buf, len(buf)):
        yield typ, flags, seq, buf[off:end], 16


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
    _fam, _typ, index, flags, _chg = IFINFO.unpack_from(msg, 16)
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


def link_devconf(msg: bytes, names: set[str] | None = None
                 ) -> tuple[str, dict[int, tuple[int, ...]]] | None:
    """(name, {AF_INET: values, AF_INET6: values}) of an RTM_NEWLINK's per-link sysctls
    (``IFLA_AF_SPEC``, indexed as in :data:`INET_DEVCONF` / :data:`INET6_DEVCONF`);
    None for a link not among ``names``."""
    a = attrs(msg, 32, len(msg), (IFLA_IFNAME, IFLA_AF_SPEC))
    name = cstr(a.get(IFLA_IFNAME)) or ""
    if names is not None and name not in names:
        return None
    out: dict[int, tuple[int, ...]] = {}
    spec = a.get(IFLA_AF_SPEC)
    if spec is not None:
        fams = attrs(spec, 0, len(spec), (socket.AF_INET, socket.AF_INET6))
        for fam, conf_attr in ((socket.AF_INET, IFLA_INET_CONF),
                               (socket.AF_INET6, IFLA_INET6_CONF)):
            fa = fams.get(fam)
            conf = attrs(fa, 0, len(fa), (conf_attr,)).get(conf_attr) if fa else None
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
    family, plen, _flags, _scope, index = IFADDR.unpack_from(msg, 16)
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
    family, index, state, _flags, _typ = NDMSG.unpack_from(msg, 16)
    a = attrs(msg, 28, len(msg))
    dst = a.get(NDA_DST)
    if dst is None or family not in (socket.AF_INET, socket.AF_INET6):
        return None
    ll = a.get(NDA_LLADDR)
    return Neigh(index, family, socket.inet_ntop(family, dst), mac_text(ll) if ll else None,
                 state)


# ---------------------------------------------------------------- socket
class RtnlSocket:
    """A NETLINK_ROUTE socket (created in the calling thread's network namespace) with
    extended acks; ``strict``: dumps filtered by the kernel (NETLINK_GET_STRICT_CHK)."""

    CHUNK = 64  # requests per sendmsg: keeps the replies well within the receive buffer

    def __init__(self, groups: int = 0, strict: bool = False) -> None:
        self.sock = open_socket(groups, rcvbuf=4 << 20, ext_ack=True, strict=strict)
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
                        results[seq] = (error(msg, 0, len(msg), flags), echoes.pop(seq, []))
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
        self.sock.send(nlmsg(typ, NLM_F_REQUEST | NLM_F_DUMP, seq, body))
        out: list[bytes] = []
        while True:
            for mtyp, flags, mseq, msg, _ in messages(self._recv()):
                if mseq != seq:
                    continue
                if mtyp == NLMSG_DONE:
                    return out
                if mtyp == NLMSG_ERROR:
                    err = error(msg, 0, len(msg), flags)
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
