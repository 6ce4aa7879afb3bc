"""edit-config conformance over real SSH sessions (RFC 6241 §7.2, RFC 7950 §8 and §15).

Every refused edit is checked for error-type, error-tag, error-path (its prefixes are
resolved through the namespaces declared on the ``error-path`` element and compared
with the expected node), error-app-tag where RFC 7950 §15 defines one, and for an
unchanged datastore (running and candidate compared as canonical XML).
"""

from __future__ import annotations

import re

import pytest
from lxml import etree

NC = "urn:ietf:params:xml:ns:netconf:base:1.0"
IF = "urn:ietf:params:xml:ns:yang:ietf-interfaces"
IP = "urn:ietf:params:xml:ns:yang:ietf-ip"
VRRP = "urn:ietf:params:xml:ns:yang:ietf-vrrp"
MV = "urn:netconf-vrrp-agent:yang:macvlan"
IANAIFT = "urn:ietf:params:xml:ns:yang:iana-if-type"
NS = {"nc": NC, "if": IF, "ip": IP, "vrrp": VRRP, "mv": MV}
NCA = f'xmlns:nc="{NC}"'
IFX = f'xmlns="{IF}" xmlns:ianaift="{IANAIFT}" {NCA}'

# the instance of the base configuration, as an error-path prefix (expectation side: NS)
VRRP1 = ("/if:interfaces/if:interface[if:name='eth0']/ip:ipv4/vrrp:vrrp/"
         "vrrp:vrrp-instance[vrrp:vrid='1']")


def xml(s: str) -> str:
    """Drop the indentation between tags (requests are written readably below)."""
    return re.sub(r">\s+<", "><", s.strip())


BASE = xml(f"""
<interfaces {IFX} xmlns:mv="{MV}">
  <interface>
    <name>eth0</name>
    <type>ianaift:ethernetCsmacd</type>
    <ipv4 xmlns="{IP}">
      <address><ip>10.0.0.1</ip><prefix-length>24</prefix-length></address>
      <vrrp xmlns="{VRRP}">
        <vrrp-instance>
          <vrid>1</vrid>
          <version>vrrp-v3</version>
          <priority>200</priority>
          <accept-mode>true</accept-mode>
          <advertise-interval-centi-sec>50</advertise-interval-centi-sec>
          <virtual-ipv4-addresses>
            <virtual-ipv4-address><ipv4-address>10.0.0.254</ipv4-address></virtual-ipv4-address>
          </virtual-ipv4-addresses>
        </vrrp-instance>
      </vrrp>
    </ipv4>
  </interface>
  <interface>
    <name>mv0</name>
    <type>mv:macvlan</type>
    <macvlan xmlns="{MV}"><lower-interface>eth0</lower-interface></macvlan>
  </interface>
</interfaces>
""")


# ---------------------------------------------------------------------- client helpers
def edit(c, config: str, target: str = "running", **opts: str) -> etree._Element:
    extra = "".join(
        f"<{k.replace('_', '-')}>{v}</{k.replace('_', '-')}>" for k, v in opts.items()
    )
    return c.rpc(
        f"<edit-config><target><{target}/></target>{extra}"
        f"<config>{xml(config)}</config></edit-config>"
    )


def is_ok(reply: etree._Element) -> bool:
    return reply.find(f"{{{NC}}}ok") is not None and reply.find(f"{{{NC}}}rpc-error") is None


def assert_ok(reply: etree._Element) -> None:
    assert is_ok(reply), etree.tostring(reply).decode()


def get_config(c, source: str = "running") -> etree._Element:
    r = c.rpc(f"<get-config><source><{source}/></source></get-config>")
    d = r.find(f"{{{NC}}}data")
    assert d is not None, etree.tostring(r).decode()
    return d


def canon(el: etree._Element) -> bytes:
    return etree.tostring(el, method="c14n2", strip_text=True)


def snapshot(c) -> tuple[bytes, bytes]:
    return canon(get_config(c, "running")), canon(get_config(c, "candidate"))


def values(c, xpath: str, source: str = "running") -> list[str]:
    return [str(v) for v in get_config(c, source).xpath(xpath, namespaces=NS)]


def rpc_errors(reply: etree._Element) -> list[etree._Element]:
    return reply.findall(f"{{{NC}}}rpc-error")


def refused(c, config: str, target: str = "running", **opts: str) -> list[etree._Element]:
    """Send an edit that must fail; check it left both datastores as they were."""
    before = snapshot(c)
    reply = edit(c, config, target, **opts)
    errs = rpc_errors(reply)
    assert errs and reply.find(f"{{{NC}}}ok") is None, etree.tostring(reply).decode()
    assert snapshot(c) == before, "a refused edit-config changed a datastore"
    return errs


# ---------------------------------------------------------------------- error-path
_STEP = re.compile(r"""/(?:([\w.-]+):)?([\w.-]+)((?:\[(?:[^\]'"]|'[^']*'|"[^"]*")*\])*)""")
_PRED = re.compile(
    r"""\[\s*(?:(?:([\w.-]+):)?([\w.-]+)|(\.))\s*=\s*(?:'([^']*)'|"([^"]*)")\s*\]"""
)


def path_steps(path: str, nsmap: dict) -> list[tuple[tuple[str | None, str], dict]]:
    """An instance-identifier as ``[((ns, name), {key: value})]``, prefixes resolved."""
    steps = []
    pos = 0
    for m in _STEP.finditer(path):
        assert m.start() == pos, f"unparsable error-path {path!r} at {pos}"
        prefix, name, preds = m.groups()
        assert prefix is None or prefix in nsmap, f"prefix {prefix!r} undeclared in {path!r}"
        keys = {}
        for pm in _PRED.finditer(preds):
            kp, kn, dot, v1, v2 = pm.groups()
            assert kp is None or kp in nsmap, f"prefix {kp!r} undeclared in {path!r}"
            keys["." if dot else (nsmap.get(kp), kn)] = v1 if v1 is not None else v2
        steps.append(((nsmap.get(prefix) if prefix else None, name), keys))
        pos = m.end()
    assert pos == len(path) and steps, f"unparsable error-path {path!r}"
    return steps


