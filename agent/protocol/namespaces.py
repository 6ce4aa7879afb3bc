"""XML namespaces and capability URNs used across the agent."""

NC = "urn:ietf:params:xml:ns:netconf:base:1.0"
NOTIF = "urn:ietf:params:xml:ns:netconf:notification:1.0"
NC_MON = "urn:ietf:params:xml:ns:yang:ietf-netconf-monitoring"
WD = "urn:ietf:params:xml:ns:yang:ietf-netconf-with-defaults"
WD_ATTR = "urn:ietf:params:xml:ns:netconf:default:1.0"
YANGLIB = "urn:ietf:params:xml:ns:yang:ietf-yang-library"
YANG_MD = "urn:ietf:params:xml:ns:yang:1"  # yang:insert / key / value attributes

CAP_BASE_10 = "urn:ietf:params:netconf:base:1.0"
CAP_BASE_11 = "urn:ietf:params:netconf:base:1.1"


def qn(ns: str, name: str) -> str:
    """Clark notation ``{ns}name`` as used by lxml."""
    return f"{{{ns}}}{name}"
