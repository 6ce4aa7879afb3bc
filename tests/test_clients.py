"""Every RFC 6241 operation through real client libraries over SSH: ncclient and the
``netconf`` package's client; scrapli's hello; OpenDaylight-style schema discovery."""

from __future__ import annotations

import pytest
from lxml import etree
from ncraw import BASE_10, BASE_11, NC, reply_errors
from polling import poll as wait_for
from pyang import context as pyang_context
from pyang import error as pyang_error
from pyang import repository as pyang_repository

IF = "urn:ietf:params:xml:ns:yang:ietf-interfaces"
IANAIFT = "urn:ietf:params:xml:ns:yang:iana-if-type"
NCM = "urn:ietf:params:xml:ns:yang:ietf-netconf-monitoring"
TIMEOUT = 10  # seconds for each netconf-package RPC (its default is to wait forever)

#: scrapli-netconf's client hellos (scrapli_netconf.constants.NetconfClientCapabilities),
#: byte for byte: a newline and an XML declaration before the indented <hello>
SCRAPLI_HELLO = {
    "1.0": """
<?xml version="1.0" encoding="utf-8"?>
    <hello xmlns="urn:ietf:params:xml:ns:netconf:base:1.0">
        <capabilities>
            <capability>urn:ietf:params:netconf:base:1.0</capability>
        </capabilities>
</hello>]]>]]>""",
    "1.1": """
<?xml version="1.0" encoding="utf-8"?>
    <hello xmlns="urn:ietf:params:xml:ns:netconf:base:1.0">
        <capabilities>
            <capability>urn:ietf:params:netconf:base:1.1</capability>
        </capabilities>
</hello>]]>]]>""",
}


def iface(name: str, description: str, nc_prefix: str = "") -> str:
    """A <config> element with one interface (``nc_prefix`` "nc:" for the netconf package,
    which declares the base namespace under that prefix only)."""
    xmlns = f'xmlns:nc="{NC}"' if nc_prefix else f'xmlns="{NC}"'
    return (
        f"<{nc_prefix}config {xmlns}><interfaces xmlns=\"{IF}\" xmlns:ianaift=\"{IANAIFT}\">"
        f"<interface><name>{name}</name><description>{description}</description>"
        f"<type>ianaift:ethernetCsmacd</type></interface></interfaces></{nc_prefix}config>"
    )


def descriptions(data: etree._Element | None) -> dict[str, str]:
    """name -> description of the interfaces in a <data> element."""
    if data is None:
        return {}
    return {
        i.findtext(f"{{{IF}}}name"): i.findtext(f"{{{IF}}}description")
        for i in data.iterfind(f"{{{IF}}}interfaces/{{{IF}}}interface")
    }


@pytest.fixture(scope="module", autouse=True)
def fast_ncclient():
    import ncclient.transport.session as ncsession

    old, ncsession.TICK = ncsession.TICK, 0.001  # stock ncclient waits 100 ms per RPC
    yield
    ncsession.TICK = old


def open_sessions(agent) -> set[int]:
    with agent.raw() as c:
        r = c.rpc(f'<get><filter type="subtree"><netconf-state xmlns="{NCM}"><sessions/>'
                  "</netconf-state></filter></get>")
        return {int(x.text) for x in r.iter(f"{{{NCM}}}session-id")} - {c.session_id}


# ---- ncclient ---------------------------------------------------------------------------------


