"""Linux backend: drift repair is best effort, and a failed commit leaves the kernel exactly
as before, including what the kernel changes along with the agent's changes (the IPv6 MTU
a link MTU change resets, the macvlans a lower's MTU lowers, the sysctls and neighbours of
a macvlan deleted and recreated), in real network namespaces."""

from __future__ import annotations

import asyncio
import json
import logging
import time

import pytest
from inproc import NS, errors, ok
from nslab import sh
from test_linux_config import Env, addr, eth, ifs, macvlan, refusing_env, v4, v6

from agent.backends.linux.drift import DriftWatcher

DELETE = f'xmlns:nc="{NS["nc"]}" nc:operation="delete"'


def neigh(ip: str, mac: str) -> str:
    return f"<neighbor><ip>{ip}</ip><link-layer-address>{mac}</link-layer-address></neighbor>"


def deleted(name: str) -> str:
    return f"<interface {DELETE}><name>{name}</name></interface>"


@pytest.fixture
def env(schema, tmp_path):
    """Two veth pairs (``eth0``, ``eth1``): see :func:`refusing_env`."""
    with refusing_env(schema, tmp_path, "eth0", "eth1") as e:
        yield e


def snapshot(env: Env, names: list[str]) -> dict:
    """Everything a commit could change: every link (`ip -d link`, counters left out), every
    address and permanent neighbour, and the IPv4/IPv6 sysctls of the links ``names``."""
    links = env.lab.ip_json(env.ns, "link", "show")
    for lk in links:
        for k in ("stats", "stats64", "operstate", "linkmode"):
            lk.pop(k, None)
    sysctls = {}
    for name in names:
        out = env.lab.run(env.ns, "sh", "-c", f"grep -r . /proc/sys/net/ipv4/conf/{name}/ "
                          f"/proc/sys/net/ipv6/conf/{name}/ | grep -v stable_secret",
                          check=False).stdout
        sysctls[name] = sorted(out.splitlines())
    return {
        "links": {lk["ifname"]: lk for lk in links},
        "addrs": {a["ifname"]: sorted((i["local"], i["prefixlen"]) for i in a["addr_info"])
                  for a in env.lab.ip_json(env.ns, "addr", "show")},
        "neigh": sorted(json.dumps(n, sort_keys=True)
                        for n in env.lab.ip_json(env.ns, "neigh", "show")
                        if "PERMANENT" in n.get("state", [])),
        "sysctl": sysctls,
    }


def assert_same(before: dict, after: dict) -> None:
    """Compare two snapshots, reporting the differences readably."""
    diff = []
    for part in before:
        b, a = before[part], after[part]
        if isinstance(b, dict):
            for k in sorted(set(b) | set(a)):
                x, y = b.get(k), a.get(k)
                if isinstance(x, dict) and isinstance(y, dict):
                    x, y = ({i: v for i, v in d.items() if other.get(i) != v}
                            for d, other in ((x, y), (y, x)))
                elif isinstance(x, list) and isinstance(y, list):
                    x, y = sorted(set(x) - set(y)), sorted(set(y) - set(x))
                if x != y:
                    diff.append(f"{part}[{k}]: {x!r} -> {y!r}")
        elif b != a:
            diff.append(f"{part}: {b!r} -> {a!r}")
    assert not diff, "kernel not as before the failed commit:\n" + "\n".join(diff)


def fail_commit(env: Env, cfg: str, expect: str | None = "refused by a later backend") -> None:
    """Edit ``cfg`` with the refuser on: the commit fails, running is unchanged."""
    running = env.running()
    env.refuser.on = True
    try:
        r = env.edit(cfg)
    finally:
        env.refuser.on = False
    errs = errors(r)
    assert errs, "the commit should have failed"
    if expect is not None:
        assert errs[0]["error-message"] == expect, errs
    assert env.running() == running


