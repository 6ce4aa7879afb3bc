"""ietf-netconf-monitoring (RFC 6022) state and ``get-schema``; ietf-yang-library
(RFC 8525, and the RFC 7895 ``modules-state`` tree older clients read)."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from lxml import etree

from agent.protocol.errors import PROTOCOL, RpcError, bad_element
from agent.protocol.namespaces import NC_MON, YANGLIB
from agent.protocol.session import RpcContext
from agent.rpc.nmda import IMPLEMENTED_DATASTORES
from agent.rpc.params import check_params

if TYPE_CHECKING:
    from agent.server import NetconfServer

DS_NS = "urn:ietf:params:xml:ns:yang:ietf-datastores"


def timestamp(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _sub(parent: etree._Element, ns: str, name: str, text: str | None = None) -> etree._Element:
    e = etree.SubElement(parent, f"{{{ns}}}{name}")
    if text is not None:
        e.text = text
    return e


def register(server: NetconfServer) -> None:
    schema = server.schema

    def schemas() -> list[tuple[str, str, str, str]]:
        """(identifier, version, namespace, path) for every module and submodule."""
        out = []
        for m in schema.modules.values():
            out.append((m.name, m.revision or "", m.namespace, m.path))
            for sub, rev, path in m.submodules:
                out.append((sub, rev or "", m.namespace, path))
        return out

    def netconf_state() -> etree._Element:
        ns = NC_MON
        root = etree.Element(f"{{{ns}}}netconf-state", nsmap={"ncm": ns})
        caps = _sub(root, ns, "capabilities")
        for c in server.capabilities():
            _sub(caps, ns, "capability", c)
        dss = _sub(root, ns, "datastores")
        for name in ("running", "candidate", "startup"):
            d = _sub(dss, ns, "datastore")
            _sub(d, ns, "name", name)
            st = server.datastores[name]
            if st.lock_owner is not None:
                locks = _sub(d, ns, "locks")
                g = _sub(locks, ns, "global-lock")
                _sub(g, ns, "locked-by-session", str(st.lock_owner))
                _sub(g, ns, "locked-time", timestamp(st.lock_time))
        sch = _sub(root, ns, "schemas")
        for ident, ver, mns, _ in schemas():
            s = _sub(sch, ns, "schema")
            _sub(s, ns, "identifier", ident)
            _sub(s, ns, "version", ver)
            _sub(s, ns, "format", "ncm:yang")
            _sub(s, ns, "namespace", mns)
            _sub(s, ns, "location", "NETCONF")
        sess = _sub(root, ns, "sessions")
        for s in list(server.sessions.values()):
            e = _sub(sess, ns, "session")
            _sub(e, ns, "session-id", str(s.session_id))
            _sub(e, ns, "transport", "ncm:netconf-ssh")
            _sub(e, ns, "username", s.username)
            _sub(e, ns, "source-host", s.io.peer[0])
            _sub(e, ns, "login-time", timestamp(s.login_time))
            _sub(e, ns, "in-rpcs", str(s.counters.in_rpcs))
            _sub(e, ns, "in-bad-rpcs", str(s.counters.in_bad_rpcs))
            _sub(e, ns, "out-rpc-errors", str(s.counters.out_rpc_errors))
            _sub(e, ns, "out-notifications", str(s.counters.out_notifications))
        stats = _sub(root, ns, "statistics")
        g = server.stats
        _sub(stats, ns, "netconf-start-time", timestamp(g.start_time))
        _sub(stats, ns, "in-bad-hellos", str(g.in_bad_hellos))
        _sub(stats, ns, "in-sessions", str(g.in_sessions))
        _sub(stats, ns, "dropped-sessions", str(g.dropped_sessions))
        live = [x.counters for x in server.sessions.values()]
        for name, attr in (("in-rpcs", "in_rpcs"), ("in-bad-rpcs", "in_bad_rpcs"),
                           ("out-rpc-errors", "out_rpc_errors"),
                           ("out-notifications", "out_notifications")):
            total = getattr(g, attr) + sum(getattr(c, attr) for c in live)
            _sub(stats, ns, name, str(total))
        return root

    def get_schema(ctx: RpcContext, op: etree._Element):
        check_params(op, {f"{{{NC_MON}}}identifier", f"{{{NC_MON}}}version",
                          f"{{{NC_MON}}}format"})
        ident = (op.findtext(f"{{{NC_MON}}}identifier") or "").strip()
        if not ident:
            raise RpcError("missing-element", "missing <identifier>", type=PROTOCOL,
                           info=[bad_element("identifier")])
        version = op.findtext(f"{{{NC_MON}}}version")
        fmt_el = op.find(f"{{{NC_MON}}}format")
        if fmt_el is not None:
            fmt = (fmt_el.text or "").strip().split(":")[-1]
            if fmt != "yang":
                raise RpcError("invalid-value", f"schema format '{fmt}' is not available",
                               info=[bad_element("format")])
        matches = [s for s in schemas() if s[0] == ident and (not version or s[1] == version)]
        if not matches:
            raise RpcError("invalid-value", f"no schema '{ident}'"
                           + (f" revision '{version}'" if version else ""),
                           info=[bad_element("identifier")])
        if len({m[1] for m in matches}) > 1:
            raise RpcError("operation-failed", f"schema '{ident}' has several versions",
                           app_tag="data-not-unique")
        data = etree.Element(f"{{{NC_MON}}}data", nsmap={None: NC_MON})
        with open(matches[0][3], encoding="utf-8") as f:
            data.text = f.read()
        return data

    # ------------------------------------------------------------------ yang-library
    def content_id() -> str:
        h = hashlib.sha256()
        for m in sorted(schema.modules.values(), key=lambda m: m.name):
            h.update(f"{m.name}@{m.revision}:{','.join(m.features)}:{m.implemented};".encode())
        return h.hexdigest()[:16]

    def yang_library() -> etree._Element:
        ns = YANGLIB
        root = etree.Element(f"{{{ns}}}yang-library", nsmap={"yanglib": ns, "ds": DS_NS})
        ms = _sub(root, ns, "module-set")
        _sub(ms, ns, "name", "complete")
        for m in sorted(schema.modules.values(), key=lambda m: m.name):
            e = _sub(ms, ns, "module" if m.implemented else "import-only-module")
            _sub(e, ns, "name", m.name)
            # a module's revision is optional; an import-only module's is a key ("" if none)
            if m.revision or not m.implemented:
                _sub(e, ns, "revision", m.revision or "")
            _sub(e, ns, "namespace", m.namespace)
            for sub, rev, _ in m.submodules:
                se = _sub(e, ns, "submodule")
                _sub(se, ns, "name", sub)
                if rev:
                    _sub(se, ns, "revision", rev)
            if m.implemented:
                for f in m.features:
                    _sub(e, ns, "feature", f)
        sc = _sub(root, ns, "schema")
        _sub(sc, ns, "name", "complete")
        _sub(sc, ns, "module-set", "complete")
        # RFC 8525 §3 / RFC 8342: every datastore this server implements (agent/rpc/nmda.py);
        # they share one schema, config false nodes appearing only in <operational>
        for d in IMPLEMENTED_DATASTORES:
            de = _sub(root, ns, "datastore")
            _sub(de, ns, "name", f"ds:{d}")
            _sub(de, ns, "schema", "complete")
        _sub(root, ns, "content-id", content_id())
        return root

    def modules_state() -> etree._Element:
        ns = YANGLIB
        root = etree.Element(f"{{{ns}}}modules-state", nsmap={"yanglib": ns})
        _sub(root, ns, "module-set-id", content_id())
        for m in sorted(schema.modules.values(), key=lambda m: m.name):
            e = _sub(root, ns, "module")
            _sub(e, ns, "name", m.name)
            _sub(e, ns, "revision", m.revision or "")
            _sub(e, ns, "namespace", m.namespace)
            for f in m.features:
                _sub(e, ns, "feature", f)
            _sub(e, ns, "conformance-type", "implement" if m.implemented else "import")
            for sub, rev, _ in m.submodules:
                se = _sub(e, ns, "submodule")
                _sub(se, ns, "name", sub)
                _sub(se, ns, "revision", rev or "")
        return root

    server.retriever.state[f"{{{NC_MON}}}netconf-state"] = lambda _names: netconf_state()
    server.retriever.state[f"{{{YANGLIB}}}yang-library"] = lambda _names: yang_library()
    server.retriever.state[f"{{{YANGLIB}}}modules-state"] = lambda _names: modules_state()
    server.dispatcher.register(NC_MON, "get-schema", get_schema)
    server.content_id = content_id
