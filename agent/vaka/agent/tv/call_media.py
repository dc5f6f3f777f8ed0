"""The media a TV call adds to the night camera's: the microphone, the caller's picture (full
screen) and the caller's voice (the speaker). One call at a time; :meth:`CallMedia.stop` ends it.

Real devices are opened lazily (``[media] audio``, in force: see
:func:`~vaka.agent.media.settings.settings_in_force`); one that cannot be opened is logged and the
call goes on without it. The caller's sound is read even without a speaker: an unread aiortc
track queues up without end. The audio and video modules (PyAV, aiortc) are imported by the
first call, not by an idle unit.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from vaka.agent.media.settings import MediaSettings
from vaka.agent.media.source import BgrImage
from vaka.errors import ConfigError, LinkError
from vaka.protocol.messages import EventMessage, EventPayload
from vaka.protocol.topics import Channel

if TYPE_CHECKING:
    from aiortc import MediaStreamTrack

    from vaka.agent.call.session import CallSession
    from vaka.agent.call.state import UnitCall
    from vaka.agent.link import UnitLink
    from vaka.agent.media.audio import AudioSink
    from vaka.agent.media.remote import RemoteVideo

log = logging.getLogger(__name__)


class CallMedia:
    """The TV's side of a call's media; ``on_picture()`` runs for each picture from the caller."""

    def __init__(self, media: MediaSettings, on_picture: Callable[[], None]) -> None:
        self.media = media
        self.on_picture = on_picture
        self.remote: RemoteVideo | None = None
        "The caller's picture in the current call."
        self.speaker: AudioSink | None = None
        "The caller's sound in the current call."
        self._frames_seen = 0
        self._stopping: set[asyncio.Task[Any]] = set()

    def microphone(self, offered: frozenset[str]) -> list[MediaStreamTrack]:
        """The microphone as a track to send, when the caller offers audio."""
        if "audio" not in offered:
            return []
        from vaka.agent.media.audio import make_microphone

        try:
            microphone = make_microphone(self.media)
        except ConfigError as err:
            log.error("the call goes on without the microphone: %s", err)
            return []
        return [] if microphone is None else [microphone]

    def take(self, track: MediaStreamTrack) -> None:
        """The caller's picture (to the screen) or voice (to the speaker) arrived."""
        from vaka.agent.media.audio import AudioSink, make_speaker
        from vaka.agent.media.remote import RemoteVideo

        if track.kind == "video":
            self.remote = RemoteVideo(on_frame=lambda _image: self.on_picture())
            self.remote.start(track)
            return
        try:
            self.speaker = make_speaker(self.media)
        except ConfigError as err:
            log.error("the caller cannot be heard: %s", err)
            self.speaker = None
        if self.speaker is None:
            self.speaker = AudioSink()
        self.speaker.start(track)

    @property
    def picture(self) -> BgrImage | None:
        """The caller's newest picture, if any."""
        return None if self.remote is None else self.remote.latest

    def picture_stale(self) -> bool:
        """Whether no picture came from the caller since the last time this was asked."""
        frames = self.remote.frames if self.remote is not None else 0
        stale, self._frames_seen = frames == self._frames_seen, frames
        return stale

    def stop(self) -> None:
        """Stop reading the caller's media (in the background)."""
        for part in (self.remote, self.speaker):
            if part is not None:
                task = asyncio.get_running_loop().create_task(part.stop())
                self._stopping.add(task)
                task.add_done_callback(self._stopping.discard)
        self.remote = self.speaker = None


async def report_first_picture(link: UnitLink, session: CallSession) -> None:
    """Tell central when the citizen first saw the caller (support and benchmarks use it)."""
    detail: dict[str, str | float] = {
        "action": "picture_shown",
        "call_id": session.call_id,
        "at": round(time.time(), 3),
        "after_answer_ms": round((time.monotonic() - session.started_at) * 1000, 1),
    }
    with contextlib.suppress(LinkError):
        await link.publish_reliably(
            Channel.EVENTS, EventMessage(payload=EventPayload(kind="call", detail=detail))
        )


def self_view(call: UnitCall) -> BgrImage | None:
    """The latest picture of the unit's own camera in ``call``'s session, if there is one."""
    session = call.session
    capture = session.capture if session is not None else None
    frame = capture.latest if capture is not None else None
    return None if frame is None else frame.image
