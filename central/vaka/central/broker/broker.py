"""Mosquitto configuration written by central (production runs the broker under systemd).

The broker listens only with TLS and requires a client certificate from the *client* CA; the
certificate CN becomes the MQTT username and the client id, so one unit cannot take over another
unit's session. A pattern ACL confines each unit to its own subtree; central's identities may use
the whole tree. Nothing anonymous.
"""

import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from vaka.errors import ConfigError
from vaka.protocol.enrolment import ENROL_ROOT
from vaka.protocol.messages import MAX_MESSAGE_BYTES
from vaka.protocol.topics import DEVICE_ROOT, TOPIC_ROOT, UNIT_READS, UNIT_WRITES

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BrokerSettings:
    """What the broker configuration needs. Paths are copied into the broker's own directory."""

    port: int
    client_ca: Path
    server_cert: Path
    server_key: Path
    bind: str = "127.0.0.1"
    central_identities: tuple[str, ...] = ("central-1",)
    crl: Path | None = None
    persistence: bool = True
    #: seconds between writes of the persistence store (Mosquitto's own default, 1800 s, lets a
    #: crash lose half an hour of retained messages and queued sessions). Each save writes the
    #: whole store, so not every change: a unit keeps its call events until central's receipt
    #: and covers the last second (docs/reliability.md).
    autosave_interval_s: int = 1
    #: the enrolment listener (claim identities); ``None``: no enrolment on this broker
    claim_port: int | None = None
    #: the CA that signs claim identities, and the only one the enrolment listener trusts (the
    #: main listener never does: a claim certificate cannot connect there at all)
    claim_ca: Path | None = None
    #: where Mosquitto writes its pid, so central can make it reload its CRL (SIGHUP)
    pid_file: Path | None = None
    #: the broker drops anything larger; the protocol's own limit is lower so apps see and count it
    max_packet_size: int = 4 * MAX_MESSAGE_BYTES
    #: QoS 1 messages kept per client above those in flight, for a client that is slow or briefly
    #: away (central restarting): at 20 000 units a 1000-message queue holds only ~1.5 s of
    #: health reports
    max_queued_messages: int = 100_000
    #: user the broker drops to when started as root; ``None`` leaves Mosquitto's default
    #: (``mosquitto``). The local stack (``vaka.devstack``), which keeps files in private
    #: temporary directories, stays the current user.
    user: str | None = None
    extra_lines: tuple[str, ...] = field(default=())


def acl_text(central_identities: tuple[str, ...]) -> str:
    """The ACL file: central everywhere under the tree (its health connections only reading
    health), each unit only its own subtree."""
    lines = ["# Written by vaka-central. Central's identities:"]
    for identity in central_identities:
        lines += [f"user {identity}", f"topic readwrite {TOPIC_ROOT}/#", ""]
        lines += [f"user {identity}-health", f"topic read {DEVICE_ROOT}/+/health", ""]
    lines.append("# Every unit (username = certificate CN = unit id): its own subtree only.")
    for channel in sorted(UNIT_WRITES):
        lines.append(f"pattern write {DEVICE_ROOT}/%u/{channel.value}")
    for channel in sorted(UNIT_READS):
        lines.append(f"pattern read {DEVICE_ROOT}/%u/{channel.value}")
    return "\n".join(lines) + "\n"


CLAIM_ACL = f"""# Written by vaka-central. The enrolment listener: whoever connects here (the
# claim identity of a generic image) may only post signing requests and read the answers.
# Central accepts a request only under the code its key hashes to, and the answers are
# certificates (public), so neither can be abused. The client id is forced to the claim
# certificate's CN, so a claim identity cannot take over a unit's or central's session.
pattern write {ENROL_ROOT}/+/csr
pattern read {ENROL_ROOT}/+/cert
"""


