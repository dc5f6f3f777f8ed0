"""EMQX configuration written by central, for a country's clustered broker.

The same guarantees as the Mosquitto configuration (:mod:`vaka.central.broker.broker`), in
EMQX's terms: TLS listeners that require a client certificate (the client CA on the main
listener, the claim CA on the enrolment listener); the certificate CN as username and client id,
so one unit cannot take over another's session; authorization rules in a file (EMQX's
Erlang-term syntax) that confine each unit to its own subtree, give central's identities the
whole tree and claim identities only the enrolment subtree; nothing that matches no rule.

The keys and the rule syntax are EMQX 5.8's, checked against the v5.8.9 sources
(``apps/emqx/src/emqx_schema.erl``, ``apps/emqx_conf/src/emqx_conf_schema.erl``,
``apps/emqx_auth/etc/acl.conf``, ``apps/emqx_auth/src/emqx_authz/emqx_authz_rule.erl``,
``apps/emqx_retainer/src/emqx_retainer_schema.erl``). Mosquitto binds an ACL file to each
listener; EMQX has one authorization chain for all, so the enrolment listener's zone marks its
clients with a client attribute and the rules test it.
"""

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from vaka.central.broker.broker import BrokerSettings
from vaka.errors import ConfigError
from vaka.protocol.enrolment import ENROL_ROOT
from vaka.protocol.topics import DEVICE_ROOT, TOPIC_ROOT, UNIT_READS, UNIT_WRITES

#: the EMQX release whose configuration keys and rule syntax this module writes
EMQX_VERSION = "5.8"

#: the largest Receive Maximum MQTT 5 allows
MQTT_MAX_RECEIVE = 65_535

#: the zone of the enrolment listener, and the client attribute its clients carry
ENROL_ZONE = "enrol"
LISTENER_ATTR = "listener"
#: the expression (EMQX's "variform") that sets the attribute: the constant string ``enrol``
ENROL_MARK = f"concat(['{ENROL_ZONE}'])"


@dataclass(frozen=True)
class EmqxNode:
    """What differs between the nodes of one EMQX cluster (each node gets its own file)."""

    #: this node's Erlang node name, ``emqx@<host>``
    name: str = "emqx@127.0.0.1"
    #: every node of the cluster (static discovery); empty: a single node
    seeds: tuple[str, ...] = ()
    #: where EMQX keeps its data (the Debian/RPM packages' default)
    data_dir: str = "/var/lib/emqx"


