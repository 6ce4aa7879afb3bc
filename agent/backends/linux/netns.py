"""Opening netlink sockets in the managed network namespace."""

from __future__ import annotations

from pyroute2 import IPRoute


def open_iproute(netns: str | None) -> IPRoute:
    """An ``IPRoute`` for the namespace ``netns`` (``None``: the agent's own).

    pyroute2 ≥ 0.9 enters the namespace itself (``IPRoute(netns=...)``)."""
    return IPRoute(netns=netns) if netns else IPRoute()
