"""A STUN or TURN server as a unit's configuration names it (its local file or a signed bundle).

One model for both: a relay secret in a configuration would live as long as the configuration
and open the relay to whoever reads it off the unit, so central puts a credential that ends with
the call in each call ticket instead (docs/networks.md), and a ``credential`` here is refused with
that reason. A ``username`` alone is allowed.
"""

from typing import Annotated, Self

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

STATIC_CREDENTIAL_REFUSED = (
    "a TURN server in the unit's configuration must not carry a credential: "
    "central hands out per-call credentials"
)
"""Why a configured ICE server with a ``credential`` is refused."""

#: The URL schemes the unit's WebRTC stack uses. ``stuns:`` is not among them: aiortc parses it
#: and then ignores the server, which would fail silently in the field.
SCHEMES = ("stun:", "turn:", "turns:")


class IceServer(BaseModel):
    """One STUN or TURN server (as ``RTCIceServer``), with no credential."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    urls: list[Annotated[str, Field(min_length=6, max_length=256)]] = Field(
        min_length=1, max_length=8
    )
    username: Annotated[str, Field(max_length=256)] | None = None
    # Present only to be refused with a reason (not as an unknown key); out of ``repr`` so a
    # refused secret never reaches a log.
    credential: Annotated[str, Field(max_length=256)] | None = Field(default=None, repr=False)

    @field_validator("urls")
    @classmethod
    def _known_schemes(cls, urls: list[str]) -> list[str]:
        for url in urls:
            if not url.startswith(SCHEMES):
                raise ValueError(f"{url!r} is not a stun:, turn: or turns: URL")
        return urls

    @model_validator(mode="after")
    def _no_static_credential(self) -> Self:
        if self.credential is not None:
            raise ValueError(STATIC_CREDENTIAL_REFUSED)
        return self
