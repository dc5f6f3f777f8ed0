"""Central's configuration file (TOML), validated once at start: the whole file
(:class:`CentralConfig`) and its own sections; ``[alerts]``, ``[calls]``, ``[fleet]``,
``[passwords]`` and ``[privacy]`` have their modules beside this one."""

import tomllib
from ipaddress import IPv4Network, IPv6Network
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from vaka.central.settings.alerts import AlertSettings
from vaka.central.settings.calls import CallLimits
from vaka.central.settings.fleet import Thresholds
from vaka.central.settings.passwords import PasswordHashing
from vaka.central.settings.privacy import PrivacySettings
from vaka.errors import ConfigError


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MqttSection(_Section):
    """``[mqtt]``: central's own broker connection (its identity is the certificate CN)."""

    host: str = "127.0.0.1"
    port: int = Field(default=8883, ge=1, le=65535)
    server_ca: Path
    cert: Path
    key: Path
    identity: str = Field(default="central-1", pattern=r"^central-[a-z0-9-]{1,30}$")
    share_group: str = Field(default="central", pattern=r"^[a-z0-9-]{1,30}$")
    keepalive_s: int = Field(default=30, ge=5, le=3600)
    session_expiry_s: int = Field(default=3600, ge=0)
    #: unacknowledged messages the broker may have in flight to each of central's connections
    #: (MQTT 5 Receive Maximum): central acknowledges only after committing, so a backlog waits
    #: at the broker. Ingest commits a batch when half of it has arrived, so the other half keeps
    #: coming meanwhile; much lower caps the rate (a window per commit), much higher only holds
    #: more in central's memory.
    receive_maximum: int = Field(default=1000, ge=2, le=65535)
    #: the health connection's certificate and key (CN ``<identity>-health``): health then comes
    #: on a connection of its own, and a health backlog never delays signalling, state or events
    #: (without them, everything shares one connection)
    health_cert: Path | None = None
    health_key: Path | None = None
    #: how long the broker keeps the health connection's session (and its turn of the shared
    #: health subscription) after the connection is gone. Short: a dead instance's share of
    #: the fleet's health goes to the others after this long, instead of waiting for it until
    #: ``session_expiry_s``; health is superseded by the next report, so what is queued for a
    #: restart longer than this is not missed. 0: no session, health only while connected.
    #: The main connection (state, events, signalling) keeps ``session_expiry_s``.
    health_session_expiry_s: int = Field(default=30, ge=0)
    #: the longest the health connection pauses while calls are being set up (calls first: a
    #: night check dialled during a backlog's drain gets the CPU); it then reads on for at
    #: least as long. 0: health never pauses for calls.
    calls_first_s: float = Field(default=2.0, ge=0, le=10)


class HttpSection(_Section):
    """``[http]``: where the API and the console listen."""

    bind: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)


class DatabaseSection(_Section):
    """``[database]``: SQLAlchemy URL (``sqlite:///path`` or ``postgresql+psycopg://...``)."""

    url: str = "sqlite:////var/lib/vaka/central.db"
    #: bring the schema to the newest revision at start (instances starting together take
    #: turns); off: central refuses to start on an older schema until `vaka-central db upgrade`
    upgrade_at_start: bool = True


class KeysSection(_Section):
    """``[keys]``: central's signing keys."""

    ticket_key: Path  # Ed25519 private key (PEM) that signs call tickets
    config_key: Path | None = None  # Ed25519 private key that signs config bundles and orders


class PkiSection(_Section):
    """``[pki]``: the issuing CA central holds, and how the broker learns about revocations."""

    issuing_cert: Path
    issuing_key: Path
    broker_crl: Path  # the CRL file the broker's `crlfile` points at
    broker_pid_file: Path | None = None  # to make the broker reload it (SIGHUP)
    unit_cert_days: float = Field(default=7, gt=0, le=90)
    silent_days: float = Field(default=30, gt=0)  # silent this long: decommission candidate
    code_ttl_s: float = Field(default=24 * 3600, gt=0)
    #: units waiting to be enrolled at most, and new ones accepted per minute (a flood of
    #: signing requests, each under its own valid code, fills neither the list nor the database)
    max_pending: int = Field(default=200, ge=1)
    new_pending_per_minute: int = Field(default=30, ge=1)


