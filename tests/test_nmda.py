"""RFC 8526 NMDA operations over real SSH sessions: <get-data> on every datastore with its
filters (subtree, XPath, config-filter, max-depth, origin), with-defaults and errors;
<edit-data> on running and candidate, its interaction with locks; the <datastore> form of
lock/unlock/validate targets; the RFC 8525 yang-library datastore list.

One agent (datastore-only) for the module, emptied before each test by ``fresh``.
"""

from __future__ import annotations

from urllib.parse import parse_qs

from lxml import etree
from ncraw import NC

NMDA = "urn:ietf:params:xml:ns:yang:ietf-netconf-nmda"
DS = "urn:ietf:params:xml:ns:yang:ietf-datastores"
OR = "urn:ietf:params:xml:ns:yang:ietf-origin"
IF = "urn:ietf:params:xml:ns:yang:ietf-interfaces"
IANAIFT = "urn:ietf:params:xml:ns:yang:iana-if-type"
NCM = "urn:ietf:params:xml:ns:yang:ietf-netconf-monitoring"
YL = "urn:ietf:params:xml:ns:yang:ietf-yang-library"
WD_ATTR = "urn:ietf:params:xml:ns:netconf:default:1.0"
ORIGIN = f"{{{OR}}}origin"
NS = {"nc": NC, "nmda": NMDA, "if": IF, "ncm": NCM, "yl": YL}
CAP = "urn:ietf:params:netconf:capability:"

GD = f'<get-data xmlns="{NMDA}" xmlns:ds="{DS}">'
ED = f'<edit-data xmlns="{NMDA}" xmlns:ds="{DS}">'


def ifaces(*names: str, extra: str = "") -> str:
    body = "".join(
        f"<interface><name>{n}</name><type>ianaift:ethernetCsmacd</type>{extra}</interface>"
        for n in names
    )
    return f'<interfaces xmlns="{IF}" xmlns:ianaift="{IANAIFT}">{body}</interfaces>'


def get_data(c, ds: str, params: str = "") -> etree._Element:
    """The <data> of a get-data reply (asserting the reply is one)."""
    r = c.rpc(f"{GD}<datastore>ds:{ds}</datastore>{params}</get-data>")
    data = r.find(f"{{{NMDA}}}data")
    assert data is not None, etree.tostring(r)
    return data


def names(data: etree._Element) -> list[str]:
    return data.xpath("if:interfaces/if:interface/if:name/text()", namespaces=NS)


def error(r: etree._Element) -> dict[str, str | None]:
    errs = r.findall(f"{{{NC}}}rpc-error")
    assert len(errs) == 1, etree.tostring(r)
    e = errs[0]
    path_el = e.find(f"{{{NC}}}error-path")
    path = None
    if path_el is not None:
        path = path_el.text.strip()
        # the path's prefixes resolve through the declarations in scope
        for step in path.strip("/").split("/"):
            prefix = step.split(":")[0]
            assert prefix in path_el.nsmap, (prefix, path_el.nsmap)
            if step.startswith("nmda:"):
                assert path_el.nsmap[prefix] == NMDA
    return {
        "type": e.findtext(f"{{{NC}}}error-type"),
        "tag": e.findtext(f"{{{NC}}}error-tag"),
        "path": path,
        "session-id": e.findtext(f"{{{NC}}}error-info/{{{NC}}}session-id"),
        "bad-element": e.findtext(f"{{{NC}}}error-info/{{{NC}}}bad-element"),
    }


def ok(r: etree._Element) -> bool:
    return r.find(f"{{{NC}}}ok") is not None


def edit_data(c, ds: str, config: str, default_op: str | None = None) -> etree._Element:
    dop = f"<default-operation>{default_op}</default-operation>" if default_op else ""
    return c.rpc(f"{ED}<datastore>ds:{ds}</datastore>{dop}<config>{config}</config></edit-data>")


# --------------------------------------------------------------------------- discovery