def prefixes_in(path: str) -> set[str]:
    return set(re.findall(r"([\w.-]+):[\w.-]", re.sub(r"'[^']*'|\"[^\"]*\"", "", path)))


def check_error(
    err: etree._Element,
    *,
    type: str,  # noqa: A002 - RFC name
    tag: str,
    path: str | None = None,
    app_tag: str | None = None,
    prefixes: set[str] | None = None,
    list_path: bool = False,
    message: str | None = None,
    info: dict[str, str] | None = None,
) -> None:
    """``path`` is written with the NS prefixes; the reply's own prefixes are resolved
    through the nsmap of its error-path element. ``list_path``: the last step may carry
    key predicates or not (an error about a list as a whole)."""
    dump = etree.tostring(err).decode()
    assert err.findtext(f"{{{NC}}}error-type") == type, dump
    assert err.findtext(f"{{{NC}}}error-tag") == tag, dump
    assert err.findtext(f"{{{NC}}}error-severity") == "error", dump
    if app_tag is not None:
        assert err.findtext(f"{{{NC}}}error-app-tag") == app_tag, dump
    if path is not None:
        ep = err.find(f"{{{NC}}}error-path")
        assert ep is not None and ep.text, dump
        got = path_steps(ep.text.strip(), ep.nsmap)
        want = path_steps(path, NS | {"foo": IF, "x": "urn:example:unknown"})
        if list_path:
            got[-1] = (got[-1][0], {})
            want[-1] = (want[-1][0], {})
        assert got == want, f"error-path {ep.text!r} is not {path!r}"
        if prefixes is not None:
            assert prefixes_in(ep.text) <= prefixes, f"{ep.text!r} does not use {prefixes}"
    if message is not None:
        assert err.findtext(f"{{{NC}}}error-message") == message, dump
    for k, v in (info or {}).items():
        assert err.findtext(f"{{{NC}}}error-info/{{{NC}}}{k}") == v, dump


def only(errs: list[etree._Element]) -> etree._Element:
    assert len(errs) == 1, [etree.tostring(e).decode() for e in errs]
    return errs[0]


def with_app_tag(errs: list[etree._Element], app_tag: str) -> etree._Element:
    found = [e for e in errs if e.findtext(f"{{{NC}}}error-app-tag") == app_tag]
    assert found, [etree.tostring(e).decode() for e in errs]
    return found[0]


# ---------------------------------------------------------------------- fixtures
@pytest.fixture
def b(c):
    """A client on an agent whose running holds BASE."""
    assert_ok(edit(c, BASE))
    return c


def iface(name: str, body: str = "", op: str = "") -> str:
    attr = f' nc:operation="{op}"' if op else ""
    return xml(
        f"<interfaces {IFX}><interface{attr}><name>{name}</name>"
        f"<type>ianaift:ethernetCsmacd</type>{body}</interface></interfaces>"
    )


def vrrp1(body: str, op: str = "") -> str:
    attr = f' nc:operation="{op}"' if op else ""
    return xml(
        f'<interfaces {IFX}><interface><name>eth0</name><ipv4 xmlns="{IP}">'
        f'<vrrp xmlns="{VRRP}"><vrrp-instance{attr}><vrid>1</vrid>{body}</vrrp-instance>'
        f"</vrrp></ipv4></interface></interfaces>"
    )


def names(c, source: str = "running") -> list[str]:
    return values(c, "if:interfaces/if:interface/if:name/text()", source)


V1 = "//if:interface[if:name='eth0']/ip:ipv4/vrrp:vrrp/vrrp:vrrp-instance[vrrp:vrid='1']"


# ====================================================================== operations: leaf
def test_leaf_merge_creates_then_modifies(b):
    assert_ok(edit(b, iface("eth0", "<description>uplink</description>")))
    assert values(b, "//if:interface[if:name='eth0']/if:description/text()") == ["uplink"]
    assert_ok(edit(b, iface("eth0", "<description>core</description>", op="merge")))
    assert values(b, "//if:interface[if:name='eth0']/if:description/text()") == ["core"]


def test_leaf_replace(b):
    assert_ok(edit(b, vrrp1('<priority nc:operation="replace">150</priority>')))
    assert values(b, f"{V1}/vrrp:priority/text()") == ["150"]


def test_leaf_create_new_and_existing(b):
    assert_ok(edit(b, iface("eth0", '<description nc:operation="create">a</description>')))
    errs = refused(b, iface("eth0", '<description nc:operation="create">b</description>'))
    check_error(only(errs), type="application", tag="data-exists",
                path="/if:interfaces/if:interface[if:name='eth0']/if:description",
                info={"bad-element": "description"})


def test_leaf_delete_existing_and_missing(b):
    assert_ok(edit(b, vrrp1('<priority nc:operation="delete"/>')))
    assert values(b, f"{V1}/vrrp:priority") == []
    errs = refused(b, vrrp1('<priority nc:operation="delete"/>'))
    check_error(only(errs), type="application", tag="data-missing",
                path=f"{VRRP1}/vrrp:priority")


def test_leaf_remove_existing_and_missing(b):
    assert_ok(edit(b, vrrp1('<accept-mode nc:operation="remove"/>')))
    assert values(b, f"{V1}/vrrp:accept-mode") == []
    before = snapshot(b)
    assert_ok(edit(b, vrrp1('<accept-mode nc:operation="remove"/>')))  # absent: no error
    assert snapshot(b) == before


