"""The unit's own checks of a call offer, before anything moves.

A compromised broker or central alone cannot turn the camera on: the ticket must be signed by
central's pinned key, name this unit and this call, be fresh, unused, inside its window, for a
purpose this unit's profile allows, and name the DTLS fingerprint the offer actually carries.
The offer must carry the data channel on which the viewer proves its presence
(:mod:`vaka.rtc.presence`).

Nonces are remembered in memory only, so a ticket issued before this agent started is refused
outright: a restart must not make a captured ticket usable again. "Before" is measured on the
monotonic clock since the start and put into today's wall clock at each check, so that a clock
stepped by NTP after boot (a board without a real-time clock starts in the past) cannot move it.
"""

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from joserfc.jwk import OKPKey

from vaka.errors import BadMessage, CallError
from vaka.protocol.sdp import check_sdp, preferred_fingerprint
from vaka.provisioning.tickets import BadTicket, TicketClaims, verify_ticket
from vaka.rtc.presence import offers_presence

#: What each profile may be called for.
PROFILE_PURPOSES = {
    "nightcam": frozenset({"night_check", "break_glass"}),
    # a contact of the citizen reaches the TV only, never a night camera
    "tv": frozenset({"video_visit", "citizen_call", "break_glass", "contact_call"}),
}


class OfferRefused(CallError, PermissionError):
    """The unit refused an offer; the message is the reason sent back and audited."""


@dataclass
class NonceCache:
    """Ticket nonces already used, kept in memory until the ticket would have expired anyway.

    After a restart the cache is empty; :class:`OfferGuard` then refuses every ticket issued
    before the start, and a replayed ticket would fail anyway, because the caller's DTLS key,
    which the ticket names, is not the replayer's.
    """

    _seen: dict[str, float] = field(default_factory=dict)

    def use(self, nonce: str, expires_at: float, now: float) -> bool:
        """Record ``nonce``; ``False`` if it was already used."""
        for old in [n for n, exp in self._seen.items() if exp < now]:
            del self._seen[old]
        if nonce in self._seen:
            return False
        self._seen[nonce] = expires_at
        return True


class OfferGuard:
    """Checks offers for one unit."""

    def __init__(
        self,
        device_id: str,
        profile: str,
        ticket_key: OKPKey,
        max_duration_s: int,
        blocked: Callable[[str], str | None] | None = None,
    ):
        self.device_id = device_id
        #: why the unit takes no call of a purpose now (the citizen's privacy mode), if anything
        self.blocked = blocked
        self.purposes = PROFILE_PURPOSES[profile]
        self.profile = profile
        self.ticket_key = ticket_key
        self.max_duration_s = max_duration_s
        self.nonces = NonceCache()
        self._started_mono = time.monotonic()

    def started_at(self) -> float:
        """When this guard (the agent) started, in the wall clock's current reckoning."""
        return time.time() - (time.monotonic() - self._started_mono)

    def check(self, call_id: str, ticket: str | None, sdp: str | None) -> TicketClaims:
        """Return the ticket's claims, or raise :class:`OfferRefused` with the reason."""
        now = time.time()
        try:
            offer = check_sdp(sdp)
        except BadMessage as err:
            raise OfferRefused(f"bad offer: {err}") from None
        if not offers_presence(offer):
            raise OfferRefused("bad offer: no data channel for the viewer's heartbeat")
        claims = self._ticket_claims(ticket, call_id, now)
        try:
            offered = preferred_fingerprint(offer)
        except BadMessage as err:
            raise OfferRefused(f"bad offer: {err}") from None
        if offered != claims.fp:
            raise OfferRefused("DTLS fingerprint in the offer does not match the ticket")
        # ``iat`` is whole seconds, so a ticket of the very second the agent started passes:
        # to replay one, a unit would have to use it, stop and start again within that second.
        started = math.floor(self.started_at())
        if claims.iat < started:
            raise OfferRefused(
                f"ticket issued {started - claims.iat} s before this unit's agent started "
                "(a ticket is good for one agent run only)"
            )
        if not self.nonces.use(claims.jti, claims.exp + 60, now):
            raise OfferRefused("ticket already used (replayed nonce)")
        why = self.blocked(claims.purpose) if self.blocked is not None else None
        if why is not None:
            raise OfferRefused(why)
        return claims

    def _ticket_claims(self, ticket: str | None, call_id: str, now: float) -> TicketClaims:
        """The claims of a ticket central signed for this unit and ``call_id``, for a purpose
        this profile allows; :class:`OfferRefused` if not."""
        try:
            claims = verify_ticket(ticket, self.ticket_key, self.device_id, now)
        except BadTicket as err:
            raise OfferRefused(str(err)) from None
        if claims.cid != call_id:
            raise OfferRefused("ticket is for another call")
        if claims.purpose not in self.purposes:
            raise OfferRefused(f"{claims.purpose} calls are not allowed on a {self.profile} unit")
        return claims

    def check_call_request(self, call_id: str, ticket: str | None) -> TicketClaims:
        """The claims of central's ticket asking this unit to place a call (to another TV):
        signed, for this unit and call, fresh, unused, naming the citizen's request, for a
        purpose the profile allows. It names no peer fingerprint and opens no camera: the
        answer comes with a ticket of its own (:meth:`check`). :class:`OfferRefused` if not."""
        now = time.time()
        claims = self._ticket_claims(ticket, call_id, now)
        if claims.req is None:
            raise OfferRefused("ticket names no call request of the citizen")
        if claims.iat < math.floor(self.started_at()):
            raise OfferRefused("ticket issued before this unit's agent started")
        if not self.nonces.use(claims.jti, claims.exp + 60, now):
            raise OfferRefused("ticket already used (replayed nonce)")
        return claims

    def duration_limit(self, claims: TicketClaims) -> float:
        """How long this call may last: the ticket's limit, capped by the unit's own."""
        return float(min(claims.maxd, self.max_duration_s))