def test_hello_and_yang_library_list_the_nmda_datastores(fresh):
    with fresh.raw() as c:
        caps = list(c.capabilities)
        assert any(x.startswith(CAP + "yang-library:1.1?") for x in caps)
        wod = [x for x in caps if x.startswith(CAP + "with-operational-defaults:1.0")]
        assert len(wod) == 1 and "basic-mode=explicit" in wod[0]
        nmda_cap = next(x for x in caps if x.startswith(NMDA + "?"))
        q = parse_qs(nmda_cap.split("?", 1)[1])
        assert q["module"] == ["ietf-netconf-nmda"] and q["revision"] == ["2019-01-07"]
        assert set(q["features"][0].split(",")) == {"origin", "with-defaults"}

        data = get_data(c, "operational", f'<subtree-filter><yang-library xmlns="{YL}"/>'
                                          "</subtree-filter>")
        yl = data.find(f"{{{YL}}}yang-library")
        assert yl is not None
        dss = {}
        for d in yl.iterfind(f"{{{YL}}}datastore"):
            name = d.find(f"{{{YL}}}name")
            prefix, _, local = name.text.partition(":")
            assert name.nsmap[prefix] == DS  # an identityref resolving to ietf-datastores
            dss[local] = d.findtext(f"{{{YL}}}schema")
        assert dss == {"running": "complete", "candidate": "complete", "startup": "complete",
                       "intended": "complete", "operational": "complete"}
        schemas = {s.findtext(f"{{{YL}}}name"): s.findtext(f"{{{YL}}}module-set")
                   for s in yl.iterfind(f"{{{YL}}}schema")}
        assert schemas == {"complete": "complete"}
        ms = yl.find(f"{{{YL}}}module-set")
        mods = {m.findtext(f"{{{YL}}}name"): m for m in ms.iterfind(f"{{{YL}}}module")}
        for needed in ("ietf-netconf-nmda", "ietf-datastores", "ietf-origin",
                       "ietf-yang-library", "ietf-interfaces"):
            assert needed in mods, needed
        feats = {f.text for f in mods["ietf-netconf-nmda"].iterfind(f"{{{YL}}}feature")}
        assert feats == {"origin", "with-defaults"}
        for imp in ms.iterfind(f"{{{YL}}}import-only-module"):  # revision is a key
            assert imp.find(f"{{{YL}}}revision") is not None
        # the module is served by get-schema like every other
        r = c.rpc(f'<get-schema xmlns="{NCM}"><identifier>ietf-netconf-nmda</identifier>'
                  "</get-schema>")
        assert "rpc get-data" in r.findtext(f"{{{NCM}}}data")


# --------------------------------------------------------------------------- get-data


def test_get_data_reads_each_datastore(fresh):
    with fresh.raw() as c:
        assert ok(edit_data(c, "running", ifaces("eth1")))
        assert ok(c.rpc("<copy-config><target><startup/></target><source><running/></source>"
                        "</copy-config>"))
        assert ok(edit_data(c, "running", ifaces("eth2")))
        assert ok(edit_data(c, "candidate", ifaces("eth3")))
        assert names(get_data(c, "startup")) == ["eth1"]
        assert names(get_data(c, "running")) == ["eth1", "eth2"]
        assert names(get_data(c, "candidate")) == ["eth1", "eth2", "eth3"]
        # intended: running after transformations, of which this server has none
        intended = get_data(c, "intended")
        assert names(intended) == ["eth1", "eth2"]
        assert etree.tostring(intended) == etree.tostring(get_data(c, "running"))
        op = get_data(c, "operational")
        assert names(op) == ["eth1", "eth2"]  # running is what is in use
        # operational also holds the state: monitoring and the yang library
        assert op.find("ncm:netconf-state/ncm:sessions/ncm:session", NS) is not None
        assert op.find("yl:yang-library/yl:content-id", NS) is not None
        # conventional datastores hold no state
        run = get_data(c, "running")
        assert run.find("ncm:netconf-state", NS) is None and run.find("yl:yang-library", NS) is None
        # the reply element is NMDA's <data>
        assert etree.QName(run).namespace == NMDA


