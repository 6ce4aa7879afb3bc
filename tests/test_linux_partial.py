"""Linux backend: an edit's prepare plans and reads only the interfaces the edit changed
(with their macvlan lowers and the macvlans stacked on a changed macvlan), in a real
network namespace; the result must be what a plan of everything gives."""

from __future__ import annotations

import pytest
from inproc import LocalClient, errors, ok
from nslab import Lab, sh
from test_linux_config import addr, eth, ifs, macvlan, v4

from agent.backends.linux import planner
from agent.backends.linux.config import LinuxConfig
from agent.server import NetconfServer


class Spy:
    """Records which kernel reads prepare() makes."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.full = 0
        self.some: list[set[str]] = []
        read, read_some = planner.Kernel.read.__func__, planner.Kernel.read_some.__func__

        def spy_read(cls, sock):  # noqa: ANN001, ANN202
            self.full += 1
            return read(cls, sock)

        def spy_some(cls, sock, names):  # noqa: ANN001, ANN202
            self.some.append(set(names))
            return read_some(cls, sock, names)

        monkeypatch.setattr(planner.Kernel, "read", classmethod(spy_read))
        monkeypatch.setattr(planner.Kernel, "read_some", classmethod(spy_some))


@pytest.fixture
def env(schema, tmp_path):
    with Lab() as lab:
        ns = lab.netns()
        lab.veth(ns, "eth0")
        lab.veth(ns, "eth1")
        backend = LinuxConfig(ns)
        try:
            server = NetconfServer(schema, tmp_path, subscribers=[backend])
            backend.running = lambda: server.datastores["running"].tree
            yield lab, ns, backend, LocalClient(server)
        finally:
            backend.close()


def test_one_interface_edit_reads_only_its_links(env, monkeypatch):
    lab, ns, backend, c = env
    cfg = ifs(eth("eth0"), eth("eth1", v4(addr("192.0.2.1", 24))),
              *(macvlan(f"mv{i}", body=v4(addr(f"198.51.100.{i + 1}", 32))) for i in range(6)))
    assert ok(r := c.edit(cfg)), errors(r)
    spy = Spy(monkeypatch)
    r = c.edit(ifs(macvlan("mv3", body=v4(addr("203.0.113.3", 24)))))
    assert ok(r), errors(r)
    assert spy.full == 0 and spy.some == [{"mv3", "eth0"}]
    assert sorted(lab.addresses(ns, "mv3")) == ["198.51.100.4/32", "203.0.113.3/24"]
    # an edit of a non-macvlan interface does not pull in the macvlans on it
    r = c.edit(ifs(eth("eth0", "<description>lower</description>")))
    assert ok(r), errors(r)
    assert spy.some[-1] == {"eth0"}
    assert lab.link(ns, "eth0")["ifalias"] == "lower"
    # an edit that changes nothing of the interfaces plans nothing
    before = len(spy.some)
    r = c.edit(ifs(eth("eth0", "<description>lower</description>")))
    assert ok(r), errors(r)
    assert len(spy.some) == before and spy.full == 0


def test_stacked_macvlan_follows_its_lower_macvlan(env, monkeypatch):
    lab, ns, _backend, c = env
    r = c.edit(ifs(eth("eth0"), eth("eth1"), macvlan("mv0", "eth0"),
                   macvlan("mv1", "mv0", mode="bridge"), macvlan("mv2", "eth0")))
    assert ok(r), errors(r)
    assert lab.link(ns, "mv1")["link"] == "eth0"
    spy = Spy(monkeypatch)
    r = c.edit(ifs(macvlan("mv0", "eth1")))
    assert ok(r), errors(r)
    assert spy.some == [{"mv0", "mv1", "eth0", "eth1"}]  # not mv2
    assert lab.link(ns, "mv0")["link"] == "eth1"
    assert lab.link(ns, "mv1")["link"] == "eth1"  # recreated on the new base
    assert lab.link(ns, "mv2")["link"] == "eth0"


def test_partial_plan_leaves_drift_to_reconcile_and_rolls_back(env, monkeypatch):
    lab, ns, backend, c = env
    r = c.edit(ifs(eth("eth0"), eth("eth1", v4(addr("192.0.2.1", 24))), macvlan("mv0")))
    assert ok(r), errors(r)
    sh("ip", "-n", ns, "addr", "del", "192.0.2.1/24", "dev", "eth1")  # drift on eth1
    r = c.edit(ifs(macvlan("mv0", body="<description>x</description>")))
    assert ok(r), errors(r)
    assert lab.addresses(ns, "eth1") == []  # not this edit's business...
    assert backend.reconcile()
    assert lab.addresses(ns, "eth1") == ["192.0.2.1/24"]  # ...the drift watcher's
    # a kernel refusal in a partial plan rolls the whole commit back
    r = c.edit(ifs(macvlan("mv0", body=v4(addr("192.0.2.9", 24))),
                   macvlan("mv1", body=v4("<mtu>9000</mtu>"))))
    assert errors(r) and errors(r)[0]["error-tag"] == "operation-failed"
    assert lab.link(ns, "mv1") is None and lab.addresses(ns, "mv0") == []
    assert lab.link(ns, "mv0")["ifalias"] == "x"
