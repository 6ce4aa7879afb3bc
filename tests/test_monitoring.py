"""ietf-netconf-monitoring (RFC 6022), <get-schema> and ietf-yang-library (RFC 8525 /
RFC 7895) over real SSH sessions, checked against the hello and against pyang."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import parse_qs

import pytest
from lxml import etree
from ncraw import NC, reply_errors
from polling import poll as wait_for
from pyang import context as pyang_context
from pyang import repository as pyang_repository
from pyang import yang_parser

NCM = "urn:ietf:params:xml:ns:yang:ietf-netconf-monitoring"
YL = "urn:ietf:params:xml:ns:yang:ietf-yang-library"
DS = "urn:ietf:params:xml:ns:yang:ietf-datastores"
YL10_CAP = "urn:ietf:params:netconf:capability:yang-library:1.0"
YL11_CAP = "urn:ietf:params:netconf:capability:yang-library:1.1"
DATETIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)\Z")
ROOT = Path(__file__).resolve().parent.parent

#: modules the agent is for, with their revisions (the project's own from its file)
MODULES = {
    "ietf-interfaces": "2018-02-20",
    "ietf-ip": "2018-02-22",
    "ietf-vrrp": "2018-03-13",
    "iana-if-type": "2019-02-08",
    "netconf-vrrp-agent-macvlan": re.search(
        r"revision\s+\"?(\d{4}-\d\d-\d\d)",
        (ROOT / "yang" / "netconf-vrrp-agent-macvlan.yang").read_text(),
    ).group(1),
}


# ---- helpers ----------------------------------------------------------------------------------


def local(el: etree._Element) -> str:
    return etree.QName(el).localname


def ncm(name: str) -> str:
    return f"{{{NCM}}}{name}"


def yl(name: str) -> str:
    return f"{{{YL}}}{name}"


def data_of(reply: etree._Element) -> etree._Element:
    assert not reply_errors(reply), reply_errors(reply)
    d = reply.find(f"{{{NC}}}data")
    assert d is not None, etree.tostring(reply)
    return d


def error_tag(reply: etree._Element) -> str:
    errs = reply.findall(f"{{{NC}}}rpc-error")
    assert len(errs) == 1, etree.tostring(reply)
    return errs[0].findtext(f"{{{NC}}}error-tag")


def netconf_state(c, inner: str = "") -> etree._Element:
    r = c.rpc(f'<get><filter type="subtree"><netconf-state xmlns="{NCM}">{inner}'
              "</netconf-state></filter></get>")
    st = data_of(r).find(ncm("netconf-state"))
    assert st is not None, etree.tostring(r)
    return st


def statistics(c) -> dict[str, str]:
    st = netconf_state(c, "<statistics/>").find(ncm("statistics"))
    return {local(e): e.text for e in st}


def session_entry(c, sid: int) -> dict[str, str] | None:
    st = netconf_state(c, "<sessions/>")
    for s in st.iterfind(f"{ncm('sessions')}/{ncm('session')}"):
        if s.findtext(ncm("session-id")) == str(sid):
            return {local(e): e.text for e in s} | {"_elem": s}
    return None


def identity(leaf: etree._Element) -> tuple[str | None, str]:
    """An identityref leaf's value as (namespace, name), resolving its prefix."""
    prefix, _, name = (leaf.text or "").strip().rpartition(":")
    return leaf.nsmap.get(prefix or None), name


def schemas(c) -> list[dict[str, str]]:
    st = netconf_state(c, "<schemas/>")
    out = []
    for s in st.iterfind(f"{ncm('schemas')}/{ncm('schema')}"):
        e = {local(x): (x.text or "") for x in s}
        e["_format"] = identity(s.find(ncm("format")))
        out.append(e)
    return out


def get_schema(c, ident: str, version: str | None = None, fmt: str | None = None):
    v = "" if version is None else f"<version>{version}</version>"
    f = "" if fmt is None else f"<format>{fmt}</format>"
    return c.rpc(f'<get-schema xmlns="{NCM}"><identifier>{ident}</identifier>{v}{f}</get-schema>')


