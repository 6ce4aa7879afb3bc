"""Conformance fixes of an audit, over real SSH sessions (in process for a test module):
commit and the candidate lock (RFC 6241 §8.3.4.1), two cases of a choice or a node given
twice in one request (RFC 7950 §8.3.1), create/delete under default-operation replace
(RFC 6241 §7.2), yang:insert attributes (RFC 7950 §7.7.9, §7.8.6, §8.3.1), delete-config of
the candidate, the session-id of a refused candidate lock and copy-config into an unmodified
candidate. Every refusal is checked for error-type, error-tag, error-path (in the client's
prefixes), error-info, and for datastores left unchanged."""

from __future__ import annotations

import pytest
from lxml import etree
from test_datastores import all_canon, copy, eventually, inline, lock, refused_rpc, unlock
from test_edit_config import (
    BASE,
    IANAIFT,
    IF,
    IFX,
    IP,
    NC,
    V1,
    VRRP,
    VRRP1,
    assert_ok,
    check_error,
    edit,
    get_config,
    iface,
    is_ok,
    names,
    only,
    refused,
    rpc_errors,
    values,
    vrrp1,
    xml,
)

YANG = "urn:ietf:params:xml:ns:yang:1"


@pytest.fixture
def b(c):
    """A client on an agent whose running holds BASE."""
    assert_ok(edit(c, BASE))
    return c


def no_path(err: etree._Element) -> None:
    assert err.find(f"{{{NC}}}error-path") is None, etree.tostring(err).decode()


# ====================================================================== 1. commit vs. locks
@pytest.mark.parametrize("dirty", [True, False], ids=["modified", "clean"])
def test_commit_is_in_use_while_another_session_locks_the_candidate(b, c2, dirty):
    """RFC 6241 §8.3.4.1: in-use when running OR the candidate is locked by another session;
    the holder's changes are neither committed nor lost."""
    assert_ok(lock(b, "candidate"))
    if dirty:
        assert_ok(edit(b, iface("eth1"), target="candidate"))
    for inner in ("<commit/>", "<discard-changes/>"):
        err = refused_rpc(c2, inner)
        check_error(err, type="protocol", tag="in-use", info={"session-id": str(b.session_id)})
        no_path(err)
    assert names(c2) == ["eth0", "mv0"]
    assert names(c2, "candidate") == ["eth0", "mv0"] + (["eth1"] if dirty else [])
    assert_ok(b.rpc("<commit/>"))  # the holder can
    assert names(c2) == ["eth0", "mv0"] + (["eth1"] if dirty else [])


def test_commit_is_in_use_while_another_session_locks_running(b, c2):
    assert_ok(edit(c2, iface("eth1"), target="candidate"))
    assert_ok(lock(b, "running"))
    err = refused_rpc(c2, "<commit/>")
    check_error(err, type="protocol", tag="in-use", info={"session-id": str(b.session_id)})
    assert_ok(unlock(b, "running"))
    assert_ok(c2.rpc("<commit/>"))
    assert names(b) == ["eth0", "mv0", "eth1"]


# ====================================================================== 2. RFC 7950 §8.3.1
ADDR = "/if:interfaces/if:interface[if:name='eth0']/ip:ipv4/ip:address[ip:ip='10.0.0.9']"


@pytest.mark.parametrize("target", ["running", "candidate"])
def test_two_cases_of_a_choice_in_one_request_is_bad_element(b, target):
    """ietf-ip address: choice subnet { case prefix-length; case netmask }."""
    cfg = (f'<a:interfaces xmlns:a="{IF}"><a:interface><a:name>eth0</a:name>'
           f'<b:ipv4 xmlns:b="{IP}"><b:address><b:ip>10.0.0.9</b:ip>'
           "<b:netmask>255.255.255.0</b:netmask><b:prefix-length>24</b:prefix-length>"
           "</b:address></b:ipv4></a:interface></a:interfaces>")
    errs = refused(b, cfg, target=target)
    check_error(only(errs), type="application", tag="bad-element", path=f"{ADDR}/ip:prefix-length",
                prefixes={"a", "b"}, info={"bad-element": "prefix-length"})
    assert values(b, "//ip:address/ip:ip/text()", target) == ["10.0.0.1"]


