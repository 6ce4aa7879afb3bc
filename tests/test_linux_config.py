"""Linux backend, configuration → kernel, in real network namespaces (issue #3).

Most tests drive an in-process NetconfServer whose subscribers are the Linux backend,
working in a throw-away namespace holding a veth pair ``eth0``/``eth0p``, and a later
subscriber that refuses commits while ``env.refuser.on`` (rollback tests);
one test runs the real agent process over SSH (ncclient).
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import logging
import time
from collections.abc import Iterator

import pytest
from inproc import NS, LocalClient, data, errors, ok
from lxml import etree
from nslab import Lab, sh

from agent.backends.linux.config import LinuxConfig
from agent.backends.linux.drift import DriftWatcher
from agent.protocol.errors import RpcError
from agent.server import NetconfServer

IF, IP, MV = NS["if"], NS["ip"], NS["mv"]


def ifs(*entries: str) -> str:
    return (f'<interfaces xmlns="{IF}" xmlns:ianaift="{NS["ianaift"]}" xmlns:mv="{MV}">'
            + "".join(entries) + "</interfaces>")


def eth(name: str, body: str = "") -> str:
    return f"<interface><name>{name}</name><type>ianaift:ethernetCsmacd</type>{body}</interface>"


def macvlan(name: str, lower: str = "eth0", mode: str = "private", mac: str = "",
            body: str = "") -> str:
    m = f"<mac-address>{mac}</mac-address>" if mac else ""
    return (f"<interface><name>{name}</name><type>mv:macvlan</type>"
            f'<macvlan xmlns="{MV}"><lower-interface>{lower}</lower-interface>'
            f"<mode>{mode}</mode>{m}</macvlan>{body}</interface>")


def v4(body: str) -> str:
    return f'<ipv4 xmlns="{IP}">{body}</ipv4>'


def v6(body: str) -> str:
    return f'<ipv6 xmlns="{IP}">{body}</ipv6>'


def addr(ip: str, plen: int) -> str:
    return f"<address><ip>{ip}</ip><prefix-length>{plen}</prefix-length></address>"


class Env:
    def __init__(self, lab: Lab, ns: str, backend: LinuxConfig, server: NetconfServer) -> None:
        self.lab, self.ns, self.backend, self.server = lab, ns, backend, server
        self.c = LocalClient(server)

    def edit(self, cfg: str, **kw) -> etree._Element:
        return self.c.edit(cfg, **kw)

    def replace_all(self, cfg: str) -> etree._Element:
        return self.c.rpc(f"<copy-config><target><running/></target><source><config>{cfg}"
                          "</config></source></copy-config>")

    def link(self, name: str) -> dict | None:
        return self.lab.link(self.ns, name)

    def addrs(self, name: str, family: str = "inet") -> list[str]:
        return self.lab.addresses(self.ns, name, family)

    def sysctl(self, key: str) -> str:
        return self.lab.sysctl(self.ns, key)

    def kernel(self) -> str:
        """Everything the backend could touch, as comparable text."""
        links = self.lab.ip_json(self.ns, "link", "show")
        for lk in links:  # counters/timers are not configuration
            for k in ("stats", "stats64", "operstate", "linkmode"):
                lk.pop(k, None)
        out = {
            "links": links,
            "addrs": [(a["ifname"], [(i["local"], i["prefixlen"]) for i in a["addr_info"]])
                      for a in self.lab.ip_json(self.ns, "addr", "show")],
            "neigh": [n for n in self.lab.ip_json(self.ns, "neigh", "show")
                      if "PERMANENT" in n.get("state", [])],
            "sysctl": self.lab.run(self.ns, "sh", "-c", "grep -r . /proc/sys/net/ipv[46]/conf/"
                                   "eth0/ | grep -v stable_secret").stdout,
        }
        return json.dumps(out, sort_keys=True)

    def running(self) -> bytes:
        return etree.tostring(data(self.c.get_config()), method="c14n")


class Refuser:
    """A later subscriber that refuses every commit (while ``on``): the Linux backend's
    changes are then undone."""

    name = "refuser"
    on = False

    def prepare(self, old, new):  # noqa: ANN001, ANN201
        refuser = self

        class P:
            def apply(self):  # noqa: ANN202
                if refuser.on:
                    raise RpcError("operation-failed", "refused by a later backend")
                return lambda: None
        return P()


@contextlib.contextmanager
def refusing_env(schema, tmp_path, *ifnames: str) -> Iterator[Env]:  # noqa: ANN001
    """veths ``ifnames`` in a fresh namespace, the Linux backend and a later subscriber:
    ``env.refuser.on = True`` makes the next commits fail after the Linux backend applied
    them. No drift watcher (``backend.running`` is set for explicit reconciles)."""
    with Lab() as lab:
        ns = lab.netns()
        for name in ifnames:
            lab.veth(ns, name)
        backend = LinuxConfig(ns)
        try:
            refuser = Refuser()
            server = NetconfServer(schema, tmp_path, subscribers=[backend, refuser])
            backend.running = lambda: server.datastores["running"].tree
            e = Env(lab, ns, backend, server)
            e.refuser = refuser
            yield e
        finally:
            backend.close()


@pytest.fixture
def env(schema, tmp_path):
    with refusing_env(schema, tmp_path, "eth0") as e:
        yield e


# ------------------------------------------------------------------ config reaches the kernel
def test_interface_items_reach_kernel(env):
    cfg = ifs(eth("eth0", "<description>uplink to lan</description>"
                  "<link-up-down-trap-enable>disabled</link-up-down-trap-enable>"
                  + v4("<forwarding>true</forwarding><mtu>1400</mtu>"
                       + addr("192.0.2.1", 24)
                       + "<address><ip>198.51.100.1</ip><netmask>255.255.255.128</netmask>"
                         "</address>"
                       "<neighbor><ip>192.0.2.9</ip><link-layer-address>02:00:00:00:00:09"
                       "</link-layer-address></neighbor>")
                  + v6("<forwarding>true</forwarding><mtu>1300</mtu>"
                       + addr("2001:DB8::1", 64)
                       + "<neighbor><ip>2001:db8::9</ip><link-layer-address>02:00:00:00:00:0a"
                         "</link-layer-address></neighbor>"
                       "<dup-addr-detect-transmits>0</dup-addr-detect-transmits>"
                       "<autoconf><create-global-addresses>false</create-global-addresses>"
                       "</autoconf>")))
    r = env.edit(cfg)
    assert ok(r), errors(r)
    link = env.link("eth0")
    assert link["ifalias"] == "uplink to lan"
    assert link["mtu"] == 1400
    assert sorted(env.addrs("eth0")) == ["192.0.2.1/24", "198.51.100.1/25"]
    assert "2001:db8::1/64" in env.addrs("eth0", "inet6")
    assert env.sysctl("net.ipv4.conf.eth0.forwarding") == "1"
    assert env.sysctl("net.ipv6.conf.eth0.forwarding") == "1"
    assert env.sysctl("net.ipv6.conf.eth0.mtu") == "1300"
    assert env.sysctl("net.ipv6.conf.eth0.dad_transmits") == "0"
    assert env.sysctl("net.ipv6.conf.eth0.autoconf") == "0"
    neigh = {n["dst"]: n for n in env.lab.ip_json(env.ns, "neigh", "show", "dev", "eth0")}
    assert neigh["192.0.2.9"]["lladdr"] == "02:00:00:00:00:09"
    assert neigh["192.0.2.9"]["state"] == ["PERMANENT"]
    assert neigh["2001:db8::9"]["lladdr"] == "02:00:00:00:00:0a"
    # the stored-only leaf is kept in running
    assert b"<if:link-up-down-trap-enable>disabled" in env.running()

    # enabled=false → admin down; IPv4 disabled → its addresses go; IPv6 disabled → sysctl
    r = env.edit(ifs(eth("eth0", "<enabled>false</enabled>" + v4("<enabled>false</enabled>")
                         + v6("<enabled>false</enabled>"))))
    assert ok(r), errors(r)
    assert "UP" not in env.link("eth0")["flags"]
    assert env.addrs("eth0") == []
    assert env.sysctl("net.ipv6.conf.eth0.disable_ipv6") == "1"
    r = env.edit(ifs(eth("eth0", "<enabled>true</enabled>" + v4("<enabled>true</enabled>")
                         + v6("<enabled>true</enabled>"))))
    assert ok(r), errors(r)
    assert "UP" in env.link("eth0")["flags"]
    assert sorted(env.addrs("eth0")) == ["192.0.2.1/24", "198.51.100.1/25"]
    assert env.sysctl("net.ipv6.conf.eth0.disable_ipv6") == "0"
    assert "2001:db8::1/64" in env.addrs("eth0", "inet6")


def _permanent_neighbors(env: Env, dev: str = "eth0") -> list[str]:
    return sorted(n["dst"] for n in env.lab.ip_json(env.ns, "neigh", "show", "dev", dev)
                  if "PERMANENT" in n.get("state", []))


def test_neighbor_removal_reaches_kernel(env, caplog):
    nb4 = ("<neighbor><ip>192.0.2.9</ip><link-layer-address>02:00:00:00:00:09"
           "</link-layer-address></neighbor>")
    nb6 = ("<neighbor><ip>2001:db8::9</ip><link-layer-address>02:00:00:00:00:0a"
           "</link-layer-address></neighbor>")
    r = env.edit(ifs(eth("eth0", v4(addr("192.0.2.1", 24) + nb4) + v6(nb6))))
    assert ok(r), errors(r)
    assert _permanent_neighbors(env) == ["192.0.2.9", "2001:db8::9"]
    # an unrelated edit of the interface leaves its neighbours alone (nothing re-added)
    caplog.clear()
    with caplog.at_level(logging.INFO):
        assert ok(env.edit(ifs(eth("eth0", "<description>x</description>"))))
    assert not [m for m in caplog.messages if "neighbor" in m], caplog.messages
    dele = f'xmlns:nc="{NS["nc"]}" nc:operation="delete"'
    r = env.edit(ifs(eth("eth0", v4(f"<neighbor {dele}><ip>192.0.2.9</ip></neighbor>"))))
    assert ok(r), errors(r)
    assert _permanent_neighbors(env) == ["2001:db8::9"]
    r = env.edit(ifs(eth("eth0", v6(f"<neighbor {dele}><ip>2001:db8::9</ip></neighbor>"))))
    assert ok(r), errors(r)
    assert _permanent_neighbors(env) == []
    # and deleting the whole interface configuration removes the configured ones
    assert ok(env.edit(ifs(eth("eth0", v4(nb4) + v6(nb6)))))
    assert _permanent_neighbors(env) == ["192.0.2.9", "2001:db8::9"]
    assert ok(env.edit(ifs(f"<interface {dele}><name>eth0</name></interface>")))
    assert _permanent_neighbors(env) == []


def test_deleting_config_restores_defaults_and_keeps_link(env):
    before = env.kernel()
    r = env.edit(ifs(eth("eth0", "<description>x</description>"
                         + v4("<forwarding>true</forwarding><mtu>1280</mtu>"
                              + addr("192.0.2.1", 24))
                         + v6("<forwarding>true</forwarding>" + addr("2001:db8::1", 64)))))
    assert ok(r), errors(r)
    assert env.link("eth0")["mtu"] == 1280
    r = env.replace_all("")
    assert ok(r), errors(r)
    link = env.link("eth0")
    assert link is not None and "UP" in link["flags"]
    assert link["mtu"] == 1500 and "ifalias" not in link
    assert env.addrs("eth0") == []
    assert "2001:db8::1/64" not in env.addrs("eth0", "inet6")
    assert env.sysctl("net.ipv4.conf.eth0.forwarding") == "0"
    assert env.sysctl("net.ipv6.conf.eth0.forwarding") == "0"
    assert env.kernel() == before


def test_macvlan_create_change_delete(env):
    r = env.edit(ifs(eth("eth0"), macvlan("mv0", mode="private", mac="02:00:5E:00:01:0A",
                                          body=v4(addr("192.0.2.10", 24)))))
    assert ok(r), errors(r)
    link = env.link("mv0")
    assert link["linkinfo"]["info_kind"] == "macvlan"
    assert link["linkinfo"]["info_data"]["mode"] == "private"
    assert link["link"] == "eth0"
    assert link["address"] == "02:00:5e:00:01:0a"
    assert "UP" in link["flags"]
    assert env.addrs("mv0") == ["192.0.2.10/24"]
    index = link["ifindex"]

    r = env.edit(ifs(macvlan("mv0", mode="bridge", mac="02:00:5e:00:01:0b")))
    assert ok(r), errors(r)
    link = env.link("mv0")
    assert link["linkinfo"]["info_data"]["mode"] == "bridge"
    assert link["address"] == "02:00:5e:00:01:0b"
    assert link["ifindex"] == index  # changed in place, not recreated
    assert env.addrs("mv0") == ["192.0.2.10/24"]

    r = env.edit(ifs(f'<interface xmlns:nc="{NS["nc"]}" nc:operation="delete">'
                     "<name>mv0</name></interface>"))
    assert ok(r), errors(r)
    assert env.link("mv0") is None
    assert env.link("eth0") is not None


def test_macvlan_on_lower_created_in_same_commit_and_lower_change(env):
    env.lab.veth(env.ns, "eth1")
    r = env.edit(ifs(eth("eth0"), eth("eth1"), macvlan("mv0", "eth0"),
                     macvlan("mv1", "mv0", mode="bridge")))
    assert ok(r), errors(r)
    assert env.link("mv1")["link"] == "eth0"  # the kernel stacks it on mv0's lower
    r = env.edit(ifs(macvlan("mv0", "eth1", body=v4(addr("192.0.2.7", 24)))))
    assert ok(r), errors(r)
    assert env.link("mv0")["link"] == "eth1"
    assert env.addrs("mv0") == ["192.0.2.7/24"]


# ------------------------------------------------------------------ refusals
def test_nonexistent_interface_refused_with_path(env):
    before, running = env.kernel(), env.running()
    r = env.edit(ifs(eth("eth0", v4(addr("192.0.2.1", 24))), eth("nosuch0")))
    errs = errors(r)
    assert len(errs) == 1, errs
    assert errs[0]["error-tag"] == "operation-failed"
    assert errs[0]["error-path"] == "/if:interfaces/if:interface[if:name='nosuch0']"
    assert errs[0]["path-ns"]["if"] == IF
    assert env.kernel() == before and env.running() == running  # eth0's address not applied

    r = env.edit(ifs(macvlan("mvx", "nosuch0")))
    assert not ok(r)  # the lower must be configured (leafref) and exist


def test_deleting_lower_of_macvlan_refused_by_validation(env):
    r = env.edit(ifs(eth("eth0"), macvlan("mv0", "eth0")))
    assert ok(r), errors(r)
    before = env.kernel()
    r = env.edit(ifs(f'<interface xmlns:nc="{NS["nc"]}" nc:operation="delete">'
                     "<name>eth0</name></interface>"))
    errs = errors(r)
    assert errs and errs[0]["error-tag"] == "data-missing", errs
    assert errs[0].get("error-app-tag") == "instance-required"
    assert "lower-interface" in errs[0]["error-path"]
    assert env.kernel() == before and env.link("mv0") is not None


# ------------------------------------------------------------------ rollback
def test_kernel_failure_rolls_back_everything(env):
    r = env.edit(ifs(eth("eth0", v4(addr("192.0.2.1", 24))), macvlan("mv0")))
    assert ok(r), errors(r)
    before, running = env.kernel(), env.running()
    # many changes, one of which the kernel refuses: a macvlan MTU above its lower's
    r = env.edit(ifs(eth("eth0", "<description>changed</description>"
                         + v4("<forwarding>true</forwarding>" + addr("198.51.100.1", 24))),
                     macvlan("mv0", mode="bridge", body=v4(addr("192.0.2.2", 24))),
                     macvlan("mv1", body=v4("<mtu>9000</mtu>" + addr("203.0.113.1", 24)))),
                 error_option="rollback-on-error")
    errs = errors(r)
    assert len(errs) == 1, errs
    assert errs[0]["error-tag"] == "operation-failed"
    assert errs[0]["error-path"] == "/if:interfaces/if:interface[if:name='mv1']/mv:macvlan"
    assert "Invalid argument" in errs[0]["error-message"]
    assert env.kernel() == before
    assert env.running() == running


def test_link_vanishing_between_prepare_and_apply_rolls_back(env):
    env.lab.veth(env.ns, "eth1")
    before_eth0 = (env.link("eth0"), env.addrs("eth0"))
    running = env.running()
    env.backend.before_apply = lambda: sh("ip", "-n", env.ns, "link", "del", "eth1")
    r = env.edit(ifs(eth("eth0", "<description>d</description>" + v4(addr("192.0.2.1", 24))),
                     eth("eth1", v4(addr("192.0.2.5", 24)))))
    env.backend.before_apply = None
    errs = errors(r)
    assert len(errs) == 1 and errs[0]["error-tag"] == "operation-failed", errs
    assert "No such device" in errs[0]["error-message"]
    assert "if:name='eth1'" in errs[0]["error-path"]
    assert (env.link("eth0"), env.addrs("eth0")) == before_eth0
    assert env.running() == running


def test_later_subscriber_failure_undoes_kernel_changes(env):
    assert ok(env.edit(ifs(eth("eth0", v4(addr("192.0.2.1", 24))), macvlan("mv0"))))
    before, running = env.kernel(), env.running()
    env.refuser.on = True
    r = env.edit(ifs(eth("eth0", "<enabled>false</enabled>"
                         + v4("<mtu>1400</mtu>" + addr("192.0.2.2", 24))),
                     macvlan("mv1", mode="bridge"),
                     f'<interface xmlns:nc="{NS["nc"]}" nc:operation="delete">'
                     "<name>mv0</name></interface>"))
    assert errors(r)[0]["error-message"] == "refused by a later backend"
    assert env.link("mv1") is None and env.link("mv0") is not None
    assert env.kernel() == before and env.running() == running


# ------------------------------------------------------------------ idempotence
def test_applying_twice_changes_nothing(env):
    cfg = ifs(eth("eth0", "<description>a</description>" + v4(addr("192.0.2.1", 24))
                  + v6("<forwarding>true</forwarding>")),
              macvlan("mv0", mac="02:00:5e:00:01:01", body=v4(addr("192.0.2.2", 24))))
    r = env.edit(cfg)
    assert ok(r), errors(r)
    snap = env.kernel()
    run = env.server.datastores["running"].tree
    assert env.backend.prepare(run, run) is None
    # a restarted agent applies startup with old = empty over a kernel that holds it all
    fresh = LinuxConfig(env.ns)
    try:
        empty = etree.Element(run.tag)
        assert fresh.prepare(empty, copy.deepcopy(run)) is None
    finally:
        fresh.close()
    r = env.replace_all(cfg)
    assert ok(r), errors(r)
    assert env.kernel() == snap


# ------------------------------------------------------------------ drift
def test_drift_is_repaired_within_a_second(env, caplog):
    caplog.set_level(logging.WARNING, logger="agent.linux")
    r = env.edit(ifs(eth("eth0", v4(addr("192.0.2.1", 24))),
                     macvlan("mv0", body=v4(addr("192.0.2.2", 24)))))
    assert ok(r), errors(r)

    async def until(cond, timeout: float = 1.0) -> float:
        t0 = time.monotonic()
        while not cond():
            assert time.monotonic() - t0 < timeout, "not restored within 1 s"
            await asyncio.sleep(0.02)
        return time.monotonic() - t0

    async def scenario() -> None:
        watcher = DriftWatcher(env.backend)
        task = asyncio.ensure_future(watcher.run())
        await asyncio.sleep(0.1)
        try:
            ns = env.ns
            await asyncio.to_thread(sh, "ip", "-n", ns, "link", "del", "mv0")
            await until(lambda: env.link("mv0") is not None and env.addrs("mv0"))
            assert env.addrs("mv0") == ["192.0.2.2/24"]
            await asyncio.to_thread(sh, "ip", "-n", ns, "addr", "del", "192.0.2.1/24",
                                    "dev", "eth0")
            await until(lambda: env.addrs("eth0") == ["192.0.2.1/24"])
            await asyncio.to_thread(sh, "ip", "-n", ns, "link", "set", "eth0", "down")
            await until(lambda: "UP" in env.link("eth0")["flags"])
            # a foreign address is not the agent's business: no reconcile storm, kept
            n = watcher.reconciles
            await asyncio.to_thread(sh, "ip", "-n", ns, "addr", "add", "10.9.9.9/32",
                                    "dev", "eth0")
            await asyncio.sleep(0.3)
            assert "10.9.9.9/32" in env.addrs("eth0")
            assert watcher.reconciles <= n + 2
        finally:
            task.cancel()

    asyncio.run(scenario())
    msgs = [r.getMessage() for r in caplog.records]
    assert any(m.startswith("drift: create macvlan mv0") and m.endswith("restored")
               for m in msgs), msgs
    assert any("drift: add address 192.0.2.1/24 to eth0: restored" in m for m in msgs), msgs
    assert any("drift: set eth0 up: restored" in m for m in msgs), msgs


# ------------------------------------------------------------------ end to end over SSH
def test_agent_process_creates_macvlan_over_ncclient(tmp_path):
    from agentproc import AgentProcess

    with Lab() as lab:
        ns = lab.netns()
        lab.veth(ns, "eth0")
        agent = AgentProcess(tmp_path, netns=ns)
        agent.start()
        try:
            with agent.ncclient() as m:
                cfg = ifs(eth("eth0"), macvlan("vrrp10", mode="private",
                                               mac="00:00:5e:00:01:0a",
                                               body=v4(addr("192.0.2.10", 24))))
                m.edit_config(target="running", config=f'<config xmlns="{NS["nc"]}">{cfg}</config>')
                link = lab.link(ns, "vrrp10")
                assert link is not None and link["link"] == "eth0"
                assert link["address"] == "00:00:5e:00:01:0a"
                assert lab.addresses(ns, "vrrp10") == ["192.0.2.10/24"]
                m.copy_config(source="running", target="startup")
            # restart: startup is applied again over the existing kernel objects (no-op),
            # and a macvlan deleted while the agent was down comes back
            agent.stop()
            index = lab.link(ns, "vrrp10")["ifindex"]
            agent.start()
            assert lab.link(ns, "vrrp10")["ifindex"] == index
            sh("ip", "-n", ns, "link", "del", "vrrp10")
            deadline = time.monotonic() + 2
            while lab.link(ns, "vrrp10") is None and time.monotonic() < deadline:
                time.sleep(0.05)
            assert lab.addresses(ns, "vrrp10") == ["192.0.2.10/24"]
            assert "drift: create macvlan vrrp10" in agent.log.read_text()
        finally:
            agent.stop()


def test_agent_starts_when_startup_names_a_missing_interface(tmp_path):
    """A startup the kernel can no longer take (its interface is gone) does not keep the
    device from coming up: running stays empty, startup is kept for the operator to fix."""
    from agentproc import AgentProcess

    with Lab() as lab:
        ns = lab.netns()
        lab.veth(ns, "eth0")
        agent = AgentProcess(tmp_path, netns=ns)
        agent.start()
        try:
            with agent.ncclient() as m:
                cfg = ifs(eth("eth0", body=v4(addr("192.0.2.10", 24))))
                m.edit_config(target="running", config=f'<config xmlns="{NS["nc"]}">{cfg}</config>')
                m.copy_config(source="running", target="startup")
            agent.stop()
            sh("ip", "-n", ns, "link", "del", "eth0")
            agent.start()
            with agent.ncclient() as m:
                running = etree.fromstring(m.get_config("running").data_xml.encode())
                startup = etree.fromstring(m.get_config("startup").data_xml.encode())
            assert running.find(f"{{{NS['if']}}}interfaces") is None
            assert startup.xpath("//if:interface/if:name/text()", namespaces=NS) == ["eth0"]
            assert "startup configuration not applied" in agent.log.read_text()
        finally:
            agent.stop()


# ------------------------------------------------------------------ restoring on delete (#3)
def test_deleting_config_restores_admin_state(env):
    """Unconfigured, a link goes back to its admin state from before the agent managed it."""
    env.lab.veth(env.ns, "eth1", up=False)  # a link the agent will bring up
    before = (env.link("eth0")["flags"], env.link("eth1")["flags"])
    assert "UP" in before[0] and "UP" not in before[1]
    r = env.edit(ifs(eth("eth0", "<enabled>false</enabled><description>d</description>"),
                     eth("eth1", v4(addr("192.0.2.1", 24)))))
    assert ok(r), errors(r)
    assert "UP" not in env.link("eth0")["flags"] and "UP" in env.link("eth1")["flags"]
    r = env.replace_all("")
    assert ok(r), errors(r)
    assert (env.link("eth0")["flags"], env.link("eth1")["flags"]) == before
    assert "ifalias" not in env.link("eth0")
    # a later config of eth0 alone changes nothing about eth1
    assert ok(env.edit(ifs(eth("eth0"))))
    assert "UP" not in env.link("eth1")["flags"]


def test_pre_agent_values_survive_agent_restart(tmp_path):
    """The values restored on delete (MTU, admin state, alias) are kept in the state dir: an
    agent restarted between the commit and the delete still restores them."""
    from agentproc import AgentProcess

    with Lab() as lab:
        ns = lab.netns()
        lab.veth(ns, "eth0")
        sh("ip", "-n", ns, "link", "set", "eth0", "mtu", "1400", "alias", "set-by-someone")
        before = lab.link(ns, "eth0")
        agent = AgentProcess(tmp_path, netns=ns)
        agent.start()
        try:
            cfg = ifs(eth("eth0", "<enabled>false</enabled><description>agent</description>"
                          + v4("<mtu>1280</mtu>")))
            with agent.ncclient() as m:
                m.edit_config(target="running", config=f'<config xmlns="{NS["nc"]}">{cfg}</config>')
                m.copy_config(source="running", target="startup")
            link = lab.link(ns, "eth0")
            assert link["mtu"] == 1280 and "UP" not in link["flags"]
            agent.stop()
            agent.start()
            with agent.ncclient() as m:
                m.edit_config(target="running", config=f'<config xmlns="{NS["nc"]}">'
                              + ifs(f'<interface xmlns:nc="{NS["nc"]}" nc:operation="delete">'
                                    "<name>eth0</name></interface>") + "</config>")
            link = lab.link(ns, "eth0")
            assert link["mtu"] == 1400 and "UP" in link["flags"]
            assert link["ifalias"] == "set-by-someone"
            volatile = ("stats", "stats64", "operstate", "linkmode")
            assert ({k: v for k, v in link.items() if k not in volatile}
                    == {k: v for k, v in before.items() if k not in volatile})
            assert not (tmp_path / "linux-originals.json").read_text().count("eth0")
        finally:
            agent.stop()


# ------------------------------------------------------------------ sysctl drift (#3)
def test_sysctl_drift_is_repaired(env, caplog):
    caplog.set_level(logging.WARNING, logger="agent.linux")
    r = env.edit(ifs(eth("eth0", v4("<forwarding>true</forwarding>")
                         + v6("<forwarding>true</forwarding><mtu>1300</mtu>"
                              "<dup-addr-detect-transmits>0</dup-addr-detect-transmits>"
                              "<autoconf><create-global-addresses>false"
                              "</create-global-addresses></autoconf>"))))
    assert ok(r), errors(r)
    want = {"net.ipv4.conf.eth0.forwarding": "1", "net.ipv6.conf.eth0.forwarding": "1",
            "net.ipv6.conf.eth0.mtu": "1300", "net.ipv6.conf.eth0.dad_transmits": "0",
            "net.ipv6.conf.eth0.autoconf": "0", "net.ipv6.conf.eth0.disable_ipv6": "0"}
    assert {k: env.sysctl(k) for k in want} == want

    async def until(key: str, timeout: float) -> float:
        t0 = time.monotonic()
        while (await asyncio.to_thread(env.sysctl, key)) != want[key]:
            assert time.monotonic() - t0 < timeout, f"{key} not restored within {timeout} s"
            await asyncio.sleep(0.02)
        return time.monotonic() - t0

    def drift(key: str, value: str) -> None:
        sh("ip", "netns", "exec", env.ns, "sysctl", "-qw", f"{key}={value}")

    async def scenario(period: float, changes: dict[str, str], timeout: float) -> None:
        watcher = DriftWatcher(env.backend, sysctl_period=period)
        task = asyncio.ensure_future(watcher.run())
        await asyncio.sleep(0.1)
        try:
            for key, value in changes.items():
                await asyncio.to_thread(drift, key, value)
                print(f"{key}: restored after {await until(key, timeout):.3f} s")
        finally:
            task.cancel()

    # forwarding: the kernel sends RTM_NEWNETCONF (no periodic check needed: period 1 h)
    asyncio.run(scenario(3600, {"net.ipv4.conf.eth0.forwarding": "0",
                                "net.ipv6.conf.eth0.forwarding": "0"}, 1.0))
    # the others raise no event: the periodic check of the managed sysctls finds them
    asyncio.run(scenario(0.2, {"net.ipv6.conf.eth0.mtu": "1280",
                               "net.ipv6.conf.eth0.dad_transmits": "3",
                               "net.ipv6.conf.eth0.autoconf": "1",
                               "net.ipv6.conf.eth0.disable_ipv6": "1"}, 1.5))
    msgs = [r.getMessage() for r in caplog.records]
    for key, value in want.items():
        assert any(f"drift: sysctl {key}={value}: restored" in m for m in msgs), (key, msgs)


def test_unrepairable_sysctl_drift_is_not_retried_in_a_loop(env, caplog):
    """The IPv6 MTU cannot exceed the link MTU: after an `ip link set mtu` lower than the
    configured IPv6 mtu, restoring fails; the periodic check must not retry it every time."""
    caplog.set_level(logging.WARNING, logger="agent.linux")
    assert ok(r := env.edit(ifs(eth("eth0", v6("<mtu>1400</mtu>"))))), errors(r)

    async def scenario() -> int:
        watcher = DriftWatcher(env.backend, sysctl_period=0.05)
        task = asyncio.ensure_future(watcher.run())
        await asyncio.sleep(0.1)
        try:
            n = watcher.reconciles
            await asyncio.to_thread(sh, "ip", "-n", env.ns, "link", "set", "eth0", "mtu", "1300")
            await asyncio.sleep(1.5)  # ~30 checks
            return watcher.reconciles - n
        finally:
            task.cancel()

    reconciles = asyncio.run(scenario())
    assert env.sysctl("net.ipv6.conf.eth0.mtu") == "1300"  # the kernel's, not restorable
    failed = [r for r in caplog.records if "drift: restoring failed" in r.getMessage()]
    assert failed and "mtu" in failed[0].getMessage()
    assert 1 <= reconciles <= 3, reconciles


# ------------------------------------------------------------------ large rollback (#3)
def test_rollback_of_large_create_is_batched(env, monkeypatch):
    """Undoing 200 created macvlans (and their addresses) deletes them with one link-group
    request, not one RTM_DELLINK (~18 ms RCU wait) each; the kernel ends exactly as before."""
    from agent.backends.linux import netlink, rtnl

    env.refuser.on = True
    before, running = env.kernel(), env.running()
    n_before = len(env.lab.ip_json(env.ns, "link", "show"))
    dellinks: list[int] = []
    undo_time: list[float] = []
    real_batch, real_undo = rtnl.RtnlSocket.batch, type(env.backend.executor).undo

    def spy_batch(self, reqs):  # noqa: ANN001, ANN202
        dellinks.extend(1 for r in reqs if r.type == netlink.RTM_DELLINK)
        return real_batch(self, reqs)

    def timed_undo(self, done, names):  # noqa: ANN001, ANN202
        t0 = time.monotonic()
        dellinks.clear()
        real_undo(self, done, names)
        undo_time.append(time.monotonic() - t0)

    monkeypatch.setattr(rtnl.RtnlSocket, "batch", spy_batch)
    monkeypatch.setattr(type(env.backend.executor), "undo", timed_undo)
    cfg = ifs(eth("eth0"), *(macvlan(f"mv{i}", mode="bridge",
                                     body=v4(addr(f"10.{i // 250}.{i % 250}.1", 24)))
                             for i in range(200)))
    r = env.edit(cfg)
    assert errors(r)[0]["error-message"] == "refused by a later backend"
    print(f"undo of 200 macvlan creates + 200 addresses: {undo_time[0]:.3f} s, "
          f"{len(dellinks)} RTM_DELLINK")
    assert len(dellinks) == 1
    assert undo_time[0] < 5.0
    assert len(env.lab.ip_json(env.ns, "link", "show")) == n_before
    assert env.kernel() == before and env.running() == running
