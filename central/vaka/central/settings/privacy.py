"""``[privacy]``: whether calls need the consent record (docs/privacy.md)."""

from pydantic import BaseModel, ConfigDict


class PrivacySettings(BaseModel):
    """``[privacy]`` in central's configuration."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: refuse night checks, video visits and break-glass calls without valid consent from the
    #: citizen and every cohabitant (:mod:`vaka.central.directory.consent`); only a development
    #: stack whose directories record no consent turns this off, and it says so
    require_consent: bool = True