def test_two_cases_of_a_choice_even_with_remove_of_the_first(b):
    """Data of two cases is refused whatever their operations (sending only the new case
    is enough: it removes the other one)."""
    cfg = iface("eth0", f'<ipv4 xmlns="{IP}"><address><ip>10.0.0.1</ip>'
                        '<netmask nc:operation="remove"/><prefix-length>16</prefix-length>'
                        "</address></ipv4>")
    errs = refused(b, cfg)
    check_error(only(errs), type="application", tag="bad-element",
                path="/if:interfaces/if:interface[if:name='eth0']/ip:ipv4/"
                     "ip:address[ip:ip='10.0.0.1']/ip:prefix-length",
                info={"bad-element": "prefix-length"})


def test_leaf_twice_in_one_request_is_bad_element(b):
    errs = refused(b, iface("eth0", "<description>a</description><description>b</description>"))
    check_error(only(errs), type="application", tag="bad-element",
                path="/if:interfaces/if:interface[if:name='eth0']/if:description",
                info={"bad-element": "description"})
    errs = refused(b, vrrp1("<priority>10</priority><priority nc:operation=\"delete\"/>"))
    check_error(only(errs), type="application", tag="bad-element",
                path=f"{VRRP1}/vrrp:priority", info={"bad-element": "priority"})


def test_key_leaf_twice_in_one_entry_is_bad_element(b):
    cfg = xml(f"<interfaces {IFX}><interface><name>eth1</name><name>eth1</name>"
              "<type>ianaift:ethernetCsmacd</type></interface></interfaces>")
    errs = refused(b, cfg)
    check_error(only(errs), type="application", tag="bad-element",
                path="/if:interfaces/if:interface[if:name='eth1']/if:name",
                info={"bad-element": "name"})


def test_list_entry_twice_in_one_request_is_bad_element(b):
    cfg = xml(f"""<x:interfaces xmlns:x="{IF}" xmlns:t="{IANAIFT}">
        <x:interface><x:name>eth1</x:name><x:type>t:ethernetCsmacd</x:type></x:interface>
        <x:interface><x:name>eth2</x:name><x:type>t:ethernetCsmacd</x:type></x:interface>
        <x:interface><x:name>eth1</x:name><x:description>again</x:description></x:interface>
        </x:interfaces>""")
    errs = refused(b, cfg)
    check_error(only(errs), type="application", tag="bad-element",
                path="/if:interfaces/if:interface[if:name='eth1']", prefixes={"x"},
                info={"bad-element": "interface"})


def test_list_entry_twice_compares_canonical_keys(b):
    """vrid 1 and 01 are the same entry (uint8): the error-path shows the key as sent."""
    cfg = xml(f"""<interfaces {IFX}><interface><name>eth0</name><ipv4 xmlns="{IP}">
        <vrrp xmlns="{VRRP}">
          <vrrp-instance><vrid>1</vrid><priority>10</priority></vrrp-instance>
          <vrrp-instance nc:operation="delete"><vrid>01</vrid></vrrp-instance>
        </vrrp></ipv4></interface></interfaces>""")
    errs = refused(b, cfg)
    check_error(only(errs), type="application", tag="bad-element",
                path="/if:interfaces/if:interface[if:name='eth0']/ip:ipv4/vrrp:vrrp/"
                     "vrrp:vrrp-instance[vrrp:vrid='01']",
                info={"bad-element": "vrrp-instance"})


def test_continue_on_error_reports_the_duplicate_and_applies_the_rest(b):
    cfg = iface("eth1", "<description>a</description><description>b</description>"
                        "<enabled>false</enabled>")
    r = edit(b, cfg, error_option="continue-on-error")
    check_error(only(rpc_errors(r)), type="application", tag="bad-element",
                path="/if:interfaces/if:interface[if:name='eth1']/if:description")
    assert values(b, "//if:interface[if:name='eth1']/*/text()") == [
        "eth1", "a", "ianaift:ethernetCsmacd", "false"]


# ====================================================================== 3. default replace
def test_default_replace_create_of_an_existing_entry_is_data_exists(b):
    errs = refused(b, iface("eth0", op="create"), default_operation="replace")
    check_error(only(errs), type="application", tag="data-exists",
                path="/if:interfaces/if:interface[if:name='eth0']",
                info={"bad-element": "interface"})


def test_default_replace_create_of_a_new_entry(b):
    assert_ok(edit(b, iface("eth5", op="create"), default_operation="replace"))
    assert names(b) == ["eth5"]


def test_default_replace_delete_of_an_existing_entry_deletes_it(b):
    cfg = xml(f"""<interfaces {IFX}>
        <interface><name>eth0</name><type>ianaift:ethernetCsmacd</type></interface>
        <interface nc:operation="delete"><name>mv0</name></interface>
        </interfaces>""")
    assert_ok(edit(b, cfg, default_operation="replace"))
    assert names(b) == ["eth0"]
    assert values(b, "//vrrp:vrrp-instance") == []


