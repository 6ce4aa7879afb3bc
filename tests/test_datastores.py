"""Datastore operations over real SSH sessions: candidate (RFC 6241 §8.3), locks (§7.5,
§7.6), kill-session / close-session (§7.8, §7.9), copy-config / delete-config (§7.3,
§7.4), startup (§8.7) and its atomic persistence, netconf-monitoring locks (RFC 6022)."""

from __future__ import annotations

import os
import random
import time

import paramiko
import pytest
from lxml import etree
from polling import poll as eventually
from test_edit_config import (
    BASE,
    IFX,
    IP,
    NC,
    NS,
    VRRP,
    assert_ok,
    canon,
    check_error,
    edit,
    get_config,
    iface,
    is_ok,
    names,
    only,
    rpc_errors,
    vrrp1,
    xml,
)

NCM = "urn:ietf:params:xml:ns:yang:ietf-netconf-monitoring"


# ---------------------------------------------------------------------- helpers
def copy(c, source: str, target: str) -> etree._Element:
    src = source if source.startswith("<") else f"<{source}/>"
    tgt = target if target.startswith("<") else f"<{target}/>"
    return c.rpc(f"<copy-config><target>{tgt}</target><source>{src}</source></copy-config>")


def inline(config: str) -> str:
    return f"<config>{xml(config)}</config>"


def all_canon(c) -> tuple[bytes, bytes, bytes]:
    return tuple(canon(get_config(c, s)) for s in ("running", "candidate", "startup"))


def refused_rpc(c, inner: str) -> etree._Element:
    """An RPC that must fail without changing any datastore; its only rpc-error."""
    before = all_canon(c)
    r = c.rpc(inner)
    assert not is_ok(r), etree.tostring(r).decode()
    assert all_canon(c) == before, "a refused operation changed a datastore"
    return only(rpc_errors(r))


def lock(c, target: str) -> etree._Element:
    return c.rpc(f"<lock><target><{target}/></target></lock>")


def unlock(c, target: str) -> etree._Element:
    return c.rpc(f"<unlock><target><{target}/></target></unlock>")


def lock_holder(c, target: str) -> str | None:
    r = c.rpc(f'<get><filter type="subtree"><netconf-state xmlns="{NCM}"><datastores/>'
              "</netconf-state></filter></get>")
    held = r.xpath(
        f"//m:datastore[m:name='{target}']/m:locks/m:global-lock/m:locked-by-session/text()",
        namespaces={"m": NCM},
    )
    return str(held[0]) if held else None


def channel_closed(client, timeout: float = 5.0) -> bool:
    """True when the server closed the client's NETCONF channel."""
    try:
        client.recv_message(timeout)
    except TimeoutError:
        return False
    except (EOFError, OSError, paramiko.SSHException):
        return True
    return False


def flatten(el: etree._Element) -> list[tuple[str, str]]:
    """(path of Clark names, text) of every leaf: compares trees across serialisations."""
    out = []
    for e in el.iter():
        if isinstance(e.tag, str) and len(e) == 0:
            chain = [e.tag]
            for a in e.iterancestors():
                if a is el:
                    break
                chain.append(a.tag)
            out.append(("/".join(reversed(chain)), (e.text or "").strip()))
    return sorted(out)


def startup_files(agent) -> list[str]:
    return sorted(n for n in os.listdir(agent.state_dir) if "startup" in n)


# ====================================================================== candidate
def test_candidate_edit_then_commit(c):
    assert_ok(edit(c, BASE))
    running = canon(get_config(c))
    assert canon(get_config(c, "candidate")) == running  # candidate starts as running
    assert_ok(edit(c, iface("eth1", "<description>new</description>"), target="candidate"))
    assert canon(get_config(c)) == running
    assert canon(get_config(c, "candidate")) != running
    assert names(c, "candidate") == ["eth0", "mv0", "eth1"]
    assert_ok(c.rpc("<commit/>"))
    assert names(c) == ["eth0", "mv0", "eth1"]
    assert canon(get_config(c)) == canon(get_config(c, "candidate"))


def test_discard_changes(c):
    assert_ok(edit(c, BASE))
    assert_ok(edit(c, iface("eth0", op="replace"), target="candidate"))
    assert canon(get_config(c, "candidate")) != canon(get_config(c))
    assert_ok(c.rpc("<discard-changes/>"))
    assert canon(get_config(c, "candidate")) == canon(get_config(c))