def test_get_data_through_ncclient_dispatch(fresh):
    with fresh.raw() as c:
        assert ok(edit_data(c, "running", ifaces("eth7")))
    m = fresh.ncclient()
    try:
        req = etree.fromstring(f"{GD}<datastore>ds:running</datastore></get-data>")
        reply = m.dispatch(req)
        data = etree.fromstring(reply.xml.encode()).find(f"{{{NMDA}}}data")
        assert names(data) == ["eth7"]
    finally:
        m.close_session()


def test_config_filter(fresh):
    with fresh.raw() as c:
        assert ok(edit_data(c, "running", ifaces("eth1")))
        cfg = get_data(c, "operational", "<config-filter>true</config-filter>")
        assert names(cfg) == ["eth1"]
        assert cfg.find("ncm:netconf-state", NS) is None
        assert cfg.find("yl:yang-library", NS) is None
        state = get_data(c, "operational", "<config-filter>false</config-filter>")
        assert state.find("if:interfaces", NS) is None  # no state below them here
        assert state.find("ncm:netconf-state/ncm:statistics/ncm:in-sessions", NS) is not None
        assert state.find("yl:yang-library/yl:datastore", NS) is not None
        # ANDed with a subtree filter
        both = get_data(c, "operational", "<config-filter>false</config-filter>"
                        f'<subtree-filter><netconf-state xmlns="{NCM}"><statistics/>'
                        "</netconf-state></subtree-filter>")
        top = [etree.QName(e).localname for e in both]
        assert top == ["netconf-state"]
        assert [etree.QName(e).localname for e in both[0]] == ["statistics"]
        # a conventional datastore has no state: false selects nothing
        assert len(get_data(c, "running", "<config-filter>false</config-filter>")) == 0
        assert names(get_data(c, "running", "<config-filter>true</config-filter>")) == ["eth1"]
        r = c.rpc(f"{GD}<datastore>ds:running</datastore><config-filter>maybe</config-filter>"
                  "</get-data>")
        assert error(r) == {"type": "protocol", "tag": "invalid-value",
                            "path": "/nmda:get-data/nmda:config-filter", "session-id": None,
                            "bad-element": "config-filter"}


def test_max_depth(fresh):
    with fresh.raw() as c:
        assert ok(edit_data(c, "running", ifaces("eth1", "eth2", extra="<description>d"
                                                 "</description>")))
        d1 = get_data(c, "running", "<max-depth>1</max-depth>")
        top = d1.find("if:interfaces", NS)
        assert top is not None and len(top) == 0
        d2 = get_data(c, "running", "<max-depth>2</max-depth>")
        entries = d2.findall("if:interfaces/if:interface", NS)
        # list entries keep their keys, nothing else
        assert [[etree.QName(x).localname for x in e] for e in entries] == [["name"], ["name"]]
        d3 = get_data(c, "running", "<max-depth>3</max-depth>")
        e3 = d3.find("if:interfaces/if:interface", NS)
        assert [etree.QName(x).localname for x in e3] == ["name", "description", "type"]
        unb = get_data(c, "running", "<max-depth>unbounded</max-depth>")
        assert etree.tostring(unb) == etree.tostring(d3)
        # depth counts from the nodes the filter selects
        sub = get_data(c, "running", "<max-depth>1</max-depth><subtree-filter>"
                       f'<interfaces xmlns="{IF}"><interface><name>eth2</name></interface>'
                       "</interfaces></subtree-filter>")
        assert [[etree.QName(x).localname for x in e]
                for e in sub.findall("if:interfaces/if:interface", NS)] == [["name"]]
        assert names(sub) == ["eth2"]
        xp = get_data(c, "operational", "<max-depth>2</max-depth>"
                      f'<xpath-filter xmlns:yl="{YL}">/yl:yang-library/yl:module-set'
                      "</xpath-filter>")
        ms = xp.find("yl:yang-library/yl:module-set", NS)
        assert [etree.QName(x).localname for x in xp.find("yl:yang-library", NS)] == \
            ["module-set"]
        mods = ms.findall("yl:module", NS)
        assert len(mods) > 5
        assert all([etree.QName(x).localname for x in m] == ["name"] for m in mods)
        for bad in ("0", "65536", "-1", "deep"):
            r = c.rpc(f"{GD}<datastore>ds:running</datastore><max-depth>{bad}</max-depth>"
                      "</get-data>")
            assert error(r)["tag"] == "invalid-value", bad
            assert error(r)["path"] == "/nmda:get-data/nmda:max-depth"


