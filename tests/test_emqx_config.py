"""The EMQX configuration central writes: the same access rules as Mosquitto's, the same limits.

EMQX does not run here, so the rules are evaluated with a model of EMQX's documented semantics
(tests/emqx_authz.py) on the same table of cases that runs against a real Mosquitto.
"""

import re
from pathlib import Path
from typing import Any

import pytest
from pyhocon import ConfigFactory

from tests.acl_cases import CASES, CENTRALS, AclCase
from tests.emqx_authz import Client, NotModelled, Rules, connect, parse_terms, topic_matches
from vaka.central.broker.broker import BrokerSettings, write_broker_config
from vaka.central.broker.emqx import EmqxNode, write_emqx_config
from vaka.errors import ConfigError
from vaka.provisioning.localpki import LocalPki

NODES = ("emqx@10.0.0.11", "emqx@10.0.0.12", "emqx@10.0.0.13")


def _settings(pki: LocalPki, **changes: Any) -> BrokerSettings:
    values: dict[str, Any] = {
        "port": 8883,
        "client_ca": pki.client_ca_cert,
        "server_cert": pki.broker_cert,
        "server_key": pki.broker_key,
        "bind": "0.0.0.0",
        "central_identities": CENTRALS,
        "claim_port": 8884,
        "claim_ca": pki.claim_ca_cert,
    }
    return BrokerSettings(**(values | changes))


@pytest.fixture
def written(pki: LocalPki, tmp_path: Path) -> tuple[Any, Rules]:
    """A cluster node's configuration, parsed (HOCON), and its rules."""
    path = write_emqx_config(tmp_path / "emqx", _settings(pki), EmqxNode(NODES[0], NODES))
    conf = ConfigFactory.parse_file(str(path))
    sources = conf["authorization"]["sources"]
    assert [s["type"] for s in sources] == ["file"] and sources[0]["enable"] is True
    acl = Path(sources[0]["path"]).read_text()
    return conf, Rules.parse(acl, conf["authorization"]["no_match"])


def _client(conf: Any, case: AclCase) -> Client:
    listener = "ssl.default" if case.listener == "main" else "ssl.enrol"
    return connect(conf, listener, case.who, clientid="whatever-the-client-says")


def _gets_through(conf: Any, rules: Rules, case: AclCase) -> bool:
    client = _client(conf, case)
    allowed = rules.decide(client, case.action, case.topic) == "allow"
    if case.action == "publish":
        return allowed
    real = case.topic.split("/", 2)[2] if case.topic.startswith("$share/") else case.topic
    # A subscription EMQX grants delivers every message its filter matches.
    return allowed and topic_matches(real, case.delivered_topic)


def test_access_rules_hold_on_emqx(written: tuple[Any, Rules]) -> None:
    """The shared table of access rules (tests/acl_cases.py) on the generated acl.conf."""
    conf, rules = written
    wrong = [str(case) for case in CASES if _gets_through(conf, rules, case) != case.allowed]
    assert wrong == [], "\n".join(wrong)


def test_emqx_refuses_a_units_subscription_across_units(written: tuple[Any, Rules]) -> None:
    """Stricter than Mosquitto, which grants it and delivers nothing: EMQX refuses it."""
    conf, rules = written
    unit = connect(conf, "ssl.default", "u-a")
    assert rules.decide(unit, "subscribe", "vaka/v1/dev/+/signal/in") == "deny"
    assert rules.decide(unit, "subscribe", "vaka/v1/dev/u-a/signal/in") == "allow"


def test_the_enrolment_listener_confines_any_certificate_name(written: tuple[Any, Rules]) -> None:
    """Even a claim-CA certificate named like central or a unit gets only the enrolment rights
    there: the rules follow the listener, as Mosquitto's per-listener ACL files do."""
    conf, rules = written
    for name in ("central-1", "u-a", "claim-7"):
        client = connect(conf, "ssl.enrol", name)
        assert client.attrs == {"listener": "enrol"}
        assert rules.decide(client, "publish", "vaka/v1/dev/u-a/signal/in") == "deny"
        assert rules.decide(client, "subscribe", "vaka/v1/dev/u-a/health") == "deny"
        assert rules.decide(client, "publish", "vaka/v1/enrol/CCCCCCCCCC/csr") == "allow"
    assert connect(conf, "ssl.default", "central-1").attrs == {}


def test_identity_comes_from_the_certificate(written: tuple[Any, Rules]) -> None:
    """The CN is the username and the client id, whatever the client claims."""
    conf, _ = written
    client = connect(conf, "ssl.default", "u-a", clientid="u-b")
    assert (client.username, client.clientid) == ("u-a", "u-a")