def test_validate_source_datastores_and_inline_config(c):
    assert_ok(edit(c, BASE))
    for source in ("running", "candidate", "startup"):
        assert_ok(c.rpc(f"<validate><source><{source}/></source></validate>"))
    assert_ok(c.rpc(f"<validate><source>{inline(BASE)}</source></validate>"))
    bad = f"<interfaces {IFX}><interface><name>eth5</name></interface></interfaces>"
    err = refused_rpc(c, f"<validate><source>{inline(bad)}</source></validate>")
    check_error(err, type="application", tag="missing-element",
                path="/if:interfaces/if:interface[if:name='eth5']/if:type")


def test_validate_candidate_reports_the_error_and_commit_refuses(c):
    assert_ok(edit(c, BASE))
    bad = f"<interfaces {IFX}><interface><name>eth5</name></interface></interfaces>"
    assert_ok(edit(c, bad, target="candidate", test_option="set"))
    err = refused_rpc(c, "<validate><source><candidate/></source></validate>")
    check_error(err, type="application", tag="missing-element",
                path="/if:interfaces/if:interface[if:name='eth5']/if:type")
    err = refused_rpc(c, "<commit/>")
    check_error(err, type="application", tag="missing-element",
                path="/if:interfaces/if:interface[if:name='eth5']/if:type")


def test_commit_drops_nodes_whose_when_became_false(c):
    """A candidate edited with test-option set may keep nodes whose 'when' is now false;
    running must not get them (RFC 7950 §8.3.3)."""
    assert_ok(edit(c, BASE))
    assert_ok(edit(c, vrrp1("<version>vrrp-v2</version>"), target="candidate",
                   test_option="set"))
    assert_ok(c.rpc("<commit/>"))
    inst = ("//if:interface[if:name='eth0']/ip:ipv4/vrrp:vrrp/"
            "vrrp:vrrp-instance[vrrp:vrid='1']/*/text()")
    assert [str(v) for v in get_config(c).xpath(inst, namespaces=NS)] == [
        "1", "vrrp:vrrp-v2", "200"]
    assert canon(get_config(c)) == canon(get_config(c, "candidate"))


def test_ncclient_locked_candidate_commit(fresh, c):
    with fresh.ncclient() as m, m.locked("candidate"):
        cfg = f'<config xmlns="{NC}">{iface("eth4", "<description>nc</description>")}</config>'
        assert m.edit_config(target="candidate", config=cfg).ok
        assert "eth4" not in names(c)
        assert m.commit().ok
    assert names(c) == ["eth4"]


# ====================================================================== locks
@pytest.mark.parametrize("target", ["running", "candidate", "startup"])
def test_lock_denied_names_the_holder(c, c2, target):
    assert_ok(lock(c, target))
    assert lock_holder(c2, target) == str(c.session_id)
    for who in (c2, c):  # another session, and the holder itself
        err = refused_rpc(who, f"<lock><target><{target}/></target></lock>")
        check_error(err, type="protocol", tag="lock-denied",
                    info={"session-id": str(c.session_id)})
    assert_ok(unlock(c, target))
    assert lock_holder(c2, target) is None
    assert_ok(lock(c2, target))


def test_edits_by_another_session_are_in_use_while_locked(c, c2):
    assert_ok(edit(c, BASE))
    assert_ok(lock(c, "running"))
    assert_ok(lock(c, "candidate"))
    assert_ok(lock(c, "startup"))
    refused = [
        f"<edit-config><target><running/></target><config>{iface('eth2')}</config></edit-config>",
        f"<edit-config><target><candidate/></target><config>{iface('eth2')}</config>"
        "</edit-config>",
        "<copy-config><target><running/></target><source><candidate/></source></copy-config>",
        "<copy-config><target><startup/></target><source><running/></source></copy-config>",
        "<delete-config><target><startup/></target></delete-config>",
        "<commit/>",
        "<discard-changes/>",
    ]
    for inner in refused:
        err = refused_rpc(c2, inner)
        check_error(err, type="protocol", tag="in-use", info={"session-id": str(c.session_id)})
    assert_ok(edit(c, iface("eth2")))  # the holder can
    assert "eth2" in names(c2)


