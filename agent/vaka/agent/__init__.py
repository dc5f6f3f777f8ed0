"""The device agent: one process per unit.

paho-mqtt imports dnspython's resolver whenever dnspython is installed (aioice needs it for
calls), only to offer SRV look-ups (``connect_srv``) that the agent never makes; the resolver
holds about 12 MB of RSS in every idle unit. paho is therefore imported once here, before any of
the agent's modules, with the resolver hidden, and the resolver is left importable for aioice.
"""

import sys

__version__ = "0.1.0"

if "paho.mqtt.client" not in sys.modules and "dns.resolver" not in sys.modules:
    sys.modules["dns.resolver"] = None  # type: ignore[assignment]  # makes its import fail
    try:
        import paho.mqtt.client  # noqa: F401
    finally:
        del sys.modules["dns.resolver"]