def schema_text(reply: etree._Element) -> str:
    """The YANG text of a get-schema reply: ``<data>`` in the ietf-netconf-monitoring
    namespace (it is the RPC's output parameter, RFC 6022 §3.1)."""
    assert not reply_errors(reply), reply_errors(reply)
    d = reply.find(ncm("data"))
    assert d is not None, etree.tostring(reply)[:300]
    assert d.text and not len(d)
    return d.text


def parse_yang(text: str):
    """The module/submodule statement pyang parses from ``text`` (raises on a syntax error)."""
    ctx = pyang_context.Context(pyang_repository.FileRepository("", use_env=False))
    st = yang_parser.YangParser().parse(ctx, "get-schema", text)
    assert st is not None, ctx.errors
    return st


def module_caps(caps: list[str]) -> dict[str, dict[str, object]]:
    out = {}
    for cap in caps:
        if "?" not in cap or "module=" not in cap:
            continue
        ns, q = cap.split("?", 1)
        p = parse_qs(q)
        out[p["module"][0]] = {
            "namespace": ns,
            "revision": p.get("revision", [None])[0],
            "features": set(p["features"][0].split(",")) if "features" in p else set(),
        }
    return out


# ---- fixtures ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def raw(agent):
    c = agent.raw()
    yield c
    c.close()


@pytest.fixture(scope="module")
def listed(raw) -> list[dict[str, str]]:
    return schemas(raw)


@pytest.fixture(scope="module")
def library(raw) -> etree._Element:
    r = raw.rpc(f'<get><filter type="subtree"><yang-library xmlns="{YL}"/></filter></get>')
    lib = data_of(r).find(yl("yang-library"))
    assert lib is not None
    return lib


# ---- netconf-state ----------------------------------------------------------------------------


def test_monitoring_capability_advertised(raw):
    assert any(c.startswith(f"{NCM}?module=ietf-netconf-monitoring") for c in raw.capabilities)


def test_capabilities_equal_the_hello(raw):
    st = netconf_state(raw, "<capabilities/>")
    listed = [c.text for c in st.iterfind(f"{ncm('capabilities')}/{ncm('capability')}")]
    assert listed == raw.capabilities
    assert len(set(listed)) == len(listed)


def test_datastores_and_locks(agent, raw):
    st = netconf_state(raw, "<datastores/>")
    names = [d.findtext(ncm("name")) for d in st.iter(ncm("datastore"))]
    assert names == ["running", "candidate", "startup"]
    assert st.find(f".//{ncm('locks')}") is None
    with agent.raw() as other:
        assert not reply_errors(other.rpc("<lock><target><running/></target></lock>"))
        st = netconf_state(raw, "<datastores/>")
        ds = {d.findtext(ncm("name")): d for d in st.iter(ncm("datastore"))}
        g = ds["running"].find(f"{ncm('locks')}/{ncm('global-lock')}")
        assert g is not None
        assert g.findtext(ncm("locked-by-session")) == str(other.session_id)
        assert DATETIME.match(g.findtext(ncm("locked-time")))
        assert ds["candidate"].find(ncm("locks")) is None
        assert not reply_errors(other.rpc("<unlock><target><running/></target></unlock>"))
        st = netconf_state(raw, "<datastores/>")
        assert st.find(f".//{ncm('locks')}") is None
        # a lock held when the session ends goes away with it
        assert not reply_errors(other.rpc("<lock><target><candidate/></target></lock>"))
    assert wait_for(lambda: netconf_state(raw, "<datastores/>").find(f".//{ncm('locks')}") is None)


def test_schemas_list_every_module_and_submodule(listed, schema):
    expected = set()
    for m in schema.modules.values():
        expected.add((m.name, m.revision or "", m.namespace))
        for sub, rev, _ in m.submodules:
            expected.add((sub, rev or "", m.namespace))
    got = {(s["identifier"], s["version"], s["namespace"]) for s in listed}
    assert got == expected
    assert len(listed) == len(expected)
    for name, rev in MODULES.items():
        assert any(s["identifier"] == name and s["version"] == rev for s in listed), name
    for s in listed:
        assert s["_format"] == (NCM, "yang")
        assert s["location"] == "NETCONF"


