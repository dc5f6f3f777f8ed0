"""The one guarded decoder: whatever bytes arrive, the answer is a message or a BadMessage.

The unit (its signalling, config, command and message channels) and central (state, health,
events, signalling, renewals, enrolment) decode every inbound payload with
:func:`vaka.protocol.messages.decode` / :func:`decode_enrolment`, which parse through
:func:`vaka.protocol.guard.parse_json`. Anything else escaping would stop a receive loop.
"""

import contextlib
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vaka.errors import BadMessage
from vaka.protocol.enrolment import decode_enrolment
from vaka.protocol.guard import MAX_JSON_DEPTH, nesting_depth, parse_json
from vaka.protocol.messages import decode
from vaka.protocol.topics import Channel

CHANNELS = [None, *Channel]

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=40,
)

envelope_like = st.fixed_dictionaries(
    {
        "v": st.one_of(st.just(1), st.integers(), st.booleans(), st.none()),
        "type": st.sampled_from(
            ["state", "health", "event", "signal", "config", "renew", "cert", "command", "x"]
        ),
        "id": st.text(max_size=40),
        "ts": st.one_of(st.floats(), st.integers()),
        "payload": json_values,
    }
)


def only_bad_message(raw: bytes, channel: Channel | None) -> None:
    try:
        decode(raw, channel)
    except BadMessage as err:
        assert str(err), "a refusal must say why"


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(raw=st.binary(max_size=2048), channel=st.sampled_from(CHANNELS))
def test_arbitrary_bytes_are_refused_with_a_reason(raw: bytes, channel: Channel | None) -> None:
    only_bad_message(raw, channel)


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(value=json_values, channel=st.sampled_from(CHANNELS))
def test_arbitrary_json_is_refused_with_a_reason(value: Any, channel: Channel | None) -> None:
    only_bad_message(json.dumps(value).encode(), channel)


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(value=envelope_like, channel=st.sampled_from(CHANNELS))
def test_envelopes_with_arbitrary_payloads(value: dict[str, Any], channel: Channel | None) -> None:
    only_bad_message(json.dumps(value).encode(), channel)


@settings(max_examples=200)
@given(raw=st.binary(max_size=2048), leaf=st.sampled_from(["csr", "cert"]))
def test_enrolment_decoder_refuses_arbitrary_bytes(raw: bytes, leaf: str) -> None:
    with contextlib.suppress(BadMessage):
        decode_enrolment(raw, leaf)


@given(depth=st.integers(min_value=0, max_value=200), opener=st.sampled_from(["[", '{"a":']))
def test_nesting_depth_counts_brackets_outside_strings(depth: int, opener: str) -> None:
    closer = "]" if opener == "[" else "}"
    raw = (opener * depth + "1" + closer * depth).encode()
    assert nesting_depth(raw) == depth
    assert nesting_depth(json.dumps({"s": "[[[[{{{{" * depth}).encode()) == 1


WORST = {
    "deep arrays": b"[" * 30_000 + b"]" * 30_000,
    "deep objects": b'{"a":' * 5_000 + b"1" + b"}" * 5_000,
    "deep inside a valid envelope": (
        b'{"v":1,"type":"health","id":"x","ts":1,"payload":' + b"[" * 40 + b"]" * 40 + b"}"
    ),
    "5000-digit integer": b'{"v":1,"type":"event","id":"x","ts":' + b"9" * 5000 + b"}",
    "5000-digit version": b'{"v":' + b"1" * 5000 + b"}",
    "huge float": b'{"v":1,"type":"event","id":"x","ts":1e999999,"payload":{}}',
    "oversize": b'{"v":1,"pad":"' + b"x" * 70_000 + b'"}',
    "not UTF-8": b'{"v":1,"type":"\xff\xfe"}',
    "lone surrogate": b'{"v":1,"type":"\\ud800"}',
    "NUL": b"\x00",
    "empty": b"",
    "bare string": b'"health"',
    "boolean version": b'{"v":true,"type":"health"}',
}


@pytest.mark.parametrize("raw", WORST.values(), ids=WORST.keys())
@pytest.mark.parametrize("channel", CHANNELS)
def test_worst_cases_are_refused(raw: bytes, channel: Channel | None) -> None:
    with pytest.raises(BadMessage):
        decode(raw, channel)


def test_limits_are_checked_before_parsing() -> None:
    with pytest.raises(BadMessage, match="nests 33 levels deep, over the limit of 32"):
        parse_json(b"[" * (MAX_JSON_DEPTH + 1) + b"]" * (MAX_JSON_DEPTH + 1))
    with pytest.raises(BadMessage, match=r"request body is 71 bytes, over the 64-byte limit"):
        parse_json(b"[" + b"1," * 34 + b"1]", what="request body", max_bytes=64)
    with pytest.raises(BadMessage, match="4300 digits"):
        parse_json(b"9" * 5000)
    assert parse_json(b"[" * MAX_JSON_DEPTH + b"]" * MAX_JSON_DEPTH) is not None