def test_discard_changes_by_another_session_keeps_the_holders_changes(c, c2):
    assert_ok(lock(c, "candidate"))
    assert_ok(edit(c, iface("eth3"), target="candidate"))
    err = refused_rpc(c2, "<discard-changes/>")
    check_error(err, type="protocol", tag="in-use", info={"session-id": str(c.session_id)})
    assert names(c, "candidate") == ["eth3"]


def test_unlock_by_non_holder_or_when_unlocked(c, c2):
    assert_ok(lock(c, "running"))
    err = refused_rpc(c2, "<unlock><target><running/></target></unlock>")
    check_error(err, type="protocol", tag="lock-denied", info={"session-id": str(c.session_id)})
    assert lock_holder(c2, "running") == str(c.session_id)
    assert_ok(unlock(c, "running"))
    err = refused_rpc(c, "<unlock><target><running/></target></unlock>")
    check_error(err, type="protocol", tag="operation-failed")


def test_lock_on_modified_candidate_is_refused(c, c2):
    assert_ok(edit(c, iface("eth1"), target="candidate"))
    for who in (c2, c):
        err = refused_rpc(who, "<lock><target><candidate/></target></lock>")
        check_error(err, type="protocol", tag="lock-denied")
        assert err.find(f"{{{NC}}}error-info/{{{NC}}}session-id") is not None
    assert_ok(c.rpc("<discard-changes/>"))
    assert_ok(lock(c2, "candidate"))


def test_unlock_candidate_discards_uncommitted_changes(c):
    assert_ok(lock(c, "candidate"))
    assert_ok(edit(c, iface("eth1"), target="candidate"))
    assert names(c, "candidate") == ["eth1"]
    assert_ok(unlock(c, "candidate"))
    assert names(c, "candidate") == []


@pytest.mark.parametrize("ending", ["close-session", "socket", "kill-session"])
def test_session_end_releases_locks_and_discards_candidate(fresh, c, ending):
    victim = fresh.raw()
    try:
        assert_ok(lock(victim, "candidate"))
        assert_ok(lock(victim, "running"))
        assert_ok(edit(victim, iface("eth1"), target="candidate"))
        assert names(c, "candidate") == ["eth1"]
        if ending == "close-session":
            assert_ok(victim.rpc("<close-session/>"))
            assert channel_closed(victim)
        elif ending == "socket":
            victim.transport.close()  # no close-session: the connection just goes
        else:
            assert_ok(c.rpc(f"<kill-session><session-id>{victim.session_id}</session-id>"
                            "</kill-session>"))
            assert channel_closed(victim)
        assert eventually(lambda: is_ok(lock(c, "running")))
        assert_ok(lock(c, "candidate"))  # the candidate is clean again
        assert names(c, "candidate") == []
        assert lock_holder(c, "candidate") == str(c.session_id)
    finally:
        victim.close()


# ====================================================================== kill / close session
def test_kill_session_kills_only_the_named_session(fresh, c):
    victim, bystander = fresh.raw(), fresh.raw()
    try:
        assert_ok(lock(victim, "running"))
        assert_ok(c.rpc(f"<kill-session><session-id>{victim.session_id}</session-id>"
                        "</kill-session>"))
        assert channel_closed(victim)
        assert not channel_closed(bystander, timeout=0.3)
        assert get_config(bystander) is not None  # still served
        assert lock_holder(c, "running") is None
        r = c.rpc(f'<get><filter type="subtree"><netconf-state xmlns="{NCM}"><sessions/>'
                  "</netconf-state></filter></get>")
        sids = r.xpath("//m:session/m:session-id/text()", namespaces={"m": NCM})
        assert str(victim.session_id) not in sids
        assert str(bystander.session_id) in sids and str(c.session_id) in sids
    finally:
        victim.close()
        bystander.close()


@pytest.mark.parametrize("sid", ["self", "999999", "0", "abc"])
def test_kill_session_invalid_ids(c, sid):
    text = str(c.session_id) if sid == "self" else sid
    err = refused_rpc(c, f"<kill-session><session-id>{text}</session-id></kill-session>")
    check_error(err, type="protocol", tag="invalid-value", info={"bad-element": "session-id"})


def test_kill_session_without_id(c):
    err = refused_rpc(c, "<kill-session/>")
    check_error(err, type="protocol", tag="missing-element", info={"bad-element": "session-id"})