def test_emqx_conf_keeps_the_mosquitto_guarantees(pki: LocalPki, tmp_path: Path) -> None:
    settings = _settings(pki)
    conf = ConfigFactory.parse_file(
        str(write_emqx_config(tmp_path / "emqx", settings, EmqxNode(NODES[1], NODES)))
    )
    mosquitto = (write_broker_config(tmp_path / "mosquitto", settings)).read_text()

    def mosquitto_value(key: str) -> int:
        found = re.search(rf"^{key} (\d+)$", mosquitto, re.MULTILINE)
        assert found, key
        return int(found.group(1))

    listeners = conf["listeners"]
    assert [listeners[kind]["default"]["enable"] for kind in ("tcp", "ws", "wss")] == [False] * 3
    for name, port, ca in (
        ("default", 8883, pki.client_ca_cert),
        ("enrol", 8884, pki.claim_ca_cert),
    ):
        listener = listeners["ssl"][name]
        ssl = listener["ssl_options"]
        assert listener["bind"] == f"0.0.0.0:{port}"
        assert (ssl["verify"], ssl["fail_if_no_peer_cert"]) == ("verify_peer", True)
        assert Path(ssl["cacertfile"]).read_bytes() == ca.read_bytes()
        assert Path(ssl["keyfile"]).stat().st_mode & 0o077 == 0
        assert "tlsv1.1" not in ssl["versions"] and "tlsv1.2" in ssl["versions"]
        assert listener["tcp_options"]["nodelay"] is True
    mqtt = conf["mqtt"]
    assert (mqtt["peer_cert_as_username"], mqtt["peer_cert_as_clientid"]) == ("cn", "cn")
    assert mqtt["max_packet_size"] == mosquitto_value("max_packet_size")
    assert mqtt["max_mqueue_len"] == mosquitto_value("max_queued_messages")
    # Mosquitto takes an MQTT 5 client's Receive Maximum as its window; EMQX the smaller of it
    # and max_inflight: the protocol's maximum leaves it to central's receive_maximum.
    assert "max_inflight_messages" not in mosquitto and mqtt["max_inflight"] == 65_535
    assert mqtt["mqueue_store_qos0"] is False
    assert conf["authorization"]["no_match"] == "deny"
    assert conf["retainer"]["backend"]["storage_type"] == "disc"
    assert conf["dashboard"]["listeners"]["http"]["bind"].startswith("127.0.0.1:")
    assert conf["node"]["name"] == NODES[1]
    assert conf["cluster"]["discovery_strategy"] == "static"
    assert list(conf["cluster"]["static"]["seeds"]) == list(NODES)
    assert "cookie" not in conf["node"]


def test_a_single_node_without_enrolment(pki: LocalPki, tmp_path: Path) -> None:
    path = write_emqx_config(tmp_path, _settings(pki, claim_port=None), EmqxNode())
    conf = ConfigFactory.parse_file(str(path))
    assert list(conf["listeners"]["ssl"]) == ["default"]
    assert "zones" not in conf
    assert conf["cluster"]["discovery_strategy"] == "manual"


@pytest.mark.parametrize(
    ("changes", "node", "message"),
    [
        ({"crl": Path("/x/crl.pem")}, EmqxNode(), "EMQX does not read a CRL file"),
        ({"pid_file": Path("/run/x.pid")}, EmqxNode(), "--pid-file is for Mosquitto only"),
        ({}, EmqxNode("emqx@a", ("emqx@b", "emqx@c")), "(emqx@a) is not among the cluster's"),
        ({}, EmqxNode("emqx"), "'emqx' is not name@host"),
        ({"claim_ca": None}, EmqxNode(), "the enrolment listener needs the claim CA"),
    ],
)
def test_what_emqx_cannot_take_is_refused(
    pki: LocalPki, tmp_path: Path, changes: dict[str, Any], node: EmqxNode, message: str
) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        write_emqx_config(tmp_path, _settings(pki, **changes), node)


# -- the model itself, on EMQX's own example rules ----------------------------------------------

#: the rules of EMQX v5.8.9's default apps/emqx_auth/etc/acl.conf
EMQX_DEFAULT_ACL = """
%% comment
{allow, {username, {re, "^dashboard$"}}, subscribe, ["$SYS/#"]}.
{allow, {ipaddr, "127.0.0.1"}, all, ["$SYS/#", "#"]}.
{deny, all, subscribe, ["$SYS/#", {eq, "#"}, {eq, "+/#"}]}.
{allow, all}.
"""


def test_model_reads_emqx_s_own_rules() -> None:
    rules = Rules.parse(EMQX_DEFAULT_ACL, "deny")
    dashboard = Client("dashboard", "d", "d")
    assert rules.decide(dashboard, "subscribe", "$SYS/brokers") == "allow"
    with pytest.raises(NotModelled, match="ipaddr"):
        rules.decide(Client("x", "x", "x"), "publish", "a/b")
    assert parse_terms('{a, \'and\', [1, "s\\"q"]}.') == [
        (parse_terms("a.")[0], parse_terms("'and'.")[0], [1, 's"q'])
    ]


def test_model_first_match_placeholders_and_topics() -> None:
    rules = Rules.parse(
        """
        {deny, {clientid, "bad"}, all, ["#"]}.
        {allow, {'or', [{username, "a"}, {username, "b"}]}, publish, ["x/${clientid}/#"]}.
        {allow, all, subscribe, [{eq, "y/#"}, "eq z/+"]}.
        {allow, all, subscribe, ["${client_attrs.group}/in"]}.
        """,
        "deny",
    )
    a = Client("a", "ca", "a")
    assert rules.decide(a, "publish", "x/ca/1/2") == "allow"
    assert rules.decide(a, "publish", "x/ca") == "allow"  # '#' also matches the parent
    assert rules.decide(a, "publish", "x/cb/1") == "deny"
    assert rules.decide(a, "subscribe", "x/ca/1") == "deny"  # publish only
    assert rules.decide(Client("a", "bad", "a"), "publish", "x/bad/1") == "deny"  # first wins
    assert rules.decide(a, "subscribe", "y/#") == "allow"
    assert rules.decide(a, "subscribe", "y/1") == "deny"  # {eq, ...} is literal
    assert rules.decide(a, "subscribe", "z/+") == "allow"
    assert rules.decide(a, "subscribe", "$share/g/y/#") == "allow"
    assert rules.decide(a, "subscribe", "/in") == "deny"  # no attribute: no match
    assert rules.decide(Client("a", "a", "a", {"group": "g"}), "subscribe", "g/in") == "allow"
    assert topic_matches("#", "$SYS/x") is False and topic_matches("+/x", "$SYS/x") is False
    assert topic_matches("a/+/c", "a/+/c") and not topic_matches("a/b/c", "a/+/c")
