"""The unit's MQTT session to the broker: TLS, birth/will, reconnect, routing."""

from vaka.agent.link.session import UnitLink
from vaka.agent.link.settings import LinkSettings, LinkState

__all__ = ["LinkSettings", "LinkState", "UnitLink"]
