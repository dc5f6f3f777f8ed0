"""What the call machinery needs of the broker link: a way to publish on the unit's channels.

The link (:class:`~vaka.agent.link.UnitLink`) is one; the composition hands it in, and routes
``signal/in`` and link-state changes to the call manager. So ``call/`` depends on no MQTT code.
"""

from typing import Protocol

from pydantic import BaseModel

from vaka.protocol.topics import Channel


class Publisher(Protocol):
    """Publishes messages on this unit's channels."""

    async def publish(self, channel: Channel, message: BaseModel) -> None:
        """Publish now; raises :class:`~vaka.errors.LinkError` when offline."""

    async def publish_reliably(self, channel: Channel, message: BaseModel) -> None:
        """Publish now, or keep the message and send it after the next connect."""