# ====================================================================== container
def test_container_merge_replace_delete(b):
    """vrrp:preempt is a non-presence container."""
    assert_ok(edit(b, vrrp1("<preempt><enabled>false</enabled><hold-time>5</hold-time></preempt>")))
    assert values(b, f"{V1}/vrrp:preempt/*/text()") == ["false", "5"]
    assert_ok(edit(b, vrrp1('<preempt nc:operation="replace"><hold-time>7</hold-time></preempt>')))
    assert values(b, f"{V1}/vrrp:preempt/*/text()") == ["7"]  # enabled is gone
    assert_ok(edit(b, vrrp1('<preempt nc:operation="merge"><enabled>true</enabled></preempt>')))
    assert values(b, f"{V1}/vrrp:preempt/*/text()") == ["true", "7"]
    errs = refused(b, vrrp1('<preempt nc:operation="create"><enabled>true</enabled></preempt>'))
    check_error(only(errs), type="application", tag="data-exists", path=f"{VRRP1}/vrrp:preempt")
    assert_ok(edit(b, vrrp1('<preempt nc:operation="delete"/>')))
    assert values(b, f"{V1}/vrrp:preempt") == []
    errs = refused(b, vrrp1('<preempt nc:operation="delete"/>'))
    check_error(only(errs), type="application", tag="data-missing", path=f"{VRRP1}/vrrp:preempt")
    assert_ok(edit(b, vrrp1('<preempt nc:operation="remove"/>')))


# ====================================================================== presence container
def test_presence_container_create_is_kept_empty(c):
    assert_ok(edit(c, iface("eth1", f'<ipv4 xmlns="{IP}" nc:operation="create"/>')))
    assert len(values(c, "//if:interface[if:name='eth1']/ip:ipv4")) == 1  # empty but present
    errs = refused(c, iface("eth1", f'<ipv4 xmlns="{IP}" nc:operation="create"/>'))
    check_error(only(errs), type="application", tag="data-exists",
                path="/if:interfaces/if:interface[if:name='eth1']/ip:ipv4")


def test_presence_container_replace_drops_its_content(b):
    assert_ok(edit(b, iface("eth0", f'<ipv4 xmlns="{IP}" nc:operation="replace">'
                                    "<enabled>false</enabled></ipv4>")))
    ipv4 = get_config(b).xpath("//if:interface[if:name='eth0']/ip:ipv4", namespaces=NS)
    assert [etree.QName(e).localname for e in ipv4[0]] == ["enabled"]


def test_presence_container_delete_and_remove(b):
    errs = refused(b, iface("eth0", f'<ipv6 xmlns="{IP}" nc:operation="delete"/>'))
    check_error(only(errs), type="application", tag="data-missing",
                path="/if:interfaces/if:interface[if:name='eth0']/ip:ipv6")
    assert_ok(edit(b, iface("eth0", f'<ipv6 xmlns="{IP}" nc:operation="remove"/>')))
    # deleting ipv4 takes the VRRP instance and addresses with it
    assert_ok(edit(b, iface("eth0", f'<ipv4 xmlns="{IP}" nc:operation="delete"/>')))
    assert values(b, "//if:interface[if:name='eth0']/ip:ipv4") == []
    assert values(b, "//vrrp:vrrp-instance") == []


# ====================================================================== list entry
def test_list_entry_operations(b):
    assert_ok(edit(b, iface("eth1", "<description>d</description>", op="create")))
    assert names(b) == ["eth0", "mv0", "eth1"]
    errs = refused(b, iface("eth1", op="create"))
    check_error(only(errs), type="application", tag="data-exists",
                path="/if:interfaces/if:interface[if:name='eth1']",
                info={"bad-element": "interface"})
    # replace: the entry becomes exactly what was sent (description gone)
    assert_ok(edit(b, iface("eth1", "<enabled>false</enabled>", op="replace")))
    assert values(b, "//if:interface[if:name='eth1']/*/text()") == [
        "eth1", "ianaift:ethernetCsmacd", "false"]
    assert_ok(edit(b, iface("eth1", op="delete")))
    assert names(b) == ["eth0", "mv0"]
    errs = refused(b, iface("eth1", op="delete"))
    check_error(only(errs), type="application", tag="data-missing",
                path="/if:interfaces/if:interface[if:name='eth1']")
    assert_ok(edit(b, iface("eth1", op="remove")))
    assert names(b) == ["eth0", "mv0"]


def test_list_entry_merge_keeps_other_children(b):
    assert_ok(edit(b, vrrp1("<priority>99</priority>")))
    assert values(b, f"{V1}/*/text()") == ["1", "vrrp:vrrp-v3", "99", "true", "50"]
    assert values(b, f"{V1}/vrrp:virtual-ipv4-addresses//text()") == ["10.0.0.254"]


def test_list_entry_replace_resets_unsent_children(b):
    assert_ok(edit(b, vrrp1("<version>vrrp-v3</version>", op="replace")))
    assert values(b, f"{V1}/*/text()") == ["1", "vrrp:vrrp-v3"]


# ====================================================================== nested operations
def test_nested_operations_in_one_request(b):
    cfg = f"""
    <interfaces {IFX}>
      <interface>
        <name>eth0</name>
        <description>merged</description>
        <ipv4 xmlns="{IP}">
          <address nc:operation="delete"><ip>10.0.0.1</ip></address>
          <address nc:operation="create">
            <ip>10.0.0.2</ip><prefix-length>24</prefix-length>
          </address>
          <vrrp xmlns="{VRRP}">
            <vrrp-instance nc:operation="replace">
              <vrid>1</vrid><version>vrrp-v3</version><priority>10</priority>
            </vrrp-instance>
            <vrrp-instance nc:operation="create">
              <vrid>2</vrid><version>vrrp-v2</version>
            </vrrp-instance>
          </vrrp>
        </ipv4>
      </interface>
      <interface nc:operation="remove"><name>ghost</name></interface>
      <interface nc:operation="delete"><name>mv0</name></interface>
    </interfaces>"""
    assert_ok(edit(b, cfg))
    assert names(b) == ["eth0"]
    assert values(b, "//if:interface/if:description/text()") == ["merged"]
    assert values(b, "//ip:address/ip:ip/text()") == ["10.0.0.2"]
    assert values(b, f"{V1}/*/text()") == ["1", "vrrp:vrrp-v3", "10"]
    assert values(b, "//vrrp:vrrp-instance/vrrp:vrid/text()") == ["1", "2"]


