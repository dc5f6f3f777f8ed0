"""What a unit profile adds to a call: ringing before answering, media besides the camera, and
what it shows of the call. The night camera needs none of it (:class:`CallObserver` itself does
nothing); the TV unit's controller overrides the parts it needs."""

from __future__ import annotations

from typing import TYPE_CHECKING

from vaka.provisioning.tickets import TicketClaims

if TYPE_CHECKING:
    from aiortc import MediaStreamTrack

    from vaka.agent.call.session import CallSession


class CallObserver:
    """Hooks :class:`~vaka.agent.call.manager.CallManager` calls; each does nothing by default."""

    #: Whether :meth:`admit` rings first (then the unit tells central ``ringing`` at once).
    rings = False

    async def admit(self, claims: TicketClaims) -> str | None:
        """Decide whether to take a verified call: ``None`` takes it, a text declines it (the
        reason sent back; one that starts with "declined" is the citizen's decline). May take
        long (ringing); cancelled if the caller hangs up first or the ringing deadline passes."""
        return None

    def extra_tracks(self, claims: TicketClaims, offered: frozenset[str]) -> list[MediaStreamTrack]:
        """Tracks to send besides the camera, for the media kinds the offer has (``audio``)."""
        return []

    def remote_track(self, session: CallSession, track: MediaStreamTrack) -> None:
        """The caller's audio or video arrived."""

    def call_connected(self, session: CallSession) -> None:
        """The call reached media (DTLS up, the viewer answered, the first frame went out); the
        shutter opens next."""

    def call_ended(self, session: CallSession) -> None:
        """The call ended, for whatever reason (the shutter is closed)."""

    def request_update(
        self, request_id: str, kind: str, state: str | None, reason: str | None
    ) -> None:
        """Central's word on the citizen's call request (``state``: ``ringing``; ``error``:
        ``no_staff``, ``unanswered``, ...)."""
