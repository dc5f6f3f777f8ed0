"""The hot messages — health and state, nearly all of central's traffic — decoded with msgspec.

The structs here mirror :class:`~vaka.protocol.messages.HealthMessage` and
:class:`~vaka.protocol.messages.StateMessage` field for field (same names, bounds and literals,
unknown keys refused) and check a message in one pass while parsing it: about 1.7 µs against
pydantic's 12 µs. They are the fast path only; the pydantic models stay the definition.

:func:`decode_report` takes the fast path first. Anything it does not accept at once — too
large, malformed, a value pydantic would coerce, a message for another channel — goes to the
guarded pydantic decoder (:func:`vaka.protocol.messages.decode`), which applies the size and
nesting limits and gives the one readable refusal that every side uses. So a refusal reads the
same whichever path saw it, and a message is never refused here that pydantic accepts.
"""

import time
from typing import Annotated, Any, Literal, cast

import msgspec
from msgspec import Meta, Struct, field

from vaka.errors import BadMessage
from vaka.protocol.guard import MAX_JSON_BYTES
from vaka.protocol.messages import (
    AnyMessage,
    HealthMessage,
    StateMessage,
    decode,
    encode,
    new_message_id,
)
from vaka.protocol.topics import Channel

# ``\Z``, not ``$``: Python's ``$`` also matches before a trailing newline, pydantic's does not.
_Identifier = Annotated[str, Meta(pattern=r"^[A-Za-z0-9_.:-]{1,64}\Z")]
_Short = Annotated[str, Meta(max_length=200)]
_NonNegative = Annotated[float, Meta(ge=0)]
_Count = Annotated[int, Meta(ge=0)]


class _Strict(Struct, forbid_unknown_fields=True, frozen=True):
    pass


class FastStatePayload(_Strict, frozen=True, kw_only=True):
    """:class:`~vaka.protocol.messages.StatePayload`."""

    status: Literal["online", "offline", "stopped"]
    bdseq: Annotated[int, Meta(ge=0, le=2**63 - 1)]
    profile: Literal["tv", "nightcam"] | None = None
    agent_version: _Short | None = None


class FastLinkQuality(_Strict, frozen=True, kw_only=True):
    """:class:`~vaka.protocol.messages.LinkQuality`."""

    interface: _Short
    kind: Literal["wifi", "ethernet", "other"]
    signal_dbm: Annotated[float, Meta(ge=-150, le=0)] | None = None
    quality_pct: Annotated[float, Meta(ge=0, le=100)] | None = None


class FastPrivacyState(_Strict, frozen=True, kw_only=True):
    """:class:`~vaka.protocol.messages.PrivacyState`."""

    mode: Literal["visitors", "away"]
    since: Annotated[float, Meta(ge=0, lt=2**53)]
    until: Annotated[float, Meta(ge=0, lt=2**53)]


class FastHealthPayload(_Strict, frozen=True, kw_only=True):
    """:class:`~vaka.protocol.messages.HealthPayload`."""

    interval_s: Annotated[float, Meta(gt=0, le=86_400)]
    uptime_s: _NonNegative | None = None
    load1: _NonNegative | None = None
    mem_used_pct: Annotated[float, Meta(ge=0, le=100)] | None = None
    cpu_temp_c: Annotated[float, Meta(ge=-50, le=150)] | None = None
    link: FastLinkQuality | None = None
    broker_rtt_ms: _NonNegative | None = None
    camera_present: bool | None = None
    sound_present: bool | None = None
    shutter: Literal["closed", "opening", "open", "closing", "fault"] | None = None
    tv: Literal["on", "standby", "absent", "unknown"] | None = None
    clock_synced: bool
    cert_expires_at: float | None = None
    agent_version: _Short
    config_version: _Count
    last_call: _Short | None = None
    refused_messages: _Count = 0
    link_outages: _Count = 0
    last_outage_s: _NonNegative | None = None
    privacy: FastPrivacyState | None = None
    system_version: _Short | None = None
    slot: _Short | None = None


class FastState(_Strict, frozen=True, kw_only=True):
    """:class:`~vaka.protocol.messages.StateMessage`."""

    v: Literal[1] = 1
    type: Literal["state"] = "state"
    id: _Identifier = field(default_factory=new_message_id)
    ts: Annotated[float, Meta(ge=0)] = field(default_factory=time.time)
    payload: FastStatePayload


class FastHealth(_Strict, frozen=True, kw_only=True):
    """:class:`~vaka.protocol.messages.HealthMessage`."""

    v: Literal[1] = 1
    type: Literal["health"] = "health"
    id: _Identifier = field(default_factory=new_message_id)
    ts: Annotated[float, Meta(ge=0)] = field(default_factory=time.time)
    payload: FastHealthPayload


#: what :func:`decode_report` returns: a hot message as a struct, anything else as pydantic
Report = FastHealth | FastState | AnyMessage

_FAST: dict[Channel, tuple[msgspec.json.Decoder[Any], type[Struct]]] = {
    Channel.HEALTH: (msgspec.json.Decoder(FastHealth), FastHealth),
    Channel.STATE: (msgspec.json.Decoder(FastState), FastState),
}


def decode_report(raw: bytes | bytearray, channel: Channel) -> Report:
    """One message from ``channel``: health and state as msgspec structs, the rest as pydantic
    models. Raises :class:`BadMessage` with the same text as :func:`~vaka.protocol.messages.decode`.
    """
    fast = _FAST.get(channel)
    if fast is None:
        return decode(raw, channel)
    decoder, struct = fast
    if len(raw) <= MAX_JSON_BYTES:
        try:
            return cast(Report, decoder.decode(raw))
        except Exception:  # noqa: S110 - the slow path below says what is wrong
            pass
    message = decode(raw, channel)  # refuses with the readable reason, or coerces leniently
    try:
        return cast(Report, msgspec.json.decode(encode(message), type=struct))
    except (msgspec.MsgspecError, BadMessage) as err:
        raise BadMessage(f"{message.type!r} message could not be read: {err}"[:300]) from None


def health_fields(payload: FastHealthPayload) -> dict[str, Any]:
    """The sample as a plain dict without the fields the unit left empty (what
    ``HealthPayload.model_dump(mode="json", exclude_none=True)`` gives)."""
    out = {k: v for k, v in msgspec.structs.asdict(payload).items() if v is not None}
    for name in ("link", "privacy"):
        nested = getattr(payload, name)
        if nested is not None:
            out[name] = {k: v for k, v in msgspec.structs.asdict(nested).items() if v is not None}
    return out


#: the pydantic envelopes the structs mirror (the tests compare the two field by field)
MIRRORS: dict[type[Struct], type[HealthMessage | StateMessage]] = {
    FastHealth: HealthMessage,
    FastState: StateMessage,
}
