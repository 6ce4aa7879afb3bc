"""Incremental validation of an edit (agent/datastore/validate.py, deps.py) agrees with a
full validation: each case is run both ways on the same base tree and must give the same
rpc-errors and the same resulting tree; valid edits must really take the incremental path.
"""

from __future__ import annotations

import copy
import textwrap

import pytest
from inproc import NS, LocalClient, data, errors, ok
from lxml import etree

from agent.datastore.deps import SchemaDeps, expr_deps
from agent.datastore.edit import Editor, prune_changed
from agent.datastore.schema import Schema
from agent.datastore.tree import PathMaker, new_root, prune_empty
from agent.datastore.validate import Validator
from agent.protocol.errors import RpcErrors
from agent.protocol.namespaces import NC

IF, IP, VRRP, MV, IANA = NS["if"], NS["ip"], NS["vrrp"], NS["mv"], NS["ianaift"]
T = "urn:inc-test"

TEST_YANG = """
module inc-test {
  yang-version 1.1;
  namespace "urn:inc-test";
  prefix it;
  container top {
    leaf limit {
      type string;
      must "count(/top/item) < 5" { error-message "too many items"; }
    }
    list item {
      key name;
      unique "addr/ip port";
      leaf name { type string; }
      container addr { leaf ip { type string; } }
      leaf port { type uint16; }
      leaf ref { type leafref { path "/top/target/id"; } }
      leaf rel { type leafref { path "../../target/id"; } }
      leaf a { type int32; }
      leaf b { type int32; must ". > ../a"; }
      leaf c { type string; when "../a > 10"; }
      container opt { presence "p"; must "../a != 5"; leaf d { type string; } }
      container mand { when "../a = 7"; leaf m { type string; mandatory true; } }
    }
    list target { key id; leaf id { type string; } }
    leaf-list tags { type string; max-elements 3; }
  }
}
"""


@pytest.fixture(scope="module")
def tschema(tmp_path_factory) -> Schema:
    d = tmp_path_factory.mktemp("yang")
    (d / "inc-test.yang").write_text(textwrap.dedent(TEST_YANG))
    from agent.datastore.schema import standard_module_dirs

    return Schema.load({"inc-test": []}, [d, *standard_module_dirs()])


def cfg(body: str, ns: str = T) -> etree._Element:
    return etree.fromstring(f'<config xmlns="{NC}" xmlns:nc="{NC}">{body}</config>')


def build(schema: Schema, body: str) -> etree._Element:
    tree = new_root()
    paths = PathMaker(schema)
    res = Editor(schema, tree, paths=paths).apply(cfg(body), "merge")
    prune_empty(tree, schema)
    Validator(schema, paths).validate(tree, res.touched)
    return tree


def run(schema: Schema, base: etree._Element, body: str, incremental: bool):
    """(errors as (tag, app-tag, path) or None, resulting tree bytes, took incremental)."""
    work = copy.deepcopy(base)
    paths = PathMaker(schema)
    v = Validator(schema, paths)
    try:
        res = Editor(schema, work, paths=paths).apply(cfg(body), "merge")
        if incremental:
            prune_changed(work, schema, res)
        else:
            prune_empty(work, schema)
        v.validate(work, res.touched, removed=res.removed if incremental else None,
                   created=res.created)
    except RpcErrors as exc:
        return [(e.tag, e.app_tag, e.path) for e in exc.errors], None, v.incremental
    return None, etree.tostring(work), v.incremental


def same(schema: Schema, base: etree._Element, body: str):
    inc = run(schema, base, body, True)
    full = run(schema, base, body, False)
    assert inc[:2] == full[:2], (inc, full)
    return inc


BASE = f"""<top xmlns="{T}">
  <target><id>t1</id></target><target><id>t2</id></target>
  <item><name>i1</name><addr><ip>1.1.1.1</ip></addr><port>1</port><ref>t1</ref>
    <rel>t2</rel><a>1</a><b>2</b></item>
  <item><name>i2</name><addr><ip>1.1.1.1</ip></addr><port>2</port><a>20</a><c>x</c></item>
  <tags>x</tags>
</top>"""


def edit_item(name: str, inner: str) -> str:
    return f'<top xmlns="{T}"><item><name>{name}</name>{inner}</item></top>'


