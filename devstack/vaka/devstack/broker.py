"""The local stack's Mosquitto: its configuration, its process, restarts and test clients.

Production runs Mosquitto under systemd on a configuration written by ``vaka-central
broker-config``; here :class:`Broker` writes the same configuration
(:mod:`vaka.central.broker.broker`) with the stack's defaults and runs the binary as a child
process that can be restarted, killed and frozen.
"""

import logging
import os
import shutil
import signal
import ssl
from dataclasses import dataclass, field
from pathlib import Path

import aiomqtt

from vaka.central.broker.broker import BrokerSettings, write_broker_config
from vaka.devstack.ports import free_port, wait_for_port
from vaka.devstack.process import ChildProcess
from vaka.errors import ConfigError
from vaka.provisioning.localpki import LocalPki
from vaka.provisioning.tls import client_tls_context

log = logging.getLogger(__name__)

#: seconds between writes of the broker's persistence store (Mosquitto's default is 1800)
AUTOSAVE_S = 1


def dev_broker_user() -> str | None:
    """For a broker run by hand from a private directory: stay the current user.

    Mosquitto started as root drops to ``mosquitto``, which cannot read a root-only directory;
    production runs it under systemd as its own user with files it owns.
    """
    return "root" if os.geteuid() == 0 else None


class MosquittoProcess(ChildProcess):
    """A Mosquitto broker run as a child process on a written configuration."""

    def __init__(self, config: Path, host: str, port: int, log_path: Path | None = None):
        binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        super().__init__(
            "mosquitto", [binary, "-c", str(config)], log_path or config.with_name("mosquitto.log")
        )
        self.config = config
        self.host = host
        self.port = port

    def start(self, timeout: float = 10.0) -> "MosquittoProcess":
        """Start the broker and wait until its port accepts connections."""
        if not Path(self.argv[0]).exists():
            raise ConfigError(
                "mosquitto is not installed: run `make setup` (apt install mosquitto)"
            )
        self.spawn()
        try:
            wait_for_port(self.host, self.port, timeout)
        except TimeoutError:
            self.stop()
            raise ConfigError(
                f"mosquitto did not start; see {self.log_path}: " + self.tail(500)
            ) from None
        log.info("mosquitto listening on %s:%s (pid %s)", self.host, self.port, self.pid)
        return self

    def reload(self) -> None:
        """Make the broker re-read its configuration, certificates and CRL (SIGHUP)."""
        self.send(signal.SIGHUP)

    def __enter__(self) -> "MosquittoProcess":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@dataclass
class Broker:
    """The stack's broker: TLS with client certificates, ACLs, the CRL, the enrolment listener.

    The defaults are production's: persistence on (written every second here, so a restart or a
    ``kill -9`` loses at most a second), the CRL checked on every handshake, the claim listener
    open. ``claim=False``, ``crl=False`` or ``persistence=False`` switch a part off for a caller
    that truly needs it. The port stays the same across :meth:`restart`.
    """

    pki: LocalPki
    directory: Path
    port: int = field(default_factory=free_port)
    host: str = "127.0.0.1"
    claim: bool = True
    crl: bool = True
    persistence: bool = True
    central_identities: tuple[str, ...] = ("central-1", "central-2")
    extra_lines: tuple[str, ...] = ()
    claim_port: int = field(default_factory=free_port)
    process: MosquittoProcess | None = None

    @property
    def pid_file(self) -> Path:
        """Where Mosquitto writes its pid (central sends it SIGHUP after revoking)."""
        return self.directory / "mosquitto.pid"

    @property
    def crl_path(self) -> Path:
        """The broker's own copy of the CRL (central rewrites it on revocation)."""
        return self.directory / "crl.pem"

    def write_config(self) -> Path:
        """Write ``mosquitto.conf``, the ACLs and the TLS files; the configuration's path."""
        return write_broker_config(
            self.directory,
            BrokerSettings(
                port=self.port,
                client_ca=self.pki.client_ca_cert,
                server_cert=self.pki.broker_cert,
                server_key=self.pki.broker_key,
                bind=self.host,
                central_identities=self.central_identities,
                crl=self.pki.crl_path if self.crl else None,
                persistence=self.persistence,
                autosave_interval_s=AUTOSAVE_S,
                claim_port=self.claim_port if self.claim else None,
                claim_ca=self.pki.claim_ca_cert,
                pid_file=self.pid_file,
                user=dev_broker_user(),
                extra_lines=self.extra_lines,
            ),
        )

    def forget(self) -> None:
        """Drop what an earlier run persisted (retained states, sessions): a fresh broker."""
        (self.directory / "mosquitto.db").unlink(missing_ok=True)

    def start(self) -> "Broker":
        """(Re)write the configuration and start on the same port, keeping what it persisted."""
        if self.process is not None and self.process.running:
            return self
        self.process = MosquittoProcess(self.write_config(), self.host, self.port).start()
        return self

    def stop(self) -> None:
        """Stop the broker process (it saves its store first); safe to call twice."""
        if self.process is not None:
            self.process.stop()

    def restart(self) -> None:
        """Stop and start again on the same port."""
        self.stop()
        self.start()

    def kill(self) -> None:
        """``kill -9`` the broker: only what it autosaved survives."""
        if self.process is not None:
            self.process.kill()

    def freeze(self) -> None:
        """SIGSTOP: clients notice only after their keepalive."""
        if self.process is not None:
            self.process.freeze()

    def thaw(self) -> None:
        """SIGCONT after :meth:`freeze`."""
        if self.process is not None:
            self.process.thaw()

    def reload(self) -> None:
        """SIGHUP: re-read the CRL."""
        if self.process is not None:
            self.process.reload()

    @property
    def running(self) -> bool:
        """Whether the broker process is alive."""
        return self.process is not None and self.process.running

    def client(self, cn: str, **kwargs: object) -> aiomqtt.Client:
        """An MQTT 5 client authenticated as ``cn`` (a certificate from the stack's client CA)."""
        files = self.pki.client(cn)
        return aiomqtt.Client(
            self.host,
            self.port,
            identifier=cn,
            protocol=aiomqtt.ProtocolVersion.V5,
            tls_context=client_tls_context(files.server_ca, files.cert, files.key),
            timeout=5,
            **kwargs,  # type: ignore[arg-type]
        )

    def client_with(
        self,
        tls_context: ssl.SSLContext,
        identifier: str,
        *,
        port: int | None = None,
        timeout: float = 5,
    ) -> aiomqtt.Client:
        """An MQTT 5 client with a TLS context of the caller's making (foreign CA, no cert...)."""
        return aiomqtt.Client(
            self.host,
            port or self.port,
            identifier=identifier,
            protocol=aiomqtt.ProtocolVersion.V5,
            tls_context=tls_context,
            timeout=timeout,
        )

    def log(self) -> str:
        """The broker's log so far."""
        try:
            return (self.directory / "mosquitto.log").read_text(errors="replace")
        except OSError:
            return ""
