"""VRRP benchmarks with real keepalived in network namespaces (run as root).

    python3 tools/bench_vrrp.py [--runs 5] [--scale 250]

Prints: failover time at 0.1 s adverts (VRRPv3) as a ratio to RFC 5798's
Master_Down_Interval; vrrp-new-master-event at an ncclient client after the virtual IP
appeared on the new master (two agent processes over SSH); edit-config → steady state
latency (backup and master); 1,000 instances (250 VRIDs on each of 4 LAN interfaces) in
one edit-config → all in steady state.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from polling import wait  # noqa: E402
from vrrplab import VrrpLab, iface_xml, inst  # noqa: E402

from agent.backends.linux.netns import open_iproute  # noqa: E402
from agent.backends.vrrp.names import vmac_ifname  # noqa: E402
from agent.datastore.schema import Schema  # noqa: E402


def master_down_interval(advert_s: float, priority: int) -> float:
    """RFC 5798 §6.1: 3 × Master_Adver_Interval + Skew_Time."""
    return 3 * advert_s + ((256 - priority) * advert_s) / 256


def has_vip(ipr, ifname: str, vip: str) -> bool:  # noqa: ANN001
    idx = ipr.link_lookup(ifname=ifname)
    return bool(idx) and any(a.get_attr("IFA_ADDRESS") == vip
                             for a in ipr.get_addr(index=idx[0], family=2))


def bench_failover(schema, runs: int) -> None:  # noqa: ANN001
    with VrrpLab(schema, routers=2, host=False) as v:
        r1, r2 = v.routers
        vip = "192.0.2.200"
        r1.edit_ok(iface_xml("eth0", [r1.v4], [inst(50, priority=200, vips=[vip])]))
        r2.edit_ok(iface_xml("eth0", [r2.v4], [inst(50, priority=100, vips=[vip])]))
        name = vmac_ifname("eth0", 4, 50)
        gaps = []
        with open_iproute(r2.ns) as ipr:
            for _ in range(runs):
                wait(lambda: r1.state(4, 50) == "MASTER" and r2.state(4, 50) == "BACKUP",
                     timeout=10, what="r1 master")
                time.sleep(0.3)
                t0 = time.monotonic()
                v.lab.run(v.lan, "ip", "link", "set", "r1l0", "down")
                while not has_vip(ipr, name, vip):
                    if time.monotonic() - t0 > 5:
                        raise RuntimeError("no failover")
                    time.sleep(0.002)
                gaps.append(time.monotonic() - t0)
                v.lab.run(v.lan, "ip", "link", "set", "r1l0", "up")
        mdi = master_down_interval(0.1, 100)
        med = statistics.median(gaps)
        print(f"failover (VRRPv3, 0.1 s adverts, link down → backup holds VIP): "
              f"median {med * 1000:.0f} ms, max {max(gaps) * 1000:.0f} ms over {runs} runs; "
              f"Master_Down_Interval {mdi * 1000:.0f} ms; ratio median {med / mdi:.2f}, "
              f"max {max(gaps) / mdi:.2f} (target ≤ 1.1)")


def bench_notify(runs: int) -> None:
    """The end-to-end measurement of tests/test_vrrp_notify_latency.py, ``runs`` failovers."""
    from test_vrrp_netconf import routers
    from test_vrrp_notify_latency import failovers, summary

    two_agents = contextmanager(routers.__wrapped__)  # the test's fixture, as a context
    with tempfile.TemporaryDirectory() as d, two_agents(Path(d)) as (lab, nss, agents):
        rounds = failovers(lab, lab.namespaces[0], nss, agents, rounds=runs)
    for r in rounds:
        print("  " + r.line())
    print(summary(rounds))


def bench_edit_latency(schema, runs: int) -> None:  # noqa: ANN001
    with VrrpLab(schema, routers=2, host=False) as v:
        r1, r2 = v.routers
        backup, master = [], []
        for i in range(runs):
            vrid = 60 + i
            vip = f"192.0.2.{vrid}"
            # a master already exists: the new instance is steady as soon as it is BACKUP
            r1.edit_ok(iface_xml("eth0", [r1.v4], [inst(vrid, priority=200, vips=[vip])]))
            wait(lambda: r1.state(4, vrid) == "MASTER", what="r1 master")  # noqa: B023
            t0 = time.monotonic()
            r2.edit_ok(iface_xml("eth0", [r2.v4], [inst(vrid, priority=100, vips=[vip])]))
            wait(lambda: r2.state(4, vrid) == "BACKUP", step=0.005, what="r2 backup")  # noqa: B023
            backup.append(time.monotonic() - t0)
            # alone on the LAN: MASTER after Master_Down_Interval, by protocol
            vrid2 = 120 + i
            t0 = time.monotonic()
            r1.edit_ok(iface_xml("eth0", [r1.v4], [inst(vrid2, priority=200,
                                                         vips=[f"192.0.2.{vrid2}"])]))
            wait(lambda: r1.state(4, vrid2) == "MASTER", step=0.005, what="master")  # noqa: B023
            master.append(time.monotonic() - t0)
        mdi = master_down_interval(0.1, 200)
        print("  backup runs (ms):", " ".join(f"{x * 1000:.0f}" for x in backup))
        print(f"edit-config → steady state: BACKUP median {statistics.median(backup) * 1000:.0f}"
              f" ms; MASTER (alone) median {statistics.median(master) * 1000:.0f} ms "
              f"(includes Master_Down_Interval {mdi * 1000:.0f} ms)")


def bench_scale(schema, per_lan: int) -> None:  # noqa: ANN001
    lans = ["eth0", "lan1", "lan2", "lan3"]
    with VrrpLab(schema, routers=1, host=False, lans=4) as v:
        r = v.routers[0]
        for k, name in enumerate(lans[1:], start=1):
            v.lab.run(r.ns, "ip", "addr", "add", f"10.{k}.0.1/16", "dev", name)
        ifaces = []
        for k, name in enumerate(lans):
            addr = r.v4 if k == 0 else f"10.{k}.0.1/16"
            base = "192.0.2" if k == 0 else f"10.{k}.1"
            instances = [inst(vrid, priority=200, centis=100,
                              vips=[f"{base}.{vrid}" if k else f"198.18.{vrid}.1"])
                         for vrid in range(1, per_lan + 1)]
            x = iface_xml(name, [addr], instances)
            ifaces.append(x[x.index("<interface>"): x.rindex("</interfaces>")])
        cfg = iface_xml("x").split("<interface>")[0]  # the <interfaces> start tag
        cfg += "".join(ifaces) + "</interfaces>"
        total = per_lan * len(lans)
        t0 = time.monotonic()
        r.edit_ok(cfg)
        t_edit = time.monotonic() - t0

        def steady() -> bool:
            d = r.dump()
            return len(d) == total and all(x["data"]["state"] == 2 for x in d.values())

        wait(steady, timeout=60, step=0.2, what="all masters")
        t_all = time.monotonic() - t0
        # edit of one instance among 1,000 (a merge of that instance only), then the whole
        # configuration sent again with one priority changed
        ones = []
        for i in range(9):
            one = iface_xml("eth0", [r.v4], [inst(1 + i, priority=150 + i, centis=100,
                                                  vips=[f"198.18.{1 + i}.1"])])
            t1 = time.monotonic()
            r.edit_ok(one)
            ones.append(time.monotonic() - t1)
        t1 = time.monotonic()
        r.edit_ok(cfg.replace("<priority>200</priority>", "<priority>201</priority>", 1))
        t_full = time.monotonic() - t1
        wait(steady, timeout=30, step=0.2, what="all still masters")
        print(f"{total} instances ({per_lan} VRIDs × {len(lans)} LAN interfaces, 1 s adverts) in"
              f" one edit-config: edit-config reply {t_edit:.1f} s, all in steady state "
              f"(MASTER, alone) {t_all:.1f} s (target ≤ 15 s; includes Master_Down_Interval "
              f"{master_down_interval(1.0, 200):.1f} s)")
        print(f"edit of one instance among {total}: reply median "
              f"{statistics.median(ones) * 1000:.0f} ms, max {max(ones) * 1000:.0f} ms over "
              f"{len(ones)} edits (target < 500 ms); whole configuration sent again with one "
              f"priority changed: reply {t_full * 1000:.0f} ms")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--scale", type=int, default=250, help="VRIDs per LAN interface")
    ap.add_argument("--only", choices=["failover", "notify", "latency", "scale"])
    a = ap.parse_args()
    schema = Schema.load()
    if a.only in (None, "failover"):
        bench_failover(schema, a.runs)
    if a.only in (None, "notify"):
        bench_notify(a.runs)
    if a.only in (None, "latency"):
        bench_edit_latency(schema, a.runs)
    if a.only in (None, "scale"):
        bench_scale(schema, a.scale)


if __name__ == "__main__":
    main()
