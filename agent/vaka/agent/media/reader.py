"""Reading a remote aiortc track in a task: the part the remote picture and the remote sound
share. Every frame is taken as soon as it arrives, so aiortc's receive queue never grows."""

import asyncio
import contextlib
import logging
import time
from typing import Any

from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError

log = logging.getLogger(__name__)


class TrackReader:
    """Base for consumers of one remote track of :attr:`kind`.

    A subclass **must** set :attr:`kind` and :attr:`frame_type` and override :meth:`_take` (one
    frame, on the event loop, quick); it **may** override :meth:`_close` (after reading stopped).
    """

    kind = "video"
    "The track kind read (``audio`` or ``video``)."
    frame_type: type[Any] = object
    "Frames of other types are skipped."

    def __init__(self) -> None:
        self.frames = 0
        "Frames received."
        self.first_frame_at: float | None = None
        "``time.perf_counter()`` when the first frame arrived."
        self.ended = asyncio.Event()
        "Set when the track ended or :meth:`stop` was called."
        self._task: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        """Whether a track is being read."""
        return self._task is not None and not self._task.done()

    def start(self, track: MediaStreamTrack) -> None:
        """Start reading ``track``. Call from the event loop.

        :raises ValueError: ``track`` is of another kind, or a track is already being read.
        """
        if track.kind != self.kind:
            raise ValueError(f"{type(self).__name__} reads {self.kind} tracks, got {track.kind}")
        if self.running:
            raise ValueError(f"this {type(self).__name__} already reads a track")
        self.ended.clear()
        self._task = asyncio.get_running_loop().create_task(self._consume(track))

    async def stop(self) -> None:
        """Stop reading (what was received stays available). Safe twice."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self._close()
        self.ended.set()

    async def _close(self) -> None:
        """Release what the reader holds."""

    async def _consume(self, track: MediaStreamTrack) -> None:
        try:
            while True:
                try:
                    frame = await track.recv()
                except MediaStreamError:
                    log.info("remote %s ended after %d frames", self.kind, self.frames)
                    return
                if isinstance(frame, self.frame_type):
                    if self.first_frame_at is None:
                        self.first_frame_at = time.perf_counter()
                    self.frames += 1
                    self._take(frame)
        finally:
            self.ended.set()

    def _take(self, frame: Any) -> None:
        raise NotImplementedError