@pytest.mark.parametrize(
    ("body", "expect"),
    [
        # valid edits: must go incremental
        (edit_item("i1", "<port>5</port>"), "inc"),
        (edit_item("i3", "<addr><ip>9.9.9.9</ip></addr><port>1</port><ref>t2</ref>"), "inc"),
        (f'<top xmlns="{T}"><target><id>t3</id></target></top>', "inc"),
        (edit_item("i1", "<b>7</b>"), "inc"),
        (f'<top xmlns="{T}"><tags>y</tags></top>', "inc"),
        (edit_item("i2", '<c nc:operation="delete"/>'), "inc"),
        # leafref target removed by an edit elsewhere (absolute and relative paths)
        (f'<top xmlns="{T}"><target nc:operation="delete"><id>t1</id></target></top>',
         ("data-missing", "instance-required", "/it:top/it:item[it:name='i1']/it:ref")),
        (f'<top xmlns="{T}"><target nc:operation="delete"><id>t2</id></target></top>',
         ("data-missing", "instance-required", "/it:top/it:item[it:name='i1']/it:rel")),
        # a must whose referenced sibling the edit changes
        (edit_item("i1", "<a>3</a>"),
         ("operation-failed", "must-violation", "/it:top/it:item[it:name='i1']/it:b")),
        (edit_item("i1", "<opt><d>x</d></opt><a>5</a>"),
         ("operation-failed", "must-violation", "/it:top/it:item[it:name='i1']/it:opt")),
        # unique across list entries (a multi-level unique path)
        (edit_item("i2", "<port>1</port>"),
         ("operation-failed", "data-not-unique", None)),
        (edit_item("i3", "<addr><ip>1.1.1.1</ip></addr><port>2</port>"),
         ("operation-failed", "data-not-unique", None)),
        # a must counting list entries elsewhere
        (f'<top xmlns="{T}"><limit>x</limit><item><name>i3</name></item>'
         "<item><name>i4</name></item><item><name>i5</name></item></top>",
         ("operation-failed", "must-violation", "/it:top/it:limit")),
        # a when turning true makes a mandatory leaf required
        (edit_item("i1", "<a>7</a>"),
         ("missing-element", None, "/it:top/it:item[it:name='i1']/it:mand/it:m")),
        # max-elements of a leaf-list
        (f'<top xmlns="{T}"><tags>y</tags><tags>z</tags><tags>w</tags></top>',
         ("operation-failed", "too-many-elements", None)),
    ],
)
def test_incremental_agrees_with_full(tschema, body, expect):
    base = build(tschema, BASE)
    errs, _tree, took_inc = same(tschema, base, body)
    if expect == "inc":
        assert errs is None
        assert took_inc, "a valid edit of a valid tree must validate incrementally"
    else:
        assert errs is not None and not took_inc
        tag, app_tag, path = expect
        assert any(e[0] == tag and e[1] == app_tag and path in (None, e[2]) for e in errs), errs


def test_when_turning_false_deletes_untouched_node(tschema):
    base = build(tschema, BASE)
    errs, tree, took_inc = same(tschema, base, edit_item("i2", "<a>3</a>"))
    assert errs is None and not took_inc  # the deletion is done by the full pass
    assert b">x</c>" not in tree and b"<it:a>3</it:a>" in tree


def test_pruning_records_removed_containers(tschema):
    base = build(tschema, BASE)
    errs, tree, took_inc = same(
        tschema, base, edit_item("i2", '<addr><ip nc:operation="delete"/></addr>'))
    assert errs is None and took_inc
    item2 = etree.fromstring(tree).find(f"{{{T}}}top/{{{T}}}item[{{{T}}}name='i2']")
    assert item2.find(f"{{{T}}}addr") is None  # emptied container pruned


def test_dependency_analysis():
    p = {"it": T}
    d = expr_deps("count(/top/item) < 5", p, "it", None, boolean=True)
    assert d.names == {f"{{{T}}}top", f"{{{T}}}item"} and d.up is None and not d.is_global
    d = expr_deps("current()/../a", p, "it", f"{{{T}}}b", boolean=True)
    assert d.up == 1 and f"{{{T}}}a" in d.values
    assert expr_deps("../*", p, "it", None, boolean=True).is_global
    assert expr_deps("deref(.)/../x", p, "it", None, boolean=True).is_global
    # an existence test of one path does not read the last step's value
    d = expr_deps("/top/item[name = current()]/addr", p, "it", "c", boolean=True)
    assert f"{{{T}}}addr" not in d.values and f"{{{T}}}name" in d.values


def test_constraint_on_defaulted_leaf_disables_incremental(tmp_path):
    (tmp_path / "inc-dflt.yang").write_text(textwrap.dedent("""
        module inc-dflt {
          namespace "urn:inc-dflt"; prefix d;
          container c {
            leaf flag { type boolean; default true; }
            leaf x { type string; must "../flag = 'true'"; }
          }
        }"""))
    from agent.datastore.schema import standard_module_dirs

    s = Schema.load({"inc-dflt": []}, [tmp_path, *standard_module_dirs()])
    assert SchemaDeps.of(s).needs_defaults
    base = build(s, '<c xmlns="urn:inc-dflt"><x>1</x></c>')
    errs, _, took_inc = same(s, base, '<c xmlns="urn:inc-dflt"><x>2</x></c>')
    assert errs is None and not took_inc
    errs, _, _ = same(s, base, '<c xmlns="urn:inc-dflt"><flag>false</flag></c>')
    assert errs and errs[0][1] == "must-violation"


# --------------------------------------------------------------------------- real models
def iface(name: str, body: str = "", typ: str = "ianaift:ethernetCsmacd") -> str:
    return (f"<interface><name>{name}</name><type>{typ}</type>{body}</interface>")


