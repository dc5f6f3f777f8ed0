"""Vaka's MQTT topic tree (MQTT 5).

One tree per unit, ``vaka/v1/dev/<id>/<channel>``; the broker's ACL lets a unit touch only its own
tree (``%u`` = certificate CN = unit id). Which message types may travel on which channel is part of
the protocol too (:data:`CHANNEL_TYPES`).
"""

import re
from dataclasses import dataclass
from enum import StrEnum

from vaka.errors import BadTopic

TOPIC_ROOT = "vaka/v1"
DEVICE_ROOT = f"{TOPIC_ROOT}/dev"

#: Unit ids are pseudonymous, lower-case, start with ``u-``; they are also the certificate CN.
DEVICE_ID_PATTERN = r"u-[a-z0-9][a-z0-9-]{0,46}"
_DEVICE_ID_RE = re.compile(DEVICE_ID_PATTERN)


class Channel(StrEnum):
    """The channels in a unit's subtree, with who writes them."""

    STATE = "state"  # unit: retained birth / will / stopped
    HEALTH = "health"  # unit: periodic and on change
    EVENTS = "events"  # unit: button, hotplug, shutter, refusals
    SIGNAL_OUT = "signal/out"  # unit: answers, call state
    SIGNAL_IN = "signal/in"  # central: call requests, offers, hang-ups
    CONFIG = "config"  # central: retained signed config bundle
    RENEW = "renew"  # unit: certificate renewal request (CSR for a new key)
    CERT = "cert"  # central: the renewed certificate
    COMMAND = "command"  # central: retained signed orders (decommission, renew now)
    MESSAGE = "message"  # central: signed messages and reminders for the TV (not retained)
    RECEIPT = "receipt"  # central: which of the unit's events it has committed to its record
    UPDATE = "update"  # central: the retained signed update order (which bundle to install)


#: Channels a unit publishes on; the others it only reads.
UNIT_WRITES = frozenset(
    {Channel.STATE, Channel.HEALTH, Channel.EVENTS, Channel.SIGNAL_OUT, Channel.RENEW}
)
UNIT_READS = frozenset(
    {
        Channel.SIGNAL_IN,
        Channel.CONFIG,
        Channel.CERT,
        Channel.COMMAND,
        Channel.MESSAGE,
        Channel.RECEIPT,
        Channel.UPDATE,
    }
)


def check_device_id(device_id: str) -> str:
    """Return ``device_id`` if it is a valid unit id, else raise :class:`BadTopic`."""
    if not _DEVICE_ID_RE.fullmatch(device_id):
        raise BadTopic(
            f"invalid unit id {device_id[:60]!r}: expected 'u-' followed by 1-47 lower-case "
            "letters, digits or hyphens"
        )
    return device_id


def device_topic(device_id: str, channel: Channel) -> str:
    """The topic of ``channel`` in the subtree of unit ``device_id``."""
    return f"{DEVICE_ROOT}/{check_device_id(device_id)}/{channel.value}"


def device_filter(channel: Channel, device_id: str = "+") -> str:
    """A subscription filter for ``channel`` of one unit or (``+``) of every unit."""
    if device_id != "+":
        check_device_id(device_id)
    return f"{DEVICE_ROOT}/{device_id}/{channel.value}"


def shared(group: str, topic_filter: str) -> str:
    """An MQTT 5 shared subscription: each message goes to one member of ``group``."""
    return f"$share/{group}/{topic_filter}"


@dataclass(frozen=True, slots=True)
class DeviceTopic:
    """A parsed unit topic."""

    device_id: str
    channel: Channel


def parse_device_topic(topic: str) -> DeviceTopic:
    """Split a unit topic into id and channel, or raise :class:`BadTopic` saying why."""
    prefix = DEVICE_ROOT + "/"
    if not topic.startswith(prefix):
        raise BadTopic(f"topic {topic[:120]!r} is not under {DEVICE_ROOT}/")
    device_id, _, rest = topic[len(prefix) :].partition("/")
    check_device_id(device_id)
    try:
        channel = Channel(rest)
    except ValueError:
        raise BadTopic(f"topic {topic[:120]!r}: unknown channel {rest[:40]!r}") from None
    return DeviceTopic(device_id, channel)
