"""The versioned JSON envelope and the schema of every message type.

Every message is ``{"v": 1, "type": ..., "id": ..., "ts": ..., "payload": {...}}``. Models reject
unknown keys; :func:`decode` checks size, JSON, envelope and payload at once and raises
:class:`~vaka.errors.BadMessage` with one readable sentence listing every problem.
"""

import time
import uuid
from typing import Annotated, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from vaka.errors import BadMessage
from vaka.protocol.guard import MAX_JSON_BYTES, parse_json
from vaka.protocol.topics import Channel

PROTOCOL_VERSION = 1

M = TypeVar("M", bound=BaseModel)

#: Hard limit for any message on the wire (an SDP with many candidates is ~10 KiB).
MAX_MESSAGE_BYTES = MAX_JSON_BYTES
MAX_SDP_CHARS = 32 * 1024

ShortText = Annotated[str, Field(max_length=200)]
Identifier = Annotated[str, Field(pattern=r"^[A-Za-z0-9_.:-]{1,64}$")]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def new_message_id() -> str:
    """A fresh random message id."""
    return uuid.uuid4().hex


# ---------------------------------------------------------------- payloads


class StatePayload(_Strict):
    """Birth (``online``), will (``offline``) or clean exit (``stopped``) of one link session.

    ``bdseq`` is the birth sequence of the session: the birth and the will of one session carry the
    same number and a later session a higher one, so a late will never marks a newer session
    offline (Sparkplug B's bdSeq).
    """

    status: Literal["online", "offline", "stopped"]
    bdseq: int = Field(ge=0, lt=2**63)
    profile: Literal["tv", "nightcam"] | None = None
    agent_version: ShortText | None = None


class LinkQuality(_Strict):
    """Radio link of the unit, where it has one."""

    interface: ShortText
    kind: Literal["wifi", "ethernet", "other"]
    signal_dbm: float | None = Field(default=None, ge=-150, le=0)
    quality_pct: float | None = Field(default=None, ge=0, le=100)


class PrivacyState(_Strict):
    """The citizen's privacy mode on a unit: the camera is blocked until ``until`` (unix time).

    ``visitors`` ("I have visitors") or ``away`` ("I am away"); the unit refuses night checks
    and video visits until then, and says so in its health and in ``privacy`` events.
    """

    mode: Literal["visitors", "away"]
    since: float = Field(ge=0, lt=2**53)
    until: float = Field(ge=0, lt=2**53)


class HealthPayload(_Strict):
    """One health sample. Optional fields are ``None`` where the unit cannot measure them."""

    interval_s: float = Field(gt=0, le=86_400)
    uptime_s: float | None = Field(default=None, ge=0)
    load1: float | None = Field(default=None, ge=0)
    mem_used_pct: float | None = Field(default=None, ge=0, le=100)
    cpu_temp_c: float | None = Field(default=None, ge=-50, le=150)
    link: LinkQuality | None = None
    broker_rtt_ms: float | None = Field(default=None, ge=0)
    camera_present: bool | None = None
    sound_present: bool | None = None  # the TV unit's USB microphone or speakerphone
    shutter: Literal["closed", "opening", "open", "closing", "fault"] | None = None
    tv: Literal["on", "standby", "absent", "unknown"] | None = None
    clock_synced: bool
    cert_expires_at: float | None = None
    agent_version: ShortText
    config_version: int = Field(ge=0)
    last_call: ShortText | None = None
    refused_messages: int = Field(default=0, ge=0)
    link_outages: int = Field(default=0, ge=0)  # broker link losses since the agent started
    last_outage_s: float | None = Field(default=None, ge=0)  # how long the last one lasted
    privacy: PrivacyState | None = None  # the citizen's privacy mode, while it lasts
    system_version: ShortText | None = None  # the version of the root (update bundle) it runs
    slot: ShortText | None = None  # the root slot it booted (A or B), where it has two


EventValue = str | int | float | bool | None


class EventPayload(_Strict):
    """Something happened on the unit: a button, hotplug, shutter, a refused message, privacy
    mode on/off (``privacy``), the TV asking for its viewing log or its People list, a step of a
    system update (``update``: its ``step`` as listed in the agent's ``updates`` module)."""

    kind: Literal[
        "button",
        "hotplug",
        "shutter",
        "fault",
        "refused",
        "call",
        "info",
        "message",
        "privacy",
        "viewing_log",
        "update",
        "people",
    ]
    detail: dict[Annotated[str, Field(max_length=64)], EventValue] = Field(
        default_factory=dict, max_length=32
    )


#: the most event ids one receipt confirms
MAX_RECEIPT_IDS = 200


