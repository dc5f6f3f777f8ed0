"""What keeps the citizen from making or taking a call, as the TV shows it: no connection, no
camera, no sound, and for a while a notice after a call nobody could take (the night staff, or
one of the citizen's people)."""

import time

from vaka.agent.hw.camera import CameraPresence
from vaka.agent.hw.hardware import Hardware
from vaka.agent.hw.sound import SoundPresence
from vaka.agent.link import LinkState, UnitLink


class Troubles:
    """The trouble to show now, most important first (a catalog key), or ``None``."""

    def __init__(self, link: UnitLink, hardware: Hardware, notice_s: float) -> None:
        self.link = link
        self.hardware = hardware
        self.notice_s = notice_s
        self._notice: tuple[str, float] | None = None  # trouble key, until (monotonic)
        #: whom the notice is about (``Anna`` in "Anna is not available right now")
        self.name = ""

    def current(self) -> str | None:
        """``no_connection``, ``no_camera``, ``no_sound``, a notice that has not run its time, or
        ``None``."""
        if self.link.state is not LinkState.ONLINE:
            return "no_connection"
        camera, sound = self.hardware.camera, self.hardware.sound
        if camera is not None and camera.state is CameraPresence.ABSENT:
            return "no_camera"
        if sound is not None and sound.state is SoundPresence.ABSENT:
            return "no_sound"
        if self._notice is not None:
            key, until = self._notice
            if time.monotonic() < until:
                return key
            self._notice = None
        return None

    def notice(self, key: str, name: str = "") -> None:
        """Show ``key`` (``no_staff``, ...; about ``name``) for the notice time, unless worse
        trouble comes."""
        self._notice = (key, time.monotonic() + self.notice_s)
        self.name = name

    def clear_notice(self) -> None:
        """Drop the notice (the citizen tries again)."""
        self._notice = None
