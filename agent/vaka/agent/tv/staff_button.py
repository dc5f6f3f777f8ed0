"""The citizen's one button: call the night staff.

A press opens the request (the unit is ``requesting`` at once, so the screen shows the call and
a second press does nothing), wakes the TV and sends it. The unit gives up by itself after
``[tv] request_timeout_s`` (central normally answers sooner); when central says nobody can
answer, or the unit gives up, a notice stays on the screen for a while.
"""

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from vaka.agent.call.request import CitizenRequest
from vaka.agent.tv.trouble import Troubles
from vaka.errors import LinkError

log = logging.getLogger(__name__)


class StaffButton:
    """Sends, withdraws and gives up on the citizen's call request."""

    def __init__(
        self,
        request: CitizenRequest,
        troubles: Troubles,
        timeout_s: float,
        wake: Callable[[], Awaitable[None]],
        refresh: Callable[[], None],
    ) -> None:
        self.request = request
        self.troubles = troubles
        self.timeout_s = timeout_s
        self.wake = wake
        self.refresh = refresh
        self._timer: asyncio.Task[None] | None = None

    async def press(self) -> None:
        """The citizen pressed the button (the TV is not busy)."""
        if self.troubles.current() == "no_connection":
            self.refresh()
            return
        self.troubles.clear_notice()
        try:
            request_id = self.request.open()
        except LinkError:
            return  # a call or another request came first
        await self.wake()
        try:
            await self.request.send(request_id)
        except LinkError as err:
            log.warning("citizen call could not be sent: %s", err)
            self.troubles.notice("no_connection")
            self.refresh()
            return
        self.settle()
        self._timer = asyncio.get_running_loop().create_task(self._give_up_later())

    async def _give_up_later(self) -> None:
        await asyncio.sleep(self.timeout_s)
        if self.request.pending is not None:
            await self.cancel("nobody answered in time", notice="no_answer")

    async def cancel(self, reason: str, notice: str | None = None) -> None:
        """Withdraw the open request; ``notice`` stays on the screen afterwards."""
        if self.request.pending is None:
            return
        if notice is not None:
            self.troubles.notice(notice)
        with contextlib.suppress(LinkError):
            await self.request.cancel(reason)

    def answered(self, kind: str, state: str | None) -> None:
        """Central's word on the request (the unit goes back to idle after an ``error`` or a
        ``hangup``): say that nobody can answer."""
        if kind != "state":
            self.troubles.notice("no_staff" if state in ("no_staff", "unanswered") else "no_answer")

    def settle(self) -> None:
        """The request is over (taken, withdrawn or refused): stop waiting for it."""
        timer, self._timer = self._timer, None
        if timer is not None and timer is not asyncio.current_task():
            timer.cancel()

    def close(self) -> None:
        """Stop waiting (the agent is stopping)."""
        self.settle()