class ReceiptPayload(_Strict):
    """Central's receipt: these events (by message id) are committed to its record.

    A unit keeps its call and shutter events in memory until a receipt names them and sends
    them again after a reconnect; the broker's PUBACK only means the broker has them.
    """

    events: list[Identifier] = Field(min_length=1, max_length=MAX_RECEIPT_IDS)


#: Why a call was not taken, or ended before it was: one word that the caller's console says in
#: its own language (the ``reason`` beside it is the readable English).
CallOutcome = Literal["cancelled", "no_answer", "declined", "busy"]


#: The unit's reading of a night check's scene: ``yes``, ``no`` or ``unsure``.
Reading = Literal["yes", "no", "unsure"]


class SceneEstimate(_Strict):
    """What the unit estimates from the camera during a night check, without sending a picture
    (:mod:`vaka.agent.media.estimate`): whether anything moves, and whether someone is in the
    configured bed region."""

    movement: Reading
    person_in_bed: Reading


class SignalPayload(_Strict):
    """Call signalling between central and the unit (filled in by the call machinery).

    An ``offer`` may carry ``ring_s``: how long the call may ring on a unit that rings first (the
    TV) before the unit gives up on it by itself. A ``hangup`` or ``error`` may carry the
    ``outcome`` of a call that was never taken. An ``escalate`` (central to unit) carries a signed
    view escalation (:mod:`vaka.provisioning.escalation`) in ``ticket``; the unit answers with a
    ``state`` whose ``state`` is the call's view (``clear``, or ``blurred`` with the reason).
    During a night check the unit also sends a ``state`` with the view and its
    :class:`SceneEstimate` in ``estimate`` whenever the estimate changes.
    """

    kind: Literal["request", "offer", "answer", "hangup", "state", "error", "escalate"]
    call_id: Identifier
    ticket: Annotated[str, Field(max_length=4096)] | None = None
    sdp: Annotated[str, Field(max_length=MAX_SDP_CHARS)] | None = None
    state: ShortText | None = None
    reason: ShortText | None = None
    ring_s: float | None = Field(default=None, gt=0, le=600)
    outcome: CallOutcome | None = None
    estimate: SceneEstimate | None = None
    callee: Identifier | None = None  # a TV's request with state "contact_call": whom it calls


class ConfigPayload(_Strict):
    """A signed configuration bundle (compact JWS) for one unit."""

    version: int = Field(ge=0)
    bundle: Annotated[str, Field(max_length=32 * 1024)]


class RenewPayload(_Strict):
    """A unit's signing request for a new key (subject CN = its unit id)."""

    csr: Annotated[str, Field(min_length=1, max_length=8 * 1024)]


class CertPayload(_Strict):
    """A renewed certificate chain (leaf + issuing CA, PEM)."""

    cert_chain: Annotated[str, Field(min_length=1, max_length=8 * 1024)]


class CommandPayload(_Strict):
    """A signed order for the unit (compact JWS, see :mod:`vaka.provisioning.orders`)."""

    order: Annotated[str, Field(min_length=1, max_length=4096)]


class MessagePayload(_Strict):
    """A signed message or reminder for the TV (compact JWS, :mod:`vaka.provisioning.messages`)."""

    token: Annotated[str, Field(min_length=1, max_length=60 * 1024)]


class UpdatePayload(_Strict):
    """A signed update order for the unit (compact JWS, see :mod:`vaka.provisioning.updates`)."""

    order: Annotated[str, Field(min_length=1, max_length=4096)]


# ---------------------------------------------------------------- envelopes


class _Envelope(_Strict):
    v: Literal[1] = 1
    id: Identifier = Field(default_factory=new_message_id)
    ts: float = Field(default_factory=time.time, ge=0)


class StateMessage(_Envelope):
    """Envelope for :class:`StatePayload` on the ``state`` channel."""

    type: Literal["state"] = "state"
    payload: StatePayload


class HealthMessage(_Envelope):
    """Envelope for :class:`HealthPayload` on the ``health`` channel."""

    type: Literal["health"] = "health"
    payload: HealthPayload


class EventMessage(_Envelope):
    """Envelope for :class:`EventPayload` on the ``events`` channel."""

    type: Literal["event"] = "event"
    payload: EventPayload


class SignalMessage(_Envelope):
    """Envelope for :class:`SignalPayload` on the ``signal/in`` and ``signal/out`` channels."""

    type: Literal["signal"] = "signal"
    payload: SignalPayload


class ConfigMessage(_Envelope):
    """Envelope for :class:`ConfigPayload` on the ``config`` channel."""

    type: Literal["config"] = "config"
    payload: ConfigPayload


class RenewMessage(_Envelope):
    """Envelope for :class:`RenewPayload` on the ``renew`` channel."""

    type: Literal["renew"] = "renew"
    payload: RenewPayload