def test_nested_merge_inside_delete_is_refused(b):
    assert_ok(edit(b, iface("eth1")))
    cfg = iface("eth1", '<description nc:operation="merge">x</description>', op="delete")
    errs = refused(b, cfg)
    check_error(only(errs), type="protocol", tag="bad-attribute",
                path="/if:interfaces/if:interface[if:name='eth1']/if:description",
                info={"bad-attribute": "operation", "bad-element": "description"})


def test_bad_operation_value_inside_a_deleted_subtree(b):
    cfg = iface("eth0", f'<ipv4 xmlns="{IP}" nc:operation="delete"><enabled nc:operation='
                        '"frobnicate">true</enabled></ipv4>')
    errs = refused(b, cfg)
    check_error(only(errs), type="protocol", tag="bad-attribute",
                path="/if:interfaces/if:interface[if:name='eth0']/ip:ipv4/ip:enabled",
                info={"bad-attribute": "operation", "bad-element": "enabled"})


# ====================================================================== default-operation
def test_default_operation_merge_is_default(b):
    assert_ok(edit(b, iface("eth1"), default_operation="merge"))
    assert names(b) == ["eth0", "mv0", "eth1"]


def test_default_operation_replace_replaces_the_datastore(b):
    assert_ok(edit(b, iface("eth7", "<description>only</description>"),
                   default_operation="replace"))
    assert names(b) == ["eth7"]
    assert values(b, "//vrrp:vrrp-instance") == []


def test_default_operation_none_changes_only_operated_nodes(b):
    before = snapshot(b)
    assert_ok(edit(b, vrrp1("<priority>1</priority>"), default_operation="none"))
    assert snapshot(b) == before  # no operation attribute: nothing changes
    assert_ok(edit(b, vrrp1('<priority nc:operation="merge">1</priority>'),
                   default_operation="none"))
    assert values(b, f"{V1}/vrrp:priority/text()") == ["1"]


def test_default_operation_none_missing_parent_is_data_missing(b):
    errs = refused(b, xml(f"""
        <interfaces {IFX}><interface><name>eth9</name>
          <description nc:operation="merge">x</description>
        </interface></interfaces>"""), default_operation="none")
    check_error(only(errs), type="application", tag="data-missing",
                path="/if:interfaces/if:interface[if:name='eth9']")


def test_default_operation_none_create_under_existing_parent(b):
    cfg = vrrp1('<preempt nc:operation="create"><hold-time>3</hold-time></preempt>')
    assert_ok(edit(b, cfg, default_operation="none"))
    assert values(b, f"{V1}/vrrp:preempt/vrrp:hold-time/text()") == ["3"]


# ====================================================================== test-option
def test_test_only_valid_changes_nothing(b):
    before = snapshot(b)
    assert_ok(edit(b, iface("eth3", "<description>x</description>"), test_option="test-only"))
    assert snapshot(b) == before


def test_test_only_invalid_reports_error(b):
    errs = refused(b, vrrp1("<advertise-interval-sec>3</advertise-interval-sec>"),
                   test_option="test-only")
    check_error(only(errs), type="application", tag="unknown-element",
                path=f"{VRRP1}/vrrp:advertise-interval-sec")


def test_test_then_set_and_set(b):
    assert_ok(edit(b, iface("eth3"), test_option="test-then-set"))
    assert_ok(edit(b, iface("eth4"), test_option="set"))
    assert names(b) == ["eth0", "mv0", "eth3", "eth4"]


def test_set_on_running_still_enforces_constraints(b):
    """RFC 7950 §8.3.3: running's constraints hold after every edit-config, whatever the
    test-option (set only postpones validation of the candidate to validate/commit)."""
    errs = refused(b, xml(f"<interfaces {IFX}><interface><name>eth5</name></interface>"
                          "</interfaces>"), test_option="set")
    check_error(only(errs), type="application", tag="missing-element",
                path="/if:interfaces/if:interface[if:name='eth5']/if:type")


def test_set_on_candidate_defers_validation_to_commit(b):
    cfg = xml(f"<interfaces {IFX}><interface><name>eth5</name></interface></interfaces>")
    assert_ok(edit(b, cfg, target="candidate", test_option="set"))
    assert "eth5" in names(b, "candidate")
    r = b.rpc("<validate><source><candidate/></source></validate>")
    check_error(only(rpc_errors(r)), type="application", tag="missing-element",
                path="/if:interfaces/if:interface[if:name='eth5']/if:type")
    running = canon(get_config(b))
    r = b.rpc("<commit/>")
    check_error(only(rpc_errors(r)), type="application", tag="missing-element",
                path="/if:interfaces/if:interface[if:name='eth5']/if:type")
    assert canon(get_config(b)) == running


# ====================================================================== error-option
TWO_BAD = f"""
<interfaces {IFX}>
  <interface><name>eth1</name><type>ianaift:ethernetCsmacd</type></interface>
  <interface nc:operation="create"><name>eth0</name><type>ianaift:ethernetCsmacd</type></interface>
  <interface><name>eth2</name><type>ianaift:ethernetCsmacd</type></interface>
  <interface nc:operation="delete"><name>ghost</name></interface>
  <interface><name>eth3</name><type>ianaift:ethernetCsmacd</type></interface>
</interfaces>"""


@pytest.mark.parametrize("option", ["stop-on-error", "rollback-on-error"])
def test_stop_and_rollback_apply_nothing(b, option):
    errs = refused(b, TWO_BAD, error_option=option)
    # both stop at the first error
    check_error(only(errs), type="application", tag="data-exists",
                path="/if:interfaces/if:interface[if:name='eth0']")


def test_continue_on_error_applies_the_good_parts(b):
    r = edit(b, TWO_BAD, error_option="continue-on-error")
    errs = rpc_errors(r)
    assert len(errs) == 2 and r.find(f"{{{NC}}}ok") is None
    check_error(errs[0], type="application", tag="data-exists",
                path="/if:interfaces/if:interface[if:name='eth0']")
    check_error(errs[1], type="application", tag="data-missing",
                path="/if:interfaces/if:interface[if:name='ghost']")
    assert names(b) == ["eth0", "mv0", "eth1", "eth2", "eth3"]


