"""One guarded entry for a message that arrives on a unit's topic, on either side.

:func:`read_unit_message` parses the topic, checks its channel, checks the payload is bytes and
decodes it (size and nesting limits first, :mod:`vaka.protocol.guard`). Whatever is wrong — a
protocol error or, as a last line, a bug anywhere below — is counted in ``refusals`` with its
reason and ``None`` is returned, so a receive loop never stops on one message.
:func:`read_unit_report` does the same for central's ingest, with health and state decoded on
the fast path (:mod:`vaka.protocol.hot`).
"""

from collections.abc import Callable, Collection
from typing import Any, TypeVar

from vaka.errors import ProtocolError
from vaka.protocol.hot import Report, decode_report
from vaka.protocol.messages import AnyMessage, decode
from vaka.protocol.refusals import Refusals
from vaka.protocol.topics import Channel, DeviceTopic, parse_device_topic

T = TypeVar("T")


def read_unit_message(
    topic: str, payload: Any, channels: Collection[Channel], refusals: Refusals
) -> tuple[DeviceTopic, AnyMessage] | None:
    """The topic and the decoded message, or ``None`` after counting the refusal."""
    return _read(topic, payload, channels, refusals, decode)


def read_unit_report(
    topic: str, payload: Any, channels: Collection[Channel], refusals: Refusals
) -> tuple[DeviceTopic, Report] | None:
    """As :func:`read_unit_message`, health and state as msgspec structs."""
    return _read(topic, payload, channels, refusals, decode_report)


def _read(
    topic: str,
    payload: Any,
    channels: Collection[Channel],
    refusals: Refusals,
    decoder: Callable[[bytes | bytearray, Channel], T],
) -> tuple[DeviceTopic, T] | None:
    source = topic[:120]
    try:
        where = parse_device_topic(topic)
        if where.channel not in channels:
            raise ProtocolError(f"{where.channel.value!r} is not read here")
        if not isinstance(payload, bytes | bytearray):
            raise ProtocolError("payload is not bytes")
        return where, decoder(payload, where.channel)
    except ProtocolError as err:
        refusals.refuse(type(err).__name__, str(err), source)
    except Exception as err:  # the decoder is guarded; this is the last line for a bug
        refusals.refuse("unexpected", f"{type(err).__name__}: {err}"[:200], source)
    return None