# ------------------------------------------------------------------ 1. best-effort drift repair
def test_one_unrepairable_difference_does_not_block_other_repairs(env, caplog):
    """eth1's IPv6 MTU cannot be restored (its link MTU was lowered below it behind the
    agent's back): eth0's deleted address is restored anyway, within a second, and the
    failure is logged once, not at every attempt."""
    caplog.set_level(logging.DEBUG, logger="agent.linux")
    r = env.edit(ifs(eth("eth0", v4(addr("192.0.2.1", 24))), eth("eth1", v6("<mtu>1400</mtu>"))))
    assert ok(r), errors(r)
    mtu6 = "net.ipv6.conf.eth1.mtu"
    assert env.sysctl(mtu6) == "1400"
    results: list[bool] = []

    async def until(cond, timeout: float = 1.0) -> float:
        t0 = time.monotonic()
        while not cond():
            assert time.monotonic() - t0 < timeout, f"not restored within {timeout} s"
            await asyncio.sleep(0.02)
        return time.monotonic() - t0

    async def scenario() -> None:
        watcher = DriftWatcher(env.backend, sysctl_period=0.1)
        task = asyncio.ensure_future(watcher.run())
        await asyncio.sleep(0.1)
        try:
            await asyncio.to_thread(sh, "ip", "-n", env.ns, "link", "set", "eth1", "mtu", "1300")
            await asyncio.sleep(0.6)  # a few reconciles and sysctl checks fail on eth1
            assert env.sysctl(mtu6) == "1300"
            for _ in range(2):  # and drift elsewhere is still repaired, every time
                await asyncio.to_thread(sh, "ip", "-n", env.ns, "addr", "del", "192.0.2.1/24",
                                        "dev", "eth0")
                took = await until(lambda: env.addrs("eth0") == ["192.0.2.1/24"])
                print(f"eth0's address restored after {took:.3f} s")
                await asyncio.sleep(0.3)
            assert env.sysctl(mtu6) == "1300"  # the kernel's: not restorable
            results.append(env.backend.reconcile())
            # once the link MTU is back, the IPv6 MTU can be (and is) restored
            await asyncio.to_thread(sh, "ip", "-n", env.ns, "link", "set", "eth1", "mtu", "1500")
            await until(lambda: env.sysctl(mtu6) == "1400")
            results.append(env.backend.reconcile())
        finally:
            task.cancel()

    asyncio.run(scenario())
    assert results == [False, True]  # reconcile: does the kernel match running now?
    msgs = [r.getMessage() for r in caplog.records]
    failed = [m for m in msgs if m.startswith("drift: restoring failed")]
    assert failed == ["drift: restoring failed: sysctl net.ipv6.conf.eth1.mtu=1400: "
                      "Invalid argument"], msgs
    assert sum("drift: add address 192.0.2.1/24 to eth0: restored" in m for m in msgs) == 2
    assert any("drift: sysctl net.ipv6.conf.eth1.mtu=1400: restored" in m for m in msgs), msgs


def test_reconcile_restores_what_it_can(env):
    """reconcile() itself: one failing action does not undo the others; False until the
    kernel matches."""
    r = env.edit(ifs(eth("eth0", v4(addr("192.0.2.1", 24)) + v6("<forwarding>true</forwarding>")),
                     eth("eth1", v6("<mtu>1400</mtu>"))))
    assert ok(r), errors(r)
    sh("ip", "-n", env.ns, "link", "set", "eth1", "mtu", "1300")
    sh("ip", "-n", env.ns, "addr", "del", "192.0.2.1/24", "dev", "eth0")
    sh("ip", "netns", "exec", env.ns, "sysctl", "-qw", "net.ipv6.conf.eth0.forwarding=0")
    assert env.backend.reconcile() is False
    assert env.addrs("eth0") == ["192.0.2.1/24"]
    assert env.sysctl("net.ipv6.conf.eth0.forwarding") == "1"
    assert list(env.backend.failures) == [
        "sysctl net.ipv6.conf.eth1.mtu=1400: Invalid argument"]
    sh("ip", "-n", env.ns, "link", "set", "eth1", "mtu", "1500")
    assert env.backend.reconcile() is True
    assert env.sysctl("net.ipv6.conf.eth1.mtu") == "1400" and env.backend.failures == {}