def _tls_lines(directory: Path, settings: BrokerSettings, cafile: str) -> list[str]:
    lines = [
        "protocol mqtt",
        "allow_anonymous false",
        f"cafile {directory / cafile}",
        f"certfile {directory / 'broker.crt'}",
        f"keyfile {directory / 'broker.key'}",
        "tls_version tlsv1.2",
        "require_certificate true",
        "use_identity_as_username true",
        "use_username_as_clientid true",
    ]
    if settings.crl is not None and cafile == "client-ca.crt":
        # The CRL is the issuing CA's: on the enrolment listener OpenSSL would want one from
        # the claim CA and refuse every claim identity. Claim certificates are not revoked
        # one by one (they can only post signing requests, bounded by central); a leaked set is
        # retired by replacing the claim CA.
        lines.append(f"crlfile {directory / 'crl.pem'}")
    return lines


def _copy_files(directory: Path, settings: BrokerSettings) -> None:
    """The TLS files, the CRL and both ACLs, into the broker's own directory."""
    directory.mkdir(parents=True, exist_ok=True)
    for src, name in (
        (settings.client_ca, "client-ca.crt"),
        (settings.server_cert, "broker.crt"),
        (settings.server_key, "broker.key"),
    ):
        if not src.is_file():
            raise ConfigError(f"broker configuration: {src} does not exist")
        shutil.copyfile(src, directory / name)
    if settings.claim_port is not None:
        if settings.claim_ca is None or not settings.claim_ca.is_file():
            raise ConfigError(
                "broker configuration: the enrolment listener needs the claim CA (claim_ca, "
                "--claim-ca), a CA of its own that signs only claim identities"
            )
        shutil.copyfile(settings.claim_ca, directory / "claim-ca.crt")
    (directory / "broker.key").chmod(0o600)
    (directory / "acl").write_text(acl_text(settings.central_identities))
    (directory / "acl-claim").write_text(CLAIM_ACL)
    if settings.crl is not None:
        shutil.copyfile(settings.crl, directory / "crl.pem")


def _persistence_lines(directory: Path, settings: BrokerSettings) -> list[str]:
    if not settings.persistence:
        return ["persistence false"]
    return [
        "persistence true",
        f"persistence_location {directory}/",
        f"autosave_interval {settings.autosave_interval_s}",
    ]


def write_broker_config(directory: Path, settings: BrokerSettings) -> Path:
    """Write ``mosquitto.conf``, the ACLs and copies of the TLS files into ``directory``.

    Two listeners, both forcing the client id to the certificate CN (so nobody can take over
    another's session): the main one for units and central (trusting the client CA only) and,
    with ``claim_port``, the enrolment listener (trusting the claim CA only), whose ACL allows
    only the enrolment subtree.
    Returns the path of ``mosquitto.conf``.
    """
    _copy_files(directory, settings)
    conf = [
        "# Written by vaka-central; changes here are overwritten.",
        "per_listener_settings true",
        *([f"user {settings.user}"] if settings.user else []),
        *([f"pid_file {settings.pid_file}"] if settings.pid_file else []),
        f"max_packet_size {settings.max_packet_size}",
        f"max_queued_messages {settings.max_queued_messages}",
        # Small messages (signalling) go out at once instead of waiting for Nagle/delayed ACK.
        "set_tcp_nodelay true",
        "log_dest stderr",
        "log_type error",
        "log_type warning",
        "log_type notice",
        "log_type information",
        "connection_messages true",
        *_persistence_lines(directory, settings),
        "",
        f"listener {settings.port} {settings.bind}",
        f"acl_file {directory / 'acl'}",
        *_tls_lines(directory, settings, "client-ca.crt"),
    ]
    if settings.claim_port is not None:
        conf += [
            "",
            f"listener {settings.claim_port} {settings.bind}",
            f"acl_file {directory / 'acl-claim'}",
            *_tls_lines(directory, settings, "claim-ca.crt"),
        ]
    conf += list(settings.extra_lines)
    path = directory / "mosquitto.conf"
    path.write_text("\n".join(conf) + "\n")
    return path
