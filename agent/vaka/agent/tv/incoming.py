"""A call ringing on the TV: who calls (a contact with their picture), the auto-answer countdown,
and the citizen's decision (Answer, Decline, Not now, Not this evening).

The TV controller (:mod:`vaka.agent.tv.controller`) hands the call manager's ``admit`` to
:meth:`IncomingCall.admit`, shows :attr:`IncomingCall.shown` while it rings and passes the
citizen's presses to :meth:`IncomingCall.decide` and :meth:`IncomingCall.stop_countdown`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Protocol

from vaka.agent.call.state import UnitCall
from vaka.agent.tv.autoanswer import auto_answer_countdown
from vaka.agent.tv.quiet import CONTACT_CALL, DO_NOT_DISTURB, DoNotDisturb
from vaka.agent.ui import Incoming
from vaka.provisioning.bundles import AutoAnswerRule
from vaka.provisioning.tickets import TicketClaims

if TYPE_CHECKING:
    from vaka.agent.tv.caller_pictures import CallerPictures

log = logging.getLogger(__name__)


class Tv(Protocol):
    """What a ringing call needs of the TV controller."""

    call: UnitCall
    #: the citizen's "do not disturb for the evening"
    quiet: DoNotDisturb
    #: unix time now (a test freezes it)
    clock: Callable[[], float]

    def refresh(self) -> None:
        """Show what is due now."""

    async def _wake_tv(self) -> None:
        """Switch the TV set on (HDMI-CEC), if the unit can."""


class IncomingCall:
    """The ringing call's screen and the citizen's answer to it (one call rings at a time)."""

    def __init__(
        self,
        call: UnitCall,
        quiet: DoNotDisturb,
        auto_answer: Callable[[], Sequence[AutoAnswerRule]],
        pictures: CallerPictures | None,
        clock: Callable[[], float],
        wake: Callable[[], Awaitable[None]],
        refresh: Callable[[], None],
    ) -> None:
        self.call = call
        self.quiet = quiet
        self.auto_answer = auto_answer
        self.pictures = pictures
        self.clock = clock
        self.wake = wake
        self.refresh = refresh
        #: what the ringing screen shows (``None``: nothing rings)
        self.shown: Incoming | None = None
        self._answer: asyncio.Future[str | None] | None = None
        self._countdown: asyncio.Task[None] | None = None
        if pictures is not None:
            pictures.on_picture = self.picture_came

    @classmethod
    def of(
        cls,
        tv: Tv,
        auto_answer: Callable[[], Sequence[AutoAnswerRule]],
        pictures: CallerPictures | None,
    ) -> IncomingCall:
        """The ringing calls of ``tv`` (the controller)."""
        clock = lambda: tv.clock()  # noqa: E731 - a test replaces the controller's clock
        return cls(tv.call, tv.quiet, auto_answer, pictures, clock, tv._wake_tv, tv.refresh)

    async def admit(self, claims: TicketClaims) -> str | None:
        """Ring: wake the TV, show who calls; answered by the citizen, by the auto-answer
        countdown, or declined (the reason)."""
        if self.quiet.refuses(claims.purpose, self.clock()):
            log.info("%s call from %s refused: do not disturb", claims.purpose, claims.name)
            return DO_NOT_DISTURB
        loop = asyncio.get_running_loop()
        self._answer = loop.create_future()
        countdown = auto_answer_countdown(self.auto_answer(), claims)
        contact = claims.purpose == CONTACT_CALL
        picture = self.pictures.get(claims.cid) if self.pictures and contact else None
        self.shown = Incoming(claims.name, claims.role, countdown, contact, picture)
        log.info(
            "incoming %s call from %s (%s)%s",
            claims.purpose,
            claims.name,
            claims.role,
            "" if countdown is None else f", answering by itself in {countdown} s",
        )
        await self.wake()
        self.refresh()
        if countdown is not None:
            self._countdown = loop.create_task(self._count_down(countdown))
        try:
            return await self._answer
        finally:
            self.stop_countdown()
            self.shown = None
            self._answer = None
            self.refresh()

    def picture_came(self, call_id: str) -> None:
        """A contact's picture came after their call began ringing: show it now."""
        if self.shown is not None and self.pictures and call_id == self.call.call_id:
            self.shown = replace(self.shown, picture=self.pictures.get(call_id))
            self.refresh()

    async def _count_down(self, seconds: int) -> None:
        for left in range(seconds, 0, -1):
            if self.shown is not None and self.shown.countdown_s != left:
                self.shown = replace(self.shown, countdown_s=left)
                self.refresh()
            await asyncio.sleep(1.0)
        log.info("auto-answer: countdown ended")
        self.decide(None)

    def stop_countdown(self) -> None:
        """The citizen pressed "Not now" (or the call stopped ringing): no auto-answer."""
        if self._countdown is not None:
            self._countdown.cancel()
            self._countdown = None
            if self.shown is not None and self.shown.countdown_s is not None:
                self.shown = replace(self.shown, countdown_s=None)
                self.refresh()

    def decide(self, decision: str | None) -> None:
        """The citizen's answer: ``None`` takes the call, a reason declines it."""
        if self._answer is not None and not self._answer.done():
            self._answer.set_result(decision)
