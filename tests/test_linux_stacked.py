"""Linux backend: a commit changing a lower link's MTU leaves the links stacked on it as
configured, at once (the kernel lowers their MTU with their lower's and resets their IPv6
MTU to it: the commit itself re-applies the configured IPv6 MTU, not the periodic sysctl
check, which does not run here), refuses a macvlan MTU above its lower's, and a failed
commit still leaves the kernel exactly as before; in real network namespaces."""

from __future__ import annotations

import pytest
from inproc import errors, ok
from test_linux_config import Env, eth, ifs, macvlan, refusing_env, v4, v6
from test_linux_repair import assert_same, deleted, fail_commit, snapshot

MV = ["mv0", "mv1", "mv2"]
NS_IP = "urn:ietf:params:xml:ns:yang:ietf-ip"
DELETE = 'xmlns:nc="urn:ietf:params:xml:ns:netconf:base:1.0" nc:operation="delete"'


@pytest.fixture
def env(schema, tmp_path):
    """``eth0`` (veth): see :func:`test_linux_config.refusing_env`."""
    with refusing_env(schema, tmp_path, "eth0") as e:
        yield e


def stacked(env: Env) -> None:
    """mv0 and mv1 on eth0, mv2 on mv0, each with a configured IPv6 MTU."""
    cfg = ifs(eth("eth0", v6("<mtu>1300</mtu>")),
              macvlan("mv0", body=v6("<mtu>1300</mtu>")),
              macvlan("mv1", mode="bridge", body=v6("<mtu>1290</mtu>")),
              macvlan("mv2", lower="mv0", mode="bridge", body=v6("<mtu>1280</mtu>")))
    assert ok(r := env.edit(cfg)), errors(r)


def mtus(env: Env) -> dict[str, tuple[int, str]]:
    return {n: (env.link(n)["mtu"], env.sysctl(f"net.ipv6.conf.{n}.mtu")) for n in MV}


CONFIGURED = {"mv0": "1300", "mv1": "1290", "mv2": "1280"}


@pytest.mark.parametrize("full", [False, True], ids=["edit", "copy-config"])
def test_lowering_lower_keeps_stacked_ipv6_mtu(env, full):
    """eth0 1500 → 1400 → 1350 → unconfigured (1500): the macvlans, not part of the edit,
    keep their configured IPv6 MTU right after each commit."""
    stacked(env)
    for mtu in ("1400", "1350"):
        if full:  # (a plan of everything, not of the edited interfaces only)
            r = env.replace_all(ifs(
                eth("eth0", v4(f"<mtu>{mtu}</mtu>") + v6("<mtu>1300</mtu>")),
                macvlan("mv0", body=v6("<mtu>1300</mtu>")),
                macvlan("mv1", mode="bridge", body=v6("<mtu>1290</mtu>")),
                macvlan("mv2", lower="mv0", mode="bridge", body=v6("<mtu>1280</mtu>"))))
        else:
            r = env.edit(ifs(eth("eth0", v4(f"<mtu>{mtu}</mtu>"))))
        assert ok(r), errors(r)
        assert env.link("eth0")["mtu"] == int(mtu)
        assert mtus(env) == {n: (int(mtu), v) for n, v in CONFIGURED.items()}
    r = env.edit(ifs(eth("eth0", f'<ipv4 xmlns="{NS_IP}" {DELETE}/>')))
    assert ok(r), errors(r)
    assert env.link("eth0")["mtu"] == 1500
    assert mtus(env) == {n: (1350, v) for n, v in CONFIGURED.items()}


def test_failed_commit_after_lowering_restores_everything(env):
    """A failed commit lowering eth0 again (mv1 deleted along) leaves everything as the
    successful one did: MTUs and the configured IPv6 MTUs of the stacked macvlans."""
    stacked(env)
    assert ok(r := env.edit(ifs(eth("eth0", v4("<mtu>1400</mtu>"))))), errors(r)
    assert mtus(env) == {n: (1400, v) for n, v in CONFIGURED.items()}
    names = ["eth0", *MV]
    before = snapshot(env, names)
    fail_commit(env, ifs(eth("eth0", v4("<mtu>1350</mtu>"))))
    assert_same(before, snapshot(env, names))
    fail_commit(env, ifs(eth("eth0", v4("<mtu>1300</mtu>")), deleted("mv1")))
    assert_same(before, snapshot(env, names))