def test_continue_on_error_invalid_result_applies_nothing_and_reports_all(b):
    """The edit errors and the validation errors of the result are all reported."""
    cfg = f"""
    <interfaces {IFX}>
      <interface nc:operation="create">
        <name>eth0</name><type>ianaift:ethernetCsmacd</type>
      </interface>
      <interface><name>eth5</name></interface>
    </interfaces>"""
    errs = refused(b, cfg, error_option="continue-on-error")
    assert len(errs) == 2, [etree.tostring(e).decode() for e in errs]
    check_error(errs[0], type="application", tag="data-exists",
                path="/if:interfaces/if:interface[if:name='eth0']")
    check_error(errs[1], type="application", tag="missing-element",
                path="/if:interfaces/if:interface[if:name='eth5']/if:type")


def test_edit_config_url_is_not_supported(b):
    before = snapshot(b)
    r = b.rpc("<edit-config><target><running/></target>"
              "<url>file:///tmp/netconf-vrrp-agent-test.xml</url></edit-config>")
    check_error(only(rpc_errors(r)), type="protocol", tag="operation-not-supported")
    assert snapshot(b) == before


# ====================================================================== choice, when
def test_choice_netmask_removes_prefix_length_and_back(b):
    addr = "//if:interface[if:name='eth0']/ip:ipv4/ip:address[ip:ip='10.0.0.1']"
    cfg = iface("eth0", f'<ipv4 xmlns="{IP}"><address><ip>10.0.0.1</ip>{{}}</address></ipv4>')
    assert_ok(edit(b, cfg.format("<netmask>255.255.0.0</netmask>")))
    assert [etree.QName(e).localname for e in get_config(b).xpath(f"{addr}/*", namespaces=NS)
            ] == ["ip", "netmask"]
    assert_ok(edit(b, cfg.format("<prefix-length>16</prefix-length>")))
    assert values(b, f"{addr}/*/text()") == ["10.0.0.1", "16"]


def test_when_false_node_in_request_is_unknown_element(b):
    errs = refused(b, vrrp1("<advertise-interval-sec>3</advertise-interval-sec>"))
    check_error(only(errs), type="application", tag="unknown-element",
                path=f"{VRRP1}/vrrp:advertise-interval-sec",
                info={"bad-element": "advertise-interval-sec"})


def test_when_false_after_version_change_silently_removes_nodes(b):
    assert_ok(edit(b, vrrp1(f'<version xmlns:v="{VRRP}">v:vrrp-v2</version>')))
    # accept-mode (when v3) and advertise-interval-centi-sec (case v3) are gone
    assert values(b, f"{V1}/*/text()") == ["1", "vrrp:vrrp-v2", "200"]
    assert_ok(edit(b, vrrp1("<advertise-interval-sec>4</advertise-interval-sec>")))
    assert_ok(edit(b, vrrp1("<version>vrrp-v3</version>")))
    assert values(b, f"{V1}/vrrp:advertise-interval-sec") == []


def test_when_false_node_sent_with_the_version_change_is_refused(b):
    errs = refused(b, vrrp1("<version>vrrp-v2</version><accept-mode>false</accept-mode>"))
    check_error(only(errs), type="application", tag="unknown-element",
                path=f"{VRRP1}/vrrp:accept-mode")


# ====================================================================== mandatory
def test_mandatory_leaf_missing_uses_client_prefix(b):
    cfg = (f'<foo:interfaces xmlns:foo="{IF}"><foo:interface><foo:name>eth9</foo:name>'
           "</foo:interface></foo:interfaces>")
    errs = refused(b, cfg)
    check_error(only(errs), type="application", tag="missing-element",
                path="/foo:interfaces/foo:interface[foo:name='eth9']/foo:type",
                prefixes={"foo"}, info={"bad-element": "type"})
    assert errs[0].find(f"{{{NC}}}error-path").text.strip().endswith("/foo:type")


def test_mandatory_choice_missing(b):
    """RFC 7950 §15.6: data-missing / missing-choice, error-path at the choice's parent."""
    errs = refused(b, iface("eth0", f'<ipv4 xmlns="{IP}"><address><ip>10.0.0.9</ip></address>'
                                    "</ipv4>"))
    err = only(errs)
    check_error(err, type="application", tag="data-missing", app_tag="missing-choice",
                path="/if:interfaces/if:interface[if:name='eth0']/ip:ipv4/"
                     "ip:address[ip:ip='10.0.0.9']")
    info = err.find(f"{{{NC}}}error-info")
    assert info is not None and [c.text for c in info
                                 if etree.QName(c).localname == "missing-choice"] == ["subnet"]


def test_mandatory_version_missing(b):
    errs = refused(b, xml(f"""
      <interfaces {IFX}><interface><name>eth0</name><ipv4 xmlns="{IP}">
      <vrrp xmlns="{VRRP}"><vrrp-instance><vrid>2</vrid></vrrp-instance></vrrp>
      </ipv4></interface></interfaces>"""))
    check_error(only(errs), type="application", tag="missing-element",
                path="/if:interfaces/if:interface[if:name='eth0']/ip:ipv4/vrrp:vrrp/"
                     "vrrp:vrrp-instance[vrrp:vrid='2']/vrrp:version")


def test_mandatory_leaf_deleted(b):
    errs = refused(b, xml(f"""<interfaces {IFX}><interface><name>mv0</name>
        <macvlan xmlns="{MV}"><lower-interface nc:operation="delete"/></macvlan>
        </interface></interfaces>"""))
    check_error(only(errs), type="application", tag="missing-element",
                path="/if:interfaces/if:interface[if:name='mv0']/mv:macvlan/mv:lower-interface")


def test_error_path_uses_every_client_prefix(b):
    cfg = (f'<a:interfaces xmlns:a="{IF}"><a:interface><a:name>eth0</a:name>'
           f'<b:ipv4 xmlns:b="{IP}"><c:vrrp xmlns:c="{VRRP}"><c:vrrp-instance><c:vrid>1</c:vrid>'
           "<c:advertise-interval-sec>2</c:advertise-interval-sec></c:vrrp-instance></c:vrrp>"
           "</b:ipv4></a:interface></a:interfaces>")
    errs = refused(b, cfg)
    check_error(only(errs), type="application", tag="unknown-element",
                path=f"{VRRP1}/vrrp:advertise-interval-sec", prefixes={"a", "b", "c"})