def test_sessions_list_open_sessions(agent, raw):
    with agent.raw() as b:
        a_entry = session_entry(raw, raw.session_id)
        b_entry = session_entry(raw, b.session_id)
        for e in (a_entry, b_entry):
            assert e is not None
            assert e["username"] == agent.user
            assert e["source-host"] == "127.0.0.1"
            assert identity(e["_elem"].find(ncm("transport"))) == (NCM, "netconf-ssh")
            assert DATETIME.match(e["login-time"])
        assert b_entry["in-bad-rpcs"] == b_entry["out-rpc-errors"] == "0"
        # in-rpcs grows with the session's own RPCs only
        b_before = int(b_entry["in-rpcs"])
        before = int(session_entry(raw, raw.session_id)["in-rpcs"])
        for _ in range(3):
            raw.rpc("<get-config><source><running/></source></get-config>")
        after = int(session_entry(raw, raw.session_id)["in-rpcs"])
        assert after == before + 4  # three get-configs and the <get> that reads the counter
        assert int(session_entry(raw, b.session_id)["in-rpcs"]) == b_before
        b.rpc("<get-config><source><running/></source></get-config>")
        b.rpc("<get-config><source><running/></source></get-config>")
        assert int(session_entry(raw, b.session_id)["in-rpcs"]) == b_before + 2
        bid = b.session_id
    # a closed session disappears from the list
    assert wait_for(lambda: session_entry(raw, bid) is None)


def test_statistics_move_when_provoked(agent, raw):
    s0 = statistics(raw)
    assert DATETIME.match(s0["netconf-start-time"])
    with agent.raw():
        pass
    s1 = statistics(raw)
    assert int(s1["in-sessions"]) == int(s0["in-sessions"]) + 1
    assert s1["in-bad-hellos"] == s0["in-bad-hellos"]
    assert int(s1["in-rpcs"]) > int(s0["in-rpcs"])

    # a hello without any base capability
    bad = agent.raw(hello=False)
    bad.send_raw(
        f'<hello xmlns="{NC}"><capabilities><capability>urn:example:nothing</capability>'
        "</capabilities></hello>]]>]]>".encode()
    )
    bad.read_hello()
    with pytest.raises(EOFError):
        bad.recv_message(5)
    bad.close()
    s2 = wait_for(lambda: (s := statistics(raw))["in-bad-hellos"] != s1["in-bad-hellos"] and s)
    assert s2, "in-bad-hellos did not move"
    assert int(s2["in-bad-hellos"]) == int(s1["in-bad-hellos"]) + 1
    assert int(s2["in-sessions"]) == int(s1["in-sessions"]) + 1

    # an <rpc> without message-id and a message that is not XML
    mine = session_entry(raw, raw.session_id)
    raw.send_message(f'<rpc xmlns="{NC}"><get-config><source><running/></source>'
                     "</get-config></rpc>")
    assert error_tag(raw.recv_reply()) == "missing-attribute"
    raw.send_message(f'<rpc message-id="x" xmlns="{NC}"><get>')
    assert error_tag(raw.recv_reply()) == "malformed-message"
    s3 = statistics(raw)
    assert int(s3["in-bad-rpcs"]) == int(s2["in-bad-rpcs"]) + 2
    assert int(s3["out-rpc-errors"]) >= int(s2["out-rpc-errors"]) + 2
    now = session_entry(raw, raw.session_id)
    assert int(now["in-bad-rpcs"]) == int(mine["in-bad-rpcs"]) + 2
    assert int(now["out-rpc-errors"]) == int(mine["out-rpc-errors"]) + 2
    # an unknown operation is an rpc-error, but a correct <rpc>
    raw.rpc("<no-such-operation/>")
    s4 = statistics(raw)
    assert s4["in-bad-rpcs"] == s3["in-bad-rpcs"]
    assert int(s4["out-rpc-errors"]) == int(s3["out-rpc-errors"]) + 1


def test_in_rpcs_counts_only_correct_rpcs(raw):
    """RFC 6022: in-rpcs is the "number of correct <rpc> messages received"; messages that
    are not correct <rpc>s count in in-bad-rpcs only."""
    before = session_entry(raw, raw.session_id)
    raw.send_message(f'<rpc xmlns="{NC}"><get/></rpc>')  # no message-id
    assert error_tag(raw.recv_reply()) == "missing-attribute"
    raw.send_message(b"<rpc message-id='1' not xml")
    assert error_tag(raw.recv_reply()) == "malformed-message"
    after = session_entry(raw, raw.session_id)
    assert int(after["in-bad-rpcs"]) == int(before["in-bad-rpcs"]) + 2
    assert int(after["in-rpcs"]) == int(before["in-rpcs"]) + 1  # only the second <get>