def test_stacked_ipv6_mtu_above_new_link_mtu(env):
    """mv1's configured IPv6 MTU 1450 cannot be held once eth0 (and mv1 with it) is at
    1400: with mv1 in the edit the kernel refuses the write and the commit fails naming
    it; with mv1 not in the edit the plan refuses the commit, naming mv1's IPv6 MTU (the
    edit would leave running saying what the kernel cannot hold); nothing changes."""
    stacked(env)
    assert ok(r := env.edit(ifs(macvlan("mv1", mode="bridge", body=v6("<mtu>1450</mtu>")))))
    names = ["eth0", *MV]
    before = snapshot(env, names)
    r = env.edit(ifs(eth("eth0", v4("<mtu>1400</mtu>")),
                     macvlan("mv1", mode="bridge", body="<description>d</description>")))
    errs = errors(r)
    assert errs and errs[0]["error-message"] == (
        "sysctl net.ipv6.conf.mv1.mtu=1450: Invalid argument"), errs
    assert errs[0]["error-path"] == "/if:interfaces/if:interface[if:name='mv1']/ip:ipv6/ip:mtu"
    assert_same(before, snapshot(env, names))
    r = env.edit(ifs(eth("eth0", v4("<mtu>1400</mtu>"))))
    errs = errors(r)
    assert len(errs) == 1 and errs[0]["error-tag"] == "operation-failed", errs
    assert errs[0]["error-message"] == ("IPv6 MTU 1450 of mv1 would be above its MTU 1400 "
                                        "(lowered with its lower interface's)"), errs
    assert errs[0]["error-path"] == "/if:interfaces/if:interface[if:name='mv1']/ip:ipv6/ip:mtu"
    assert_same(before, snapshot(env, names))
    # with mv1's IPv6 MTU brought down in the same edit, the commit goes through
    assert ok(r := env.edit(ifs(eth("eth0", v4("<mtu>1400</mtu>")),
                                macvlan("mv1", mode="bridge", body=v6("<mtu>1400</mtu>")))))
    assert mtus(env) == {"mv0": (1400, "1300"), "mv1": (1400, "1400"), "mv2": (1400, "1280")}


def test_macvlan_mtu_above_lower_refused(env):
    """A configured macvlan MTU above its lower's (as the commit leaves it) is refused with
    a clear rpc-error, before the kernel is touched: lowering the lower under it, or
    creating it so (one above its lower's MTU now: the kernel refuses it)."""
    stacked(env)
    assert ok(r := env.edit(ifs(macvlan("mv1", mode="bridge", body=v4("<mtu>1450</mtu>")))))
    names = ["eth0", *MV]
    before = snapshot(env, names)
    for cfg in (ifs(eth("eth0", v4("<mtu>1400</mtu>"))),
                ifs(eth("eth0", v4("<mtu>1400</mtu>")),
                    macvlan("mv3", body=v4("<mtu>1420</mtu>")))):
        r = env.edit(cfg)
        errs = errors(r)
        assert len(errs) == 1, errs
        assert errs[0]["error-tag"] == "operation-failed"
        assert errs[0]["error-message"].startswith("macvlan mv"), errs
        assert "above the MTU 1400 of its lower interface eth0" in errs[0]["error-message"]
        assert errs[0]["error-path"].endswith("/ip:ipv4/ip:mtu")
        assert_same(before, snapshot(env, names))
    r = env.edit(ifs(macvlan("mv4", body=v4("<mtu>1600</mtu>"))))
    errs = errors(r)
    assert errs and errs[0]["error-message"] == (
        "create macvlan mv4 on eth0 mode private: Invalid argument"), errs  # (the kernel's)
    assert env.link("mv4") is None
