"""The shared protocol: envelopes, schemas, topics and the size limit."""

import contextlib
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vaka.errors import BadMessage, BadTopic
from vaka.protocol import (
    MAX_MESSAGE_BYTES,
    Channel,
    EventMessage,
    EventPayload,
    HealthMessage,
    StateMessage,
    StatePayload,
    decode,
    device_topic,
    encode,
    parse_device_topic,
)
from vaka.protocol.messages import SignalMessage, SignalPayload

HEALTH = {
    "interval_s": 30,
    "uptime_s": 12.5,
    "load1": 0.1,
    "mem_used_pct": 20.0,
    "clock_synced": True,
    "agent_version": "0.1.0",
    "config_version": 0,
}


def envelope(type_: str, payload: object, **extra: object) -> bytes:
    return json.dumps(
        {"v": 1, "id": "abc", "ts": 1.0, "type": type_, "payload": payload, **extra}
    ).encode()


def test_round_trip_keeps_every_field() -> None:
    message = StateMessage(payload=StatePayload(status="online", bdseq=42, profile="tv"))
    back = decode(encode(message), Channel.STATE)
    assert back == message


def test_health_decodes_on_its_channel() -> None:
    message = decode(envelope("health", HEALTH), Channel.HEALTH)
    assert isinstance(message, HealthMessage)
    assert message.payload.uptime_s == 12.5


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"", "message is empty"),
        (b"\xff\xfe", "not valid UTF-8 JSON"),
        (b"[1, 2]", "must be a JSON object, got list"),
        (b'{"v": 2}', "unsupported protocol version 2"),
        (envelope("health", {**HEALTH, "uptime_s": "long"}), "health.payload.uptime_s"),
        (envelope("health", {**HEALTH, "extra": 1}), "Extra inputs are not permitted"),
        (envelope("state", {"status": "zombie", "bdseq": 1}), "state.payload.status"),
        (envelope("nonsense", {}), "does not match any of the expected tags"),
        (envelope("state", {"status": "online", "bdseq": 1}, spare=1), "spare"),
    ],
)
def test_malformed_messages_are_refused_with_a_reason(raw: bytes, reason: str) -> None:
    with pytest.raises(BadMessage) as err:
        decode(raw)
    assert reason in str(err.value)


def test_oversize_message_is_refused_before_parsing() -> None:
    raw = b'{"pad": "' + b"x" * MAX_MESSAGE_BYTES + b'"}'
    with pytest.raises(BadMessage, match=f"over the {MAX_MESSAGE_BYTES}-byte limit"):
        decode(raw)


def test_encode_refuses_oversize() -> None:
    big = EventMessage(
        payload=EventPayload(kind="info", detail={f"k{i}": "x" * 3000 for i in range(30)})
    )
    with pytest.raises(BadMessage, match="limit"):
        encode(big)


def test_message_on_the_wrong_channel_is_refused() -> None:
    raw = encode(SignalMessage(payload=SignalPayload(kind="hangup", call_id="c1")))
    with pytest.raises(BadMessage, match="does not belong on the 'health' channel"):
        decode(raw, Channel.HEALTH)


@given(st.binary(max_size=2048))
def test_arbitrary_bytes_never_escape_as_other_errors(raw: bytes) -> None:
    with contextlib.suppress(BadMessage):
        decode(raw)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=5,
)


@settings(suppress_health_check=[HealthCheck.too_slow], max_examples=200)
@given(
    st.sampled_from(["state", "health", "event", "signal", "config", "x"]),
    st.dictionaries(
        st.sampled_from([*list(HEALTH), "status", "bdseq", "kind", "call_id"]), json_values
    ),
)
def test_arbitrary_json_payloads_give_bad_message_or_a_valid_model(
    type_: str, payload: dict
) -> None:
    try:
        message = decode(envelope(type_, payload))
    except BadMessage:
        return
    assert message.type == type_


def test_topics_parse_and_refuse() -> None:
    assert device_topic("u-abc", Channel.SIGNAL_IN) == "vaka/v1/dev/u-abc/signal/in"
    parsed = parse_device_topic("vaka/v1/dev/u-abc/signal/out")
    assert (parsed.device_id, parsed.channel) == ("u-abc", Channel.SIGNAL_OUT)
    with pytest.raises(BadTopic, match="invalid unit id"):
        parse_device_topic("vaka/v1/dev/U+x/health")
    with pytest.raises(BadTopic, match="unknown channel 'secrets'"):
        parse_device_topic("vaka/v1/dev/u-abc/secrets")
    with pytest.raises(BadTopic, match="is not under vaka/v1/dev/"):
        parse_device_topic("other/u-abc/health")