def test_dropped_sessions_counts_only_abnormal_ends(agent, raw):
    """RFC 6022 dropped-sessions: "not incremented when a session is properly closed by a
    <close-session> operation, or killed by a <kill-session> operation"."""
    d0 = int(statistics(raw)["dropped-sessions"])
    with agent.raw():
        pass  # <close-session/>
    assert int(statistics(raw)["dropped-sessions"]) == d0
    victim = agent.raw()
    assert not reply_errors(
        raw.rpc(f"<kill-session><session-id>{victim.session_id}</session-id></kill-session>")
    )
    with pytest.raises(EOFError):
        victim.recv_message(5)
    victim.close()
    assert int(statistics(raw)["dropped-sessions"]) == d0, "kill-session counted as dropped"
    # an SSH connection that just goes away is a dropped session
    gone = agent.raw()
    gid = gone.session_id
    gone.transport.close()
    assert wait_for(lambda: session_entry(raw, gid) is None)
    assert int(statistics(raw)["dropped-sessions"]) == d0 + 1


# ---- get-schema -------------------------------------------------------------------------------


def test_get_schema_returns_every_listed_schema(raw, listed):
    for s in listed:
        ident, version = s["identifier"], s["version"]
        for v in (None, version):
            st = parse_yang(schema_text(get_schema(raw, ident, v)))
            assert st.keyword in ("module", "submodule")
            assert st.arg == ident
            rev = st.search_one("revision")
            assert (rev.arg if rev is not None else "") == version
            if st.keyword == "module":
                assert st.search_one("namespace").arg == s["namespace"]


def test_get_schema_real_modules(raw):
    text = schema_text(get_schema(raw, "ietf-vrrp", fmt="yang"))
    assert text.lstrip().startswith("module ietf-vrrp {")
    st = parse_yang(text)
    assert st.search_one("container", "vrrp") is not None
    assert st.search_one("revision").arg == MODULES["ietf-vrrp"]
    r = raw.rpc(f'<get-schema xmlns="{NCM}" xmlns:n="{NCM}"><identifier>ietf-ip</identifier>'
                f'<version>{MODULES["ietf-ip"]}</version><format>n:yang</format></get-schema>')
    assert "feature ipv4-non-contiguous-netmasks" in schema_text(r)
    text = schema_text(get_schema(raw, "netconf-vrrp-agent-macvlan"))
    assert text == (ROOT / "yang" / "netconf-vrrp-agent-macvlan.yang").read_text()


def test_get_schema_errors(raw):
    assert error_tag(get_schema(raw, "no-such-module")) == "invalid-value"
    assert error_tag(get_schema(raw, "ietf-vrrp", "1999-01-01")) == "invalid-value"
    assert error_tag(get_schema(raw, "ietf-vrrp", fmt="yin")) == "invalid-value"
    assert error_tag(get_schema(raw, "ietf-vrrp", fmt="ncm:yin")) == "invalid-value"
    r = raw.rpc(f'<get-schema xmlns="{NCM}"><version>2018-03-13</version></get-schema>')
    assert error_tag(r) == "missing-element"
    # and the session goes on
    assert schema_text(get_schema(raw, "ietf-vrrp"))


def test_ncclient_get_schema(agent):
    import ncclient.transport.session as ncsession
    from ncclient.operations.rpc import RPCError

    old, ncsession.TICK = ncsession.TICK, 0.001
    try:
        with agent.ncclient() as m:
            assert any("ietf-netconf-monitoring" in c for c in m.server_capabilities)
            r = m.get_schema("ietf-vrrp")
            assert parse_yang(r.data).arg == "ietf-vrrp"
            r = m.get_schema("ietf-interfaces", version=MODULES["ietf-interfaces"],
                             format="yang")
            assert r.data.lstrip().startswith("module ietf-interfaces {")
            with pytest.raises(RPCError) as exc:
                m.get_schema("no-such-module")
            assert exc.value.tag == "invalid-value"
            with pytest.raises(RPCError):
                m.get_schema("ietf-vrrp", format="yin")
    finally:
        ncsession.TICK = old