def test_ncclient_every_operation(fresh):
    from ncclient.operations.rpc import RPCError

    # no `with`: ncclient's Manager.__exit__ sends <close-session/> and raises TransportError
    # when the session has already ended (as both of these do below)
    m, other = fresh.ncclient(), fresh.ncclient()
    try:
        assert m.session_id != other.session_id
        for cap in (":candidate", ":startup", ":validate", ":writable-running", ":xpath"):
            assert cap in m.server_capabilities, cap

        # lock, edit the candidate, validate, commit, unlock
        assert m.lock(target="candidate").ok
        with pytest.raises(RPCError) as exc:
            other.lock(target="candidate")
        assert exc.value.tag == "lock-denied"
        assert exc.value.info and str(m.session_id) in exc.value.info
        assert m.edit_config(target="candidate", config=iface("eth1", "one")).ok
        assert descriptions(m.get_config(source="running").data) == {}
        assert descriptions(m.get_config(source="candidate").data) == {"eth1": "one"}
        assert m.validate(source="candidate").ok
        assert m.commit().ok
        assert descriptions(m.get_config(source="running").data) == {"eth1": "one"}

        # discard-changes puts the candidate back to running
        assert m.edit_config(target="candidate", config=iface("eth1", "changed")).ok
        assert m.discard_changes().ok
        assert descriptions(m.get_config(source="candidate").data) == {"eth1": "one"}
        assert m.unlock(target="candidate").ok

        # writable-running, with the edit-config options
        r = m.edit_config(target="running", config=iface("eth2", "two"),
                          default_operation="merge", test_option="test-then-set",
                          error_option="rollback-on-error")
        assert r.ok
        assert descriptions(other.get_config(source="running").data) == {
            "eth1": "one", "eth2": "two"}
        # validate of an inline <config>
        assert m.validate(source=etree.fromstring(iface("eth9", "inline"))).ok

        # get (config + state) with a filter
        r = m.get(filter=("subtree", f'<interfaces xmlns="{IF}"/>'))
        assert descriptions(r.data) == {"eth1": "one", "eth2": "two"}

        # copy-config to startup, delete-config of startup
        assert descriptions(m.get_config(source="startup").data) == {}
        assert m.copy_config(source="running", target="startup").ok
        assert descriptions(m.get_config(source="startup").data) == {"eth1": "one", "eth2": "two"}
        assert m.delete_config(target="startup").ok
        assert descriptions(m.get_config(source="startup").data) == {}
        with pytest.raises(RPCError) as exc:
            m.delete_config(target="running")
        assert exc.value.tag == "invalid-value"

        # kill-session: not oneself; another session goes away
        with pytest.raises(RPCError) as exc:
            m.kill_session(m.session_id)
        assert exc.value.tag == "invalid-value"
        victim = int(other.session_id)
        assert m.kill_session(other.session_id).ok
        assert wait_for(lambda: not other.connected)
        assert victim not in open_sessions(fresh)

        # close-session
        mine = int(m.session_id)
        assert m.close_session().ok
        assert wait_for(lambda: not m.connected)
        assert mine not in open_sessions(fresh)
    finally:
        for x in (m, other):
            if x.connected:
                x.close_session()


def test_ncclient_lock_is_released_with_the_session(fresh):
    from ncclient.operations.rpc import RPCError

    with fresh.ncclient() as m:
        assert m.lock(target="running").ok
        with fresh.ncclient() as other:
            with pytest.raises(RPCError) as exc:
                other.edit_config(target="running", config=iface("eth1", "x"))
            assert exc.value.tag in ("in-use", "lock-denied")
    with fresh.ncclient() as other:
        with other.locked("running"):
            assert other.edit_config(target="running", config=iface("eth1", "x")).ok


# ---- the `netconf` package's client -----------------------------------------------------------


@pytest.fixture
def nc_session(fresh):
    """A ``netconf.client.NetconfSSHSession`` to the agent (closed at the end)."""
    from netconf.client import NetconfSSHSession

    opened = []

    def connect():
        s = NetconfSSHSession(fresh.host, fresh.port, fresh.user, fresh.password)
        opened.append(s)
        return s

    yield connect
    for s in opened:
        try:
            s.close()
        except Exception:
            pass


def test_netconf_package_hello(nc_session, fresh):
    s = nc_session()
    assert s.session_id and int(s.session_id) > 0
    assert BASE_11 in s.capabilities and BASE_10 in s.capabilities
    assert int(s.session_id) in open_sessions(fresh)