def test_default_replace_delete_of_a_missing_entry_is_data_missing(b):
    cfg = xml(f"""<p:interfaces xmlns:p="{IF}" xmlns:t="{IANAIFT}" xmlns:nc="{NC}">
        <p:interface><p:name>eth0</p:name><p:type>t:ethernetCsmacd</p:type></p:interface>
        <p:interface nc:operation="delete"><p:name>ghost</p:name></p:interface>
        </p:interfaces>""")
    errs = refused(b, cfg, default_operation="replace")
    check_error(only(errs), type="application", tag="data-missing",
                path="/if:interfaces/if:interface[if:name='ghost']", prefixes={"p"},
                info={"bad-element": "interface"})


def test_default_replace_remove_never_errors(b):
    cfg = xml(f"""<interfaces {IFX}>
        <interface><name>eth0</name><type>ianaift:ethernetCsmacd</type></interface>
        <interface nc:operation="remove"><name>mv0</name></interface>
        <interface nc:operation="remove"><name>ghost</name></interface>
        </interfaces>""")
    assert_ok(edit(b, cfg, default_operation="replace"))
    assert names(b) == ["eth0"]


def test_default_replace_checks_nested_preconditions_against_the_target(b):
    """Deeper nodes too: the leaf's old value counts, not the emptied replacement."""
    cfg = xml(f"""<interfaces {IFX}><interface><name>eth0</name>
        <type>ianaift:ethernetCsmacd</type>
        <description nc:operation="delete"/>
        </interface></interfaces>""")
    errs = refused(b, cfg, default_operation="replace")
    check_error(only(errs), type="application", tag="data-missing",
                path="/if:interfaces/if:interface[if:name='eth0']/if:description")
    cfg = cfg.replace('<description nc:operation="delete"/>',
                      f'<ipv4 xmlns="{IP}" nc:operation="delete"/>')
    assert_ok(edit(b, cfg, default_operation="replace"))
    assert names(b) == ["eth0"] and values(b, "//ip:ipv4") == []


def test_replace_operation_checks_create_against_the_replaced_entry(b):
    """Same rule for an explicit replace: priority 200 exists before the edit."""
    errs = refused(b, vrrp1('<version>vrrp-v3</version><priority nc:operation="create">5'
                            "</priority>", op="replace"))
    check_error(only(errs), type="application", tag="data-exists",
                path=f"{VRRP1}/vrrp:priority", info={"bad-element": "priority"})
    assert_ok(edit(b, vrrp1('<version>vrrp-v3</version><priority nc:operation="delete"/>',
                            op="replace")))
    assert values(b, f"{V1}/*/text()") == ["1", "vrrp:vrrp-v3"]


# ====================================================================== 4. yang:insert
@pytest.mark.parametrize(
    ("attr", "where"),
    [('yang:insert="first"', "entry"), ('yang:insert="bogus"', "entry"),
     ("yang:key=\"[if:name='eth0']\"", "entry"), ('yang:insert="last"', "leaf")],
    ids=["insert-first", "insert-bogus", "key", "on-leaf"],
)
def test_yang_insert_on_a_system_ordered_node_is_unknown_attribute(b, attr, where):
    """RFC 7950 §8.3.1: insert attributes anywhere but in an ordered-by user list are
    unknown-attribute."""
    entry_attr, leaf_attr = (attr, "") if where == "entry" else ("", attr)
    cfg = (f'<interfaces {IFX} xmlns:if="{IF}" xmlns:yang="{YANG}"><interface {entry_attr}>'
           f"<name>eth1</name><type>ianaift:ethernetCsmacd</type>"
           f"<description {leaf_attr}>d</description></interface></interfaces>")
    errs = refused(b, cfg)
    name = attr.split("=")[0].split(":")[1]
    path = "/if:interfaces/if:interface[if:name='eth1']"
    check_error(only(errs), type="application", tag="unknown-attribute",
                path=path + ("/if:description" if where == "leaf" else ""),
                info={"bad-attribute": name,
                      "bad-element": "description" if where == "leaf" else "interface"})


# ----------------------------------------------------------------- ordered-by user (in process)
ORDT_YANG = """
module ordt {
  yang-version 1.1;
  namespace "urn:test:ordt";
  prefix o;
  container top {
    list rule {
      key "name";
      ordered-by user;
      leaf name { type string; }
      leaf action { type string; }
    }
    leaf-list dns { type uint8; ordered-by user; }
  }
}
"""
ORDT = "urn:test:ordt"
ONS = {"o": ORDT}


