"""A simulated camera presence that tests and ``--simulate`` plug in and out."""

from vaka.agent.hw.camera import CameraDevice, CameraPresence


class SimulatedCameraDevice(CameraDevice):
    """A camera that is present until :meth:`unplug` is called (and back on :meth:`plug`)."""

    def __init__(self, present: bool = True, *, name: str | None = None) -> None:
        super().__init__(CameraPresence.PRESENT if present else CameraPresence.ABSENT, name=name)

    def plug(self) -> None:
        """Connect the camera."""
        self._check_usable()
        self._set_state(CameraPresence.PRESENT)

    def unplug(self) -> None:
        """Disconnect the camera."""
        self._check_usable()
        self._set_state(CameraPresence.ABSENT)