def test_subtree_and_xpath_filters(fresh):
    with fresh.raw() as c:
        assert ok(edit_data(c, "running", ifaces("eth1", "eth2", "eth3")))
        sub = get_data(c, "running", "<subtree-filter>"
                       f'<interfaces xmlns="{IF}"><interface><name>eth2</name></interface>'
                       "</interfaces></subtree-filter>")
        assert names(sub) == ["eth2"]
        assert sub.find("if:interfaces/if:interface/if:type", NS) is not None
        xp = get_data(c, "candidate", f'<xpath-filter xmlns:if="{IF}">'
                      "/if:interfaces/if:interface[if:name='eth3']</xpath-filter>")
        assert names(xp) == ["eth3"]
        # an element that inherits <get-data>'s namespace matches any namespace
        loose = get_data(c, "running", "<subtree-filter><interfaces><interface><name>eth1"
                         "</name></interface></interfaces></subtree-filter>")
        assert names(loose) == ["eth1"]
        assert len(get_data(c, "running", "<subtree-filter/>")) == 0
        r = c.rpc(f"{GD}<datastore>ds:running</datastore><subtree-filter/>"
                  "<xpath-filter>/*</xpath-filter></get-data>")
        assert error(r)["tag"] == "bad-element"
        r = c.rpc(f"{GD}<datastore>ds:running</datastore>"
                  "<xpath-filter>/nope:x</xpath-filter></get-data>")
        assert error(r)["tag"] == "invalid-value"


def test_with_defaults(fresh):
    with fresh.raw() as c:
        assert ok(edit_data(c, "running", ifaces("eth1") + ifaces("eth2", extra="<enabled>"
                                                                  "true</enabled>")))

        def enabled(data: etree._Element) -> dict[str, tuple[str | None, str | None]]:
            return {e.findtext("if:name", namespaces=NS): (
                e.findtext("if:enabled", namespaces=NS),
                e.find("if:enabled", NS).get(f"{{{WD_ATTR}}}default")
                if e.find("if:enabled", NS) is not None else None)
                for e in data.iterfind("if:interfaces/if:interface", NS)}

        assert enabled(get_data(c, "running")) == {"eth1": (None, None), "eth2": ("true", None)}
        assert enabled(get_data(c, "running", "<with-defaults>report-all</with-defaults>")) == \
            {"eth1": ("true", None), "eth2": ("true", None)}
        assert enabled(get_data(c, "running", "<with-defaults>trim</with-defaults>")) == \
            {"eth1": (None, None), "eth2": (None, None)}
        tagged = get_data(c, "candidate", "<with-defaults>report-all-tagged</with-defaults>")
        assert enabled(tagged) == {"eth1": ("true", "true"), "eth2": ("true", "true")}
        # with-operational-defaults: the parameter works on <operational> too
        assert enabled(get_data(c, "operational", "<with-defaults>report-all</with-defaults>")) \
            == {"eth1": ("true", None), "eth2": ("true", None)}
        r = c.rpc(f"{GD}<datastore>ds:running</datastore><with-defaults>all</with-defaults>"
                  "</get-data>")
        assert error(r)["tag"] == "invalid-value"
        assert error(r)["path"] == "/nmda:get-data/nmda:with-defaults"