def test_error_path_prefixes_resolve_when_client_rebinds_a_module_prefix(b):
    """The client binds 'if' to ietf-ip and leaves ietf-interfaces in the default
    namespace: the error-path must still resolve to the right nodes."""
    cfg = (f'<interfaces xmlns="{IF}" xmlns:if="{IP}"><interface><name>eth0</name>'
           "<if:ipv4><if:address><if:ip>10.0.0.300</if:ip><if:prefix-length>24</if:prefix-length>"
           "</if:address></if:ipv4></interface></interfaces>")
    errs = refused(b, cfg)
    check_error(only(errs), type="application", tag="invalid-value",
                path="/if:interfaces/if:interface[if:name='eth0']/ip:ipv4/"
                     "ip:address[ip:ip='10.0.0.300']/ip:ip")


# ====================================================================== types
@pytest.mark.parametrize(
    ("body", "leaf", "entry"),
    [
        ("<vrid>0</vrid><version>vrrp-v3</version>", "vrid", "0"),
        ("<vrid>256</vrid><version>vrrp-v3</version>", "vrid", "256"),
        ("<vrid>1</vrid><priority>0</priority>", "priority", "1"),
        ("<vrid>1</vrid><priority>255</priority>", "priority", "1"),
        ("<vrid>1</vrid><priority>high</priority>", "priority", "1"),
        ("<vrid>1</vrid><advertise-interval-centi-sec>4096</advertise-interval-centi-sec>",
         "advertise-interval-centi-sec", "1"),
    ],
    ids=["vrid-0", "vrid-256", "priority-0", "priority-255", "priority-text", "centi-4096"],
)
def test_range_violation_is_invalid_value(b, body, leaf, entry):
    cfg = xml(f"""<interfaces {IFX}><interface><name>eth0</name><ipv4 xmlns="{IP}">
        <vrrp xmlns="{VRRP}"><vrrp-instance>{body}</vrrp-instance></vrrp>
        </ipv4></interface></interfaces>""")
    errs = refused(b, cfg)
    check_error(only(errs), type="application", tag="invalid-value",
                path="/if:interfaces/if:interface[if:name='eth0']/ip:ipv4/vrrp:vrrp/"
                     f"vrrp:vrrp-instance[vrrp:vrid='{entry}']/vrrp:{leaf}",
                info={"bad-element": leaf})


@pytest.mark.parametrize("addr", ["10.0.0.256", "10.0.0", "10.0.0.1.1", "ten.0.0.1", "::1"])
def test_bad_ipv4_virtual_address_is_invalid_value(b, addr):
    errs = refused(b, vrrp1(
        f"<virtual-ipv4-addresses><virtual-ipv4-address><ipv4-address>{addr}</ipv4-address>"
        "</virtual-ipv4-address></virtual-ipv4-addresses>"))
    check_error(only(errs), type="application", tag="invalid-value",
                path=f"{VRRP1}/vrrp:virtual-ipv4-addresses/"
                     f"vrrp:virtual-ipv4-address[vrrp:ipv4-address='{addr}']/vrrp:ipv4-address")


def test_bad_prefix_length_is_invalid_value(b):
    errs = refused(b, iface("eth0", f'<ipv4 xmlns="{IP}"><address><ip>10.0.0.1</ip>'
                                    "<prefix-length>33</prefix-length></address></ipv4>"))
    check_error(only(errs), type="application", tag="invalid-value",
                path="/if:interfaces/if:interface[if:name='eth0']/ip:ipv4/"
                     "ip:address[ip:ip='10.0.0.1']/ip:prefix-length")


def test_unknown_identity_is_invalid_value(b):
    errs = refused(b, iface("eth0").replace("ianaift:ethernetCsmacd", "ianaift:noSuchType"))
    check_error(only(errs), type="application", tag="invalid-value",
                path="/if:interfaces/if:interface[if:name='eth0']/if:type")


# ====================================================================== structure
def test_unknown_element(b):
    errs = refused(b, iface("eth0", "<frobnicate>1</frobnicate>"))
    check_error(only(errs), type="application", tag="unknown-element",
                path="/if:interfaces/if:interface[if:name='eth0']/if:frobnicate",
                info={"bad-element": "frobnicate"})


def test_unknown_namespace(b):
    errs = refused(b, iface("eth0", '<x:foo xmlns:x="urn:example:unknown">1</x:foo>'))
    check_error(only(errs), type="application", tag="unknown-namespace",
                path="/if:interfaces/if:interface[if:name='eth0']/x:foo",
                info={"bad-element": "foo", "bad-namespace": "urn:example:unknown"})


def test_unknown_top_level_namespace(b):
    errs = refused(b, '<x:foo xmlns:x="urn:example:unknown"/>')
    check_error(only(errs), type="application", tag="unknown-namespace", path="/x:foo",
                info={"bad-element": "foo", "bad-namespace": "urn:example:unknown"})


def test_element_without_namespace(b):
    """An element in no namespace is refused with a well-formed reply."""
    errs = refused(b, iface("eth0", '<bar xmlns="">1</bar>'))
    err = only(errs)
    assert err.findtext(f"{{{NC}}}error-tag") in ("unknown-namespace", "unknown-element")
    assert err.findtext(f"{{{NC}}}error-info/{{{NC}}}bad-element") == "bar"


@pytest.mark.parametrize(
    "body",
    ["<oper-status>up</oper-status>", "<if-index>3</if-index>",
     "<higher-layer-if>eth7</higher-layer-if>"],
    ids=["oper-status", "if-index", "leaf-list"],
)
def test_config_false_node_in_config_is_refused(b, body):
    errs = refused(b, iface("eth0", body))
    leaf = re.match(r"<([\w-]+)>", body).group(1)
    check_error(only(errs), type="application", tag="invalid-value",
                path=f"/if:interfaces/if:interface[if:name='eth0']/if:{leaf}",
                info={"bad-element": leaf})


