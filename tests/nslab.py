"""Throw-away network namespaces for tests, always cleaned up.

    with Lab() as lab:
        r1 = lab.netns()                       # unique name, e.g. "t1234x0"
        lan = lab.netns()
        lab.veth(r1, "eth0", lan, "r1p")       # veth pair across two namespaces
        lab.bridge(lan, "br0", ["r1p"])        # bridge enslaving ports, all up
        lab.run(r1, "ip", "addr", "add", "192.0.2.1/24", "dev", "eth0")
        links = lab.ip_json(r1, "link", "show")  # parsed `ip -j ...` output

Every namespace created by a :class:`Lab` is deleted on exit (which also
deletes the interfaces in it), even when the test failed. Names are unique per
process and per lab: ``t<pid>x<n>``; pass ``prefix`` to tell labs apart.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
from collections.abc import Sequence
from typing import Any

_counter = itertools.count()


def sh(*args: str, check: bool = True, input: str | None = None) -> subprocess.CompletedProcess:
    """Run a command, capture its output; raise with stderr when it fails."""
    p = subprocess.run(list(args), capture_output=True, text=True, input=input)
    if check and p.returncode != 0:
        raise RuntimeError(f"{' '.join(args)!r} failed ({p.returncode}): {p.stderr.strip()}")
    return p


class Lab:
    """A set of network namespaces that disappear on :meth:`close`."""

    def __init__(self, prefix: str = "t") -> None:
        self.prefix = prefix
        self.namespaces: list[str] = []

    # lifecycle ---------------------------------------------------------
    def __enter__(self) -> Lab:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        for ns in reversed(self.namespaces):
            sh("ip", "netns", "del", ns, check=False)
        self.namespaces.clear()

    # building ----------------------------------------------------------
    def netns(self, name: str | None = None) -> str:
        """Create a namespace (unique name unless given) with ``lo`` up."""
        name = name or f"{self.prefix}{os.getpid()}x{next(_counter)}"
        sh("ip", "netns", "add", name)
        self.namespaces.append(name)
        sh("ip", "-n", name, "link", "set", "lo", "up")
        return name

    def veth(self, ns: str, name: str, peer_ns: str | None = None,
             peer: str | None = None, up: bool = True) -> tuple[str, str]:
        """A veth pair ``ns:name`` ↔ ``peer_ns:peer`` (same namespace when ``peer_ns`` is None;
        default peer name ``<name>p``). Both ends are set up unless ``up=False``."""
        peer_ns = peer_ns or ns
        peer = peer or f"{name}p"
        sh("ip", "-n", ns, "link", "add", name, "type", "veth", "peer", "name", peer,
           "netns", peer_ns)
        if up:
            sh("ip", "-n", ns, "link", "set", name, "up")
            sh("ip", "-n", peer_ns, "link", "set", peer, "up")
        return name, peer

    def bridge(self, ns: str, name: str, ports: Sequence[str] = (), up: bool = True) -> str:
        """A bridge in ``ns`` enslaving ``ports`` (interfaces already in ``ns``)."""
        sh("ip", "-n", ns, "link", "add", name, "type", "bridge")
        for p in ports:
            sh("ip", "-n", ns, "link", "set", p, "master", name)
        if up:
            sh("ip", "-n", ns, "link", "set", name, "up")
        return name

    # inspecting --------------------------------------------------------
    def run(self, ns: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        """Run a command inside ``ns`` (``ip netns exec``)."""
        return sh("ip", "netns", "exec", ns, *args, check=check)

    def ip_json(self, ns: str, *args: str) -> Any:
        """``ip -j -n NS ARGS`` parsed (``[]`` for empty output)."""
        out = sh("ip", "-j", "-d", "-n", ns, *args).stdout.strip()
        return json.loads(out) if out else []

    def link(self, ns: str, name: str) -> dict | None:
        """``ip -j -d link show NAME`` as a dict, or None when it does not exist."""
        p = sh("ip", "-j", "-d", "-n", ns, "link", "show", "dev", name, check=False)
        if p.returncode != 0 or not p.stdout.strip():
            return None
        return json.loads(p.stdout)[0]

    def addresses(self, ns: str, name: str, family: str = "inet") -> list[str]:
        """``["192.0.2.1/24", ...]`` on ``name`` (family ``inet`` or ``inet6``)."""
        p = sh("ip", "-j", "-n", ns, "addr", "show", "dev", name, check=False)
        if p.returncode != 0 or not p.stdout.strip():
            return []
        out = []
        for a in json.loads(p.stdout)[0].get("addr_info", []):
            if a.get("family") == family:
                out.append(f"{a['local']}/{a['prefixlen']}")
        return out

    def sysctl(self, ns: str, key: str) -> str:
        """A sysctl value read inside ``ns`` (``net.ipv4.conf.eth0.forwarding``)."""
        return self.run(ns, "sysctl", "-n", key).stdout.strip()
