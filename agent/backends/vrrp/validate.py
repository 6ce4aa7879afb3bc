"""Configurations keepalived would refuse (or silently get wrong), as rpc-errors.

Each check names the offending node in ``error-path``. ``keepalived -t`` guards the
rendered file too, but it misses several of these (measured on 2.2.7: a VRRPv2 instance
with an IPv6 address and a multicast virtual address both pass ``-t``).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Mapping

from lxml import etree

from agent.backends.vrrp.model import VRRP, VrrpConfig, VrrpInstance
from agent.backends.vrrp.names import vmac_ifname
from agent.protocol.errors import RpcError

PREEMPT_DELAY_MAX = 1000  # keepalived preempt_delay range 0..1000 s
MAX_VIPS = {4: 16, 6: 2}  # RFC 8347 max-elements
KEEPALIVED_ADVERT_CENTIS = (1, 25500)  # advert_int 0.01..255 s

PathFn = Callable[[etree._Element], tuple[str, dict[str, str]]]


def _find(inst: VrrpInstance, *names: str) -> etree._Element | None:
    e = inst.elem
    for n in names:
        if e is None:
            return None
        e = e.find(f"{{{VRRP}}}{n}")
    return e


def check(cfg: VrrpConfig, src4: Mapping[str, str | None], path: PathFn) -> list[RpcError]:
    """Every refusal found in ``cfg`` (``src4``: the IPv4 source address per parent)."""
    errors: list[RpcError] = []

    def err(inst: VrrpInstance, msg: str, *leaf: str, tag: str = "invalid-value",
            app_tag: str | None = None) -> None:
        node = _find(inst, *leaf) if leaf else None
        node = node if node is not None else inst.elem
        p, ns = path(node) if node is not None else (None, {})
        errors.append(RpcError(tag, msg, path=p, path_ns=ns, app_tag=app_tag))

    vip_owner: dict[tuple[str, str], VrrpInstance] = {}
    vmac_owner: dict[str, VrrpInstance] = {}
    for key in sorted(cfg.instances):
        inst = cfg.instances[key]
        what = f"VRRP instance {inst.vrid} (IPv{inst.family}) on {inst.ifname}"
        if inst.family == 6 and inst.version != 3:
            err(inst, f"{what}: IPv6 is only supported by VRRP version 3", "version")
        if inst.hold_time > PREEMPT_DELAY_MAX:
            err(inst, f"{what}: preempt hold-time {inst.hold_time} s is beyond keepalived's "
                f"limit of {PREEMPT_DELAY_MAX} s", "preempt", "hold-time")
        lo, hi = KEEPALIVED_ADVERT_CENTIS
        if not lo <= inst.advert_centis <= hi:
            err(inst, f"{what}: advertisement interval out of keepalived's range 0.01..255 s")
        vips_node = f"virtual-ipv{inst.family}-addresses"
        if not inst.vips:
            err(inst, f"{what}: at least one virtual address is required",
                tag="data-missing", app_tag="instance-required")
        if len(inst.vips) > MAX_VIPS[inst.family]:
            err(inst, f"{what}: at most {MAX_VIPS[inst.family]} virtual IPv{inst.family} "
                "addresses", vips_node, tag="operation-failed", app_tag="too-many-elements")
        if inst.family == 6 and inst.vips and not ipaddress.IPv6Address(
                inst.vips[0]).is_link_local:
            err(inst, f"{what}: the first virtual IPv6 address must be link-local "
                "(RFC 5798 section 5.2.9)", vips_node)
        for v in inst.vips:
            a = ipaddress.ip_address(v)
            if a.is_multicast or a.is_unspecified or a.is_loopback or (
                    a.version == 4 and a == ipaddress.IPv4Address("255.255.255.255")):
                err(inst, f"{what}: {v} cannot be a virtual address", vips_node)
            # An IPv6 link-local address is one per link (it is scoped by its zone, the
            # interface): fe80::1 on two interfaces are two addresses. A global one, and
            # an IPv4 one (169.254/16 has no zone: two interfaces holding it is ambiguous
            # to the kernel's routing), is one per router.
            vkey = (inst.ifname if a.version == 6 and a.is_link_local else "", v)
            other = vip_owner.get(vkey)
            if other is not None and other.key != inst.key:
                err(inst, f"{what}: virtual address {v} is already used by VRRP instance "
                    f"{other.vrid} on {other.ifname}", vips_node)
            vip_owner.setdefault(vkey, inst)
        name = vmac_ifname(*inst.key)
        if name in vmac_owner:
            o = vmac_owner[name]
            err(inst, f"{what}: its macvlan name {name} collides with VRRP instance "
                f"{o.vrid} on {o.ifname}; rename the interface", "vrid")
        vmac_owner[name] = inst
        if inst.family == 4 and not src4.get(inst.ifname):
            err(inst, f"{what}: interface {inst.ifname} has no IPv4 address to send "
                "VRRP advertisements from", tag="data-missing")
        for t, _ in inst.track_interfaces:
            if t == name:
                err(inst, f"{what}: cannot track its own virtual-MAC interface", "track")
        if inst.is_owner:
            _owner(inst, cfg, err)
    return errors


def _owner(inst: VrrpInstance, cfg: VrrpConfig, err: Callable[..., None]) -> None:
    """An address owner (a virtual address is one of the interface's own, RFC 5798 §1.2)
    runs at priority 255: keepalived starts it as master at once, always preempting.

    keepalived 2.2.7 ``-t`` exits 5 on each of these (measured on the rendered file):
    ``nopreempt is incompatible with priority 255``, ``preempt delay will not work with
    initial state MASTER`` and ``ignoring <if> tracked interface`` / ``ignoring tracked
    file`` ``due to address owner``. Tracking is refused, not merely warned about: beside
    ``-t`` refusing it, it cannot work, an owner's priority being 255 whatever fails
    (RFC 5798 §5.2.4), so the decrement would be silently dropped."""
    ic = cfg.interfaces.get(inst.ifname)
    own = {str(ipaddress.ip_interface(a).ip)
           for a in ((ic.ipv4 if inst.family == 4 else ic.ipv6) if ic else [])}
    addr = next((v for v in inst.vips if v in own), inst.vips[0] if inst.vips else "?")
    what = f"VRRP instance {inst.vrid} on {inst.ifname} owns {addr} (an address of " \
        f"{inst.ifname})"
    if not inst.preempt:
        err(inst, f"{what}: an owner always preempts; preempt enabled must be true",
            "preempt", "enabled")
    if inst.hold_time:
        err(inst, f"{what}: an owner always preempts at once; preempt hold-time must be 0",
            "preempt", "hold-time")
    for node, items in (("interfaces", inst.track_interfaces),
                        ("networks", inst.track_networks)):
        if items:
            names = ", ".join(n for n, _ in items)
            err(inst, f"{what}: an owner's priority is always 255, tracking cannot lower "
                f"it; remove the tracked {node} ({names})", "track", node)