def test_close_session_replies_ok_then_closes(fresh):
    s = fresh.raw()
    try:
        assert_ok(lock(s, "startup"))
        r = s.rpc("<close-session/>")
        assert_ok(r)
        assert channel_closed(s)
    finally:
        s.close()
    with fresh.raw() as other:
        assert eventually(lambda: is_ok(lock(other, "startup")))


# ====================================================================== copy-config
def test_copy_running_to_startup(c):
    assert_ok(edit(c, BASE))
    assert_ok(copy(c, "running", "startup"))
    assert canon(get_config(c, "startup")) == canon(get_config(c))


def test_copy_candidate_to_running(c):
    assert_ok(edit(c, BASE))
    assert_ok(edit(c, iface("eth1"), target="candidate"))
    assert_ok(copy(c, "candidate", "running"))
    assert names(c) == ["eth0", "mv0", "eth1"]
    assert canon(get_config(c)) == canon(get_config(c, "candidate"))


def test_copy_inline_config_to_running_replaces_it(c):
    assert_ok(edit(c, BASE))
    assert_ok(copy(c, inline(iface("eth9")), "running"))
    assert names(c) == ["eth9"]
    assert names(c, "candidate") == ["eth9"]  # unmodified candidate follows running


def test_copy_inline_config_to_candidate(c):
    assert_ok(edit(c, BASE))
    running = canon(get_config(c))
    assert_ok(copy(c, inline(iface("eth9")), "candidate"))
    assert names(c, "candidate") == ["eth9"]
    assert canon(get_config(c)) == running
    assert_ok(c.rpc("<commit/>"))
    assert names(c) == ["eth9"]


def test_copy_invalid_inline_config_is_refused(c):
    assert_ok(edit(c, BASE))
    bad = (f"<interfaces {IFX}><interface><name>eth0</name><type>ianaift:ethernetCsmacd</type>"
           f'<ipv4 xmlns="{IP}"><vrrp xmlns="{VRRP}"><vrrp-instance><vrid>0</vrid>'
           "<version>vrrp-v3</version></vrrp-instance></vrrp></ipv4></interface></interfaces>")
    for target in ("running", "candidate", "startup"):
        err = refused_rpc(c, "<copy-config><target>"
                             f"<{target}/></target><source>{inline(bad)}</source></copy-config>")
        check_error(err, type="application", tag="invalid-value",
                    path="/if:interfaces/if:interface[if:name='eth0']/ip:ipv4/vrrp:vrrp/"
                         "vrrp:vrrp-instance[vrrp:vrid='0']/vrrp:vrid")


@pytest.mark.parametrize("ds", ["running", "candidate", "startup"])
def test_copy_to_itself_is_refused(c, ds):
    assert_ok(edit(c, BASE))
    err = refused_rpc(c, f"<copy-config><target><{ds}/></target><source><{ds}/></source>"
                         "</copy-config>")
    check_error(err, type="protocol", tag="invalid-value")


@pytest.mark.parametrize("where", ["target", "source"])
def test_copy_with_url_is_not_supported(c, where):
    url = "<url>file:///tmp/netconf-vrrp-agent-test.xml</url>"
    src, tgt = (url, "<running/>") if where == "source" else ("<running/>", url)
    err = refused_rpc(c, f"<copy-config><target>{tgt}</target><source>{src}</source>"
                         "</copy-config>")
    check_error(err, type="protocol", tag="operation-not-supported")


# ====================================================================== delete-config
def test_delete_config_startup(fresh, c):
    assert_ok(edit(c, BASE))
    assert_ok(copy(c, "running", "startup"))
    assert_ok(c.rpc("<delete-config><target><startup/></target></delete-config>"))
    assert len(get_config(c, "startup")) == 0
    assert names(c) == ["eth0", "mv0"]  # running untouched
    on_disk = etree.parse(str(fresh.state_dir / "startup.xml")).getroot()
    assert len(on_disk) == 0


def test_delete_config_running_is_refused(c):
    assert_ok(edit(c, BASE))
    err = refused_rpc(c, "<delete-config><target><running/></target></delete-config>")
    check_error(err, type="protocol", tag="invalid-value")


# ====================================================================== startup persistence
def test_startup_survives_restart(fresh):
    with fresh.raw() as c:
        assert_ok(edit(c, BASE))
        assert_ok(copy(c, "running", "startup"))
        saved = flatten(get_config(c))
        # running changes after the copy are not saved
        assert_ok(edit(c, iface("eth1")))
    fresh.restart()
    with fresh.raw() as c:
        assert flatten(get_config(c)) == saved
        assert flatten(get_config(c, "startup")) == saved
        assert canon(get_config(c, "candidate")) == canon(get_config(c))
        assert names(c) == ["eth0", "mv0"]


