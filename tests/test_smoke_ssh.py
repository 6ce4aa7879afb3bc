"""The agent answers over real SSH with ncclient and the raw client."""

from ncraw import reply_ok


def test_ncclient_edit_and_get(fresh):
    with fresh.ncclient() as m:
        cfg = (
            '<config xmlns="urn:ietf:params:xml:ns:netconf:base:1.0">'
            '<interfaces xmlns="urn:ietf:params:xml:ns:yang:ietf-interfaces"><interface>'
            "<name>eth0</name><description>uplink</description>"
            '<type xmlns:ianaift="urn:ietf:params:xml:ns:yang:iana-if-type">'
            "ianaift:ethernetCsmacd</type></interface></interfaces></config>"
        )
        assert m.edit_config(target="running", config=cfg).ok
        data = m.get_config("running").data_xml
        assert "uplink" in data and "ianaift:ethernetCsmacd" in data


def test_raw_client_both_framings(fresh):
    for caps in ("1.0", "1.1"):
        with fresh.raw(caps=(caps,)) as c:
            assert c.session_id > 0
            assert c.chunked == (caps == "1.1")
            assert reply_ok(c.rpc("<lock><target><running/></target></lock>"))
            assert reply_ok(c.rpc("<unlock><target><running/></target></unlock>"))
