"""Per-call relay credentials: central's side of the TURN REST scheme.

For each call central derives two credentials from coturn's shared secret
(:mod:`vaka.provisioning.turn`), one for the unit and one for the caller, both ending when the
call's ticket does. The unit's goes inside the signed ticket (:class:`RelayClaim`); the caller's
goes back on the call WebSocket before the caller makes its offer (aiortc has no trickle ICE, so
the offer must already hold the relay candidates). The user names are
``<expiry>:<call id>-unit`` and ``<expiry>:<call id>-caller``: coturn's log then says which party
of which call allocated. Nobody else gets one, and a credential that leaks is refused once the
ticket has expired.

The secret file is read for every call (a few bytes, off the event loop), so appending a new
secret during a rotation takes effect without restarting central.
"""

import asyncio
import logging
import math
from typing import Literal

from vaka.central.settings.config import TurnSection
from vaka.errors import ConfigError
from vaka.provisioning.tickets import RelayClaim
from vaka.provisioning.turn import RelayEndpoint, TurnCredential, read_secret, turn_credential

log = logging.getLogger(__name__)

Party = Literal["unit", "caller"]


class RelayCredentials:
    """Mints the relay credentials of calls; ``settings`` ``None``: no relay, nothing minted."""

    def __init__(self, settings: TurnSection | None) -> None:
        self.settings = settings
        self.endpoint = (
            None
            if settings is None
            else RelayEndpoint(settings.host, settings.port, settings.tls_port)
        )

    @property
    def enabled(self) -> bool:
        """Whether central hands out relay credentials."""
        return self.settings is not None

    async def mint(
        self, call_id: str, party: Party, expires_at: int, now: float
    ) -> TurnCredential | None:
        """``party``'s credential for ``call_id``, valid until ``expires_at`` (unix seconds).

        ``None`` without ``[turn]``, and (logged) when the secret file cannot be read: the call
        may still connect directly, which beats refusing a night check outright.
        """
        if self.settings is None or self.endpoint is None:
            return None
        try:
            secret = await asyncio.to_thread(read_secret, self.settings.secret_file)
        except ConfigError as err:
            log.error("call %s: no relay credential for the %s: %s", call_id, party, err)
            return None
        # Whole seconds on both sides, so the expiry is exactly the ticket's.
        lifetime = max(expires_at - math.floor(now), 1)
        return turn_credential(
            secret, f"{call_id}-{party}", lifetime, self.endpoint, now=expires_at - lifetime
        )


def ice_servers(credential: TurnCredential | None) -> list[dict[str, str]]:
    """The caller's ICE servers as a browser's ``RTCPeerConnection`` takes them (``[]``: none)."""
    if credential is None:
        return []
    return [entry.as_dict() for entry in credential.ice_servers()]


def relay_claim(credential: TurnCredential | None) -> RelayClaim | None:
    """The unit's credential as the ticket carries it."""
    if credential is None:
        return None
    return RelayClaim(
        urls=tuple(entry.urls for entry in credential.ice_servers()),
        username=credential.username,
        credential=credential.password,
    )