def _erl_string(text: str) -> str:
    """An Erlang string literal (the rule file's syntax): double quotes, backslash escapes."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _rule(perm: str, who: str, action: str, topics: list[str]) -> str:
    """One rule; a list of several topics gets a line each."""
    quoted = [_erl_string(t) for t in topics]
    if len(quoted) == 1:
        return f"{{{perm}, {who}, {action}, [{quoted[0]}]}}."
    return f"{{{perm}, {who}, {action}, [\n  " + ",\n  ".join(quoted) + "\n]}."


def emqx_acl_text(central_identities: tuple[str, ...]) -> str:
    """EMQX's ``acl.conf``: the rules of the Mosquitto ACLs, in order; the first match decides.

    A unit's rules use ``${username}`` (= client id = certificate CN = unit id), as Mosquitto's
    use ``%u``. Clients of the enrolment listener are matched first and stopped at its subtree,
    whatever name their certificate carries.
    """
    enrol = f'{{client_attr, "{LISTENER_ATTR}", "{ENROL_ZONE}"}}'
    unit_root = f"{DEVICE_ROOT}/${{username}}"
    lines = [
        f"%% Written by vaka-central for EMQX {EMQX_VERSION} (file authorizer); changes here are",
        "%% overwritten. The first rule that matches decides; no match: denied.",
        "",
        "%% The enrolment listener: whoever connects there (a claim identity of a generic image)",
        "%% may only post signing requests and read the answers, and nothing else in the tree.",
        _rule("allow", enrol, "publish", [f"{ENROL_ROOT}/+/csr"]),
        _rule("allow", enrol, "subscribe", [f"{ENROL_ROOT}/+/cert"]),
        _rule("deny", enrol, "all", ["#"]),
        "",
        "%% Central's identities: the whole tree.",
    ]
    for identity in central_identities:
        lines.append(
            _rule("allow", f"{{username, {_erl_string(identity)}}}", "all", [f"{TOPIC_ROOT}/#"])
        )
    lines.append("%% Their health connections: health only (read).")
    for identity in central_identities:
        who = f"{{username, {_erl_string(identity + '-health')}}}"
        lines.append(_rule("allow", who, "subscribe", [f"{DEVICE_ROOT}/+/health"]))
    lines += [
        "",
        "%% Every unit (username = client id = certificate CN = unit id): its own subtree only.",
        _rule("allow", "all", "publish", [f"{unit_root}/{c.value}" for c in sorted(UNIT_WRITES)]),
        _rule("allow", "all", "subscribe", [f"{unit_root}/{c.value}" for c in sorted(UNIT_READS)]),
        "",
        "{deny, all}.",
    ]
    return "\n".join(lines) + "\n"


def _q(text: str) -> str:
    """A HOCON quoted string (JSON's syntax)."""
    return json.dumps(text)


def _ssl_listener(directory: Path, bind: str, port: int, cafile: str) -> list[str]:
    return [
        f"  bind = {_q(f'{bind}:{port}')}",
        "  ssl_options {",
        f"    cacertfile = {_q(str(directory / cafile))}",
        f"    certfile = {_q(str(directory / 'broker.crt'))}",
        f"    keyfile = {_q(str(directory / 'broker.key'))}",
        "    verify = verify_peer",
        "    fail_if_no_peer_cert = true",
        "    versions = [tlsv1.3, tlsv1.2]",
        "  }",
        "  tcp_options {",
        "    # Signalling goes out at once instead of waiting for Nagle/delayed ACK.",
        "    nodelay = true",
        "  }",
    ]


def _cluster_lines(node: EmqxNode) -> list[str]:
    lines = [
        "node {",
        f"  name = {_q(node.name)}",
        "  # node.cookie (the cluster's shared secret) comes from EMQX_NODE__COOKIE, never here",
        f"  data_dir = {_q(node.data_dir)}",
        "}",
        "cluster {",
        "  name = vaka",
    ]
    if node.seeds:
        seeds = ", ".join(_q(seed) for seed in node.seeds)
        lines += [
            "  discovery_strategy = static",
            f"  static.seeds = [{seeds}]",
            "  autoheal = true",
        ]
    else:
        lines.append("  discovery_strategy = manual")
    return [*lines, "}"]


def _mqtt_lines(settings: BrokerSettings) -> list[str]:
    return [
        "mqtt {",
        "  peer_cert_as_username = cn",
        "  peer_cert_as_clientid = cn",
        f"  max_packet_size = {settings.max_packet_size}",
        # Mosquitto's max_queued_messages; QoS 0 is not queued there either. A full queue drops
        # its oldest message (Mosquitto refuses the newest).
        f"  max_mqueue_len = {settings.max_queued_messages}",
        "  mqueue_store_qos0 = false",
        # Mosquitto lets an MQTT 5 client's Receive Maximum set its window (central's
        # [mqtt] receive_maximum); EMQX takes the smaller of it and this, so this is the
        # protocol's maximum and the client decides, as there.
        f"  max_inflight = {MQTT_MAX_RECEIVE}",
        # Central's MQTT 5 CONNECT asks for a session expiry of its own ([mqtt] session_expiry_s),
        # which EMQX honours: its session and queue outlive a reconnect to any node. This value
        # applies only to clients older than MQTT 5.
        "  session_expiry_interval = 1h",
        "  shared_subscription = true",
        "  shared_subscription_strategy = round_robin",
        "}",
    ]


def _listener_lines(directory: Path, settings: BrokerSettings) -> list[str]:
    """EMQX's default listeners off (plain TCP and WebSocket would take anyone); ours on."""
    lines = [
        "listeners.tcp.default.enable = false",
        "listeners.ws.default.enable = false",
        "listeners.wss.default.enable = false",
        "# Units and central: client certificates from the client CA only.",
        "listeners.ssl.default {",
        *_ssl_listener(directory, settings.bind, settings.port, "client-ca.crt"),
        "}",
    ]
    if settings.claim_port is not None:
        lines += [
            "# Enrolment: claim certificates from the claim CA only; its zone marks the clients",
            "# so that the rules confine them to the enrolment subtree.",
            f"listeners.ssl.{ENROL_ZONE} {{",
            f"  zone = {ENROL_ZONE}",
            *_ssl_listener(directory, settings.bind, settings.claim_port, "claim-ca.crt"),
            "}",
            f"zones.{ENROL_ZONE}.mqtt.client_attrs_init = [",
            f"  {{expression = {_q(ENROL_MARK)}, set_as_attr = {_q(LISTENER_ATTR)}}}",
            "]",
        ]
    return lines


def _copy_files(directory: Path, settings: BrokerSettings) -> None:
    """The TLS files and the rules, into the node's own directory."""
    directory.mkdir(parents=True, exist_ok=True)
    files = [
        (settings.client_ca, "client-ca.crt"),
        (settings.server_cert, "broker.crt"),
        (settings.server_key, "broker.key"),
    ]
    if settings.claim_port is not None:
        if settings.claim_ca is None or not settings.claim_ca.is_file():
            raise ConfigError(
                "broker configuration: the enrolment listener needs the claim CA (claim_ca, "
                "--claim-ca), a CA of its own that signs only claim identities"
            )
        files.append((settings.claim_ca, "claim-ca.crt"))
    for src, name in files:
        if not src.is_file():
            raise ConfigError(f"broker configuration: {src} does not exist")
        shutil.copyfile(src, directory / name)
    (directory / "broker.key").chmod(0o600)
    (directory / "acl.conf").write_text(emqx_acl_text(settings.central_identities))


def write_emqx_config(directory: Path, settings: BrokerSettings, node: EmqxNode) -> Path:
    """Write one node's ``emqx.conf``, ``acl.conf`` and copies of the TLS files into ``directory``.

    Refuses what EMQX cannot take from these settings: a CRL file (EMQX 5.8 checks revocation only
    against the CRL distribution points named in the certificates) and a pid file (central
    cannot make EMQX reload by signal). Returns the path of ``emqx.conf``.
    """
    if settings.crl is not None:
        raise ConfigError(
            "broker configuration: EMQX does not read a CRL file (it fetches CRLs from the "
            "certificates' distribution points); leave out --crl and cut revoked units with "
            "EMQX's banned list (docs/scaling.md)"
        )
    if settings.pid_file is not None:
        raise ConfigError("broker configuration: --pid-file is for Mosquitto only")
    if "@" not in node.name:
        raise ConfigError(f"broker configuration: EMQX node name {node.name!r} is not name@host")
    if node.seeds and node.name not in node.seeds:
        raise ConfigError(
            f"broker configuration: this node ({node.name}) is not among the cluster's seeds "
            f"({', '.join(node.seeds)})"
        )
    directory = directory.resolve()  # EMQX resolves relative paths against its own directory
    _copy_files(directory, settings)
    storage = "disc" if settings.persistence else "ram"
    conf = [
        f"# Written by vaka-central for EMQX {EMQX_VERSION} (keys as of EMQX v5.8.9); changes here",
        "# are overwritten. One file per node: only node.name differs between them.",
        *_cluster_lines(node),
        "",
        *_listener_lines(directory, settings),
        "",
        *_mqtt_lines(settings),
        "",
        "authorization {",
        "  no_match = deny",
        "  deny_action = ignore",
        f"  sources = [{{type = file, enable = true, path = {_q(str(directory / 'acl.conf'))}}}]",
        "}",
        "",
        "# Retained states, configs and orders survive a restart of every node at once.",
        "retainer {",
        "  enable = true",
        f"  max_payload_size = {settings.max_packet_size}",
        f"  backend {{type = built_in_database, storage_type = {storage}}}",
        "}",
        "",
        "# The dashboard (and its default account) only from the node itself.",
        'dashboard.listeners.http.bind = "127.0.0.1:18083"',
    ]
    path = directory / "emqx.conf"
    path.write_text("\n".join(conf) + "\n")
    return path