# ------------------------------------------------------------------ 2. exact rollback
def test_rollback_raises_macvlans_lowered_with_their_lower(env):
    """(a) eth0 1500 → 1400 lowers mv0 (MTU not configured) to 1400 too: undone, mv0 is
    back at 1500 (and its IPv6 MTU, reset by the kernel, too)."""
    assert ok(r := env.edit(ifs(eth("eth0"), macvlan("mv0"), macvlan("mv1", mode="bridge")))), \
        errors(r)
    sh("ip", "-n", env.ns, "link", "set", "mv1", "mtu", "1300")  # not lowered: stays
    before = snapshot(env, ["eth0", "mv0", "mv1"])
    fail_commit(env, ifs(eth("eth0", v4("<mtu>1400</mtu>"))))
    assert env.link("mv0")["mtu"] == 1500
    assert_same(before, snapshot(env, ["eth0", "mv0", "mv1"]))


@pytest.mark.parametrize("failure", ["later-subscriber", "kernel"])
def test_rollback_restores_ipv6_mtu_after_link_mtu(env, failure):
    """(b) eth0's configured IPv6 MTU 1300 survives the undo of a link MTU change (the
    kernel resets it to the link MTU when the link MTU is restored)."""
    cfg = ifs(eth("eth0", v6("<mtu>1300</mtu><dup-addr-detect-transmits>0"
                             "</dup-addr-detect-transmits>")),
              macvlan("mv0", body=v6("<mtu>1280</mtu>")))
    assert ok(r := env.edit(cfg)), errors(r)
    before = snapshot(env, ["eth0", "mv0"])
    if failure == "kernel":  # the IPv6 MTU above the new link MTU: EINVAL, after the link MTU
        r = env.edit(ifs(eth("eth0", v4("<mtu>1400</mtu>") + v6("<mtu>1450</mtu>"))))
        errs = errors(r)
        assert errs and errs[0]["error-message"] == (
            "sysctl net.ipv6.conf.eth0.mtu=1450: Invalid argument"), errs
    else:
        fail_commit(env, ifs(eth("eth0", v4("<mtu>1400</mtu>")),
                             macvlan("mv0", body=v4("<mtu>1350</mtu>"))))
    assert env.sysctl("net.ipv6.conf.eth0.mtu") == "1300"
    assert_same(before, snapshot(env, ["eth0", "mv0"]))


def test_rollback_of_link_mtu_below_ipv6_minimum(env):
    """Below 1280 the kernel drops the IPv6 state of eth0 and of the macvlans it lowers
    (sysctls, addresses, neighbours): all back after the undo."""
    cfg = ifs(eth("eth0", v6("<forwarding>true</forwarding><mtu>1300</mtu>"
                             + addr("2001:db8::1", 64) + neigh("2001:db8::9", "02:00:00:00:00:09"))
                  + v4(neigh("192.0.2.9", "02:00:00:00:00:08"))),
              macvlan("mv0", body=v6("<dup-addr-detect-transmits>0</dup-addr-detect-transmits>"
                                     + addr("2001:db8:1::1", 64))))
    assert ok(r := env.edit(cfg)), errors(r)
    sh("ip", "netns", "exec", env.ns, "sysctl", "-qw", "net.ipv6.conf.mv0.accept_ra=0")
    before = snapshot(env, ["eth0", "mv0"])
    fail_commit(env, ifs(eth("eth0", v4("<mtu>1200</mtu>"))), expect=None)
    assert_same(before, snapshot(env, ["eth0", "mv0"]))


def test_rollback_of_admin_down_restores_ipv6_addresses_and_neighbours(env):
    """Setting a link down drops its IPv6 addresses and permanent neighbours; bringing it
    up again resets its IPv6 MTU: the undo restores them."""
    cfg = ifs(eth("eth0", v4(addr("192.0.2.1", 24) + neigh("192.0.2.9", "02:00:00:00:00:08"))
                  + v6("<mtu>1300</mtu>" + addr("2001:db8::1", 64)
                       + neigh("2001:db8::9", "02:00:00:00:00:09"))),
              macvlan("mv0", body=v6("<mtu>1400</mtu>" + addr("2001:db8:1::1", 64))))
    assert ok(r := env.edit(cfg)), errors(r)
    before = snapshot(env, ["eth0", "mv0"])
    fail_commit(env, ifs(eth("eth0", "<enabled>false</enabled>")))
    assert_same(before, snapshot(env, ["eth0", "mv0"]))
    # and the other way round: a link the commit brings up goes down again as it was
    sh("ip", "-n", env.ns, "link", "set", "eth1", "down")
    sh("ip", "-n", env.ns, "addr", "add", "2001:db8:2::1/64", "dev", "eth1")
    sh("ip", "-n", env.ns, "neigh", "add", "192.0.2.77", "lladdr", "02:00:00:00:00:77",
       "dev", "eth1", "nud", "permanent")
    sh("ip", "netns", "exec", env.ns, "sysctl", "-qw", "net.ipv6.conf.eth1.mtu=1300")
    before = snapshot(env, ["eth0", "eth1", "mv0"])
    fail_commit(env, ifs(eth("eth1", v4(addr("192.0.2.2", 24)))))
    assert_same(before, snapshot(env, ["eth0", "eth1", "mv0"]))


