"""Benchmark any NETCONF server over SSH with the raw client (tools/ncraw.py).

    python tools/bench.py --host 127.0.0.1 --port 830 --user admin --password admin \\
        [--pid PID] [--interfaces 1000] [--skip-large] [--json]

Prints one line per figure (number, unit, target). It writes to the running
datastore: interfaces ``bench-edit`` and ``bench0``..``bench<N-1>`` are created
and removed again at the end. Every loop is bounded by a duration, every RPC by a
timeout, and nothing is sent anywhere but ``--host``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

try:
    from tools.ncraw import NC, RawClient, reply_errors
except ModuleNotFoundError:  # run as `python tools/bench.py` from a checkout
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from tools.ncraw import NC, RawClient, reply_errors

IF_NS = "urn:ietf:params:xml:ns:yang:ietf-interfaces"
IP_NS = "urn:ietf:params:xml:ns:yang:ietf-ip"
VRRP_NS = "urn:ietf:params:xml:ns:yang:ietf-vrrp"
IANAIFT_NS = "urn:ietf:params:xml:ns:yang:iana-if-type"

BENCH_PREFIX = "bench"
EDIT_INTERFACE = "bench-edit"

# -- XML builders (reused by tests) -----------------------------------------------------------


def _type_leaf() -> str:
    return f'<type xmlns:ianaift="{IANAIFT_NS}">ianaift:ethernetCsmacd</type>'


def bench_addresses(i: int) -> tuple[str, str]:
    """Interface address and VRRP virtual address of bench interface ``i``: distinct /24s."""
    x, y = divmod(i, 256)
    return f"10.{x % 256}.{y}.1", f"10.{x % 256}.{y}.254"


def bench_interface(i: int, prefix: str = BENCH_PREFIX) -> str:
    """One ``<interface>`` with an IPv4 address and one VRRPv3 instance."""
    address, vip = bench_addresses(i)
    vrid = i % 255 + 1
    return (
        f"<interface><name>{prefix}{i}</name>{_type_leaf()}"
        f'<ipv4 xmlns="{IP_NS}">'
        f"<address><ip>{address}</ip><prefix-length>24</prefix-length></address>"
        f'<vrrp xmlns="{VRRP_NS}"><vrrp-instance><vrid>{vrid}</vrid>'
        f'<version xmlns:vrrp="{VRRP_NS}">vrrp:vrrp-v3</version>'
        f"<priority>100</priority>"
        f"<virtual-ipv4-addresses><virtual-ipv4-address><ipv4-address>{vip}</ipv4-address>"
        f"</virtual-ipv4-address></virtual-ipv4-addresses>"
        f"</vrrp-instance></vrrp></ipv4></interface>"
    )


def bench_config(n: int, prefix: str = BENCH_PREFIX) -> str:
    """``<config>`` merging ``n`` interfaces ``bench0``..``bench<n-1>``."""
    body = "".join(bench_interface(i, prefix) for i in range(n))
    return f'<config xmlns="{NC}"><interfaces xmlns="{IF_NS}">{body}</interfaces></config>'


def bench_remove_config(names: Sequence[str]) -> str:
    """``<config>`` removing the named interfaces (no error if absent)."""
    body = "".join(
        f'<interface nc:operation="remove"><name>{name}</name></interface>' for name in names
    )
    return (
        f'<config xmlns="{NC}" xmlns:nc="{NC}">'
        f'<interfaces xmlns="{IF_NS}">{body}</interfaces></config>'
    )


def bench_names(n: int, prefix: str = BENCH_PREFIX) -> list[str]:
    return [f"{prefix}{i}" for i in range(n)]


def edit_one_config(description: str, name: str = EDIT_INTERFACE) -> str:
    """``<config>`` merging one interface with the given description."""
    return (
        f'<config xmlns="{NC}"><interfaces xmlns="{IF_NS}"><interface>'
        f"<name>{name}</name><description>{description}</description>{_type_leaf()}"
        f"</interface></interfaces></config>"
    )


def edit_config_rpc(config: str, target: str = "running") -> str:
    """Inner XML of an ``<edit-config>`` RPC (default-operation merge)."""
    return f"<edit-config><target><{target}/></target>{config}</edit-config>"


def get_config_rpc(filter_xml: str | None = None, source: str = "running") -> str:
    """Inner XML of a ``<get-config>``, with an optional subtree filter."""
    flt = f'<filter type="subtree">{filter_xml}</filter>' if filter_xml is not None else ""
    return f"<get-config><source><{source}/></source>{flt}</get-config>"


# One small subtree: a single interface by name.
SMALL_FILTER = f'<interfaces xmlns="{IF_NS}"><interface><name>lo</name></interface></interfaces>'
SMALL_GET = get_config_rpc(SMALL_FILTER)
FULL_GET = get_config_rpc()

# -- figures ----------------------------------------------------------------------------------


@dataclass
class Figure:
    key: str
    label: str
    value: float
    unit: str
    op: str | None  # "<=", ">=" or None (no target)
    target: float | None
    errors: int = 0

    @property
    def met(self) -> bool | None:
        if self.op is None or self.target is None:
            return None
        return self.value <= self.target if self.op == "<=" else self.value >= self.target

    def line(self) -> str:
        met = self.met
        status = "ERR" if self.errors else {True: "OK", False: "MISS", None: ""}[met]
        target = f"target {self.op} {self.target:g} {self.unit}" if met is not None else "no target"
        digits = 1 if abs(self.value) >= 10 else 3
        text = f"{self.label:<48} {self.value:>10.{digits}f} {self.unit:<5}  {target}  {status}"
        return text + (f"  ({self.errors} rpc-errors)" if self.errors else "")


class BenchError(Exception):
    pass


@dataclass
class Options:
    host: str
    port: int
    user: str
    password: str | None
    key: str | None
    timeout: float

    def connect(self) -> RawClient:
        return RawClient.connect(
            self.host,
            self.port,
            self.user,
            password=self.password,
            key_filename=self.key,
            timeout=self.timeout,
        )


def _check(reply_errs: list[str], what: str, errors: list[str]) -> None:
    if reply_errs:
        errors.extend(reply_errs)
        if len(errors) == len(reply_errs):  # first failure of this phase
            print(f"{what}: rpc-error: {'; '.join(reply_errs)}", file=sys.stderr)


def _run_for(duration: float, step: Callable[[], int]) -> float:
    """Call ``step`` (returns RPCs done) until ``duration`` elapses; RPCs per second."""
    count = 0
    t0 = time.perf_counter()
    deadline = t0 + duration
    while True:
        count += step()
        now = time.perf_counter()
        if now >= deadline:
            return count / (now - t0)


def bench_setup(opts: Options, samples: int) -> Figure:
    times = []
    for _ in range(samples):
        t0 = time.perf_counter()
        client = opts.connect()
        times.append(time.perf_counter() - t0)
        client.close()
    ms = statistics.median(times) * 1000
    return Figure("setup_ms", f"session setup (median of {samples})", ms, "ms", "<=", 30)


def bench_sequential_get(opts: Options, duration: float) -> Figure:
    errors: list[str] = []
    with opts.connect() as c:

        def step() -> int:
            _check(reply_errors(c.rpc(SMALL_GET)), "get-config", errors)
            return 1

        rate = _run_for(duration, step)
    return Figure(
        "get_config_seq_rps", "sequential small get-config", rate, "RPC/s", ">=", 2000, len(errors)
    )


def bench_pipelined_get(opts: Options, duration: float, window: int) -> Figure:
    errors: list[str] = []
    batch = [SMALL_GET] * (window * 4)
    with opts.connect() as c:

        def step() -> int:
            for reply in c.pipeline(batch, window=window):
                _check(reply_errors(reply), "pipelined get-config", errors)
            return len(batch)

        rate = _run_for(duration, step)
    return Figure(
        "get_config_pipelined_rps",
        f"pipelined get-config (window {window})",
        rate,
        "RPC/s",
        ">=",
        5000,
        len(errors),
    )


def _cleanup(opts: Options, client: RawClient, inner: str, timeout: float) -> None:
    """Send a removing edit-config, on a fresh session if ``client`` is out of step."""
    try:
        errs = reply_errors(client.rpc(inner, timeout=timeout))
    except Exception:  # the session timed out or broke: its replies can no longer be matched
        client.close(timeout=0.5)
        with opts.connect() as fresh:
            errs = reply_errors(fresh.rpc(inner, timeout=timeout))
    if errs:
        print(f"cleanup: rpc-error: {'; '.join(errs)}", file=sys.stderr)


def bench_edit(opts: Options, duration: float) -> Figure:
    errors: list[str] = []
    rpcs = [edit_config_rpc(edit_one_config(d)) for d in ("bench value A", "bench value B")]
    flip = [0]
    with opts.connect() as c:
        try:

            def step() -> int:
                flip[0] ^= 1
                _check(reply_errors(c.rpc(rpcs[flip[0]])), "edit-config", errors)
                return 1

            rate = _run_for(duration, step)
        finally:
            _cleanup(opts, c, edit_config_rpc(bench_remove_config([EDIT_INTERFACE])), opts.timeout)
    return Figure(
        "edit_config_rps", "edit-config of one interface", rate, "RPC/s", ">=", 500, len(errors)
    )


def bench_concurrent(opts: Options, duration: float, sessions: int) -> Figure:
    clients = [opts.connect() for _ in range(sessions)]
    counts = [0] * sessions
    errors: list[str] = []
    failures: list[BaseException] = []
    start = threading.Barrier(sessions + 1)
    deadline = [0.0]

    def worker(k: int) -> None:
        c = clients[k]
        try:
            start.wait()
            while time.perf_counter() < deadline[0]:
                _check(reply_errors(c.rpc(SMALL_GET)), "concurrent get-config", errors)
                counts[k] += 1
        except BaseException as exc:  # reported by the main thread
            failures.append(exc)

    threads = [threading.Thread(target=worker, args=(k,), daemon=True) for k in range(sessions)]
    try:
        for t in threads:
            t.start()
        t0 = time.perf_counter()
        deadline[0] = t0 + duration
        start.wait()
        for t in threads:
            t.join(duration + 2 * opts.timeout)
        elapsed = time.perf_counter() - t0
    finally:
        for c in clients:
            c.close()
    if failures:
        raise BenchError(f"concurrent session failed: {failures[0]!r}")
    return Figure(
        "concurrent_get_config_rps",
        f"{sessions} sessions get-config, total",
        sum(counts) / elapsed,
        "RPC/s",
        None,
        None,
        len(errors),
    )


def bench_large(
    opts: Options, n: int, samples: int, rpc_timeout: float
) -> tuple[list[Figure], int]:
    """Edit ``n`` interfaces in, time a full get-config, remove them. Returns figures and the
    number of bench interfaces the server returned in the full get-config."""
    config = edit_config_rpc(bench_config(n))
    remove = edit_config_rpc(bench_remove_config(bench_names(n)))
    figures = []
    with opts.connect() as c:
        try:
            t0 = time.perf_counter()
            errs = reply_errors(c.rpc(config, timeout=rpc_timeout))
            edit_s = time.perf_counter() - t0
            if errs:
                print(f"{n}-interface edit-config: rpc-error: {'; '.join(errs)}", file=sys.stderr)
            figures.append(
                Figure(
                    "large_edit_s",
                    f"edit-config of {n} interfaces",
                    edit_s,
                    "s",
                    "<=",
                    2,
                    len(errs),
                )
            )
            times = []
            found = 0
            for _ in range(samples):
                t0 = time.perf_counter()
                reply = c.rpc(FULL_GET, timeout=rpc_timeout)
                times.append(time.perf_counter() - t0)
                found = sum(
                    1
                    for name in reply.iterfind(f".//{{{IF_NS}}}interface/{{{IF_NS}}}name")
                    if (name.text or "").startswith(BENCH_PREFIX)
                    and (name.text or "")[len(BENCH_PREFIX) :].isdigit()
                )
            figures.append(
                Figure(
                    "large_get_config_ms",
                    f"full get-config, {n} interfaces (median of {samples})",
                    statistics.median(times) * 1000,
                    "ms",
                    "<=",
                    200,
                    len(reply_errors(reply)),
                )
            )
        finally:
            _cleanup(opts, c, remove, rpc_timeout)
    return figures, found


def read_vmhwm_mb(pid: int) -> float:
    """Peak resident set size (VmHWM) of ``pid`` in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise BenchError(f"no VmHWM in /proc/{pid}/status")


