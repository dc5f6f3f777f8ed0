"""``[privacy]``: whether calls need the consent record, and what a citizen's privacy mode
means for a night check it blocks (docs/privacy.md)."""

from typing import Literal

from pydantic import BaseModel, ConfigDict


class PrivacySettings(BaseModel):
    """``[privacy]`` in central's configuration."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: refuse night checks, video visits and break-glass calls without valid consent from the
    #: citizen and every cohabitant (:mod:`vaka.central.directory.consent`); only a development
    #: stack whose directories record no consent turns this off, and it says so
    require_consent: bool = True
    #: a night check that the citizen's privacy mode ("I have visitors", "I am away") blocks:
    #: ``physical_visit`` raises an alert so that someone goes out instead; ``skip`` lets it
    #: pass (refused and audited, nobody sent)
    privacy_mode_visit: Literal["physical_visit", "skip"] = "physical_visit"
