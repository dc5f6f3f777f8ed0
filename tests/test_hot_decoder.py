"""The fast path for health and state (msgspec structs) agrees with the pydantic definition.

Same fields, same bounds and literals: whatever bytes arrive, :func:`decode_report` accepts
exactly what :func:`decode` accepts, gives the same values, and refuses with the same text.
"""

import json
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from vaka.errors import BadMessage
from vaka.protocol import hot, messages
from vaka.protocol.hot import MIRRORS, FastHealth, FastState, decode_report, health_fields
from vaka.protocol.messages import (
    HealthMessage,
    HealthPayload,
    LinkQuality,
    StateMessage,
    StatePayload,
    decode,
    encode,
)
from vaka.protocol.topics import Channel

HEALTH = HealthMessage(
    payload=HealthPayload(
        interval_s=30,
        uptime_s=100,
        load1=0.2,
        mem_used_pct=30,
        link=LinkQuality(interface="wlan0", kind="wifi", signal_dbm=-61),
        clock_synced=True,
        agent_version="0.1.0",
        config_version=3,
        camera_present=True,
        shutter="closed",
    )
)


def outcome(decoder: Any, raw: bytes, channel: Channel) -> tuple[str, Any]:
    try:
        message = decoder(raw, channel)
    except BadMessage as err:
        return "refused", str(err)
    if isinstance(message, FastHealth | FastState):
        return "ok", json.loads(encode(MIRRORS[type(message)].model_validate_json(_dump(message))))
    return "ok", json.loads(encode(message))


def _dump(message: FastHealth | FastState) -> bytes:
    import msgspec

    return msgspec.json.encode(message)


def test_the_structs_have_the_models_fields() -> None:
    for struct, model in MIRRORS.items():
        assert set(struct.__struct_fields__) == set(model.model_fields)
    assert set(FastHealth.__struct_fields__) == set(HealthMessage.model_fields)
    # The payloads and what they hold too: a field the models gain must reach the fast path.
    pairs: list[tuple[type[msgspec.Struct], type[BaseModel]]] = [
        (hot.FastHealthPayload, messages.HealthPayload),
        (hot.FastStatePayload, messages.StatePayload),
        (hot.FastLinkQuality, messages.LinkQuality),
        (hot.FastPrivacyState, messages.PrivacyState),
    ]
    for fast, slow in pairs:
        assert set(fast.__struct_fields__) == set(slow.model_fields), fast.__name__


def test_a_health_sample_in_privacy_mode_takes_the_fast_path() -> None:
    privacy = messages.PrivacyState(mode="visitors", since=1000.0, until=4600.0)
    sample = HEALTH.model_copy(
        update={"payload": HEALTH.payload.model_copy(update={"privacy": privacy})}
    )
    fast = decode_report(encode(sample), Channel.HEALTH)
    assert isinstance(fast, FastHealth)
    stored = sample.payload.model_dump(mode="json", exclude_none=True)
    assert health_fields(fast.payload) == stored


def test_a_health_sample_decodes_to_the_same_values_and_stored_fields() -> None:
    raw = encode(HEALTH)
    fast = decode_report(raw, Channel.HEALTH)
    assert isinstance(fast, FastHealth)
    assert (fast.id, fast.ts) == (HEALTH.id, HEALTH.ts)
    assert health_fields(fast.payload) == HEALTH.payload.model_dump(mode="json", exclude_none=True)


def test_state_and_other_channels() -> None:
    raw = encode(StateMessage(payload=StatePayload(status="online", bdseq=7, profile="tv")))
    state = decode_report(raw, Channel.STATE)
    assert isinstance(state, FastState) and state.payload.bdseq == 7
    with pytest.raises(BadMessage, match="does not belong on the 'health' channel"):
        decode_report(raw, Channel.HEALTH)


@pytest.mark.parametrize(
    "change",
    [
        {"v": 2},
        {"v": True},
        {"id": "bad id\n"},
        {"id": "abc\n"},
        {"ts": -1},
        {"extra": 1},
        {"payload": {"interval_s": 0}},
        {"payload": {"interval_s": "30"}},  # pydantic coerces a numeric string: so must we
        {"payload": {"clock_synced": "yes"}},
        {"payload": {"shutter": "ajar"}},
        {"payload": {"link": {"interface": "x", "kind": "wifi", "signal_dbm": 5}}},
        {"payload": {"config_version": 2.5}},
        {"payload": {"config_version": 2.0}},
        {"payload": {"refused_messages": -1}},
        {"payload": {"agent_version": "x" * 201}},
        {"payload": {"surprise": [[[[1]]]]}},
    ],
)
def test_edge_cases_agree_with_pydantic(change: dict[str, Any]) -> None:
    data = json.loads(encode(HEALTH))
    payload = change.pop("payload", {})
    data.update(change)
    data["payload"].update(payload)
    raw = json.dumps(data).encode()
    assert outcome(decode_report, raw, Channel.HEALTH) == outcome(decode, raw, Channel.HEALTH)


def test_limits_come_first() -> None:
    deep = b'{"v":1,"type":"health","payload":' + b"[" * 5000 + b"]" * 5000 + b"}"
    with pytest.raises(BadMessage, match="nests 5001 levels deep"):
        decode_report(deep, Channel.HEALTH)
    huge = b'{"v":1,"type":"health","id":"' + b"a" * 70_000 + b'"}'
    with pytest.raises(BadMessage, match="over the 65536-byte limit"):
        decode_report(huge, Channel.HEALTH)


values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**20), max_value=10**20),
    st.floats(allow_nan=False),
    st.text(max_size=8),
)
health_like = st.fixed_dictionaries(
    {
        "v": st.sampled_from([1, 1, 1, 2, True, "1"]),
        "type": st.sampled_from(["health", "health", "state", "event"]),
        "id": st.sampled_from(["0123456789abcdef", "bad id", "x" * 65]),
        "ts": st.one_of(st.floats(min_value=-1, max_value=2e9), st.integers(-1, 2**40)),
        "payload": st.fixed_dictionaries(
            {
                "interval_s": values,
                "clock_synced": st.one_of(st.booleans(), values),
                "agent_version": st.one_of(st.just("1.0"), values),
                "config_version": st.one_of(st.integers(-1, 5), values),
            },
            optional={
                "uptime_s": values,
                "shutter": st.one_of(st.sampled_from(["closed", "open", "ajar"]), values),
                "link": st.one_of(
                    st.none(),
                    st.fixed_dictionaries(
                        {"interface": values, "kind": st.sampled_from(["wifi", "lte"])}
                    ),
                ),
                "refused_messages": values,
            },
        ),
    }
)


@settings(max_examples=500, suppress_health_check=[HealthCheck.too_slow])
@given(data=health_like)
def test_any_health_like_message_gets_the_same_answer_both_ways(data: dict[str, Any]) -> None:
    raw = json.dumps(data).encode()
    assert outcome(decode_report, raw, Channel.HEALTH) == outcome(decode, raw, Channel.HEALTH)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(raw=st.binary(max_size=512))
def test_arbitrary_bytes_are_refused_with_the_same_reason(raw: bytes) -> None:
    for channel in (Channel.HEALTH, Channel.STATE):
        assert outcome(decode_report, raw, channel) == outcome(decode, raw, channel)