def ifs(*parts: str) -> str:
    return (f'<interfaces xmlns="{IF}" xmlns:ianaift="{IANA}" xmlns:mv="{MV}" '
            f'xmlns:vrrp="{VRRP}">{"".join(parts)}</interfaces>')


def v4(addr: str, vrrp: str = "") -> str:
    return (f'<ipv4 xmlns="{IP}"><address><ip>{addr}</ip><prefix-length>24</prefix-length>'
            f'</address>{vrrp}</ipv4>')


def inst(vrid: int, extra: str = "", version: str = "vrrp:vrrp-v3") -> str:
    return (f'<vrrp xmlns="{VRRP}"><vrrp-instance><vrid>{vrid}</vrid>'
            f"<version>{version}</version>{extra}</vrrp-instance></vrrp>")


REAL_BASE = ifs(
    iface("eth0", v4("10.0.0.1")),
    iface("eth1", v4("10.0.1.1", inst(1, "<accept-mode>true</accept-mode><track><interfaces>"
                                          "<interface><interface>eth0</interface></interface>"
                                          "</interfaces></track>"))),
    iface("mv0", f'<macvlan xmlns="{MV}"><lower-interface>eth0</lower-interface></macvlan>',
          "mv:macvlan"),
)


@pytest.mark.parametrize(
    ("body", "expect"),
    [
        (ifs(iface("eth1", v4("10.0.1.1", inst(1, "<priority>150</priority>")))), "inc"),
        (ifs(iface("eth2", v4("10.0.2.1", inst(2)))), "inc"),
        (ifs(iface("mv1", f'<macvlan xmlns="{MV}"><lower-interface>eth1</lower-interface>'
                   "</macvlan>", "mv:macvlan")), "inc"),
        # deleting a list entry that leafrefs point to (macvlan lower, tracked interface)
        (ifs('<interface nc:operation="delete"><name>eth0</name></interface>'),
         ("data-missing", "instance-required", None)),
        # a must elsewhere reading a node the edit removes (tracked interface needs ipv4)
        (ifs(iface("eth0", f'<ipv4 xmlns="{IP}" nc:operation="delete"/>')),
         ("operation-failed", "must-violation", None)),
        # a must on the instance reading the sibling the edit changes (IPv6 needs v3)
        (ifs(iface("eth0", f'<ipv6 xmlns="{IP}">{inst(3, version="vrrp:vrrp-v2")}</ipv6>')),
         ("operation-failed", "must-violation", None)),
        # the macvlan's own must against its interface name
        (ifs(iface("mv0", f'<macvlan xmlns="{MV}"><lower-interface>mv0</lower-interface>'
                   "</macvlan>", "mv:macvlan")),
         ("operation-failed", "must-violation", None)),
    ],
)
def test_real_models_agree(schema, body, expect):
    base = build(schema, REAL_BASE)
    errs, _tree, took_inc = same(schema, base, body)
    if expect == "inc":
        assert errs is None and took_inc
    else:
        assert errs is not None and expect[:2] in [e[:2] for e in errs], errs


def test_when_false_accept_mode_removed_over_netconf(server):
    """Through the RPC path: the second edit is incremental until the version turns v2,
    then the untouched accept-mode (when v3) is deleted; running follows."""
    c = LocalClient(server)
    assert ok(c.edit(REAL_BASE))
    assert server.datastores["running"].valid
    r = c.edit(ifs(iface("eth1", v4("10.0.1.1", inst(1, "<priority>120</priority>")))))
    assert ok(r), errors(r)
    r = c.edit(ifs(iface("eth1", v4("10.0.1.1", inst(1, version="vrrp:vrrp-v2")))))
    assert ok(r), errors(r)
    got = data(c.get_config())
    assert got.find(f".//{{{VRRP}}}accept-mode") is None
    assert got.find(f".//{{{VRRP}}}priority").text == "120"
    # a refused edit leaves running as it was
    r = c.edit(ifs('<interface nc:operation="delete"><name>eth0</name></interface>'))
    assert "instance-required" in {e["error-app-tag"] for e in errors(r)}
    assert data(c.get_config()).find(f".//{{{IF}}}interface[{{{IF}}}name='eth0']") is not None


def test_candidate_commit_skips_revalidation_only_when_valid(server):
    c = LocalClient(server)
    assert ok(c.edit(REAL_BASE, target="candidate"))
    assert server.datastores["candidate"].valid
    # test-option set: the candidate is no longer known valid, commit validates it fully
    r = c.edit(ifs('<interface nc:operation="delete"><name>eth0</name></interface>'),
               target="candidate", test_option="set")
    assert ok(r), errors(r)
    assert not server.datastores["candidate"].valid
    r = c.rpc("<commit/>")
    assert "instance-required" in {e["error-app-tag"] for e in errors(r)}
    assert ok(c.rpc("<discard-changes/>"))
    assert ok(c.edit(ifs(iface("eth2")), target="candidate"))
    assert ok(c.rpc("<commit/>"))
    names = {e.text for e in data(c.get_config()).iter(f"{{{IF}}}name")}
    assert names == {"eth2"}