def test_bad_operation_attribute(b):
    errs = refused(b, iface("eth0", op="frobnicate"))
    check_error(only(errs), type="protocol", tag="bad-attribute",
                path="/if:interfaces/if:interface[if:name='eth0']",
                info={"bad-attribute": "operation", "bad-element": "interface"})


def test_list_entry_without_key(b):
    errs = refused(b, xml(f"<interfaces {IFX}><interface><description>x</description>"
                          "</interface></interfaces>"))
    check_error(only(errs), type="application", tag="missing-element",
                path="/if:interfaces/if:interface", info={"bad-element": "name"})


# ====================================================================== leafref
def test_leafref_track_interface_requires_instance(b):
    errs = refused(b, vrrp1("<track><interfaces><interface><interface>ghost</interface>"
                            "</interface></interfaces></track>"))
    err = with_app_tag(errs, "instance-required")
    check_error(err, type="application", tag="data-missing", app_tag="instance-required",
                path=f"{VRRP1}/vrrp:track/vrrp:interfaces/"
                     "vrrp:interface[vrrp:interface='ghost']/vrrp:interface")


def test_must_track_interface_needs_ipv4(b):
    assert_ok(edit(b, iface("eth1")))
    errs = refused(b, vrrp1("<track><interfaces><interface><interface>eth1</interface>"
                            "</interface></interfaces></track>"))
    check_error(only(errs), type="application", tag="operation-failed", app_tag="must-violation",
                path=f"{VRRP1}/vrrp:track/vrrp:interfaces/"
                     "vrrp:interface[vrrp:interface='eth1']/vrrp:interface")


def test_leafref_track_existing_interface_is_accepted(b):
    assert_ok(edit(b, vrrp1("<track><interfaces><interface><interface>eth0</interface>"
                            "</interface></interfaces></track>")))


def test_leafref_macvlan_lower_interface_requires_instance(b):
    cfg = xml(f"""<interfaces {IFX} xmlns:mv="{MV}"><interface><name>mv1</name>
        <type>mv:macvlan</type><macvlan xmlns="{MV}"><lower-interface>ghost</lower-interface>
        </macvlan></interface></interfaces>""")
    errs = refused(b, cfg)
    check_error(only(errs), type="application", tag="data-missing", app_tag="instance-required",
                path="/if:interfaces/if:interface[if:name='mv1']/mv:macvlan/mv:lower-interface")


def test_deleting_a_referenced_interface_is_refused(b):
    errs = refused(b, iface("eth0", op="delete"))
    check_error(only(errs), type="application", tag="data-missing", app_tag="instance-required",
                path="/if:interfaces/if:interface[if:name='mv0']/mv:macvlan/mv:lower-interface")


# ====================================================================== must
def test_must_macvlan_not_its_own_lower_interface(b):
    cfg = xml(f"""<interfaces {IFX} xmlns:mv="{MV}"><interface><name>mv1</name>
        <type>mv:macvlan</type><macvlan xmlns="{MV}"><lower-interface>mv1</lower-interface>
        </macvlan></interface></interfaces>""")
    errs = refused(b, cfg)
    check_error(only(errs), type="application", tag="operation-failed", app_tag="must-violation",
                path="/if:interfaces/if:interface[if:name='mv1']/mv:macvlan/mv:lower-interface",
                message="a macvlan interface cannot be its own lower interface")


def test_must_ipv6_vrrp_needs_version_3(b):
    cfg = iface("eth0", f'<ipv6 xmlns="{IP}"><vrrp xmlns="{VRRP}"><vrrp-instance><vrid>5</vrid>'
                        "<version>vrrp-v2</version></vrrp-instance></vrrp></ipv6>")
    errs = refused(b, cfg)
    check_error(only(errs), type="application", tag="operation-failed", app_tag="must-violation",
                path="/if:interfaces/if:interface[if:name='eth0']/ip:ipv6/vrrp:vrrp/"
                     "vrrp:vrrp-instance[vrrp:vrid='5']")


def test_must_ipv6_vrrp_version_3_is_accepted(b):
    assert_ok(edit(b, iface("eth0", f'<ipv6 xmlns="{IP}"><vrrp xmlns="{VRRP}"><vrrp-instance>'
                                    "<vrid>5</vrid><version>vrrp-v3</version></vrrp-instance>"
                                    "</vrrp></ipv6>")))


# ====================================================================== max-elements
def _v4_addresses(n: int) -> str:
    return "".join(
        f"<virtual-ipv4-address><ipv4-address>10.0.1.{i}</ipv4-address></virtual-ipv4-address>"
        for i in range(1, n + 1)
    )


def test_max_elements_16_virtual_ipv4_addresses(b):
    # BASE holds one: 15 more make 16, the maximum
    assert_ok(edit(b, vrrp1(f"<virtual-ipv4-addresses>{_v4_addresses(15)}"
                            "</virtual-ipv4-addresses>")))
    errs = refused(b, vrrp1("<virtual-ipv4-addresses><virtual-ipv4-address><ipv4-address>"
                            "10.0.2.1</ipv4-address></virtual-ipv4-address>"
                            "</virtual-ipv4-addresses>"))
    check_error(only(errs), type="application", tag="operation-failed",
                app_tag="too-many-elements", list_path=True,
                path=f"{VRRP1}/vrrp:virtual-ipv4-addresses/vrrp:virtual-ipv4-address")


def test_max_elements_error_returned_once(b):
    """18 entries (2 too many): one error (RFC 7950 §15.2)."""
    errs = refused(b, vrrp1(f"<virtual-ipv4-addresses>{_v4_addresses(17)}"
                            "</virtual-ipv4-addresses>"))
    check_error(only(errs), type="application", tag="operation-failed",
                app_tag="too-many-elements", list_path=True,
                path=f"{VRRP1}/vrrp:virtual-ipv4-addresses/vrrp:virtual-ipv4-address")