@pytest.fixture(scope="module")
def oc(tmp_path_factory):
    """No implemented model has an ordered-by user list: a test module does."""
    from inproc import LocalClient

    from agent.datastore.schema import IMPLEMENTED, Schema, standard_module_dirs
    from agent.server import NetconfServer

    d = tmp_path_factory.mktemp("ordt")
    (d / "ordt.yang").write_text(ORDT_YANG)
    schema = Schema.load({**IMPLEMENTED, "ordt": []}, [d, *standard_module_dirs()])
    return LocalClient(NetconfServer(schema, d))


def _top(body: str, op: str = "") -> str:
    a = f' nc:operation="{op}"' if op else ""
    return f'<o:top xmlns:o="{ORDT}" xmlns:y="{YANG}" xmlns:nc="{NC}"{a}>{body}</o:top>'


def _rule(name: str, attrs: str = "") -> str:
    return f"<o:rule {attrs}><o:name>{name}</o:name></o:rule>"


def _rules(c) -> list[str]:
    return [str(v) for v in get_config(c).xpath("//o:rule/o:name/text()", namespaces=ONS)]


def _dns(c) -> list[str]:
    return [str(v) for v in get_config(c).xpath("//o:dns/text()", namespaces=ONS)]


def test_yang_insert_in_an_ordered_by_user_list(oc):
    assert_ok(edit(oc, _top("", op="remove")))
    assert_ok(edit(oc, _top(_rule("a") + _rule("b"))))
    assert_ok(edit(oc, _top(_rule("c", 'y:insert="first"'))))
    assert _rules(oc) == ["c", "a", "b"]
    assert_ok(edit(oc, _top(_rule("d", "y:insert=\"after\" y:key=\"[o:name='c']\""))))
    assert _rules(oc) == ["c", "d", "a", "b"]
    # an existing entry moves; merge keeps its content
    assert_ok(edit(oc, _top('<o:rule><o:name>a</o:name><o:action>x</o:action></o:rule>')))
    assert_ok(edit(oc, _top("<o:rule y:insert=\"before\" y:key=\"[o:name='c']\">"
                            "<o:name>a</o:name></o:rule>")))
    assert _rules(oc) == ["a", "c", "d", "b"]
    assert [str(v) for v in get_config(oc).xpath("//o:rule/o:action/text()",
                                                 namespaces=ONS)] == ["x"]
    assert_ok(edit(oc, _top(_rule("a", 'y:insert="last"'))))
    assert _rules(oc) == ["c", "d", "b", "a"]
    # entries are handled one at a time, in request order
    assert_ok(edit(oc, _top(_rule("e", 'y:insert="first"')
                            + _rule("f", "y:insert=\"after\" y:key=\"[o:name='e']\""))))
    assert _rules(oc) == ["e", "f", "c", "d", "b", "a"]


def test_yang_insert_in_an_ordered_by_user_leaf_list(oc):
    assert_ok(edit(oc, _top("", op="remove")))
    assert_ok(edit(oc, _top("<o:dns>1</o:dns><o:dns>2</o:dns>")))
    assert_ok(edit(oc, _top('<o:dns y:insert="first">3</o:dns>')))
    assert _dns(oc) == ["3", "1", "2"]
    assert_ok(edit(oc, _top('<o:dns y:insert="after" y:value="02">1</o:dns>')))
    assert _dns(oc) == ["3", "2", "1"]
    assert_ok(edit(oc, _top('<o:dns y:insert="before" y:value="3">1</o:dns>')))
    assert _dns(oc) == ["1", "3", "2"]
    assert_ok(edit(oc, _top('<o:dns y:insert="after" y:value="3">4</o:dns>')))
    assert _dns(oc) == ["1", "3", "4", "2"]


TOP = "/o:top"