# ---- yang-library -----------------------------------------------------------------------------


def test_yang_library_content_id_matches_capability(raw, library):
    caps = [c for c in raw.capabilities if c.split("?")[0] == YL11_CAP]
    assert len(caps) == 1
    q = parse_qs(caps[0].split("?", 1)[1])
    assert q["revision"] == ["2019-01-04"]
    cid = library.findtext(yl("content-id"))
    assert cid and q["content-id"] == [cid]


def test_modules_state_matches_yang_library_1_0_capability(raw, library):
    caps = [c for c in raw.capabilities if c.split("?")[0] == YL10_CAP]
    if not caps:
        pytest.skip("no yang-library:1.0 capability")
    q = parse_qs(caps[0].split("?", 1)[1])
    r = raw.rpc(f'<get><filter type="subtree"><modules-state xmlns="{YL}"/></filter></get>')
    ms = data_of(r).find(yl("modules-state"))
    assert ms is not None
    assert q["module-set-id"] == [ms.findtext(yl("module-set-id"))]
    names = {m.findtext(yl("name")): m for m in ms.iterfind(yl("module"))}
    for name, rev in MODULES.items():
        assert names[name].findtext(yl("revision")) == rev
        assert names[name].findtext(yl("conformance-type")) == "implement"
    assert names["ietf-yang-types"].findtext(yl("conformance-type")) == "import"


def test_yang_library_module_set(library, schema):
    from agent.datastore.schema import IMPLEMENTED

    sets = library.findall(yl("module-set"))
    assert len(sets) == 1
    mods = {m.findtext(yl("name")): m for m in sets[0].iterfind(yl("module"))}
    for name, rev in MODULES.items():
        m = mods[name]
        assert m.findtext(yl("revision")) == rev, name
        assert m.findtext(yl("namespace")) == schema.modules[name].namespace
        assert [f.text for f in m.iterfind(yl("feature"))] == IMPLEMENTED[name], name
    assert "ipv4-non-contiguous-netmasks" in [f.text for f in mods["ietf-ip"].iter(yl("feature"))]
    for name in ("ietf-yang-library", "ietf-netconf-monitoring", "ietf-netconf"):
        assert name in mods
    imports = {m.findtext(yl("name")) for m in sets[0].iterfind(yl("import-only-module"))}
    assert {"ietf-yang-types", "ietf-inet-types"} <= imports
    assert not imports & set(mods)
    # schema and datastores refer to the module set
    sch = library.find(yl("schema"))
    assert sch.findtext(yl("module-set")) == sets[0].findtext(yl("name"))
    dss = {identity(d.find(yl("name"))): d.findtext(yl("schema"))
           for d in library.iterfind(yl("datastore"))}
    for ds in ("running", "candidate", "startup", "operational"):
        assert dss[(DS, ds)] == sch.findtext(yl("name"))


def test_yang_library_agrees_with_netconf_state_schemas(library, listed):
    have = {(s["identifier"], s["version"]) for s in listed}
    for m in library.iter(yl("module"), yl("import-only-module")):
        assert (m.findtext(yl("name")), m.findtext(yl("revision")) or "") in have
        for sub in m.iterfind(yl("submodule")):
            assert (sub.findtext(yl("name")), sub.findtext(yl("revision")) or "") in have


def test_hello_module_capabilities(raw, library):
    caps = module_caps(raw.capabilities)
    for m in library.iterfind(f"{yl('module-set')}/{yl('module')}"):
        name = m.findtext(yl("name"))
        assert name in caps, name
        c = caps[name]
        assert c["namespace"] == m.findtext(yl("namespace"))
        assert c["revision"] == m.findtext(yl("revision"))
        assert c["features"] == {f.text for f in m.iterfind(yl("feature"))}, name
    assert caps["ietf-ip"]["features"] >= {"ipv4-non-contiguous-netmasks"}
    assert caps["ietf-interfaces"]["features"] >= {"if-mib"}
    assert caps["ietf-vrrp"]["revision"] == MODULES["ietf-vrrp"]
    assert caps["netconf-vrrp-agent-macvlan"]["namespace"] == "urn:netconf-vrrp-agent:yang:macvlan"