def test_max_elements_3_virtual_ipv6_addresses(b):
    addrs = "".join(
        f"<virtual-ipv6-address><ipv6-address>fe80::{i}</ipv6-address></virtual-ipv6-address>"
        for i in range(1, 4)
    )
    errs = refused(b, iface("eth0", f'<ipv6 xmlns="{IP}"><vrrp xmlns="{VRRP}"><vrrp-instance>'
                                    f"<vrid>5</vrid><version>vrrp-v3</version>"
                                    f"<virtual-ipv6-addresses>{addrs}</virtual-ipv6-addresses>"
                                    "</vrrp-instance></vrrp></ipv6>"))
    check_error(only(errs), type="application", tag="operation-failed",
                app_tag="too-many-elements", list_path=True,
                path="/if:interfaces/if:interface[if:name='eth0']/ip:ipv6/vrrp:vrrp/"
                     "vrrp:vrrp-instance[vrrp:vrid='5']/vrrp:virtual-ipv6-addresses/"
                     "vrrp:virtual-ipv6-address")


# ====================================================================== candidate target
def test_refused_edit_of_candidate_leaves_it_unchanged(b):
    assert_ok(edit(b, iface("eth1"), target="candidate"))
    errs = refused(b, vrrp1("<priority>0</priority>"), target="candidate")
    check_error(only(errs), type="application", tag="invalid-value",
                path=f"{VRRP1}/vrrp:priority")
    assert names(b, "candidate") == ["eth0", "mv0", "eth1"]


# ====================================================================== ncclient
def test_ncclient_edit_error_reports_tag_and_path(fresh):
    from ncclient.operations.rpc import RPCError

    with fresh.ncclient() as m:
        cfg = (f'<config xmlns="{NC}"><interfaces xmlns="{IF}"><interface><name>eth0</name>'
               "</interface></interfaces></config>")
        with pytest.raises(RPCError) as exc:
            m.edit_config(target="running", config=cfg)
        assert exc.value.tag == "missing-element"
        assert exc.value.path.strip().endswith(":type")
        assert "<interfaces" not in m.get_config("running").data_xml


# ====================================================================== leaf-list (in-process)
LLT_YANG = """
module llt {
  yang-version 1.1;
  namespace "urn:test:llt";
  prefix llt;
  container box {
    leaf-list tag { type string { length "1..8"; } max-elements 3; }
  }
}
"""
LLT = "urn:test:llt"


@pytest.fixture(scope="module")
def llt_client(tmp_path_factory):
    """The implemented models offer no configurable leaf-list: an extra test module does,
    served in process (same Session / RPC code as over SSH)."""
    from inproc import LocalClient

    from agent.datastore.schema import IMPLEMENTED, Schema, standard_module_dirs
    from agent.server import NetconfServer

    d = tmp_path_factory.mktemp("llt")
    (d / "llt.yang").write_text(LLT_YANG)
    schema = Schema.load({**IMPLEMENTED, "llt": []}, [d, *standard_module_dirs()])
    return LocalClient(NetconfServer(schema, d))


def _box(*tags: str, op: str = "", box_op: str = "") -> str:
    a = f' nc:operation="{op}"' if op else ""
    ba = f' nc:operation="{box_op}"' if box_op else ""
    return (f'<box xmlns="{LLT}" {NCA}{ba}>' + "".join(f"<tag{a}>{t}</tag>" for t in tags)
            + "</box>")


def test_leaf_list_operations(llt_client):
    c = llt_client
    assert_ok(edit(c, _box(box_op="remove")))

    def tags():
        return values(c, "*[local-name()='box']/*/text()")

    assert_ok(edit(c, _box("a", "b")))
    assert_ok(edit(c, _box("b", "c", op="merge")))  # merge of an existing value: no dup
    assert tags() == ["a", "b", "c"]
    errs = refused(c, _box("a", op="create"))
    check_error(only(errs), type="application", tag="data-exists")
    assert_ok(edit(c, _box("b", op="delete")))
    assert tags() == ["a", "c"]
    errs = refused(c, _box("b", op="delete"))
    check_error(only(errs), type="application", tag="data-missing")
    assert_ok(edit(c, _box("b", op="remove")))
    assert_ok(edit(c, _box("x", "y", box_op="replace")))
    assert tags() == ["x", "y"]
    errs = refused(c, _box("z", "w"))
    err = only(errs)
    check_error(err, type="application", tag="operation-failed", app_tag="too-many-elements")
    assert err.find(f"{{{NC}}}error-path").text.split("/")[-1].split("[")[0].endswith(":tag")
    errs = refused(c, _box("waytoolongvalue"))
    check_error(only(errs), type="application", tag="invalid-value")
    assert_ok(edit(c, _box("x", op="delete"), default_operation="none"))
    assert tags() == ["y"]


# ====================================================================== RFC 6243 §4.5.2
WDA = "urn:ietf:params:xml:ns:netconf:default:1.0"


def test_wd_default_attribute_with_non_default_value_is_invalid_value(b):
    """A leaf marked wd:default="true" must carry the schema default (priority: 100)."""
    errs = refused(b, vrrp1(f'<priority xmlns:wd="{WDA}" wd:default="true">150</priority>'))
    check_error(only(errs), type="application", tag="invalid-value",
                path=f"{VRRP1}/vrrp:priority")


def test_wd_default_attribute_returns_the_leaf_to_its_default(b):
    """wd:default="true" with the default value removes the explicit value (priority 200 of
    the base configuration becomes the default 100, reported only with report-all)."""
    assert values(b, "//vrrp:vrrp-instance/vrrp:priority/text()") == ["200"]
    assert_ok(edit(b, vrrp1(f'<priority xmlns:wd="{WDA}" wd:default="1">100</priority>')))
    assert values(b, "//vrrp:vrrp-instance/vrrp:priority/text()") == []
    r = b.rpc('<get-config><source><running/></source><with-defaults xmlns='
              '"urn:ietf:params:xml:ns:yang:ietf-netconf-with-defaults">report-all'
              '</with-defaults></get-config>')
    assert r.xpath("//vrrp:vrrp-instance/vrrp:priority/text()", namespaces=NS) == ["100"]
