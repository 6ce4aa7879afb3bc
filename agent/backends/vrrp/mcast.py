"""IPv6 multicast groups the VRRP routers need, joined on the parent interface.

The macvlans never send a membership report (:mod:`agent.backends.vrrp.egress` drops them:
a report would carry the virtual MAC). A switch doing MLD snooping would then forward
neither the advertisements (ff02::12) to the backup nor the hosts' neighbor solicitations
for a VIP (its solicited-node group ff02::1:ffXX:XXXX) to the master. So the agent joins
those groups on the parent (LAN) interface of both routers: the reports leave with the
parent's own MAC, the switch forwards the groups to both routers' ports, and each
macvlan still receives what it joined itself (a private macvlan gets the multicast frames
the parent receives, by its own multicast filter). The backup receiving a solicitation for
a VIP it does not hold ignores it.

IPv4 needs nothing: 224.0.0.18 and ARP are link-local / broadcast, which snooping
switches always flood (RFC 4541 §2.1.2).
"""

from __future__ import annotations

import errno
import ipaddress
import logging
import socket
import struct
from collections.abc import Iterable

from agent.backends.nsenter import in_netns

log = logging.getLogger(__name__)

VRRP_GROUP6 = "ff02::12"


def solicited_node(addr: str) -> str:
    """RFC 4291 §2.7.1: ff02::1:ff00:0/104 + the low 24 bits of ``addr``."""
    low = int(ipaddress.IPv6Address(addr)) & 0xFFFFFF
    return str(ipaddress.IPv6Address(int(ipaddress.IPv6Address("ff02::1:ff00:0")) | low))


def groups6(vips: Iterable[str]) -> set[str]:
    """The groups an IPv6 instance with virtual addresses ``vips`` needs on its LAN."""
    return {VRRP_GROUP6} | {solicited_node(a) for a in vips if ":" in a}


class Memberships:
    """Joined ``(ifindex, group)`` pairs, held by sockets opened in the namespace."""

    def __init__(self, netns: str | None) -> None:
        self.netns = netns
        self._socks: list[socket.socket] = []
        self._joined: dict[tuple[int, str], socket.socket] = {}

    def _new_socket(self) -> socket.socket:
        s = in_netns(self.netns, lambda: socket.socket(socket.AF_INET6, socket.SOCK_DGRAM))
        # the agent never reads from it: no multicast data should queue up there
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 256)
        self._socks.append(s)
        return s

    @staticmethod
    def _mreq(ifindex: int, group: str) -> bytes:
        return socket.inet_pton(socket.AF_INET6, group) + struct.pack("@I", ifindex)

    def _join(self, ifindex: int, group: str) -> None:
        mreq = self._mreq(ifindex, group)
        for s in reversed(self._socks):
            try:
                s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_JOIN_GROUP, mreq)
            except OSError as e:
                if e.errno in (errno.ENOBUFS, errno.ENOMEM):  # this socket is full
                    continue
                if e.errno == errno.EADDRINUSE:  # already joined on this socket
                    self._joined[(ifindex, group)] = s
                    return
                raise
            self._joined[(ifindex, group)] = s
            return
        s = self._new_socket()
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_JOIN_GROUP, mreq)
        self._joined[(ifindex, group)] = s

    def set(self, want: Iterable[tuple[int, str]]) -> None:
        """Join exactly the ``(ifindex, group)`` pairs of ``want`` (leave the others)."""
        want = set(want)
        for key in [k for k in self._joined if k not in want]:
            s = self._joined.pop(key)
            try:
                s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_LEAVE_GROUP, self._mreq(*key))
            except OSError:  # the interface went away, and the membership with it
                pass
        for key in sorted(want - self._joined.keys()):
            try:
                self._join(*key)
            except OSError as e:
                log.warning("joining %s on interface %d failed: %s", key[1], key[0], e)

    @property
    def joined(self) -> set[tuple[int, str]]:
        return set(self._joined)

    def close(self) -> None:
        for s in self._socks:
            s.close()
        self._socks.clear()
        self._joined.clear()