@pytest.mark.parametrize("count", [1, 3])
def test_rollback_recreates_deleted_macvlans_with_sysctls_and_neighbours(env, count):
    """(c) Macvlans deleted by a failing commit come back with their index, addresses,
    permanent neighbours and every per-link IPv4/IPv6 sysctl (the agent's and others'),
    not the namespace defaults. Several: deleted together (link group), undone together."""
    names = [f"mv{i}" for i in range(count)]
    body = (v4("<forwarding>true</forwarding>" + addr("192.0.2.10", 24)
               + neigh("192.0.2.9", "02:00:00:00:00:09"))
            + v6("<forwarding>true</forwarding><mtu>1300</mtu>"
                 "<dup-addr-detect-transmits>0</dup-addr-detect-transmits>"
                 "<autoconf><create-global-addresses>false</create-global-addresses></autoconf>"
                 + addr("2001:db8::10", 64) + neigh("2001:db8::9", "02:00:00:00:00:0a")))
    cfg = ifs(eth("eth0"), *(macvlan(n, mode="bridge", body=body) for n in names),
              macvlan("keep", mode="bridge"))
    assert ok(r := env.edit(cfg)), errors(r)
    # sysctls set by someone else, different per macvlan: kept too
    for i, n in enumerate(names):
        sh("ip", "netns", "exec", env.ns, "sysctl", "-qw", f"net.ipv4.conf.{n}.arp_ignore={i % 3}",
           f"net.ipv4.conf.{n}.rp_filter={1 + i % 2}", f"net.ipv6.conf.{n}.hop_limit={60 + i}")
    sh("ip", "-n", env.ns, "link", "set", names[-1], "alias", "set-by-someone")
    watch = ["eth0", "keep", *names]
    before = snapshot(env, watch)
    fail_commit(env, ifs(eth("eth0", "<description>d</description>"),
                         *(deleted(n) for n in names)))
    assert_same(before, snapshot(env, watch))


def test_rollback_of_delete_and_lower_mtu_together(env):
    """A commit deleting mv0 and lowering its lower eth0 (mv1 lowered along): undone, mv0
    is recreated at 1500 on eth0 at 1500 again, mv1 raised back, sysctls as before."""
    cfg = ifs(eth("eth0", v6("<mtu>1300</mtu>")), macvlan("mv0", body=v6("<mtu>1400</mtu>")),
              macvlan("mv1", body=v6("<mtu>1450</mtu>")))
    assert ok(r := env.edit(cfg)), errors(r)
    before = snapshot(env, ["eth0", "mv0", "mv1"])
    fail_commit(env, ifs(eth("eth0", v4("<mtu>1460</mtu>")), deleted("mv0")))
    assert_same(before, snapshot(env, ["eth0", "mv0", "mv1"]))


# ------------------------------------------------------------------ 3. error text once
def test_kernel_error_text_appears_once_in_rpc_error(env):
    r = env.edit(ifs(eth("eth0"), macvlan("mvbad", body=v6("<mtu>9000</mtu>"))))
    errs = errors(r)
    assert len(errs) == 1, errs
    assert errs[0]["error-tag"] == "operation-failed"
    assert errs[0]["error-message"] == "sysctl net.ipv6.conf.mvbad.mtu=9000: Invalid argument"
    assert errs[0]["error-path"] == (
        "/if:interfaces/if:interface[if:name='mvbad']/ip:ipv6/ip:mtu")
    assert env.link("mvbad") is None
