"""The ``tv`` unit: the citizen's TV with a camera, for video visits and the night-staff button.

Besides what every unit has (:mod:`~vaka.agent.profiles.common`): the inbox of staff messages
and reminders, and — with ``[calls]`` — the TV controller (the screen, ringing, the citizen's
button, two-way media) as the call manager's observer, the TV set woken and put to standby over
HDMI-CEC, and its power watched.
"""

from collections.abc import Awaitable, Callable

from vaka.agent.call.manager import CallManager
from vaka.agent.call.request import CitizenRequest
from vaka.agent.call.signals import CallSignals
from vaka.agent.config import AgentConfig
from vaka.agent.config_store import ConfigStore
from vaka.agent.config_updates import BundleUse
from vaka.agent.hw.hardware import Hardware
from vaka.agent.messages import MessageInbox, event_reporter, log_hide, log_show
from vaka.agent.profiles.backends import media_settings, screen_mode
from vaka.agent.profiles.common import (
    Common,
    Unit,
    attach_calls,
    build_common,
    call_deadlines,
    call_guard,
    common_parts,
    use_bundles,
)
from vaka.agent.runner import Part
from vaka.agent.tv.caller_pictures import CallerPictures
from vaka.agent.tv.controller import TvController
from vaka.agent.tv.people_list import PeopleList
from vaka.agent.tv.shown_message import MessageBoard
from vaka.agent.tv.staff_hours import StaffHours
from vaka.agent.tv.viewing_log import ViewingLogClient
from vaka.protocol.messages import AnyMessage, MessageMessage
from vaka.protocol.topics import Channel
from vaka.provisioning.bundles import AutoAnswerRule
from vaka.provisioning.caller_picture import is_caller_picture
from vaka.provisioning.people import is_people
from vaka.provisioning.viewing_log import is_viewing_log


def _auto_answer(store: ConfigStore) -> list[AutoAnswerRule]:
    bundle = store.active
    return list(bundle.auto_answer) if bundle is not None else []


def _inbox(
    common: Common, board: MessageBoard | None
) -> tuple[MessageInbox, ViewingLogClient, CallerPictures, PeopleList]:
    """The message inbox, shown on ``board`` (only logged without a screen), the viewing log's
    client, the callers' pictures and the People list: central's viewing logs, the pictures of
    contacts who call and the citizen's people come on the same channel as the staff's
    messages."""
    link = common.link
    report = event_reporter(link.publish_reliably)
    key, device_id = common.config_store.key, common.device_id
    show, hide = (log_show, log_hide) if board is None else (board.show, board.hide)
    inbox = MessageInbox(device_id, key, report, show, hide, refusals=link.refusals)
    viewing_log = ViewingLogClient(link, device_id, key)
    pictures = CallerPictures(device_id, key, link.refusals)
    people = PeopleList(link, device_id, key)

    async def route(message: AnyMessage) -> None:
        if isinstance(message, MessageMessage) and is_viewing_log(message.payload.token):
            viewing_log.handle(message.payload.token)
        elif isinstance(message, MessageMessage) and is_caller_picture(message.payload.token):
            pictures.handle(message.payload.token)
        elif isinstance(message, MessageMessage) and is_people(message.payload.token):
            people.handle(message.payload.token)
        else:
            await inbox.handle(message)

    link.on(Channel.MESSAGE, route)
    return inbox, viewing_log, pictures, people


def compose_tv(config: AgentConfig, hardware: Hardware) -> Unit:
    """Build a TV unit's parts; nothing runs until the runner starts them."""
    media = media_settings(config)
    common = build_common(config, hardware)
    guard = call_guard(config, common.device_id, common.privacy)
    calls = tv = None
    board = MessageBoard() if guard is not None else None
    inbox, viewing_log, pictures, people = _inbox(common, board)
    if guard is not None and board is not None:
        signals = CallSignals(common.link)
        request = CitizenRequest(common.device_id, common.call, signals)
        store = common.config_store
        tv = TvController(
            settings=config.tv,
            screen_mode=screen_mode(config),
            media=media,
            link=common.link,
            hardware=hardware,
            call=common.call,
            request=request,
            board=board,
            acknowledge=inbox.acknowledge,
            auto_answer=lambda: _auto_answer(store),
            staff_hours=lambda: StaffHours.of(store.active),
            privacy=common.privacy,
            viewing_log=viewing_log,
            pictures=pictures,
            people=people,
        )
        calls = CallManager(
            signals,
            guard,
            hardware,
            media,
            common.call,
            request,
            observer=tv,
            deadlines=call_deadlines(config),
        )
    attach_calls(common, calls)
    max_call_s = config.calls.max_duration_s if config.calls is not None else None
    set_language = tv.set_language if tv is not None else None
    use_bundles(common, BundleUse(common.sampler, common.reporter, guard, max_call_s, set_language))
    parts: list[Part] = []
    if tv is not None:
        parts.append(Part("tv", start=tv.start, stop=tv.close))
    if hardware.display is not None:  # the TV set's power, watched where nobody reports it
        parts.append(Part("tv power", run=hardware.display.watch))
    parts.append(Part("messages", stop=_closer(inbox)))
    return Unit(common, common_parts(common, parts, calls), calls, tv, inbox)


def _closer(inbox: MessageInbox) -> Callable[[], Awaitable[None]]:
    async def close() -> None:
        inbox.close()

    return close
