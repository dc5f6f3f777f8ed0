"""The unit's identity: its key and certificate on the credentials partition, or enrolment.

Kept apart from :mod:`vaka.agent.enrol`, which draws the enrolment code on the TV (NumPy, Pillow,
the QR encoder): an enrolled unit starts without loading any of that.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from vaka.agent.config import CERT_FILE, KEY_FILE, AgentConfig
from vaka.errors import ConfigError
from vaka.provisioning import pki

if TYPE_CHECKING:
    from vaka.agent.ui import Screen


async def resolve_identity(config: AgentConfig, *, screen: Screen | None = None) -> AgentConfig:
    """The configuration with the unit's identity filled in, enrolling first if it has none
    (showing the code on ``screen`` if given, see :class:`Enroller`)."""
    if config.broker.cert is not None:
        return config
    directory = config.storage.credentials_dir
    assert directory is not None  # parse_config guarantees it
    cert, key = directory / CERT_FILE, directory / KEY_FILE
    if cert.exists() and key.exists():
        unit_id = pki.common_name(pki.load_cert(cert))
    else:
        from vaka.agent.enrol import Enroller  # only a unit without an identity needs it

        unit_id, cert, key = await Enroller(config, screen).run()
    if config.unit.id is not None and config.unit.id != unit_id:
        raise ConfigError(
            f"the certificate is for {unit_id}, the configuration says {config.unit.id}"
        )
    return config.model_copy(
        update={
            "unit": config.unit.model_copy(update={"id": unit_id}),
            "broker": config.broker.model_copy(update={"cert": cert, "key": key}),
        }
    )
