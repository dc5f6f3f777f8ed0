"""Mosquitto configuration written by central, and a small runner for the demo and the tests.

The broker listens only with TLS and requires a client certificate from the *client* CA; the
certificate CN becomes the MQTT username and the client id, so one unit cannot take over another
unit's session. A pattern ACL confines each unit to its own subtree; central's identities may use
the whole tree. Nothing anonymous.
"""

import logging
import os
import random
import shutil
import signal
import socket
import subprocess
import time
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
    #: the enrolment listener (claim identities); ``None``: no enrolment on this broker
    claim_port: int | None = None
    #: where Mosquitto writes its pid, so central can make it reload its CRL (SIGHUP)
    pid_file: Path | None = None
    #: the broker drops anything larger; the protocol's own limit is lower so apps see and count it
    max_packet_size: int = 4 * MAX_MESSAGE_BYTES
    #: user the broker drops to when started as root; ``None`` leaves Mosquitto's default
    #: (``mosquitto``). The demo and the tests, which keep files in private temporary
    #: directories, use :func:`dev_broker_user`.
    user: str | None = None
    extra_lines: tuple[str, ...] = field(default=())


def dev_broker_user() -> str | None:
    """For a broker run by hand from a private directory: stay the current user.

    Mosquitto started as root drops to ``mosquitto``, which cannot read a root-only directory;
    production runs it under systemd as its own user with files it owns.
    """
    return "root" if os.geteuid() == 0 else None


def acl_text(central_identities: tuple[str, ...]) -> str:
    """The ACL file: central everywhere under the tree, each unit only its own subtree."""
    lines = ["# Written by vaka-central. Central's identities:"]
    for identity in central_identities:
        lines += [f"user {identity}", f"topic readwrite {TOPIC_ROOT}/#", ""]
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


def _tls_lines(directory: Path, settings: BrokerSettings) -> list[str]:
    lines = [
        "protocol mqtt",
        "allow_anonymous false",
        f"cafile {directory / 'client-ca.crt'}",
        f"certfile {directory / 'broker.crt'}",
        f"keyfile {directory / 'broker.key'}",
        "tls_version tlsv1.2",
        "require_certificate true",
        "use_identity_as_username true",
        "use_username_as_clientid true",
    ]
    if settings.crl is not None:
        lines.append(f"crlfile {directory / 'crl.pem'}")
    return lines


def write_broker_config(directory: Path, settings: BrokerSettings) -> Path:
    """Write ``mosquitto.conf``, the ACLs and copies of the TLS files into ``directory``.

    Two listeners, both forcing the client id to the certificate CN (so nobody can take over
    another's session): the main one for units and central and, with ``claim_port``, the
    enrolment listener, whose ACL allows only the enrolment subtree.
    Returns the path of ``mosquitto.conf``.
    """
    directory.mkdir(parents=True, exist_ok=True)
    for src, name in (
        (settings.client_ca, "client-ca.crt"),
        (settings.server_cert, "broker.crt"),
        (settings.server_key, "broker.key"),
    ):
        if not src.is_file():
            raise ConfigError(f"broker configuration: {src} does not exist")
        shutil.copyfile(src, directory / name)
    (directory / "broker.key").chmod(0o600)
    (directory / "acl").write_text(acl_text(settings.central_identities))
    (directory / "acl-claim").write_text(CLAIM_ACL)
    if settings.crl is not None:
        shutil.copyfile(settings.crl, directory / "crl.pem")
    conf = [
        "# Written by vaka-central; changes here are overwritten.",
        "per_listener_settings true",
        *([f"user {settings.user}"] if settings.user else []),
        *([f"pid_file {settings.pid_file}"] if settings.pid_file else []),
        f"max_packet_size {settings.max_packet_size}",
        # Messages kept for a client that is slow or briefly away (central restarting): at 20 000
        # units a 1000-message queue holds only ~1.5 s of health reports.
        "max_queued_messages 100000",
        # Small messages (signalling) go out at once instead of waiting for Nagle/delayed ACK.
        "set_tcp_nodelay true",
        "log_dest stderr",
        "log_type error",
        "log_type warning",
        "log_type notice",
        "log_type information",
        "connection_messages true",
        f"persistence {'true' if settings.persistence else 'false'}",
        f"persistence_location {directory}/",
        "",
        f"listener {settings.port} {settings.bind}",
        f"acl_file {directory / 'acl'}",
        *_tls_lines(directory, settings),
    ]
    if settings.claim_port is not None:
        conf += [
            "",
            f"listener {settings.claim_port} {settings.bind}",
            f"acl_file {directory / 'acl-claim'}",
            *_tls_lines(directory, settings),
        ]
    conf += list(settings.extra_lines)
    path = directory / "mosquitto.conf"
    path.write_text("\n".join(conf) + "\n")
    return path


def wait_for_port(host: str, port: int, timeout: float) -> None:
    """Block until ``host:port`` accepts TCP connections, or raise :class:`TimeoutError`."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=0.2):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"nothing listens on {host}:{port} after {timeout} s") from None
            time.sleep(0.02)


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free right now on ``host``, outside the kernel's ephemeral range.

    A listener on an ephemeral port can be taken, while it restarts, by a client's own outgoing
    connection to it (TCP self-connect on loopback); ports below the range avoid that.
    """
    low, _high = _ephemeral_range()
    for _ in range(200):
        port = random.randint(10_000, max(10_001, low - 1))
        with socket.socket() as sock:
            try:
                sock.bind((host, port))
            except OSError:
                continue
            return port
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class MosquittoProcess:
    """A Mosquitto broker run as a child process (demo and tests; production uses systemd)."""

    def __init__(self, config: Path, host: str, port: int, log_path: Path | None = None):
        self.config = config
        self.host = host
        self.port = port
        self.log_path = log_path or config.with_name("mosquitto.log")
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 10.0) -> "MosquittoProcess":
        """Start the broker and wait until its port accepts connections."""
        binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        if not Path(binary).exists():
            raise ConfigError(
                "mosquitto is not installed: run `make setup` (apt install mosquitto)"
            )
        with self.log_path.open("ab") as out:
            self._proc = subprocess.Popen(
                [binary, "-c", str(self.config)], stdout=out, stderr=subprocess.STDOUT
            )
        try:
            wait_for_port(self.host, self.port, timeout)
        except TimeoutError:
            self.stop()
            raise ConfigError(
                f"mosquitto did not start; see {self.log_path}: "
                + self.log_path.read_text(errors="replace")[-500:]
            ) from None
        log.info("mosquitto listening on %s:%s (pid %s)", self.host, self.port, self._proc.pid)
        return self

    def reload(self) -> None:
        """Make the broker re-read its configuration, certificates and CRL (SIGHUP)."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.send_signal(signal.SIGHUP)

    @property
    def running(self) -> bool:
        """Whether the broker process is alive."""
        return self._proc is not None and self._proc.poll() is None

    def stop(self) -> None:
        """Stop the broker; safe to call twice."""
        if self._proc is None:
            return
        if self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._proc = None

    def __enter__(self) -> "MosquittoProcess":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