class TurnSection(_Section):
    """``[turn]``: the municipality's coturn, for per-call relay credentials (docs/networks.md).

    Without it calls get no relay: peers connect directly or not at all.
    """

    host: str = Field(min_length=1, max_length=253)  # the relay's name or address, as peers see it
    port: int = Field(default=3478, ge=1, le=65535)  # STUN and TURN over UDP and TCP
    tls_port: int = Field(default=443, ge=1, le=65535)  # TURN over TLS
    #: coturn's shared secret(s), one per line, root-only; the last line is the one central uses
    #: (append a new one to rotate: docs/networks.md)
    secret_file: Path


StaffRole = Literal["night_staff", "day_staff", "support", "technician", "administrator"]
Network = IPv4Network | IPv6Network
#: Where staff may log in from when ``[staff_access] allow`` does not name their role: this
#: machine only. Set your municipality's networks.
LOOPBACK: tuple[Network, ...] = (IPv4Network("127.0.0.0/8"), IPv6Network("::1/128"))


class StaffAccessSection(_Section):
    """``[staff_access]``: second factor, idle time-out, password age, lock-out, networks."""

    idle_timeout_s: float = Field(default=900, gt=0, le=24 * 3600)
    password_max_age_days: float = Field(default=90, gt=0)
    lockout_failures: int = Field(default=5, ge=1, le=100)
    lockout_window_s: float = Field(default=900, gt=0)
    lockout_s: float = Field(default=900, gt=0)
    #: per client address, over ``address_window_s``: failed log-ins beyond ``address_slow_after``
    #: are answered ever more slowly (``address_delay_s`` more each, at most 5 s); from
    #: ``address_block_after`` on the address is refused (429) until its failures age out
    address_window_s: float = Field(default=900, gt=0)
    address_slow_after: int = Field(default=10, ge=1)
    address_block_after: int = Field(default=30, ge=1)
    address_delay_s: float = Field(default=0.5, ge=0, le=5)
    #: log-in requests (any outcome) and enrolment actions one address may make per minute
    login_per_minute: int = Field(default=60, ge=1)
    enrolment_per_minute: int = Field(default=60, ge=1)
    require_totp: bool = True
    #: the key that seals the staff's TOTP secrets in the database (``vaka-central totp-key``)
    totp_key_file: Path | None = None
    #: role -> the networks (CIDR) its staff may log in and work from; a role not named here
    #: may use loopback only. Set your municipality's networks.
    allow: dict[StaffRole, list[Network]] = {}
    #: reverse proxies whose ``X-Forwarded-For`` / ``X-Forwarded-Proto`` central believes
    trusted_proxies: list[Network] = []

    def networks_for(self, role: str) -> tuple[Network, ...]:
        """The networks staff of ``role`` may use."""
        named = self.allow.get(role)  # type: ignore[call-overload]
        return LOOPBACK if named is None else tuple(named)


class UpdatesSection(_Section):
    """``[updates]``: the system update bundles central serves to the units."""

    #: where bundles are kept (found by their SHA-256); ``None``: only static URLs
    bundle_dir: Path | None = None
    #: central's address as the units reach it (``https://central.example``), for the bundle
    #: URL in their orders; default: the address central listens on
    public_url: str | None = Field(default=None, pattern=r"^https?://", max_length=200)


class CentralConfig(_Section):
    """The whole central configuration file."""

    mqtt: MqttSection
    keys: KeysSection
    http: HttpSection = HttpSection()
    database: DatabaseSection = DatabaseSection()
    fleet: Thresholds = Thresholds()
    calls: CallLimits = CallLimits()
    privacy: PrivacySettings = PrivacySettings()
    pki: PkiSection | None = None
    turn: TurnSection | None = None
    alerts: AlertSettings = AlertSettings()
    updates: UpdatesSection = UpdatesSection()
    session_ttl_s: float = Field(default=12 * 3600, gt=0)
    staff_access: StaffAccessSection = StaffAccessSection()
    passwords: PasswordHashing = PasswordHashing()


def load_central_config(path: Path) -> CentralConfig:
    """Read and validate central's TOML configuration, every problem in one error."""
    try:
        data = tomllib.loads(path.read_text())
    except OSError as err:
        raise ConfigError(f"cannot read central configuration {path}: {err.strerror}") from None
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"central configuration {path} is not valid TOML: {err}") from None
    try:
        return CentralConfig.model_validate(data)
    except ValidationError as err:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}"
            for e in err.errors(include_url=False)
        )
        raise ConfigError(f"central configuration {path} is invalid: {problems}") from None