def test_netconf_package_every_operation(nc_session, fresh):
    import netconf
    from netconf import error as ncerror

    s = nc_session()
    other = nc_session()

    def ok(rpc: str) -> etree._Element:
        _, reply, _ = s.send_rpc(rpc, timeout=TIMEOUT)
        assert reply.find(f"{{{NC}}}ok") is not None, etree.tostring(reply)
        return reply

    def source(name: str) -> dict[str, str]:
        return descriptions(s.get_config(source=name, timeout=TIMEOUT))

    # lock / edit-config (candidate) / validate / commit / unlock
    s.lock("candidate", timeout=TIMEOUT)
    with pytest.raises(ncerror.RPCError) as exc:
        other.lock("candidate", timeout=TIMEOUT)
    assert "lock-denied" in str(exc.value)
    s.edit_config(target="candidate", newconf=iface("eth1", "one", "nc:"), timeout=TIMEOUT)
    assert source("running") == {}
    assert source("candidate") == {"eth1": "one"}
    ok("<nc:validate><nc:source><nc:candidate/></nc:source></nc:validate>")
    ok("<nc:commit/>")
    assert source("running") == {"eth1": "one"}
    s.edit_config(target="candidate", newconf=iface("eth1", "changed", "nc:"), timeout=TIMEOUT)
    ok("<nc:discard-changes/>")
    assert source("candidate") == {"eth1": "one"}
    s.unlock("candidate", timeout=TIMEOUT)

    # edit-config on running with options
    s.edit_config(target="running", method="merge", newconf=iface("eth2", "two", "nc:"),
                  testopt="test-then-set", erroropt="rollback-on-error", timeout=TIMEOUT)
    assert descriptions(other.get_config(timeout=TIMEOUT)) == {"eth1": "one", "eth2": "two"}

    # get / get-config with subtree and XPath filters (the package sends nc:type / nc:select)
    d = s.get(select=f'<interfaces xmlns="{IF}"><interface><name>eth2</name></interface>'
                     "</interfaces>", timeout=TIMEOUT)
    assert descriptions(d) == {"eth2": "two"}
    d = s.get_config(select="/interfaces/interface[name='eth1']/description", timeout=TIMEOUT)
    assert descriptions(d) == {"eth1": "one"}
    netconf.nsmap_add("if", IF)  # prefixes the package declares on its <filter>
    d = s.get(select="/if:interfaces/if:interface[if:name='eth2']", timeout=TIMEOUT)
    assert descriptions(d) == {"eth2": "two"}
    d = s.get(select=f"/ncm:netconf-state/ncm:sessions/ncm:session[ncm:session-id="
                     f"{s.session_id}]/ncm:username".replace("ncm:", ""), timeout=TIMEOUT)
    assert d.findtext(f".//{{{NCM}}}username") == fresh.user

    # copy-config / delete-config
    ok("<nc:copy-config><nc:target><nc:startup/></nc:target>"
       "<nc:source><nc:running/></nc:source></nc:copy-config>")
    assert source("startup") == {"eth1": "one", "eth2": "two"}
    ok("<nc:delete-config><nc:target><nc:startup/></nc:target></nc:delete-config>")
    assert source("startup") == {}

    # errors come back as the package's RPCError
    with pytest.raises(ncerror.RPCError) as exc:
        s.send_rpc("<nc:delete-config><nc:target><nc:running/></nc:target></nc:delete-config>",
                   timeout=TIMEOUT)
    assert "invalid-value" in str(exc.value)

    # kill-session of another session
    victim = int(other.session_id)
    ok(f"<nc:kill-session><nc:session-id>{victim}</nc:session-id></nc:kill-session>")
    assert wait_for(lambda: not other.is_active())
    # (the package asserts on its session-id, cleared at close, before it checks the session)
    with pytest.raises((ncerror.SessionError, AssertionError)):
        other.get_config(timeout=TIMEOUT)
    assert victim not in open_sessions(fresh)

    # close-session: the reply comes, then the session ends. (The package's wait_reply raises
    # SessionError when the session is gone by the time it looks, even if the reply came
    # first: that is why its own close() does not wait. Look at what it received instead.)
    mine = int(s.session_id)
    mid = s.send_rpc_async("<nc:close-session/>")
    assert wait_for(lambda: not s.is_active())
    _, reply, _ = s.rpc_out[mid]
    assert reply.find(f"{{{NC}}}ok") is not None
    assert mine not in open_sessions(fresh)


def test_netconf_package_close(nc_session, fresh):
    s = nc_session()
    sid = int(s.session_id)
    assert sid in open_sessions(fresh)
    s.close()  # sends <close-session/> without waiting for the reply
    assert wait_for(lambda: sid not in open_sessions(fresh))