# -- command line -----------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--host", required=True)
    p.add_argument("--port", type=int, default=830)
    p.add_argument("--user", required=True)
    p.add_argument("--password")
    p.add_argument("--key", help="private key file for public key authentication")
    p.add_argument("--pid", type=int, help="server process id, for its peak RSS")
    p.add_argument("--interfaces", type=int, default=1000, help="size of the large config")
    p.add_argument("--skip-large", action="store_true", help="skip the large configuration")
    p.add_argument("--json", action="store_true", help="also print all figures as JSON")
    p.add_argument("--duration-scale", type=float, default=1.0, help="multiply every duration")
    p.add_argument("--setup-samples", type=int, default=20)
    p.add_argument("--get-samples", type=int, default=5, help="full get-config samples")
    p.add_argument("--window", type=int, default=64, help="pipelining window")
    p.add_argument("--sessions", type=int, default=10, help="concurrent sessions")
    p.add_argument("--timeout", type=float, default=10.0, help="seconds per connect/RPC")
    p.add_argument(
        "--large-timeout", type=float, default=120.0, help="seconds per large-config RPC"
    )
    args = p.parse_args(argv)
    if args.duration_scale <= 0 or min(args.setup_samples, args.get_samples, args.window) < 1:
        p.error("durations, samples and window must be positive")
    if not 1 <= args.sessions <= 100 or not 1 <= args.interfaces <= 65536:
        p.error("--sessions must be 1..100 and --interfaces 1..65536")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    opts = Options(args.host, args.port, args.user, args.password, args.key, args.timeout)
    scale = args.duration_scale
    results: dict[str, float | int | None] = {}

    def report(fig: Figure) -> None:
        print(fig.line(), flush=True)
        results[fig.key] = round(fig.value, 3)
        if fig.errors:
            results[f"{fig.key}_errors"] = fig.errors

    try:
        report(bench_setup(opts, args.setup_samples))
        report(bench_sequential_get(opts, 2 * scale))
        report(bench_pipelined_get(opts, 2 * scale, args.window))
        report(bench_edit(opts, 2 * scale))
        report(bench_concurrent(opts, 3 * scale, args.sessions))
        if not args.skip_large:
            figures, found = bench_large(
                opts, args.interfaces, args.get_samples, args.large_timeout
            )
            for fig in figures:
                report(fig)
            results["large_get_config_interfaces"] = found
            if found != args.interfaces:
                print(
                    f"note: full get-config returned {found} of {args.interfaces} bench interfaces",
                    file=sys.stderr,
                )
        if args.pid is not None:
            report(
                Figure(
                    "server_rss_mb",
                    f"server peak RSS (VmHWM, pid {args.pid})",
                    read_vmhwm_mb(args.pid),
                    "MB",
                    "<=",
                    300,
                )
            )
    except Exception as exc:  # any failure ends the run with a message, not a traceback
        print(f"bench failed: {exc!r}", file=sys.stderr)
        if args.json:
            print(json.dumps(results, sort_keys=True))
        return 1
    if args.json:
        print(json.dumps(results, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