def test_origin(fresh):
    with fresh.raw() as c:
        assert ok(edit_data(c, "running", ifaces("eth1")))
        op = get_data(c, "operational", "<with-origin/>")
        top = op.find("if:interfaces", NS)
        assert top.get(ORIGIN) is not None
        prefix, _, local = top.get(ORIGIN).partition(":")
        assert top.nsmap[prefix] == OR and local == "intended"
        assert op.find("if:interfaces/if:interface", NS).get(ORIGIN) is None  # inherited
        state = list(op.iter(f"{{{NCM}}}*"))
        assert state and all(e.get(ORIGIN) is None for e in state)  # state: no origin
        # with the defaults in use: a default leaf has origin default
        op = get_data(c, "operational", "<with-origin/><with-defaults>report-all</with-defaults>")
        en = op.find("if:interfaces/if:interface/if:enabled", NS)
        assert en.text == "true" and en.get(ORIGIN).split(":")[1] == "default"
        # origin filters select configuration nodes; state nodes are not filtered
        sel = get_data(c, "operational", "<origin-filter>or:intended</origin-filter>"
                       .replace("<origin-filter>", f'<origin-filter xmlns:or="{OR}">'))
        assert names(sel) == ["eth1"] and sel.find("ncm:netconf-state", NS) is not None
        assert all(ORIGIN not in e.attrib for e in sel.iter())  # not asked for
        sysonly = get_data(c, "operational",
                           f'<origin-filter xmlns:or="{OR}">or:system</origin-filter>')
        assert sysonly.find("if:interfaces", NS) is None
        assert sysonly.find("yl:yang-library", NS) is not None
        neg = get_data(c, "operational", f'<negated-origin-filter xmlns:or="{OR}">or:intended'
                       "</negated-origin-filter><with-defaults>report-all</with-defaults>")
        # only the default leaf is left of the configuration, with its ancestors and keys
        e = neg.find("if:interfaces/if:interface", NS)
        assert [etree.QName(x).localname for x in e] == ["name", "enabled"]
        # origin is an operational thing
        r = c.rpc(f"{GD}<datastore>ds:running</datastore><with-origin/></get-data>")
        assert error(r) == {"type": "protocol", "tag": "invalid-value",
                            "path": "/nmda:get-data/nmda:with-origin", "session-id": None,
                            "bad-element": "with-origin"}
        r = c.rpc(f'{GD}<datastore>ds:operational</datastore><origin-filter xmlns:x="{IF}">'
                  "x:interface-type</origin-filter></get-data>")
        assert error(r)["tag"] == "invalid-value"


def test_bad_datastores(fresh):
    with fresh.raw() as c:
        cases = [
            ("get-data", "ds:nonexistent"),
            ("get-data", "nope:running"),  # undeclared prefix
            ("get-data", f'<datastore xmlns:x="{IF}">x:running</datastore>'),
            ("edit-data", "ds:startup"),  # not writable by edit-data
            ("edit-data", "ds:operational"),
            ("edit-data", "ds:intended"),
        ]
        for op, ds in cases:
            el = ds if ds.startswith("<") else f"<datastore>{ds}</datastore>"
            body = "<config/>" if op == "edit-data" else ""
            r = c.rpc(f'<{op} xmlns="{NMDA}" xmlns:ds="{DS}">{el}{body}</{op}>')
            assert error(r) == {"type": "protocol", "tag": "invalid-value",
                                "path": f"/nmda:{op}/nmda:datastore", "session-id": None,
                                "bad-element": "datastore"}, (op, ds)
        r = c.rpc(f"{GD}</get-data>")
        assert error(r)["tag"] == "missing-element" and error(r)["bad-element"] == "datastore"
        r = c.rpc(f"{GD}<datastore>ds:running</datastore><bogus/></get-data>")
        assert error(r)["tag"] == "unknown-element" and error(r)["bad-element"] == "bogus"
        r = c.rpc(f"{ED}<datastore>ds:running</datastore></edit-data>")
        assert error(r)["tag"] == "missing-element" and error(r)["bad-element"] == "config"
        assert len(get_data(c, "running")) == 0 and len(get_data(c, "candidate")) == 0


# --------------------------------------------------------------------------- edit-data


