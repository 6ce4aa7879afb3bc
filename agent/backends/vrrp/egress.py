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

A parent interface that owns VIPs (address owner, priority 255) gets a filter of its own,
an eBPF program that keeps the parent's physical MAC out of the ARP and IPv6 neighbor
discovery messages about those addresses (see "owner ARP" below).
"""

from __future__ import annotations

import ipaddress
import struct
import subprocess
from collections.abc import Iterable, Mapping

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


def tc_batch(netns: str | None, lines: list[str], force: bool = False) -> None:
    """Run ``tc -batch`` (one process for any number of lines) inside ``netns``;
    ``force``: run every line whatever fails, and raise nothing."""
    if not lines:
        return
    cmd = ["tc"] + (["-n", netns] if netns else []) + (["-force"] if force else [])
    cmd += ["-batch", "-"]
    p = subprocess.run(cmd, input="\n".join(lines) + "\n", capture_output=True, text=True)
    if p.returncode != 0 and not force:
        raise OSError(f"tc -batch failed: {(p.stderr or p.stdout).strip()}")


# ======================================================================= owner ARP / ND
# An address owner's VIP is the parent's own address: the parent answers ARP for it with
# the physical MAC beside the macvlan's answer with the virtual MAC, and the owner's own
# neighbour resolution (ARP requests with the VIP as sender) teaches every host that
# hears it the physical MAC again (Linux updates an existing entry from any ARP it
# sees). RFC 5798 §8.1.2: a router "SHOULD NOT send any ARP messages using its physical
# MAC address for the IPv4 address it owns".
#
# The parent's egress filter acts on ARP whose sender protocol address (SPA) is an owned
# VIP and whose Ethernet source is not that instance's virtual MAC (sent by the parent,
# not by the macvlan, whose frames cross the parent's egress hook too):
#
# - replies and gratuitous ARP: the sender hardware address (SHA) becomes the virtual
#   MAC. The Ethernet source stays the parent's MAC, so no switch learns the virtual MAC
#   from the owner while it is not master; and VIP → virtual MAC is the right mapping
#   whichever router is master. (Dropping them instead would leave the owner's own
#   address unanswered whenever its macvlan holds no VIP: agent stopped, keepalived
#   restarting.)
# - other requests: the SPA becomes 0.0.0.0 (an RFC 5227 ARP probe). The target answers
#   it, to the parent's MAC that the request still carries (a request with the virtual
#   MAC would be answered to the macvlan, where the parent's pending neighbour entry never
#   sees the answer), but nobody learns anything about the VIP from it;
# - anything else: dropped.
#
# IPv6 (RFC 5798 §7.3, §8.1.2: the master answers ND for its VIPs with the virtual MAC) is
# the same, for ICMPv6 right after a plain IPv6 header (next header 58; nothing behind
# extension headers is looked into) sent by the parent (Ethernet source not the instance's
# virtual MAC 00:00:5e:00:02:VRID). An owned IPv6 VIP is an owner's VIP among the parent's
# configured addresses, and its link-local VIP (which may be the parent's own link-local):
#
# - neighbor advertisements (solicited or not) whose target is an owned VIP: the target
#   link-layer address option becomes the virtual MAC; one without options (Linux's answer
#   to a unicast solicitation) teaches nothing and passes; one whose first option is no
#   TLLA is dropped;
# - neighbor solicitations whose source is an owned VIP: the source becomes the parent's
#   link-local (else another of its addresses no instance owns), the IPv6 analogue of the
#   ARP probe. The source link-layer address option keeps the parent's MAC: the target
#   learns it for that other address only, and answers it to the parent, whose pending
#   neighbour entry (keyed by the target, not by the source) sees the answer. (The virtual
#   MAC as SLLA would send the answer to the macvlan, like an ARP request with it; source
#   :: is a DAD probe, which may carry no SLLA and is answered to all nodes.) Without such
#   an address they go out unchanged.
#
# Both checksums are fixed from the difference of the bytes replaced (``bpf_csum_diff``,
# ``bpf_l4_csum_replace``; the source address is in the ICMPv6 pseudo-header, the MAC is
# not).
#
# Rewriting needs an eBPF program (``bpf_skb_store_bytes``): classic BPF can only accept
# or drop. It is assembled here, loaded with bpf(2) and attached by netlink
# (``TCA_BPF_FD``): no compiler, no bpffs. The filter keeps the program alive.

OWNER_PREF = 0xF000  # priority of the owner filter on the parent's clsact egress hook
OWNER_HANDLE = 1
OWNER_NAME = "vrrp-owner-arp"

_BPF_PROG_LOAD, _BPF_PROG_TYPE_SCHED_CLS = 5, 3
_NR_BPF = {"x86_64": 321, "aarch64": 280, "riscv64": 280, "ppc64le": 361, "s390x": 351}
_FUNC_SKB_STORE_BYTES, _FUNC_L4_CSUM_REPLACE, _FUNC_SKB_LOAD_BYTES, _FUNC_CSUM_DIFF = 9, 11, 26, 28
_BPF_F_PSEUDO_HDR = 0x10
# eBPF opcodes
_E_MOV_X, _E_MOV_K, _E_ADD_K, _E_OR_K, _E_LSH_K = 0xBF, 0xB7, 0x07, 0x47, 0x67
_E_LDW, _E_LDH, _E_LDB = 0x20, 0x28, 0x30  # BPF_LD | BPF_ABS (legacy packet access, in r0)
_E_LDXW_CTX, _E_STX_W, _E_JLT32_K = 0x61, 0x63, 0xA6
_E_JEQ32_K, _E_JNE32_K, _E_JEQ32_X = 0x16, 0x56, 0x1E  # 32-bit compares (JMP32)
_E_JA, _E_CALL, _E_EXIT, _E_ST_W, _E_STX_H = 0x05, 0x85, 0x95, 0x62, 0x6B
_ETH_SRC, _ARP_OP, _ARP_SHA, _ARP_TPA = 6, 14 + 6, 14 + 8, 14 + 24
_ICMP6_CSUM, _NA_TARGET, _NA_OPT = _ICMP6_TYPE + 2, _ICMP6_TYPE + 8, _ICMP6_TYPE + 24


class _EProg:
    """A tiny eBPF assembler with forward labels."""

    def __init__(self) -> None:
        self.code: list[tuple[int, int, int, str | int, int]] = []  # op, dst, src, off, imm
        self.labels: dict[str, int] = {}

    def label(self, name: str) -> None:
        self.labels[name] = len(self.code)

    def op(self, code: int, dst: int = 0, src: int = 0, off: str | int = 0,
           imm: int = 0) -> None:
        if imm >= 1 << 31:  # a 32-bit constant: same bits as s32 (the compares are 32-bit)
            imm -= 1 << 32
        self.code.append((code, dst, src, off, imm))

    def store_bytes(self, offset: int, stack: int, length: int) -> None:
        """``bpf_skb_store_bytes(skb, offset, fp + stack, length, 0)``; drop on failure."""
        self.op(_E_MOV_X, 1, 6)
        self.op(_E_MOV_K, 2, imm=offset)
        self.op(_E_MOV_X, 3, 10)
        self.op(_E_ADD_K, 3, imm=stack)
        self.op(_E_MOV_K, 4, imm=length)
        self.op(_E_MOV_K, 5, imm=0)
        self.op(_E_CALL, imm=_FUNC_SKB_STORE_BYTES)
        self.op(_E_JNE32_K, 0, off="drop", imm=0)  # never send it unchanged
        self.op(_E_JA, off="pass")

    def assemble(self) -> bytes:
        out = bytearray()
        for pc, (code, dst, src, off, imm) in enumerate(self.code):
            if isinstance(off, str):
                off = self.labels[off] - pc - 1
            out += struct.pack("<BBhi", code, (src << 4) | dst, off, imm)
        return bytes(out)


def _ne_match(p: _EProg, off: int, v6: list[tuple[bytes, int]], tag: str) -> None:
    """Jump to ``{tag}owned`` with r8 = the VRID and r9 = 0x0200 | VRID (the virtual MAC's
    last two bytes) if the 16 bytes at ``off`` are an owned IPv6 VIP; else to ``pass``."""
    for i, (packed, vrid) in enumerate(v6):
        nxt = f"{tag}next{i}"
        for w, word in enumerate(struct.unpack("!4I", packed)):
            p.op(_E_LDW, imm=off + 4 * w)
            p.op(_E_JNE32_K, 0, off=nxt, imm=word)
        p.op(_E_MOV_K, 8, imm=vrid)
        p.op(_E_MOV_K, 9, imm=0x0200 | vrid)
        p.op(_E_JA, off=f"{tag}owned")
        p.label(nxt)
    p.op(_E_JA, off="pass")


def _stack_bytes(p: _EProg, stack: int, data: bytes) -> None:
    """Constant ``data`` (a multiple of 4 bytes) onto the stack at ``fp + stack``."""
    for i in range(0, len(data), 4):
        p.op(_E_ST_W, 10, off=stack + i, imm=struct.unpack("<I", data[i:i + 4])[0])


def _rewrite(p: _EProg, offset: int, new: int, old: int, length: int, csum_flags: int) -> None:
    """Replace the ``length`` bytes at ``offset`` by those at ``fp + new`` (``old``: room
    for the old ones) and fix the ICMPv6 checksum by their difference; drop on failure."""
    p.op(_E_MOV_X, 1, 6)  # bpf_skb_load_bytes(skb, offset, fp + old, length)
    p.op(_E_MOV_K, 2, imm=offset)
    p.op(_E_MOV_X, 3, 10)
    p.op(_E_ADD_K, 3, imm=old)
    p.op(_E_MOV_K, 4, imm=length)
    p.op(_E_CALL, imm=_FUNC_SKB_LOAD_BYTES)
    p.op(_E_JNE32_K, 0, off="drop", imm=0)
    p.op(_E_MOV_X, 1, 10)  # bpf_csum_diff(fp + old, length, fp + new, length, 0)
    p.op(_E_ADD_K, 1, imm=old)
    p.op(_E_MOV_K, 2, imm=length)
    p.op(_E_MOV_X, 3, 10)
    p.op(_E_ADD_K, 3, imm=new)
    p.op(_E_MOV_K, 4, imm=length)
    p.op(_E_MOV_K, 5, imm=0)
    p.op(_E_CALL, imm=_FUNC_CSUM_DIFF)
    p.op(_E_MOV_X, 7, 0)
    p.op(_E_MOV_X, 1, 6)  # bpf_skb_store_bytes(skb, offset, fp + new, length, 0)
    p.op(_E_MOV_K, 2, imm=offset)
    p.op(_E_MOV_X, 3, 10)
    p.op(_E_ADD_K, 3, imm=new)
    p.op(_E_MOV_K, 4, imm=length)
    p.op(_E_MOV_K, 5, imm=0)
    p.op(_E_CALL, imm=_FUNC_SKB_STORE_BYTES)
    p.op(_E_JNE32_K, 0, off="drop", imm=0)
    p.op(_E_MOV_X, 1, 6)  # bpf_l4_csum_replace(skb, checksum, 0, diff, flags)
    p.op(_E_MOV_K, 2, imm=_ICMP6_CSUM)
    p.op(_E_MOV_K, 3, imm=0)
    p.op(_E_MOV_X, 4, 7)
    p.op(_E_MOV_K, 5, imm=csum_flags)
    p.op(_E_CALL, imm=_FUNC_L4_CSUM_REPLACE)
    p.op(_E_JNE32_K, 0, off="drop", imm=0)
    p.op(_E_JA, off="pass")


def _from_macvlan(p: _EProg, tag: str) -> None:
    """Jump to ``pass`` if the Ethernet source is the virtual MAC whose last two bytes
    are in r9 (the macvlan's own frames cross the parent's egress hook too)."""
    p.op(_E_LDW, imm=_ETH_SRC)
    p.op(_E_JNE32_K, 0, off=f"{tag}parent", imm=0x00005E00)
    p.op(_E_LDH, imm=_ETH_SRC + 4)
    p.op(_E_JEQ32_X, 0, 9, off="pass")
    p.label(f"{tag}parent")


def owner_program(owned: Mapping[str, int], source6: str | None = None) -> bytes:
    """The parent's eBPF program for ``owned``: owned VIP (IPv4 or IPv6) → its instance's
    VRID; ``source6``: the parent's address its neighbour solicitations from an owned
    IPv6 VIP are sent from instead (None: they go out unchanged).
    Registers: r6 the skb, r8 the VRID of the VIP found, r9 its virtual MAC's last two
    bytes, r7 a checksum difference."""
    v4 = sorted((int(ipaddress.IPv4Address(a)), vrid) for a, vrid in owned.items()
                if ":" not in a)
    v6 = sorted((ipaddress.IPv6Address(a).packed, vrid) for a, vrid in owned.items()
                if ":" in a)
    p = _EProg()
    p.op(_E_MOV_X, 6, 1)  # r6 = skb (legacy packet loads need it there)
    p.op(_E_LDH, imm=12)  # (the verifier refuses unreachable code: no empty branch)
    if v6:
        p.op(_E_JEQ32_K, 0, off="ip6", imm=_ETH_IPV6)
    if v4:
        p.op(_E_JEQ32_K, 0, off="arp", imm=_ETH_ARP)
    p.op(_E_JA, off="pass")
    if v4:
        _owner_arp(p, v4)
    if v6:
        _owner_nd(p, v6, source6)
    p.label("pass")
    p.op(_E_MOV_K, 0, imm=TC_ACT_OK)
    p.op(_E_EXIT)
    p.label("drop")
    p.op(_E_MOV_K, 0, imm=TC_ACT_SHOT)
    p.op(_E_EXIT)
    return p.assemble()


def _owner_arp(p: _EProg, v4: list[tuple[int, int]]) -> None:
    p.label("arp")
    p.op(_E_LDW, imm=_ARP_SPA)
    for i, (vip, _) in enumerate(v4):
        p.op(_E_JEQ32_K, 0, off=f"vip{i}", imm=vip)
    p.op(_E_JA, off="pass")
    for i, (_, vrid) in enumerate(v4):
        p.label(f"vip{i}")
        p.op(_E_MOV_K, 8, imm=vrid)
        p.op(_E_JA, off="owned")
    p.label("owned")
    p.op(_E_MOV_X, 9, 8)
    p.op(_E_OR_K, 9, imm=0x0100)
    _from_macvlan(p, "arp")
    p.op(_E_LDH, imm=_ARP_OP)
    p.op(_E_JEQ32_K, 0, off="sha", imm=2)  # reply
    p.op(_E_JNE32_K, 0, off="drop", imm=1)  # neither reply nor request
    p.op(_E_LDW, imm=_ARP_SPA)
    p.op(_E_MOV_X, 9, 0)
    p.op(_E_LDW, imm=_ARP_TPA)
    p.op(_E_JEQ32_X, 0, 9, off="sha")  # gratuitous request
    p.op(_E_ST_W, 10, off=-4, imm=0)  # ordinary request: SPA = 0.0.0.0
    p.store_bytes(_ARP_SPA, -4, 4)
    p.label("sha")  # SHA = 00:00:5e:00:01:VRID
    p.op(_E_ST_W, 10, off=-8, imm=0x005E0000)  # bytes 00 00 5e 00
    p.op(_E_MOV_X, 9, 8)
    p.op(_E_LSH_K, 9, imm=8)
    p.op(_E_OR_K, 9, imm=0x01)
    p.op(_E_STX_H, 10, 9, off=-4)  # bytes 01 VRID
    p.store_bytes(_ARP_SHA, -8, 6)


def _owner_nd(p: _EProg, v6: list[tuple[bytes, int]], source6: str | None) -> None:
    p.label("ip6")  # only a plain ICMPv6 header: no extension header is looked into
    p.op(_E_LDB, imm=_IP6_NH)
    p.op(_E_JNE32_K, 0, off="pass", imm=_NH_ICMPV6)
    p.op(_E_LDB, imm=_ICMP6_TYPE)
    p.op(_E_JEQ32_K, 0, off="na", imm=136)
    p.op(_E_JNE32_K, 0, off="pass", imm=135)
    # neighbor solicitation from an owned VIP: from the parent's other address instead
    _ne_match(p, _IP6_SRC, v6, "ns")
    p.label("nsowned")
    _from_macvlan(p, "ns")
    if source6 is None:
        p.op(_E_JA, off="pass")
    else:
        _stack_bytes(p, -32, ipaddress.IPv6Address(source6).packed)
        _rewrite(p, _IP6_SRC, -32, -48, 16, _BPF_F_PSEUDO_HDR)
    p.label("na")  # neighbor advertisement for an owned VIP: TLLA = 00:00:5e:00:02:VRID
    _ne_match(p, _NA_TARGET, v6, "na")
    p.label("naowned")
    _from_macvlan(p, "na")
    p.op(_E_LDXW_CTX, 0, 6, off=0)  # skb->len: no option at all teaches nothing
    p.op(_E_JLT32_K, 0, off="pass", imm=_NA_OPT + 8)
    p.op(_E_LDH, imm=_NA_OPT)
    p.op(_E_JNE32_K, 0, off="drop", imm=0x0201)  # first option not a TLLA: never out
    # the option as a whole (8 bytes, 4-aligned for bpf_csum_diff): 02 01 00 00 5e 00 02 VRID
    p.op(_E_ST_W, 10, off=-24, imm=0x00000102)
    p.op(_E_MOV_X, 9, 8)
    p.op(_E_LSH_K, 9, imm=24)
    p.op(_E_OR_K, 9, imm=0x0002005E)
    p.op(_E_STX_W, 10, 9, off=-20)
    _rewrite(p, _NA_OPT, -24, -16, 8, 0)


def load(insns: bytes, name: str = "vrrp_owner_arp") -> int:
    """Load a ``sched_cls`` eBPF program (bpf(2)); its file descriptor (close it)."""
    import ctypes
    import os
    import platform

    nr = _NR_BPF.get(platform.machine())
    if nr is None:  # pragma: no cover - an architecture nobody measured
        raise OSError(f"bpf(2) number unknown on {platform.machine()}")
    libc = ctypes.CDLL(None, use_errno=True)
    code = ctypes.create_string_buffer(insns, len(insns))
    lic = ctypes.create_string_buffer(b"GPL")
    log_buf = ctypes.create_string_buffer(1 << 16)
    attr = ctypes.create_string_buffer(128)
    struct.pack_into("<IIQQIIQII16s", attr, 0, _BPF_PROG_TYPE_SCHED_CLS, len(insns) // 8,
                     ctypes.addressof(code), ctypes.addressof(lic), 1, len(log_buf),
                     ctypes.addressof(log_buf), 0, 0, name.encode()[:15])
    libc.syscall.restype = ctypes.c_long
    fd = libc.syscall(ctypes.c_long(nr), ctypes.c_long(_BPF_PROG_LOAD), attr,
                      ctypes.c_long(len(attr)))
    if fd < 0:
        err = ctypes.get_errno()
        tail = log_buf.value.decode(errors="replace").strip().splitlines()[-3:]
        raise OSError(err, f"loading the eBPF owner filter: {os.strerror(err)}: "
                           + " / ".join(tail))
    return fd


def attach_owner(netns: str | None, ifindex: int, owned: Mapping[str, int],
                 source6: str | None = None) -> None:
    """Install (or replace in place) the owner filter of the parent ``ifindex``; its
    clsact qdisc must exist (:func:`owner_lines`)."""
    import os

    from agent.backends import nsenter
    from agent.backends.linux import netlink as nl

    fd = load(owner_program(owned, source6))
    try:
        tcm = struct.pack("=BxHiIII", 0, 0, ifindex, OWNER_HANDLE, 0xFFFFFFF3,  # egress
                          (OWNER_PREF << 16) | 0x0300)  # protocol htons(ETH_P_ALL)
        body = tcm + nl.attr_str(1, "bpf") + nl.attr_nest(
            2, nl.attr_u32(6, fd), nl.attr_str(7, OWNER_NAME), nl.attr_u32(8, 1))
        # RTM_NEWTFILTER, NLM_F_REQUEST | ACK | REPLACE | CREATE
        msg = nl.nlmsg(44, 0x1 | 0x4 | 0x100 | 0x400, 1, body)

        def send() -> None:
            with nl.open_socket(ext_ack=True) as s:
                s.send(msg)
                buf = s.recv(65536)
                for typ, flags, _seq, off, end in nl.headers(buf, len(buf)):
                    if typ == 2:  # NLMSG_ERROR
                        e = nl.error(buf, off, end, flags)
                        if e is not None:
                            raise e

        nsenter.in_netns(netns, send)
    finally:
        os.close(fd)


def owner_lines(ifname: str) -> list[str]:
    """``tc -batch`` lines run before :func:`attach_owner`."""
    return [f"qdisc replace dev {ifname} clsact"]


def owner_del_lines(ifname: str) -> list[str]:
    """``tc -batch`` lines removing the owner filter of ``ifname`` (run with ``-force``:
    a parent without it is fine)."""
    return [f"filter del dev {ifname} egress pref {OWNER_PREF}"]
