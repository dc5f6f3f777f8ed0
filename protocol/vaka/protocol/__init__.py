"""The protocol shared by the agent and central: topics and message schemas, in one place.

This package is a leaf: it imports nothing else from Vaka except :mod:`vaka.errors`.
"""

from vaka.protocol.messages import (
    MAX_MESSAGE_BYTES,
    PROTOCOL_VERSION,
    AnyMessage,
    ConfigMessage,
    ConfigPayload,
    EventMessage,
    EventPayload,
    HealthMessage,
    HealthPayload,
    LinkQuality,
    SignalMessage,
    SignalPayload,
    StateMessage,
    StatePayload,
    decode,
    encode,
)
from vaka.protocol.topics import (
    DEVICE_ID_PATTERN,
    TOPIC_ROOT,
    Channel,
    DeviceTopic,
    check_device_id,
    device_topic,
    parse_device_topic,
    shared,
)

__all__ = [
    "DEVICE_ID_PATTERN",
    "MAX_MESSAGE_BYTES",
    "PROTOCOL_VERSION",
    "TOPIC_ROOT",
    "AnyMessage",
    "Channel",
    "ConfigMessage",
    "ConfigPayload",
    "DeviceTopic",
    "EventMessage",
    "EventPayload",
    "HealthMessage",
    "HealthPayload",
    "LinkQuality",
    "SignalMessage",
    "SignalPayload",
    "StateMessage",
    "StatePayload",
    "check_device_id",
    "decode",
    "device_topic",
    "encode",
    "parse_device_topic",
    "shared",
]