def test_startup_is_replaced_by_rename_leaving_no_temp_files(fresh, c):
    path = fresh.state_dir / "startup.xml"
    assert_ok(edit(c, BASE))
    assert_ok(copy(c, "running", "startup"))
    ino = os.stat(path).st_ino
    assert_ok(edit(c, iface("eth1")))
    assert_ok(copy(c, "running", "startup"))
    assert os.stat(path).st_ino != ino, "startup.xml was rewritten in place, not renamed"
    assert startup_files(fresh) == ["startup.xml"]
    on_disk = etree.parse(str(path)).getroot()
    assert flatten(on_disk) == flatten(get_config(c, "startup")) == flatten(get_config(c))


def test_kill9_right_after_copy_config_leaves_a_complete_startup(fresh):
    path = fresh.state_dir / "startup.xml"
    with fresh.raw() as c:
        assert_ok(edit(c, BASE))
        assert_ok(copy(c, "running", "startup"))
        saved = flatten(get_config(c))
        fresh.kill9()
    try:
        assert startup_files(fresh) == ["startup.xml"]
        assert flatten(etree.parse(str(path)).getroot()) == saved
        # what a crash in the middle of a later write leaves: a partial temp file
        partial = path.read_bytes()[:100]
        (fresh.state_dir / ".startup.xml.tmp.4242").write_bytes(partial)
    finally:
        fresh.start()
    assert startup_files(fresh) == ["startup.xml"]  # the stale temp file is cleaned up
    with fresh.raw() as c:
        assert flatten(get_config(c)) == saved


def test_kill9_during_copy_config_leaves_old_or_new_startup(fresh):
    """The agent dies at some point of a large copy-config: startup.xml is then the old or
    the new content, never a mixture; the next start cleans up and loads it."""
    path = fresh.state_dir / "startup.xml"
    big = "".join(
        f"<interface><name>e{i}</name><type>ianaift:ethernetCsmacd</type>"
        f"<description>{'x' * 200}</description></interface>" for i in range(400)
    )
    rng = random.Random(7)
    with fresh.raw() as c:
        assert_ok(edit(c, BASE))
        assert_ok(copy(c, "running", "startup"))
        old = flatten(get_config(c))
    try:
        for _ in range(3):
            with fresh.raw() as c:
                assert_ok(copy(c, inline(f"<interfaces {IFX}>{big}</interfaces>"), "running"))
                new = flatten(get_config(c))
                c.send_message(f'<rpc message-id="x" xmlns="{NC}"><copy-config><target>'
                               "<startup/></target><source><running/></source></copy-config>"
                               "</rpc>")
                time.sleep(rng.uniform(0, 0.05))
                fresh.kill9()
            content = flatten(etree.parse(str(path)).getroot())
            assert content in (old, new), f"startup.xml holds {len(content)} leafs, a mixture"
            fresh.start()
            assert startup_files(fresh) == ["startup.xml"]
            with fresh.raw() as c:
                assert flatten(get_config(c)) == content
                assert_ok(c.rpc("<copy-config><target><startup/></target><source><config>"
                                f"{xml(BASE)}</config></source></copy-config>"))
    finally:
        if fresh.proc is None:
            fresh.start()


def test_startup_capability_and_running_lock_in_monitoring(c, c2):
    caps = c.capabilities
    for cap in ("startup:1.0", "candidate:1.0", "writable-running:1.0", "validate:1.1"):
        assert f"urn:ietf:params:netconf:capability:{cap}" in caps
    assert_ok(lock(c, "running"))
    r = c2.rpc(f'<get><filter type="subtree"><netconf-state xmlns="{NCM}"><datastores/>'
               "</netconf-state></filter></get>")
    lk = r.xpath("//m:datastore[m:name='running']/m:locks/m:global-lock",
                 namespaces={"m": NCM})
    assert len(lk) == 1
    assert lk[0].findtext(f"{{{NCM}}}locked-by-session") == str(c.session_id)
    assert lk[0].findtext(f"{{{NCM}}}locked-time")
    assert r.xpath("//m:datastore[m:name='candidate']/m:locks", namespaces={"m": NCM}) == []

