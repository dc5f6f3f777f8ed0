"""Telling a unit something on its ``signal/in`` from a desk that must go on when the unit is
away: a link error is logged, never raised."""

import logging

from vaka.central.broker.mqtt import PublishToUnit
from vaka.errors import LinkError
from vaka.protocol.messages import SignalMessage, SignalPayload
from vaka.protocol.topics import Channel

log = logging.getLogger(__name__)


async def tell_unit(publish: PublishToUnit, unit: str, payload: SignalPayload) -> None:
    """Publish ``payload`` to ``unit``'s ``signal/in``; a unit out of reach is only logged."""
    try:
        await publish(unit, Channel.SIGNAL_IN, SignalMessage(payload=payload))
    except LinkError as err:
        log.warning("cannot tell unit %s about %s: %s", unit, payload.call_id, err)
