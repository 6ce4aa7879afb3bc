"""Link speed from the driver (ethtool ``ETHTOOL_GSET`` ioctl), inside the managed namespace.

``/sys/class/net/X/speed`` shows the namespace sysfs was mounted in, not the managed one;
the ioctl on a socket created inside the namespace asks the same driver callback.
"""

from __future__ import annotations

import ctypes
import fcntl
import socket
import struct

from agent.backends.nsenter import in_netns

SIOCETHTOOL = 0x8946
ETHTOOL_GSET = 0x1
_SPEED_UNKNOWN = 0xFFFFFFFF


class SpeedReader:
    def __init__(self, netns: str | None) -> None:
        self.sock: socket.socket = in_netns(  # type: ignore[assignment]
            netns, lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        )
        self._cmd = ctypes.create_string_buffer(44)  # struct ethtool_cmd
        self._addr = ctypes.addressof(self._cmd)

    def close(self) -> None:
        self.sock.close()

    def speed(self, name: str) -> int | None:
        """Speed in bit/s, ``None`` when the driver doesn't know (or has no ethtool)."""
        struct.pack_into("=I", self._cmd, 0, ETHTOOL_GSET)
        ifreq = struct.pack("16sP", name.encode()[:15], self._addr).ljust(40, b"\0")
        try:
            fcntl.ioctl(self.sock.fileno(), SIOCETHTOOL, ifreq)
        except OSError:
            return None
        lo = struct.unpack_from("=H", self._cmd, 12)[0]  # speed
        hi = struct.unpack_from("=H", self._cmd, 28)[0]  # speed_hi
        mbps = lo | hi << 16
        if mbps in (0, _SPEED_UNKNOWN, 0xFFFF):
            return None
        return mbps * 1_000_000
