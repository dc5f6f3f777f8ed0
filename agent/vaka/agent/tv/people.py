"""The TV's People screen: the citizen's contacts, one big target each; one press calls one.

The idle screen offers "People" (``[tv] people``). A press fetches the people the TV may call
from central (:class:`~vaka.agent.tv.people_list.PeopleList`: names and small pictures, signed,
kept only while shown) and shows them; the screen goes back to the idle screen by itself after
``[tv] people_idle_s`` without a press, or with Back. Pressing a person sends the citizen's
call request (:class:`~vaka.agent.call.request.CitizenRequest`, the same one the button to the
staff sends) naming that contact: the TV shows "Calling Anna …" while central rings the
contact's page; when the contact answers, their call is taken at once. When central says the
contact cannot answer (not there, declined, no answer, not allowed), or nobody answered within
``[tv] request_timeout_s``, a notice says "Anna is not available right now".

The TV controller asks :meth:`PeopleScreen.due` what to show when nothing more important is
going on and passes these buttons' presses to :meth:`PeopleScreen.press`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Protocol

from vaka.agent.call.request import CitizenRequest
from vaka.agent.config import TvSection
from vaka.agent.tv.people_list import PeopleList, Person
from vaka.agent.tv.trouble import Troubles
from vaka.agent.ui import ButtonId, PeopleShown
from vaka.agent.ui.states import PERSON_BUTTONS
from vaka.errors import LinkError

log = logging.getLogger(__name__)

#: the notice shown when one of the citizen's people cannot answer (a catalog key)
UNAVAILABLE = "unavailable"
#: central's word (an error's ``state``) for another citizen whose circle does not name this one
ONE_SIDED = "one_sided"


class Tv(Protocol):
    """What the People screen needs of the TV controller."""

    #: what keeps a call from being made, and the notices
    troubles: Troubles

    def refresh(self) -> None:
        """Show what is due now."""

    async def _wake_tv(self) -> None:
        """Switch the TV set on (HDMI-CEC), if the unit can."""


class PeopleScreen:
    """What the People screen shows, and what its buttons do."""

    #: the buttons :meth:`press` answers
    BUTTONS: frozenset[ButtonId] = frozenset(
        {ButtonId.PEOPLE, ButtonId.PEOPLE_BACK, *PERSON_BUTTONS}
    )

    def __init__(
        self,
        people: PeopleList,
        request: CitizenRequest,
        troubles: Troubles,
        refresh: Callable[[], None],
        wake: Callable[[], Awaitable[None]],
        idle_s: float,
        timeout_s: float,
    ) -> None:
        self.people = people
        self.request = request
        self.troubles = troubles
        self.refresh = refresh
        self.wake = wake
        self.idle_s = idle_s
        self.timeout_s = timeout_s
        #: the People screen as shown (``None``: not shown)
        self.shown: PeopleShown | None = None
        #: the person the citizen is calling (until that call ends)
        self.calling: Person | None = None
        self._listed: list[Person] = []
        self._screen_task: asyncio.Task[None] | None = None
        self._timer: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()

    @classmethod
    def of(
        cls, people: PeopleList | None, request: CitizenRequest, tv: Tv, settings: TvSection
    ) -> PeopleScreen | None:
        """The People screen of ``tv`` (the controller); ``None`` unless ``[tv] people``."""
        if people is None or not settings.people:
            return None
        return cls(
            people,
            request,
            tv.troubles,
            tv.refresh,
            tv._wake_tv,
            settings.people_idle_s,
            settings.request_timeout_s,
        )

    def due(self) -> PeopleShown | None:
        """The People screen, while it is up."""
        return self.shown

    def press(self, button: ButtonId) -> None:
        """A press on one of :attr:`BUTTONS`."""
        match button:
            case ButtonId.PEOPLE:
                self._on_screen(self._show())
            case ButtonId.PEOPLE_BACK:
                self._close()
            case _ if button in PERSON_BUTTONS:
                index = PERSON_BUTTONS.index(button)
                if self.shown is not None and index < len(self._listed):
                    person = self._listed[index]
                    self._close()
                    self._spawn(self.call(person))
        self.refresh()

    async def _show(self) -> None:
        """Fetch the people, show them until a press or the idle time, then the idle screen."""
        self.shown, self._listed = PeopleShown(None), []
        self.refresh()
        found = await self.people.fetch()
        if found is None:
            self.shown = PeopleShown(None, failed=True)
        else:
            self._listed = found
            self.shown = PeopleShown(tuple((p.name, p.picture) for p in found))
        self.refresh()
        await asyncio.sleep(self.idle_s)
        self.shown, self._listed = None, []
        self.refresh()

    async def call(self, person: Person) -> None:
        """Call ``person``: the request goes to central, which rings their page."""
        self.troubles.clear_notice()
        before, self.calling = self.calling, person  # named on the screen as soon as it opens
        try:
            request_id = self.request.open(person.contact)
        except LinkError:
            self.calling = before
            return  # a call or another request came first
        log.info("calling %s (%s): request %s", person.contact, person.name, request_id)
        await self.wake()
        try:
            await self.request.send(request_id)
        except LinkError as err:
            log.warning("the call to %s could not be sent: %s", person.contact, err)
            self.calling = None
            self.troubles.notice("no_connection")
            self.refresh()
            return
        self._timer = self._spawn(self._give_up_later(request_id))

    async def _give_up_later(self, request_id: str) -> None:
        await asyncio.sleep(self.timeout_s)
        if self.request.pending == request_id and self.calling is not None:
            self.troubles.notice(UNAVAILABLE, self.calling.name)
            with contextlib.suppress(LinkError):
                await self.request.cancel("nobody answered in time")

    def answered(self, kind: str, state: str | None = None) -> None:
        """Central's word on the call (``state``: it rings; anything else: the person cannot
        answer, or, for another citizen who has not added this one, cannot be called yet)."""
        if kind != "state" and self.calling is not None:
            key = ONE_SIDED if state == ONE_SIDED else UNAVAILABLE
            self.troubles.notice(key, self.calling.name)

    def settle(self, ended: bool) -> None:
        """The request is over (taken, withdrawn or refused); ``ended``: the call is over too."""
        timer, self._timer = self._timer, None
        if timer is not None and timer is not asyncio.current_task():
            timer.cancel()
        if ended:
            self.calling = None

    def _close(self) -> None:
        self.shown, self._listed = None, []
        task, self._screen_task = self._screen_task, None
        if task is not None and task is not asyncio.current_task():
            task.cancel()

    def _on_screen(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run ``coro`` as the one task that owns what this screen shows."""
        self._close()
        self._screen_task = self._spawn(coro)

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task: asyncio.Task[Any] = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def close(self) -> None:
        """Stop every timer (the agent is stopping)."""
        self._close()
        for task in list(self._tasks):
            task.cancel()
