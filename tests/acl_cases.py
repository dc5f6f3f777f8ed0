"""The broker's access rules as one table, checked against every broker configuration we write.

Each case says who (certificate CN, and the listener it connects to) does what and whether it
gets through. A publish gets through when a subscriber of the whole tree (central) receives it; a
subscription gets through when a message that central then publishes on ``message_topic``
reaches the subscriber. Outcomes are stated as deliveries, not as the broker's answers, because
brokers answer differently: Mosquitto grants a subscription to another unit's topics and then
delivers nothing, EMQX refuses it. Both keep the guarantee; the table checks the guarantee.

``tests/test_broker_acl.py`` runs the table against a real Mosquitto written by
:mod:`vaka.central.broker.broker`; ``tests/test_emqx_config.py`` evaluates it on the rules
:mod:`vaka.central.broker.emqx` writes (EMQX does not run here).
"""

from dataclasses import dataclass
from typing import Literal

from vaka.protocol.topics import UNIT_READS, UNIT_WRITES, Channel

Listener = Literal["main", "enrol"]
Action = Literal["publish", "subscribe"]

#: central's identities in the configurations under test; central-1 observes and publishes
CENTRALS = ("central-1", "central-2")
CODE = "CCCCCCCCCC"
OTHER_CODE = "DDDDDDDDDD"


@dataclass(frozen=True)
class AclCase:
    """One row: ``who`` on ``listener`` publishes ``topic`` or subscribes to it."""

    who: str
    listener: Listener
    action: Action
    #: the topic published, or the filter subscribed to
    topic: str
    #: whether the message gets through
    allowed: bool
    why: str
    #: for a subscription: the topic central publishes on (default: ``topic`` itself)
    message_topic: str | None = None

    @property
    def delivered_topic(self) -> str:
        """The topic of the message whose delivery decides the case."""
        return self.topic if self.message_topic is None else self.message_topic

    def __str__(self) -> str:
        verb = "publishes" if self.action == "publish" else "subscribes to"
        via = "" if self.message_topic is None else f" (message on {self.message_topic})"
        outcome = "allowed" if self.allowed else "refused"
        return (
            f"{self.who}@{self.listener} {verb} {self.topic}{via}: should be {outcome} ({self.why})"
        )


def _dev(unit: str, channel: Channel | str) -> str:
    value = channel.value if isinstance(channel, Channel) else channel
    return f"vaka/v1/dev/{unit}/{value}"


def _unit_own_channels() -> list[AclCase]:
    cases = []
    for channel in sorted(UNIT_WRITES):
        cases += [
            AclCase("u-a", "main", "publish", _dev("u-a", channel), True, "a unit writes its own"),
            AclCase("u-a", "main", "subscribe", _dev("u-a", channel), False, "not its to read"),
        ]
    for channel in sorted(UNIT_READS):
        cases += [
            AclCase("u-a", "main", "subscribe", _dev("u-a", channel), True, "a unit reads its own"),
            AclCase("u-a", "main", "publish", _dev("u-a", channel), False, "only central writes"),
        ]
    return cases


CASES: tuple[AclCase, ...] = (
    # A unit and another unit's subtree.
    AclCase("u-a", "main", "publish", _dev("u-b", "health"), False, "forged health"),
    AclCase("u-a", "main", "publish", _dev("u-b", "state"), False, "forged presence"),
    AclCase("u-a", "main", "publish", _dev("u-b", "signal/out"), False, "forged answer"),
    AclCase("u-a", "main", "subscribe", _dev("u-b", "signal/in"), False, "another's calls"),
    AclCase(
        "u-a",
        "main",
        "subscribe",
        _dev("+", "signal/in"),
        False,
        "everyone's calls",
        message_topic=_dev("u-b", "signal/in"),
    ),
    AclCase(
        "u-a",
        "main",
        "subscribe",
        "vaka/v1/#",
        False,
        "the whole tree",
        message_topic=_dev("u-b", "config"),
    ),
    AclCase("u-b", "main", "subscribe", _dev("u-b", "signal/in"), True, "its own calls"),
    # A unit and its own subtree, channel by channel.
    *_unit_own_channels(),
    # A unit outside its subtree.
    AclCase("u-a", "main", "publish", f"vaka/v1/enrol/{CODE}/csr", False, "enrolment listener's"),
    AclCase("u-a", "main", "publish", f"vaka/v1/enrol/{CODE}/cert", False, "central's answer"),
    # Central: the whole tree, shared or not.
    AclCase("central-2", "main", "publish", _dev("u-a", "signal/in"), True, "a call"),
    AclCase("central-2", "main", "publish", _dev("u-a", "config"), True, "a config"),
    AclCase("central-2", "main", "publish", f"vaka/v1/enrol/{CODE}/cert", True, "an answer"),
    AclCase(
        "central-2",
        "main",
        "subscribe",
        "$share/central/" + _dev("+", "health"),
        True,
        "health, shared",
        message_topic=_dev("u-a", "health"),
    ),
    AclCase(
        "central-2",
        "main",
        "subscribe",
        _dev("+", "signal/out"),
        True,
        "answers",
        message_topic=_dev("u-a", "signal/out"),
    ),
    AclCase(
        "central-2",
        "main",
        "subscribe",
        "vaka/v1/enrol/+/csr",
        True,
        "signing requests",
        message_topic=f"vaka/v1/enrol/{CODE}/csr",
    ),
    # Central's health connection: health (shared) in, nothing else.
    AclCase(
        "central-2-health",
        "main",
        "subscribe",
        "$share/central/" + _dev("+", "health"),
        True,
        "health, shared",
        message_topic=_dev("u-a", "health"),
    ),
    AclCase(
        "central-2-health",
        "main",
        "subscribe",
        _dev("+", "events"),
        False,
        "events are the main connection's",
        message_topic=_dev("u-a", "events"),
    ),
    AclCase("central-2-health", "main", "publish", _dev("u-a", "signal/in"), False, "no calls"),
    # A claim identity on the enrolment listener: signing requests out, certificates in.
    AclCase("claim", "enrol", "publish", f"vaka/v1/enrol/{CODE}/csr", True, "a signing request"),
    AclCase("claim", "enrol", "publish", f"vaka/v1/enrol/{CODE}/cert", False, "self-answer"),
    AclCase("claim", "enrol", "publish", _dev("u-victim", "health"), False, "forged health"),
    AclCase("claim", "enrol", "publish", _dev("u-victim", "state"), False, "forged presence"),
    AclCase("claim", "enrol", "subscribe", f"vaka/v1/enrol/{CODE}/cert", True, "its certificate"),
    AclCase(
        "claim",
        "enrol",
        "subscribe",
        "vaka/v1/enrol/+/csr",
        False,
        "others' requests",
        message_topic=f"vaka/v1/enrol/{OTHER_CODE}/csr",
    ),
    AclCase(
        "claim",
        "enrol",
        "subscribe",
        _dev("+", "signal/in"),
        False,
        "units' calls",
        message_topic=_dev("u-a", "signal/in"),
    ),
    AclCase(
        "claim",
        "enrol",
        "subscribe",
        "vaka/v1/#",
        False,
        "the whole tree",
        message_topic=_dev("u-a", "config"),
    ),
)


def read_barrier(who: str) -> str:
    """A topic ``who`` may read and no case delivers on: the run waits for a message on it
    to know that every earlier delivery to ``who`` has happened."""
    if who.startswith("claim"):
        return "vaka/v1/enrol/BBBBBBBBBB/cert"
    if who.startswith("central"):
        return _dev("u-barrier", "health")
    return _dev(who, "receipt")
