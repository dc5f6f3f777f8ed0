"""The agent's local configuration file (TOML), validated once at start.

This file says who the unit is and how it reaches the broker. What the municipality decides
(schedules, call limits, auto-answer) arrives later as a signed bundle over MQTT.
"""

import tomllib
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from vaka.agent.media.settings import MediaSettings
from vaka.errors import ConfigError
from vaka.protocol.topics import check_device_id


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class UnitSection(_Section):
    """``[unit]``: identity and profile. A generic image has no id: it enrols and takes the id
    from the certificate central issues."""

    id: str | None = None
    profile: Literal["tv", "nightcam"]
    simulate: bool = False

    @field_validator("id")
    @classmethod
    def _valid_id(cls, value: str | None) -> str | None:
        return None if value is None else check_device_id(value)


class BrokerSection(_Section):
    """``[broker]``: where and how the unit connects."""

    host: str = Field(min_length=1)
    port: int = Field(default=8883, ge=1, le=65535)
    server_ca: Path
    cert: Path | None = None  # default: unit.crt in [storage] credentials_dir
    key: Path | None = None  # default: unit.key in [storage] credentials_dir
    keepalive_s: int = Field(default=30, ge=5, le=3600)
    reconnect_min_s: float = Field(default=0.5, gt=0, le=60)
    reconnect_max_s: float = Field(default=60.0, gt=0, le=3600)


class HealthSection(_Section):
    """``[health]``: how often health is reported."""

    interval_s: float = Field(default=30.0, ge=1, le=3600)


class CallsSection(_Section):
    """``[calls]``: central's pinned ticket key and the unit's own limit."""

    ticket_key: Path  # central's Ed25519 public key (PEM)
    max_duration_s: int = Field(default=1800, gt=0, le=4 * 3600)
    #: From taking a call to media flowing; a call that does not get there ends.
    setup_timeout_s: float = Field(default=15.0, gt=0, le=120)
    #: How often the viewer is pinged on the call's data channel, and how long it may be
    #: silent before the call ends and the shutter closes (see vaka.agent.call.presence).
    heartbeat_interval_s: float = Field(default=0.5, gt=0, le=5)
    heartbeat_timeout_s: float = Field(default=2.5, gt=0, le=10)


class TrustSection(_Section):
    """``[trust]``: central's public keys this unit pins (besides the ticket key in ``[calls]``)."""

    config_key: Path | None = None  # central's Ed25519 config-signing public key (PEM)


#: The unit's key and certificate in ``[storage] credentials_dir`` (made by enrolment).
KEY_FILE = "unit.key"
CERT_FILE = "unit.crt"


class StorageSection(_Section):
    """``[storage]``: where the unit keeps its few persistent files (key, certificate, config)."""

    credentials_dir: Path | None = None  # None: the signed config is kept in memory only


class EnrolmentSection(_Section):
    """``[enrolment]``: how a unit without a certificate asks for one."""

    claim_cert: Path  # the generic image's low-privilege claim identity (chain)
    claim_key: Path
    port: int = Field(default=8884, ge=1, le=65535)  # the broker's enrolment listener
    repeat_s: float = Field(default=30.0, gt=0, le=3600)  # resend the request this often
    rotate_after_s: float = Field(default=23 * 3600, gt=0)  # new key (and code) after this


