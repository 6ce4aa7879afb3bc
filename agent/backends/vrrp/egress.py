"""What may leave a virtual-MAC macvlan: a tc egress filter that keeps the backup silent.

Every frame leaving the macvlan carries the virtual MAC as source, and a LAN switch learns
that MAC on the port it came from: a single frame from the backup (measured: MLDv2 reports
and router solicitations from the IPv6 macvlan's link-local, IGMPv3 reports from the IPv4
one, at link-up, on reloads and when the old master gives its addresses up) diverts the
master's traffic to the backup until the master's next advertisement.

The filter is stateless: it lets through only what a backup cannot send, so it needs no
switching on transitions (the FIFO tells a transition after keepalived already acted, too
late for the first gratuitous ARP or the old master's last MLD report):

- VRRP advertisements (IPv4 protocol / IPv6 next header 112): only a master sends them;
- ARP whose sender address is a virtual address (gratuitous ARP, ARP replies for the VIP);
- IPv4 / IPv6 packets whose source is a virtual address (neighbor advertisements for the
  VIPs, replies in accept mode), except membership reports;
- nothing else: no IGMP/MLD report (IPv4 protocol 2, IPv6 hop-by-hop header or MLD ICMPv6
  types), no router solicitation, nothing from the macvlan's own random link-local.

Only the master holds the virtual addresses, so only it sends the last two kinds.

Membership reports are dropped on the master too: a switch must not learn the virtual MAC
from a report either (the old master's leave report goes out when keepalived removes the
VIPs, i.e. after it has become backup). Snooping switches still get the groups the routers
need (ff02::12, the VIPs' solicited-node groups) from the parent interface, which joins
them with its own MAC (:mod:`agent.backends.vrrp.mcast`).

The kernel here has no flower/matchall/gact, so the filter is one classic BPF program in
``cls_bpf`` direct-action mode (its return value is the verdict): one ``tc`` line per
macvlan, replaced in place (``tc filter replace``: never a moment without a filter).
"""

from __future__ import annotations

import ipaddress
import struct
import subprocess
from collections.abc import Iterable

TC_ACT_OK = 0
TC_ACT_SHOT = 2
PREF = 1  # the filter's priority and handle on the macvlan's clsact egress hook
HANDLE = 1

# classic BPF opcodes
_LDH_ABS, _LDB_ABS, _LD_ABS, _JEQ_K, _RET_K = 0x28, 0x30, 0x20, 0x15, 0x06
_ETH_IP, _ETH_ARP, _ETH_IPV6 = 0x0800, 0x0806, 0x86DD
_PROTO_IGMP, _PROTO_VRRP, _NH_HOPOPTS, _NH_ICMPV6 = 2, 112, 0, 58
_MLD_TYPES = (130, 131, 132, 143)  # query, v1 report, done, v2 report
# offsets from the start of the Ethernet header (cls_bpf runs on the whole frame)
_ARP_SPA = 14 + 14
_IP4_PROTO, _IP4_SRC = 14 + 9, 14 + 12
_IP6_NH, _IP6_SRC, _ICMP6_TYPE = 14 + 6, 14 + 8, 14 + 40

Insn = tuple[int, int, int, int]


class _Prog:
    """A tiny classic-BPF assembler with labels (jumps are forward only, 8-bit)."""

    def __init__(self) -> None:
        self.code: list[tuple[int, str | int, str | int, int]] = []
        self.labels: dict[str, int] = {}

    def label(self, name: str) -> None:
        self.labels[name] = len(self.code)

    def ld(self, op: int, off: int) -> None:
        self.code.append((op, 0, 0, off))

    def jeq(self, k: int, jt: str | int = 0, jf: str | int = 0) -> None:
        self.code.append((_JEQ_K, jt, jf, k))

    def ret(self, k: int) -> None:
        self.code.append((_RET_K, 0, 0, k))

    def _rel(self, pc: int, j: str | int) -> int:
        if isinstance(j, int):
            return j
        d = self.labels[j] - pc - 1
        if not 0 <= d <= 255:
            raise ValueError(f"BPF jump to {j} out of range ({d})")
        return d

    def assemble(self) -> list[Insn]:
        return [(op, self._rel(pc, jt), self._rel(pc, jf), k)
                for pc, (op, jt, jf, k) in enumerate(self.code)]


def program(vips: Iterable[str]) -> list[Insn]:
    """The classic BPF program of a macvlan whose instance has the virtual addresses
    ``vips`` (both families are handled whatever the instance's family: a frame of the
    other family has a source that is no VIP and is dropped)."""
    v4 = [int(ipaddress.IPv4Address(a)) for a in vips if ":" not in a]
    v6 = [ipaddress.IPv6Address(a).packed for a in vips if ":" in a]
    p = _Prog()
    p.ld(_LDH_ABS, 12)
    p.jeq(_ETH_IP, "ip4")
    p.jeq(_ETH_IPV6, "ip6")
    p.jeq(_ETH_ARP, 0, "drop")
    p.ld(_LD_ABS, _ARP_SPA)
    for a in v4:
        p.jeq(a, "pass")
    p.ret(TC_ACT_SHOT)

    p.label("ip4")
    p.ld(_LDB_ABS, _IP4_PROTO)
    p.jeq(_PROTO_VRRP, "pass")
    p.jeq(_PROTO_IGMP, "drop")
    p.ld(_LD_ABS, _IP4_SRC)
    for a in v4:
        p.jeq(a, "pass")
    p.ret(TC_ACT_SHOT)

    p.label("ip6")
    p.ld(_LDB_ABS, _IP6_NH)
    p.jeq(_PROTO_VRRP, "pass")
    p.jeq(_NH_HOPOPTS, "drop")  # MLD always carries a router-alert hop-by-hop header
    p.jeq(_NH_ICMPV6, 0, "src6")
    p.ld(_LDB_ABS, _ICMP6_TYPE)
    for t in _MLD_TYPES:
        p.jeq(t, "drop")
    p.label("src6")
    for i, a in enumerate(v6):
        words = struct.unpack("!4I", a)
        nxt = f"v6next{i}"
        for w, word in enumerate(words):
            p.ld(_LD_ABS, _IP6_SRC + 4 * w)
            p.jeq(word, "pass" if w == 3 else 0, nxt)
        p.label(nxt)
    p.label("drop")
    p.ret(TC_ACT_SHOT)
    p.label("pass")
    p.ret(TC_ACT_OK)
    return p.assemble()


def bytecode(prog: list[Insn]) -> str:
    """``tc ... bpf bytecode`` text: ``N,op jt jf k,...``."""
    return ",".join([str(len(prog))] + [f"{op} {jt} {jf} {k}" for op, jt, jf, k in prog])


def tc_lines(ifname: str, vips: Iterable[str]) -> list[str]:
    """``tc -batch`` lines installing (or replacing in place) the filter of ``ifname``."""
    return [
        f"qdisc replace dev {ifname} clsact",
        f"filter replace dev {ifname} egress pref {PREF} handle {HANDLE} protocol all "
        f'bpf da bytecode "{bytecode(program(vips))}"',
    ]


def tc_batch(netns: str | None, lines: list[str]) -> None:
    """Run ``tc -batch`` (one process for any number of lines) inside ``netns``."""
    if not lines:
        return
    cmd = ["tc"] + (["-n", netns] if netns else []) + ["-batch", "-"]
    p = subprocess.run(cmd, input="\n".join(lines) + "\n", capture_output=True, text=True)
    if p.returncode != 0:
        raise OSError(f"tc -batch failed: {(p.stderr or p.stdout).strip()}")
