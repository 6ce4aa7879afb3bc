"""Benchmarks of the Linux backend in a throw-away network namespace (run as root).

    python tools/bench_linux.py [--interfaces 1000]

``bench_apply``: one edit-config creating N macvlans (each with one IPv4 address)
on a veth, through an in-process NETCONF server whose subscriber is the Linux
backend; prints the edit-config time (XML parse, validation, datastore, kernel)
and the backend's own share (prepare + apply), then deletes them in one edit.
``bench_state``: ``<get>`` of the operational state of N macvlans, whole and filtered
to one interface (subtree and XPath filter), in-process and through a real agent over SSH.
The namespaces are deleted at the end whatever happens.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
if str(ROOT / "tests") not in sys.path:
    sys.path.insert(0, str(ROOT / "tests"))

IF_NS = "urn:ietf:params:xml:ns:yang:ietf-interfaces"
IP_NS = "urn:ietf:params:xml:ns:yang:ietf-ip"
MV_NS = "urn:netconf-vrrp-agent:yang:macvlan"
IANAIFT_NS = "urn:ietf:params:xml:ns:yang:iana-if-type"
NC_NS = "urn:ietf:params:xml:ns:netconf:base:1.0"


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


def macvlans_config(n: int, lower: str = "eth0") -> str:
    """``n`` macvlans ``bmv0``.. on ``lower`` with one /24 address each (10.x.y.1)."""
    parts = [f'<interfaces xmlns="{IF_NS}" xmlns:ianaift="{IANAIFT_NS}" xmlns:mv="{MV_NS}">'
             f"<interface><name>{lower}</name><type>ianaift:ethernetCsmacd</type></interface>"]
    for i in range(n):
        parts.append(
            f"<interface><name>bmv{i}</name><type>mv:macvlan</type>"
            f'<macvlan xmlns="{MV_NS}"><lower-interface>{lower}</lower-interface>'
            "<mode>private</mode></macvlan>"
            f'<ipv4 xmlns="{IP_NS}"><address><ip>10.{i // 250}.{i % 250}.1</ip>'
            "<prefix-length>24</prefix-length></address></ipv4></interface>")
    parts.append("</interfaces>")
    return "".join(parts)


def bench_apply(n: int = 1000) -> dict[str, float]:
    from inproc import LocalClient, errors, ok

    from agent.backends.linux.config import LinuxConfig
    from agent.datastore.schema import Schema
    from agent.server import NetconfServer

    ns = f"bench{os.getpid()}"
    _ip("netns", "add", ns)
    backend = None
    try:
        _ip("-n", ns, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0p")
        _ip("-n", ns, "link", "set", "eth0", "up")
        backend = LinuxConfig(ns)
        spent = {"prepare": 0.0, "apply": 0.0}
        prepare = backend.prepare

        def timed_prepare(old, new):  # noqa: ANN001, ANN202 - measure the backend's share
            t = time.perf_counter()
            plan = prepare(old, new)
            spent["prepare"] += time.perf_counter() - t
            if plan is not None:
                apply = plan.apply

                def timed_apply():  # noqa: ANN202
                    t = time.perf_counter()
                    try:
                        return apply()
                    finally:
                        spent["apply"] += time.perf_counter() - t

                plan.apply = timed_apply
            return plan

        backend.prepare = timed_prepare  # type: ignore[method-assign]
        with tempfile.TemporaryDirectory() as tmp:
            server = NetconfServer(Schema.load(), Path(tmp), subscribers=[backend])
            c = LocalClient(server)
            cfg = macvlans_config(n)
            t0 = time.perf_counter()
            r = c.edit(cfg)
            t_create = time.perf_counter() - t0
            assert ok(r), errors(r)
            out = subprocess.run(["ip", "-n", ns, "-o", "-4", "addr", "show"],
                                 capture_output=True, text=True, check=True).stdout
            count = sum(1 for line in out.splitlines() if " bmv" in line)
            assert count == n, f"{count} of {n} macvlans have their address"
            created = dict(spent)
            spent.update(prepare=0.0, apply=0.0)
            t0 = time.perf_counter()
            r = c.rpc("<copy-config><target><running/></target><source><config/></source>"
                      "</copy-config>")
            t_delete = time.perf_counter() - t0
            assert ok(r), errors(r)
        return {"create_s": t_create, "create_prepare_s": created["prepare"],
                "create_apply_s": created["apply"], "delete_s": t_delete}
    finally:
        if backend is not None:
            backend.close()
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def _median_ms(fn, n: int) -> float:  # noqa: ANN001
    times = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    times.sort()
    return times[len(times) // 2] * 1000


def bench_state(n: int = 1000, ssh: bool = True) -> dict[str, float]:
    """``<get>`` of the operational state of ``n`` macvlans (created directly with pyroute2,
    one IPv4 address each) plus veth and lo: the whole reply and a subtree filter selecting
    one interface; in-process (providers only) and, with ``ssh``, through a real agent
    (``serve --netns``) and the raw client. Medians in ms."""
    from inproc import LocalClient
    from pyroute2 import IPRoute

    from agent.app import BackendContext
    from agent.backends.linux import state as linux_state
    from agent.datastore.schema import Schema
    from agent.server import NetconfServer

    ns = f"bstate{os.getpid()}"
    _ip("netns", "add", ns)
    out: dict[str, float] = {}
    try:
        _ip("-n", ns, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0p")
        _ip("-n", ns, "link", "set", "eth0", "up")
        with IPRoute(netns=ns) as ipr:
            lower = ipr.link_lookup(ifname="eth0")[0]
            for i in range(n):
                ipr.link("add", ifname=f"smv{i}", kind="macvlan", link=lower,
                         macvlan_mode="private")
                idx = ipr.link_lookup(ifname=f"smv{i}")[0]
                ipr.addr("add", index=idx, address=f"10.{i // 250}.{i % 250}.1", prefixlen=24)
        one = (f'<get><filter type="subtree"><interfaces xmlns="{IF_NS}"><interface>'
               f"<name>smv{n // 2}</name></interface></interfaces></filter></get>")
        one_xpath = (f'<get><filter type="xpath" xmlns:if="{IF_NS}" select="/if:interfaces/'
                     f"if:interface[if:name='smv{n // 2}']\"/></get>")
        with tempfile.TemporaryDirectory() as tmp:
            server = NetconfServer(Schema.load(), Path(tmp))
            ctx = BackendContext(state_dir=Path(tmp), netns=ns)
            st = linux_state.attach(server, ctx)
            try:
                c = LocalClient(server)
                reply = c.rpc("<get/>")
                names = reply.findall(f".//{{{IF_NS}}}interfaces/{{{IF_NS}}}interface")
                assert len(names) == n + 3, f"{len(names)} interfaces in the reply"
                out["inproc_full_ms"] = _median_ms(lambda: c.rpc("<get/>"), 5)

                def cold() -> None:  # no reusable link dump: parse every link message
                    st._links = None
                    c.rpc("<get/>")

                out["inproc_full_cold_ms"] = _median_ms(cold, 5)
                out["inproc_one_ms"] = _median_ms(lambda: c.rpc(one), 50)
                r = c.rpc(one_xpath)
                names = r.findall(f".//{{{IF_NS}}}interfaces/{{{IF_NS}}}interface")
                assert len(names) == 1, f"{len(names)} interfaces in the XPath reply"
                out["inproc_one_xpath_ms"] = _median_ms(lambda: c.rpc(one_xpath), 50)
            finally:
                st.close()
            if ssh:
                out.update(_bench_state_ssh(Path(tmp) / "agent", ns, one, n, one_xpath))
        return out
    finally:
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def _bench_state_ssh(state_dir: Path, ns: str, one: str, n: int,
                     one_xpath: str) -> dict[str, float]:
    from agentproc import AgentProcess

    from agent.backends.linux.state import InterfaceState

    state_dir.mkdir()
    agent = AgentProcess(state_dir, netns=ns)
    agent.start(timeout=60)
    try:
        with agent.raw() as c:
            reply = c.rpc("<get/>", timeout=60)
            count = len(reply.findall(f".//{{{IF_NS}}}interfaces/{{{IF_NS}}}interface"))
            assert count == n + 3, f"{count} interfaces in the reply"
            res = {"ssh_full_ms": _median_ms(lambda: c.rpc("<get/>", timeout=60), 5),
                   "ssh_one_ms": _median_ms(lambda: c.rpc(one), 50),
                   "ssh_one_xpath_ms": _median_ms(lambda: c.rpc(one_xpath), 50)}

            def cold() -> None:  # after the agent's link dump expired
                time.sleep(InterfaceState.LINKS_FOR + 0.1)
                t = time.perf_counter()
                c.rpc("<get/>", timeout=60)
                cold_times.append(time.perf_counter() - t)

            cold_times: list[float] = []
            for _ in range(3):
                cold()
            res["ssh_full_cold_ms"] = sorted(cold_times)[1] * 1000
            return res
    finally:
        agent.stop()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--interfaces", type=int, default=1000)
    args = ap.parse_args(argv)
    r = bench_apply(args.interfaces)
    n = args.interfaces
    print(f"edit-config creating {n} macvlans + 1 IPv4 address each: {r['create_s']:.2f} s "
          f"(backend prepare {r['create_prepare_s']:.2f} s, apply {r['create_apply_s']:.2f} s;"
          f" target <= 5 s)")
    print(f"copy-config deleting them again: {r['delete_s']:.2f} s")
    st = bench_state(n)
    print(f"<get> state of {n} macvlans (+veth, lo), whole reply: in-process "
          f"{st['inproc_full_ms']:.0f} ms ({st['inproc_full_cold_ms']:.0f} ms with a link dump),"
          f" over SSH {st['ssh_full_ms']:.0f} ms ({st['ssh_full_cold_ms']:.0f} ms with a link "
          "dump) (target <= 500 ms)")
    print(f"<get> state of one interface among {n} (subtree filter): in-process "
          f"{st['inproc_one_ms']:.2f} ms, over SSH {st['ssh_one_ms']:.2f} ms (target <= 20 ms)")
    print(f"<get> state of one interface among {n} (XPath filter): in-process "
          f"{st['inproc_one_xpath_ms']:.2f} ms, over SSH {st['ssh_one_xpath_ms']:.2f} ms "
          "(target <= 20 ms)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
