"""The camera as a WebRTC video track (aiortc ``MediaStreamTrack``)."""

from __future__ import annotations

import asyncio
import logging

import av
from aiortc import MediaStreamTrack
from aiortc.mediastreams import VIDEO_CLOCK_RATE, VIDEO_TIME_BASE, MediaStreamError

from vaka.agent.media.capture import Capture
from vaka.agent.media.enhance import enhance_low_light
from vaka.agent.media.privacy import ViewGate, privacy_blur
from vaka.agent.media.source import BgrImage, CameraUnavailable

log = logging.getLogger(__name__)


def _to_video_frame(image: BgrImage, enhance: bool, blur: bool = False) -> av.VideoFrame:
    if enhance:
        image = enhance_low_light(image)
    if blur:
        image = privacy_blur(image)
    return av.VideoFrame.from_ndarray(image, format="bgr24")


class CameraTrack(MediaStreamTrack):
    """A video track fed by a :class:`~vaka.agent.media.capture.Capture`.

    Only :meth:`recv` is overridden: it waits for the capture's next frame, applies low-light
    enhancement when ``enhance`` is on and the capture reports the picture as dark, and returns
    an ``av.VideoFrame`` whose ``pts`` (90 kHz ``time_base``) is the frame's capture time since
    this track's first frame. With a ``view`` gate that says ``blurred``, every frame is blurred
    (:func:`~vaka.agent.media.privacy.privacy_blur`) before it is returned: the gate is read for
    each frame, so an escalation takes effect at the next one, and nothing else can unblur it.
    Several tracks may share one capture; a slow one skips frames.
    :meth:`stop` (aiortc's) detaches the track from the capture; it does not stop the capture,
    whose owner decides that.
    """

    kind = "video"

    def __init__(
        self, capture: Capture, *, enhance: bool = False, view: ViewGate | None = None
    ) -> None:
        super().__init__()
        self.capture = capture
        self.enhance = enhance
        self.view = view
        self._last_index = -1
        self._first_capture: float | None = None
        self._last_pts = -1
        capture.attach(self)
        self.on("ended", self._detach)

    def _detach(self) -> None:
        self.capture.detach(self)

    async def recv(self) -> av.VideoFrame:
        """The next camera frame as an ``av.VideoFrame`` (bgr24).

        :raises MediaStreamError: the track has ended, or the camera failed or was stopped
            (the track then ends; aiortc stops sending).
        """
        if self.readyState != "live":
            raise MediaStreamError
        try:
            frame = await self.capture.next_frame(self._last_index)
        except CameraUnavailable as err:
            log.warning("video track %s ends: %s", self.id, err)
            self.stop()
            raise MediaStreamError(str(err)) from err
        self._last_index = frame.index
        enhance = self.enhance and self.capture.is_dark
        blur = self.view is not None and self.view.blurred
        if enhance or blur:
            video = await asyncio.to_thread(_to_video_frame, frame.image, enhance, blur)
        else:
            video = _to_video_frame(frame.image, False)
        if self._first_capture is None:
            self._first_capture = frame.captured_at
        pts = round((frame.captured_at - self._first_capture) * VIDEO_CLOCK_RATE)
        # The wall clock may step back (NTP); pts must still increase.
        pts = max(pts, self._last_pts + 1)
        self._last_pts = pts
        video.pts = pts
        video.time_base = VIDEO_TIME_BASE
        return video