class TvSection(_Section):
    """``[tv]``: the TV unit's screen and how it treats the TV set."""

    #: ``window``: the fullscreen OpenCV window on ``$DISPLAY`` (the unit's kiosk session);
    #: ``headless``: no window (simulation, tests); ``auto``: a window when ``$DISPLAY`` is set.
    screen: Literal["auto", "window", "headless"] = "auto"
    #: The screen's language until a signed configuration names one.
    language: Literal["sv", "da", "en"] = "sv"
    width: int = Field(default=1280, ge=320, le=3840)
    height: int = Field(default=720, ge=240, le=2160)
    #: After a call or message, the TV goes back to standby after this long without activity
    #: (only if the unit switched it on).
    idle_standby_s: float = Field(default=120.0, ge=0, le=3600)
    #: How long the citizen waits for the night staff before the unit gives up on its own
    #: (central normally answers sooner: ``[calls] citizen_call_ring_s``).
    request_timeout_s: float = Field(default=120.0, gt=0, le=900)
    #: How long a "nobody could answer" message stays before the idle screen returns.
    notice_s: float = Field(default=30.0, gt=0, le=600)
    #: The CEC device (``/dev/cec0``); found with udev when not given.
    cec_device: str | None = None
    #: The name the TV shows for the unit's input.
    osd_name: str = Field(default="Vaka", max_length=14)
    #: when the TV shows the viewing log of the night by itself (local ``HH:MM``; none: never)
    viewing_log_morning: str | None = Field(
        default="07:00", pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$"
    )
    #: how long that morning showing stays on the screen
    viewing_log_show_s: float = Field(default=60.0, gt=0, le=3600)
    #: when the citizen's "do not disturb for the evening" ends (local ``HH:MM``)
    quiet_until: str = Field(default="07:00", pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$")
    #: the idle screen offers "People": the citizen's contacts, one press to call one
    people: bool = False
    #: how long the People screen waits for a press before the idle screen comes back
    people_idle_s: float = Field(default=60.0, gt=0, le=600)


class PrivacySection(_Section):
    """``[privacy]``: the citizen's privacy mode ("I have visitors", "I am away")."""

    #: how long the camera stays blocked once the citizen starts the mode
    duration_min: float = Field(default=60.0, gt=0, le=24 * 60)


class UpdateSection(_Section):
    """``[update]``: how system update bundles are fetched (see :mod:`vaka.agent.updates`)."""

    #: where a bundle is downloaded (RAM by default: the root is read-only and the credentials
    #: partition too small); it must hold the whole bundle
    download_dir: Path = Path("/run/vaka/update")
    #: the download's bandwidth limit in kilobytes per second (0: none), so that a unit on a
    #: home's slow uplink keeps room for calls
    max_rate_kbps: float = Field(default=500.0, ge=0)
    #: the CA that the bundle server's HTTPS certificate must chain to (default: the broker's
    #: ``server_ca``)
    server_ca: Path | None = None
    #: what the simulated installer says it runs (``--simulate`` only)
    simulated_version: str = Field(default="1.0", pattern=r"^[A-Za-z0-9.+~_-]{1,64}$")
    #: what installs bundles: ``auto`` is RAUC (the image's root helper) on a unit and the
    #: recording fake under ``--simulate``; ``rauc`` is RAUC even with simulated devices (a card
    #: booted in a virtual machine, which has no camera or GPIO but real slots)
    installer: Literal["auto", "rauc"] = "auto"
    #: the bundle servers this unit may download from, ``host:port`` as an order's URL names
    #: them: the unit's firewall (the site's nftables ``BUNDLE_*`` lines) and its
    #: ``IPAddressAllow=`` let it reach only these. An order for another server is refused before
    #: any download; loopback (tests) is always allowed
    servers: list[str] = Field(default_factory=list, max_length=16)

    @field_validator("servers")
    @classmethod
    def _host_and_port(cls, servers: list[str]) -> list[str]:
        for server in servers:
            host, sep, port = server.rpartition(":")
            if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise ValueError(f"{server!r} is not host:port (e.g. updates.example.org:443)")
        return servers


class AgentConfig(_Section):
    """The whole agent configuration file."""

    unit: UnitSection
    broker: BrokerSection
    health: HealthSection = HealthSection()
    calls: CallsSection | None = None
    media: MediaSettings = MediaSettings()
    trust: TrustSection = TrustSection()
    storage: StorageSection = StorageSection()
    enrolment: EnrolmentSection | None = None
    tv: TvSection = TvSection()
    privacy: PrivacySection = PrivacySection()
    update: UpdateSection = UpdateSection()

    def identity(self) -> tuple[str, Path, Path]:
        """``(unit id, certificate, key)``; only for a configuration with its identity resolved
        (see :func:`vaka.agent.identity.resolve_identity`)."""
        if self.unit.id is None or self.broker.cert is None or self.broker.key is None:
            raise ConfigError("the unit has no identity yet: it must enrol first")
        return self.unit.id, self.broker.cert, self.broker.key


def _describe(err: ValidationError) -> str:
    parts = []
    for item in err.errors(include_url=False):
        where = ".".join(str(p) for p in item["loc"]) or "file"
        parts.append(f"{where}: {item['msg']}")
    return "; ".join(parts)


def parse_config(data: dict[str, object], source: str = "config") -> AgentConfig:
    """Validate a configuration mapping, reporting every problem in one :class:`ConfigError`."""
    try:
        config = AgentConfig.model_validate(data)
    except ValidationError as err:
        raise ConfigError(f"{source} is invalid: {_describe(err)}") from None
    if config.broker.reconnect_max_s < config.broker.reconnect_min_s:
        raise ConfigError(f"{source} is invalid: broker.reconnect_max_s is below reconnect_min_s")
    calls = config.calls
    if calls is not None and calls.heartbeat_interval_s >= calls.heartbeat_timeout_s:
        raise ConfigError(
            f"{source} is invalid: calls.heartbeat_interval_s must be below heartbeat_timeout_s"
        )
    if (config.broker.cert is None) != (config.broker.key is None):
        raise ConfigError(f"{source} is invalid: give both broker.cert and broker.key, or neither")
    if config.broker.cert is None and config.storage.credentials_dir is None:
        raise ConfigError(
            f"{source} is invalid: without broker.cert the unit needs storage.credentials_dir "
            "(where its key and certificate live)"
        )
    return config


def load_config(path: Path) -> AgentConfig:
    """Read and validate the agent's TOML configuration file."""
    try:
        data = tomllib.loads(path.read_text())
    except OSError as err:
        raise ConfigError(f"cannot read agent configuration {path}: {err.strerror}") from None
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"agent configuration {path} is not valid TOML: {err}") from None
    return parse_config(data, str(path))
