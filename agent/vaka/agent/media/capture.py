"""One capture thread per camera, handing frames to the event loop.

The thread owns the :class:`~vaka.agent.media.source.FrameSource`: it opens it, reads it (every
call blocks, so none of it runs on the loop) and closes it. Each frame goes to the loop with
``loop.call_soon_threadsafe`` into a **latest-frame slot**: a consumer that is slower than the
camera skips frames instead of falling behind, which is what live night supervision wants.
Any number of consumers (tracks) share one capture; each asks for "the next frame after the one
I had". Frames stay in memory; nothing is written to disk.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import threading
import time
from types import TracebackType
from typing import Any

from vaka.agent.media.enhance import mean_luma
from vaka.agent.media.source import CameraUnavailable, Frame, FrameSource

log = logging.getLogger(__name__)

DARK_THRESHOLD = 50.0
"""Mean luma (0..255) below which a frame counts as dark (IR light and enhancement on)."""
JOIN_TIMEOUT_S = 5.0
"""How long :meth:`Capture.stop` waits for the capture thread to finish its last read."""


class Capture:
    """Reads ``source`` on its own thread and offers the newest frame to the event loop.

    :param source: the camera; opened by :meth:`start`, closed by :meth:`stop`.
    :param fps: publish at most this many frames a second (frames coming faster are dropped
        in the thread); ``None`` means the source's own rate.
    :param dark_threshold: :attr:`is_dark` below this mean luma.

    :meth:`start` and :meth:`stop` are safe to call twice; a stopped capture may be started
    again. Frames are numbered by the capture (``Frame.index``: 0, 1, 2, ... in the order they
    were published, continuing across restarts). Usable as ``async with``.
    """

    def __init__(
        self,
        source: FrameSource,
        fps: float | None = None,
        *,
        dark_threshold: float = DARK_THRESHOLD,
    ) -> None:
        if fps is not None and not fps > 0:
            raise ValueError(f"capture frame rate must be positive, got {fps}")
        self.source = source
        self.fps = fps if fps is not None else source.fps
        self.dark_threshold = dark_threshold
        self.frames = 0
        "Frames published since construction."
        self.brightness: float | None = None
        "Mean luma (0..255) of the newest frame, ``None`` before the first."
        self.error: CameraUnavailable | None = None
        "Why the capture thread ended on its own, if it did."
        self._latest: Frame | None = None
        self._new_frame = asyncio.Event()
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._consumers: set[object] = set()
        self._stopped = False

    # -- state ------------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        """Whether the capture thread is meant to be delivering frames."""
        return self._thread is not None and self.error is None

    @property
    def is_dark(self) -> bool:
        """Whether the newest frame is darker than :attr:`dark_threshold` (IR light decision)."""
        return self.brightness is not None and self.brightness < self.dark_threshold

    @property
    def latest(self) -> Frame | None:
        """The newest frame, if any."""
        return self._latest

    @property
    def consumers(self) -> int:
        """How many consumers (tracks) are attached."""
        return len(self._consumers)

    def attach(self, consumer: object) -> None:
        """Note that ``consumer`` reads from this capture (for :attr:`consumers`)."""
        self._consumers.add(consumer)

    def detach(self, consumer: object) -> None:
        """Forget ``consumer``; safe if it was never attached."""
        self._consumers.discard(consumer)

    # -- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        """Open the source on the capture thread and start delivering frames.

        Returns once the source is open. Does nothing if already running.

        :raises CameraUnavailable: the source could not be opened (the thread has ended).
        """
        if self._thread is not None:
            if self.error is None:
                return
            await self.stop()
        loop = asyncio.get_running_loop()
        self._stopped = False
        opened: asyncio.Future[None] = loop.create_future()
        self._loop = loop
        self.error = None
        self._stopping = threading.Event()
        thread = threading.Thread(
            target=self._run,
            args=(loop, opened, self._stopping),
            name=f"capture {self.source.name}",
            daemon=True,
        )
        self._thread = thread
        thread.start()
        try:
            await opened
        except BaseException:
            await self.stop()
            raise
        log.info("capture of %s started at %.4g fps", self.source.name, self.fps)

    async def stop(self) -> None:
        """Stop the thread, wait for it (it closes the source) and wake waiting consumers.

        Safe to call twice and on a capture that never started.
        """
        self._stopped = True
        thread, self._thread = self._thread, None
        if thread is None:
            self._wake()
            return
        self._stopping.set()
        await asyncio.to_thread(thread.join, JOIN_TIMEOUT_S)
        if thread.is_alive():
            log.warning(
                "capture thread of %s still in a read after %.0f s; it will close the source "
                "when the read returns",
                self.source.name,
                JOIN_TIMEOUT_S,
            )
        self._wake()
        log.info("capture of %s stopped after %d frames", self.source.name, self.frames)

    async def __aenter__(self) -> Capture:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    # -- consumers --------------------------------------------------------------------------

    async def next_frame(self, after: int = -1) -> Frame:
        """Wait for and return the newest frame whose index is greater than ``after``.

        A consumer may start waiting before :meth:`start` (a peer connection can be up before
        the shutter has opened); it gets the first frame once the capture runs.

        :raises CameraUnavailable: the capture was stopped (before or while waiting), or the
            camera failed (:attr:`error`).
        """
        while True:
            if self.error is not None:
                raise self.error
            if self._thread is None and self._stopped:
                raise CameraUnavailable(f"capture of {self.source.name} is not running")
            latest = self._latest
            if latest is not None and latest.index > after:
                return latest
            await self._new_frame.wait()

    # -- internals --------------------------------------------------------------------------

    def _wake(self) -> None:
        """Wake every waiting consumer (each waits on the event current when it started)."""
        event, self._new_frame = self._new_frame, asyncio.Event()
        event.set()

    def _publish(self, frame: Frame, brightness: float) -> None:
        """On the loop: put ``frame`` in the slot and wake the consumers."""
        self._latest = dataclasses.replace(frame, index=self.frames)
        self.frames += 1
        self.brightness = brightness
        self._wake()

    def _fail(self, error: CameraUnavailable) -> None:
        """On the loop: the thread ended because the camera failed."""
        self.error = error
        self._wake()

    def _run(
        self,
        loop: asyncio.AbstractEventLoop,
        opened: asyncio.Future[None],
        stopping: threading.Event,
    ) -> None:
        """The capture thread: open, read until told to stop or the camera fails, close."""
        source = self.source
        try:
            source.open()
        except Exception as err:
            error = _as_unavailable(err, source)
            _call_soon(loop, _settle, opened, error)
            return
        try:
            if not _call_soon(loop, _settle, opened, None):
                return
            min_gap = 0.75 / self.fps  # tolerate jitter, still halve a 30 fps camera to 15
            last_published = float("-inf")
            while not stopping.is_set():
                try:
                    frame = source.read()
                except Exception as err:
                    if stopping.is_set():
                        break
                    error = _as_unavailable(err, source)
                    log.error("capture of %s failed: %s", source.name, error)
                    _call_soon(loop, self._fail, error)
                    break
                now = time.monotonic()
                if now - last_published < min_gap:
                    continue
                last_published = now
                brightness = mean_luma(frame.image)
                if not _call_soon(loop, self._publish, frame, brightness):
                    break
        finally:
            try:
                source.close()
            except Exception:
                log.exception("closing %s failed", source.name)


def _as_unavailable(err: Exception, source: FrameSource) -> CameraUnavailable:
    if isinstance(err, CameraUnavailable):
        return err
    error = CameraUnavailable(f"{source.name} failed: {type(err).__name__}: {err}")
    error.__cause__ = err
    return error


def _settle(future: asyncio.Future[None], error: BaseException | None) -> None:
    if future.done():
        return
    if error is None:
        future.set_result(None)
    else:
        future.set_exception(error)


def _call_soon(loop: asyncio.AbstractEventLoop, callback: Any, *args: Any) -> bool:
    """``loop.call_soon_threadsafe``; ``False`` if the loop is already closed."""
    try:
        loop.call_soon_threadsafe(callback, *args)
    except RuntimeError:
        return False
    return True