class CertMessage(_Envelope):
    """Envelope for :class:`CertPayload` on the ``cert`` channel."""

    type: Literal["cert"] = "cert"
    payload: CertPayload


class CommandMessage(_Envelope):
    """Envelope for :class:`CommandPayload` on the ``command`` channel."""

    type: Literal["command"] = "command"
    payload: CommandPayload


class MessageMessage(_Envelope):
    """Envelope for :class:`MessagePayload` on the ``message`` channel."""

    type: Literal["message"] = "message"
    payload: MessagePayload


class ReceiptMessage(_Envelope):
    """Envelope for :class:`ReceiptPayload` on the ``receipt`` channel."""

    type: Literal["receipt"] = "receipt"
    payload: ReceiptPayload


class UpdateMessage(_Envelope):
    """Envelope for :class:`UpdatePayload` on the ``update`` channel."""

    type: Literal["update"] = "update"
    payload: UpdatePayload


AnyMessage = (
    StateMessage
    | HealthMessage
    | EventMessage
    | SignalMessage
    | ConfigMessage
    | RenewMessage
    | CertMessage
    | CommandMessage
    | MessageMessage
    | ReceiptMessage
    | UpdateMessage
)
_ADAPTER: TypeAdapter[AnyMessage] = TypeAdapter(Annotated[AnyMessage, Field(discriminator="type")])

#: Which envelope type travels on which channel.
CHANNEL_TYPES: dict[Channel, type[BaseModel]] = {
    Channel.STATE: StateMessage,
    Channel.HEALTH: HealthMessage,
    Channel.EVENTS: EventMessage,
    Channel.SIGNAL_OUT: SignalMessage,
    Channel.SIGNAL_IN: SignalMessage,
    Channel.CONFIG: ConfigMessage,
    Channel.RENEW: RenewMessage,
    Channel.CERT: CertMessage,
    Channel.COMMAND: CommandMessage,
    Channel.MESSAGE: MessageMessage,
    Channel.RECEIPT: ReceiptMessage,
    Channel.UPDATE: UpdateMessage,
}


def encode(message: BaseModel) -> bytes:
    """Serialise a message to compact JSON bytes, refusing anything over the size limit."""
    raw = message.model_dump_json(exclude_none=True).encode()
    if len(raw) > MAX_MESSAGE_BYTES:
        raise BadMessage(f"message is {len(raw)} bytes, over the {MAX_MESSAGE_BYTES}-byte limit")
    return raw


def describe_problems(err: ValidationError, whole: str = "message") -> str:
    """Every problem of a validation in one readable line (at most eight listed); a problem of
    the whole input (no field) is named ``whole``."""
    problems = []
    for item in err.errors(include_url=False)[:8]:
        where = ".".join(str(p) for p in item["loc"]) or whole
        problems.append(f"{where}: {item['msg']}")
    more = err.error_count() - len(problems)
    if more > 0:
        problems.append(f"and {more} more")
    return "; ".join(problems)


def decode_model(raw: bytes | bytearray, model: type[M]) -> M:
    """Parse and validate ``raw`` as exactly ``model``; :class:`BadMessage` says what is wrong."""
    data = parse_json(raw)
    try:
        return model.model_validate(data)
    except ValidationError as err:
        raise BadMessage(f"invalid {model.__name__}: {describe_problems(err)}") from None
    except (RecursionError, MemoryError, OverflowError, TypeError, ValueError) as err:
        raise BadMessage(f"invalid {model.__name__}: {type(err).__name__}") from None


def decode(raw: bytes | bytearray | str, channel: Channel | None = None) -> AnyMessage:
    """Parse and validate one message; with ``channel``, also check it belongs there.

    Raises :class:`BadMessage` whose text says what was wrong, whatever the input: the size and
    nesting limits are checked before parsing (:func:`vaka.protocol.guard.parse_json`).
    """
    data = parse_json(raw)
    if not isinstance(data, dict):
        raise BadMessage(f"message must be a JSON object, got {type(data).__name__}")
    if data.get("v") != PROTOCOL_VERSION or isinstance(data.get("v"), bool):
        raise BadMessage(
            f"unsupported protocol version {repr(data.get('v'))[:20]}; "
            f"this side speaks v{PROTOCOL_VERSION}"
        )
    try:
        message = _ADAPTER.validate_python(data)
    except ValidationError as err:
        raise BadMessage(
            f"invalid {str(data.get('type'))[:20]!r} message: {describe_problems(err)}"
        ) from None
    except (RecursionError, MemoryError, OverflowError, TypeError, ValueError) as err:
        raise BadMessage(f"message could not be checked: {type(err).__name__}") from None
    if channel is not None and not isinstance(message, CHANNEL_TYPES[channel]):
        raise BadMessage(
            f"a {message.type!r} message does not belong on the {channel.value!r} channel"
        )
    return message
