"""The unit's MQTT session to the broker: TLS, birth/will, reconnect, routing."""

from vaka.agent.link.session import LinkSettings, LinkState, UnitLink

__all__ = ["LinkSettings", "LinkState", "UnitLink"]
