"""The camera boundary: a small base class every frame source implements."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from types import TracebackType

import numpy as np
import numpy.typing as npt

from vaka.errors import CallError

log = logging.getLogger(__name__)

BgrImage = npt.NDArray[np.uint8]
"""A BGR ``uint8`` image of shape ``(height, width, 3)``."""


class CameraUnavailable(CallError, RuntimeError):
    """The camera could not be opened or stopped delivering frames."""


@dataclass(frozen=True, eq=False)
class Frame:
    """One captured frame. Lives in memory only."""

    image: BgrImage
    "The picture, BGR ``uint8``, shape ``(height, width, 3)``."
    captured_at: float
    "When it was captured, as ``time.time()``."
    index: int
    "0 for the first frame since :meth:`FrameSource.open`, then 1, 2, ..."


class FrameSource:
    """Base for anything that delivers camera frames. All methods block: call them off the loop.

    An implementation **must** override :meth:`_open` (acquire the device, raise
    :class:`CameraUnavailable` with a readable message if it cannot) and :meth:`_read` (block
    until the next picture and return it with its capture time; raise
    :class:`CameraUnavailable` if the device is gone). It **may** override :meth:`_close`
    (release the device; called at most once per successful open).

    The public :meth:`open`, :meth:`read` and :meth:`close` add the bookkeeping: frame
    numbering, ``read`` before ``open`` refused, ``close`` safe twice. A source is a context
    manager.
    """

    name = "camera"

    def __init__(self, width: int, height: int, fps: float) -> None:
        if width <= 0 or height <= 0:
            raise ValueError(f"frame size must be positive, got {width}x{height}")
        if not fps > 0:
            raise ValueError(f"frame rate must be positive, got {fps}")
        self.width = width
        self.height = height
        self.fps = fps
        self._opened = False
        self._next_index = 0

    @property
    def is_open(self) -> bool:
        """Whether :meth:`open` succeeded and :meth:`close` has not been called since."""
        return self._opened

    def open(self) -> None:
        """Acquire the device. Opening an open source does nothing.

        :raises CameraUnavailable: the device is absent, busy or unsupported.
        """
        if self._opened:
            return
        self._open()
        self._opened = True
        self._next_index = 0
        log.info("%s opened at %dx%d@%s", self.name, self.width, self.height, self.fps)

    def read(self) -> Frame:
        """Block until the next frame and return it.

        :raises CameraUnavailable: the source is not open or the device stopped delivering.
        """
        if not self._opened:
            raise CameraUnavailable(f"{self.name} is not open")
        image, captured_at = self._read()
        frame = Frame(image=image, captured_at=captured_at, index=self._next_index)
        self._next_index += 1
        return frame

    def close(self) -> None:
        """Release the device. Safe to call twice, or without a successful open."""
        if not self._opened:
            return
        self._opened = False
        try:
            self._close()
        finally:
            log.info("%s closed", self.name)

    def _open(self) -> None:
        raise NotImplementedError

    def _read(self) -> tuple[BgrImage, float]:
        raise NotImplementedError

    def _close(self) -> None:
        """Release the device; the default has nothing to release."""

    def __enter__(self) -> FrameSource:
        self.open()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "open" if self._opened else "closed"
        return f"<{type(self).__name__} {self.name} {self.width}x{self.height}@{self.fps} {state}>"