def test_edit_data_running(fresh):
    with fresh.raw() as c:
        assert ok(edit_data(c, "running", ifaces("eth1", "eth2")))
        got = c.rpc("<get-config><source><running/></source></get-config>")
        assert got.xpath("//if:interface/if:name/text()", namespaces=NS) == ["eth1", "eth2"]
        # nc:operation attributes work as in edit-config
        dele = (f'<interfaces xmlns="{IF}"><interface xmlns:nc="{NC}" nc:operation="delete">'
                "<name>eth1</name></interface></interfaces>")
        assert ok(edit_data(c, "running", dele))
        assert names(get_data(c, "running")) == ["eth2"]
        r = edit_data(c, "running", dele)  # eth1 is gone: data-missing, nothing changes
        assert error(r)["tag"] == "data-missing"
        assert error(r)["path"] == "/if:interfaces/if:interface[if:name='eth1']"
        assert names(get_data(c, "running")) == ["eth2"]
        # a validation error leaves the datastore as it was
        r = edit_data(c, "running", f'<interfaces xmlns="{IF}"><interface><name>eth9</name>'
                      "</interface></interfaces>")  # type is mandatory
        assert error(r)["tag"] in ("data-missing", "missing-element", "invalid-value")
        assert names(get_data(c, "running")) == ["eth2"]
        assert ok(edit_data(c, "running", ifaces("eth5"), default_op="replace"))
        assert names(get_data(c, "running")) == ["eth5"]
        r = edit_data(c, "running", ifaces("eth6"), default_op="merger")
        assert error(r)["path"] == "/nmda:edit-data/nmda:default-operation"
        assert names(get_data(c, "running")) == ["eth5"]


def test_edit_data_candidate_and_commit(fresh):
    with fresh.raw() as c:
        assert ok(edit_data(c, "candidate", ifaces("eth1")))
        assert names(get_data(c, "candidate")) == ["eth1"]
        assert names(get_data(c, "running")) == []
        v = c.rpc(f'<validate><source><datastore xmlns="{NMDA}" xmlns:ds="{DS}">ds:candidate'
                  "</datastore></source></validate>")
        assert ok(v)
        assert ok(c.rpc("<commit/>"))
        assert names(get_data(c, "running")) == ["eth1"]
        assert names(get_data(c, "operational")) == ["eth1"]
        v = c.rpc(f'<validate><source><datastore xmlns="{NMDA}" xmlns:ds="{DS}">'
                  "ds:operational</datastore></source></validate>")
        assert error(v)["tag"] == "invalid-value"


def test_locks_apply_to_edit_data(fresh):
    dsl = f'<datastore xmlns="{NMDA}" xmlns:ds="{DS}">ds:%s</datastore>'
    with fresh.raw() as a, fresh.raw() as b:
        # lock through the NMDA <datastore> target
        assert ok(a.rpc(f"<lock><target>{dsl % 'running'}</target></lock>"))
        r = edit_data(b, "running", ifaces("eth1"))
        assert error(r)["tag"] == "in-use" and error(r)["session-id"] == str(a.session_id)
        r = b.rpc(f"<lock><target>{dsl % 'running'}</target></lock>")
        assert error(r)["tag"] == "lock-denied"
        assert error(r)["session-id"] == str(a.session_id)
        r = b.rpc("<lock><target><running/></target></lock>")  # the same lock
        assert error(r)["tag"] == "lock-denied"
        assert ok(edit_data(a, "running", ifaces("eth1")))  # the holder may edit
        r = b.rpc(f"<unlock><target>{dsl % 'running'}</target></unlock>")
        assert error(r)["tag"] == "lock-denied"
        assert ok(a.rpc(f"<unlock><target>{dsl % 'running'}</target></unlock>"))
        assert ok(edit_data(b, "running", ifaces("eth2")))
        assert names(get_data(a, "running")) == ["eth1", "eth2"]
        # candidate: classic lock, NMDA edit
        assert ok(a.rpc("<lock><target><candidate/></target></lock>"))
        r = edit_data(b, "candidate", ifaces("eth3"))
        assert error(r)["tag"] == "in-use"
        assert ok(edit_data(a, "candidate", ifaces("eth3")))
        assert ok(a.rpc("<unlock><target><candidate/></target></unlock>"))  # discards
        assert names(get_data(b, "candidate")) == ["eth1", "eth2"]
        # only writable datastores can be locked
        for ds in ("operational", "intended"):
            r = a.rpc(f"<lock><target>{dsl % ds}</target></lock>")
            assert error(r)["tag"] == "invalid-value", ds


def test_max_depth_of_an_xpath_selecting_the_root(fresh):
    with fresh.raw() as c:
        assert ok(edit_data(c, "running", ifaces("eth1")))
        d = get_data(c, "running", "<max-depth>1</max-depth><xpath-filter>/</xpath-filter>")
        assert [etree.QName(e).localname for e in d] == ["interfaces"] and len(d[0]) == 0