# ---- scrapli's hello --------------------------------------------------------------------------


@pytest.mark.parametrize("version", ["1.0", "1.1"])
def test_scrapli_hello_with_leading_whitespace(agent, version):
    c = agent.raw(hello=False)
    try:
        c.send_raw(SCRAPLI_HELLO[version].encode())
        c.client_capabilities = [BASE_10 if version == "1.0" else BASE_11]
        c.read_hello()
        assert c.chunked == (version == "1.1")
        r = c.rpc("<get-config><source><running/></source></get-config>")
        assert not reply_errors(r) and r.find(f"{{{NC}}}data") is not None
        r = c.rpc("<lock><target><candidate/></target></lock>")
        assert r.find(f"{{{NC}}}ok") is not None
        assert c.session_id in open_sessions(agent)
    finally:
        c.close()


# ---- OpenDaylight-style schema discovery ------------------------------------------------------


def test_opendaylight_schema_discovery(agent, tmp_path):
    """What an OpenDaylight netconf-connector does on connect: see ietf-netconf-monitoring in
    the hello, read /netconf-state/schemas, fetch every YANG schema with <get-schema>
    (identifier, version, format as an identityref), then build one schema context out of
    them: every module named in the hello must be there and all imports must resolve."""
    with agent.raw() as c:
        assert any(cap.startswith(f"{NCM}?") and "module=ietf-netconf-monitoring" in cap
                   for cap in c.capabilities)
        hello_modules = {}
        for cap in c.capabilities:
            if "?module=" in cap:
                q = dict(p.split("=", 1) for p in cap.split("?", 1)[1].split("&"))
                hello_modules[q["module"]] = q.get("revision")

        r = c.rpc(f'<get><filter type="subtree"><netconf-state xmlns="{NCM}"><schemas/>'
                  "</netconf-state></filter></get>", message_id="m-1")
        assert not reply_errors(r), reply_errors(r)
        listed = []
        for s in r.iter(f"{{{NCM}}}schema"):
            fmt = s.find(f"{{{NCM}}}format")
            prefix, _, name = fmt.text.rpartition(":")
            if fmt.nsmap.get(prefix or None) == NCM and name == "yang" and \
                    s.findtext(f"{{{NCM}}}location") == "NETCONF":
                listed.append((s.findtext(f"{{{NCM}}}identifier"),
                               s.findtext(f"{{{NCM}}}version") or None))
        assert {(m, rev) for m, rev in hello_modules.items()} <= set(listed)

        ids = [f"m-{i}" for i in range(2, 2 + len(listed))]
        sources = {}
        for mid, (ident, version) in zip(ids, listed, strict=True):
            v = f"<version>{version}</version>" if version else ""
            r = c.rpc(
                f'<get-schema xmlns="{NCM}"><identifier>{ident}</identifier>{v}'
                f'<format xmlns:x="{NCM}">x:yang</format></get-schema>', message_id=mid)
            assert not reply_errors(r), (ident, reply_errors(r))
            data = r.find(f"{{{NCM}}}data")
            assert data is not None and data.text, ident
            sources[(ident, version)] = data.text

    # one schema context from the downloaded sources only
    for (ident, version), text in sources.items():
        (tmp_path / (f"{ident}@{version}.yang" if version else f"{ident}.yang")).write_text(text)
    repo = pyang_repository.FileRepository(str(tmp_path), use_env=False, no_path_recurse=True)
    ctx = pyang_context.Context(repo)
    mods = []
    for (ident, version), text in sources.items():
        m = ctx.add_module(f"{ident}@{version}.yang", text)
        assert m is not None, (ident, ctx.errors)
        if m.keyword == "module":
            mods.append(m)
    ctx.validate()
    errors = [(pos.label() if hasattr(pos, "label") else str(pos), tag, args)
              for pos, tag, args in ctx.errors if not pyang_error.is_warning(
                  pyang_error.err_level(tag))]
    assert not errors, errors[:5]
    names = {(m.arg, m.search_one("revision").arg if m.search_one("revision") else None)
             for m in mods}
    for name, rev in hello_modules.items():
        assert (name, rev) in names, name
