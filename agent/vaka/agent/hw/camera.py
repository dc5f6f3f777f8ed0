"""Is the camera there? Presence only; frame capture lives in ``vaka.agent.media``."""

import logging
from enum import Enum
from pathlib import Path

from vaka.agent.hw.base import StateSource

log = logging.getLogger(__name__)


class CameraPresence(Enum):
    """Whether the unit's camera is connected."""

    PRESENT = "present"
    ABSENT = "absent"


class CameraDevice(StateSource[CameraPresence]):
    """Base for camera presence.

    An implementation **must** set :attr:`state` through ``_set_state`` whenever it learns the
    camera came or went, either in :meth:`refresh` (polling) or from its own event source (udev).
    It **may** override ``_release``.
    """

    kind = "camera"

    def __init__(
        self, initial: CameraPresence = CameraPresence.ABSENT, *, name: str | None = None
    ) -> None:
        super().__init__(initial, name=name)

    @property
    def present(self) -> bool:
        """Whether the camera is connected."""
        return self.state is CameraPresence.PRESENT


class V4l2CameraDevice(CameraDevice):
    """A V4L2 camera, present while its device node (``/dev/video0`` by default) exists.

    :meth:`refresh` does a ``stat`` of the node: call it off the event loop.
    """

    def __init__(self, path: Path = Path("/dev/video0"), *, name: str | None = None) -> None:
        self.path = path
        super().__init__(self._probe(), name=name)

    def _probe(self) -> CameraPresence:
        return CameraPresence.PRESENT if self.path.exists() else CameraPresence.ABSENT

    def refresh(self) -> CameraPresence:
        """Check the device node and update :attr:`state`."""
        self._check_usable()
        self._set_state(self._probe())
        return self.state