# --------------------------------------------------------------------------- system state
# The agent under test above runs datastore-only, so no provider reports interfaces. These
# check, in process, how <operational> treats configuration that the system reports on its
# own (an interface the kernel has but nobody configured) next to configured interfaces.


def _system_interfaces(names_wanted):
    from lxml import etree as et

    root = et.Element(f"{{{IF}}}interfaces", nsmap={"if": IF, "ianaift": IANAIFT})
    for name, oper in (("eth1", "up"), ("lo", "unknown")):
        e = et.SubElement(root, f"{{{IF}}}interface")
        et.SubElement(e, f"{{{IF}}}name").text = name
        if name == "lo":  # not configured: the system reports its configuration too
            et.SubElement(e, f"{{{IF}}}type").text = "ianaift:softwareLoopback"
            et.SubElement(e, f"{{{IF}}}enabled").text = "true"
        et.SubElement(e, f"{{{IF}}}oper-status").text = oper
    return root


def _entries(data):
    return {e.findtext("if:name", namespaces=NS): [etree.QName(x).localname for x in e]
            for e in data.iterfind("if:interfaces/if:interface", NS)}


def test_operational_with_system_reported_configuration(server, client):
    server.retriever.add_provider(f"{{{IF}}}interfaces", _system_interfaces)
    assert ok(client.rpc(f"{ED}<datastore>ds:running</datastore><config>{ifaces('eth1')}"
                         "</config></edit-data>"))
    op = get_data(client, "operational", "<with-origin/>")
    assert _entries(op) == {"eth1": ["name", "type", "oper-status"],
                            "lo": ["name", "type", "enabled", "oper-status"]}
    top = op.find("if:interfaces", NS)
    assert top.get(ORIGIN) == "or:intended" and top.nsmap["or"] == OR
    eth1, lo = op.findall("if:interfaces/if:interface", NS)
    assert eth1.get(ORIGIN) is None  # inherits intended
    assert lo.get(ORIGIN) == "or:system"
    # the system's value, even though it equals the schema default (RFC 8342 §5.3.4:
    # or:default is for a node without a configured or learned value): inherits or:system
    assert lo.find("if:enabled", NS).get(ORIGIN) is None
    assert all(e.get(ORIGIN) is None for e in op.iterfind(".//if:oper-status", NS))
    # config-filter false: the state nodes with their ancestors and list keys
    st = get_data(client, "operational", "<config-filter>false</config-filter>"
                  f'<subtree-filter><interfaces xmlns="{IF}"/></subtree-filter>')
    assert _entries(st) == {"eth1": ["name", "oper-status"], "lo": ["name", "oper-status"]}
    cfg = get_data(client, "operational", "<config-filter>true</config-filter>")
    assert _entries(cfg) == {"eth1": ["name", "type"], "lo": ["name", "type", "enabled"]}
    # origin filters pick configuration by origin, the state stays
    sysd = get_data(client, "operational",
                    f'<origin-filter xmlns:or="{OR}">or:system</origin-filter>')
    assert _entries(sysd) == {"eth1": ["name", "oper-status"],
                              "lo": ["name", "type", "enabled", "oper-status"]}
    nodef = get_data(client, "operational", "<with-origin/>"
                     f'<negated-origin-filter xmlns:or="{OR}">or:default</negated-origin-filter>')
    assert _entries(nodef) == {"eth1": ["name", "type", "oper-status"],
                               "lo": ["name", "type", "enabled", "oper-status"]}
    # defaults added by with-defaults are or:default, in a system entry too
    alld = get_data(client, "operational", "<with-origin/><with-defaults>report-all"
                    "</with-defaults>")
    eth1, lo = alld.findall("if:interfaces/if:interface", NS)
    assert eth1.find("if:enabled", NS).get(ORIGIN) == "or:default"
    assert lo.find("if:enabled", NS).get(ORIGIN) is None  # reported: stays system
    # the conventional datastores never hold what the system reports
    assert names(get_data(client, "running")) == ["eth1"]
