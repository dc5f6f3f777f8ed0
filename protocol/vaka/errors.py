"""One error hierarchy for the whole project.

Every area has a base class; leaves also inherit the matching builtin so callers that only know
``ValueError`` or ``ConnectionError`` still catch them. Third-party errors are translated at the
adapter with ``raise ... from err``. Messages are written for a support person: they say what was
wrong and, where it helps, what to do.
"""


class VakaError(Exception):
    """Root of every error Vaka raises on purpose."""


class ProtocolError(VakaError):
    """A message on the wire was not what the protocol allows."""


class BadMessage(ProtocolError, ValueError):
    """A message was malformed, oversize, of the wrong type or failed its schema."""


class BadTopic(ProtocolError, ValueError):
    """A topic is not part of Vaka's topic tree."""


class ConfigError(VakaError, ValueError):
    """A configuration file or bundle was missing, unreadable or invalid."""


class LinkError(VakaError, ConnectionError):
    """The MQTT link to the broker failed."""


class ProvisioningError(VakaError):
    """Certificates, enrolment or signed bundles."""


class CertificateError(ProvisioningError, ValueError):
    """A certificate or signing request was refused."""


class RegistryError(VakaError):
    """The central fleet registry could not do what was asked."""


class CallError(VakaError):
    """Call tickets, sessions and media."""


class UpdateError(VakaError):
    """A system update could not be fetched or installed."""


class HardwareError(VakaError):
    """A hardware device could not do what was asked."""


class DeviceReleased(HardwareError, RuntimeError):
    """A device was used after it was released."""