@pytest.mark.parametrize(
    ("body", "tag", "attr", "element", "path"),
    [
        (_rule("x", 'y:insert="bogus"'), "bad-attribute", "insert", "rule",
         f"{TOP}/o:rule[o:name='x']"),
        (_rule("x", 'y:insert="before"'), "missing-attribute", "key", "rule",
         f"{TOP}/o:rule[o:name='x']"),
        (_rule("x", "y:insert=\"after\" y:key=\"[o:name='ghost']\""), "bad-attribute", "key",
         "rule", f"{TOP}/o:rule[o:name='x']"),
        (_rule("x", "y:insert=\"after\" y:key=\"[o:name='x']\""), "bad-attribute", "key",
         "rule", f"{TOP}/o:rule[o:name='x']"),
        (_rule("x", "y:insert=\"after\" y:key=\"o:name='a'\""), "bad-attribute", "key",
         "rule", f"{TOP}/o:rule[o:name='x']"),
        (_rule("x", 'y:insert="after" y:value="a"'), "unknown-attribute", "value", "rule",
         f"{TOP}/o:rule[o:name='x']"),
        ('<o:dns y:insert="after" y:value="300">5</o:dns>', "bad-attribute", "value", "dns",
         f"{TOP}/o:dns"),
        ('<o:dns y:insert="after" y:value="9">5</o:dns>', "bad-attribute", "value", "dns",
         f"{TOP}/o:dns"),
        ('<o:dns y:insert="before">5</o:dns>', "missing-attribute", "value", "dns",
         f"{TOP}/o:dns"),
        ('<o:dns y:key="[o:name=\'a\']">5</o:dns>', "unknown-attribute", "key", "dns",
         f"{TOP}/o:dns"),
    ],
    ids=["bogus", "no-key", "no-such-entry", "itself", "not-a-predicate", "value-on-list",
         "value-type", "no-such-value", "no-value", "key-on-leaf-list"],
)
def test_bad_yang_insert_attributes(oc, body, tag, attr, element, path):
    assert_ok(edit(oc, _top("", op="remove")))
    assert_ok(edit(oc, _top(_rule("a") + "<o:dns>1</o:dns>")))
    errs = refused(oc, _top(body))
    err = only(errs)
    check_error(err, type="application", tag=tag,
                info={"bad-attribute": attr, "bad-element": element})
    ep = err.find(f"{{{NC}}}error-path")
    assert ep is not None and ep.nsmap.get("o") == ORDT and ep.text == path, \
        etree.tostring(err).decode()


# ====================================================================== 5. delete-config
def test_delete_config_of_the_candidate_is_refused_like_running(b):
    assert_ok(edit(b, iface("eth1"), target="candidate"))
    for target in ("candidate", "running"):
        err = refused_rpc(b, f"<delete-config><target><{target}/></target></delete-config>")
        check_error(err, type="protocol", tag="invalid-value", info={"bad-element": "target"})
    assert names(b, "candidate") == ["eth0", "mv0", "eth1"]


# ====================================================================== 6. lock-denied id
def test_lock_of_a_modified_candidate_names_the_modifying_session(fresh, c, c2):
    assert_ok(edit(c, iface("eth1"), target="candidate"))
    for who in (c2, c):  # another session, and the modifier itself
        err = refused_rpc(who, "<lock><target><candidate/></target></lock>")
        check_error(err, type="protocol", tag="lock-denied",
                    info={"session-id": str(c.session_id)})
    assert_ok(c.rpc("<discard-changes/>"))
    # a modifier that has gone: session-id 0, and the message says so
    gone = fresh.raw()
    gone_id = gone.session_id
    assert_ok(edit(gone, iface("eth2"), target="candidate"))
    assert_ok(gone.rpc("<close-session/>"))
    gone.close()

    def refused_with_zero() -> bool:
        r = lock(c, "candidate")
        return not is_ok(r) and r.findtext(f".//{{{NC}}}session-id") == "0"

    assert eventually(refused_with_zero)
    before = all_canon(c)
    err = only(rpc_errors(lock(c, "candidate")))
    assert all_canon(c) == before
    check_error(err, type="protocol", tag="lock-denied", info={"session-id": "0"})
    msg = err.findtext(f"{{{NC}}}error-message")
    assert f"session {gone_id}, which has ended" in msg, msg


# ====================================================================== 7. copy-config
def test_copy_running_to_candidate_leaves_it_unmodified(b, c2):
    assert_ok(copy(b, "running", "candidate"))
    assert_ok(lock(c2, "candidate"))  # not refused as modified
    assert_ok(unlock(c2, "candidate"))
    # an identical inline config, and a copy that reverts an edit, likewise
    assert_ok(copy(b, inline(BASE), "candidate"))
    assert_ok(edit(b, iface("eth1"), target="candidate"))
    assert_ok(copy(b, "running", "candidate"))
    assert names(b, "candidate") == ["eth0", "mv0"]
    assert_ok(lock(c2, "candidate"))
    assert_ok(unlock(c2, "candidate"))


def test_copy_of_different_content_to_candidate_marks_it_modified(b, c2):
    assert_ok(copy(b, inline(iface("eth9")), "candidate"))
    err = refused_rpc(c2, "<lock><target><candidate/></target></lock>")
    check_error(err, type="protocol", tag="lock-denied", info={"session-id": str(b.session_id)})
    assert names(b, "candidate") == ["eth9"]
