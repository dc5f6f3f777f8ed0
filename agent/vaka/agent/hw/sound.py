"""Is the TV unit's sound device there (the USB microphone or speakerphone)? Presence only;
sound itself lives in ``vaka.agent.media.audio``."""

import logging
import re
from enum import Enum
from pathlib import Path

from vaka.agent.hw.base import StateSource

log = logging.getLogger(__name__)

#: How ALSA names a USB sound card in ``/proc/asound/cards`` (`` 1 [Speak] : USB-Audio - ...``).
USB_CARD = re.compile(r"^\s*\d+\s+\[[^\]]*\]:\s*USB-Audio\b", re.MULTILINE)


class SoundPresence(Enum):
    """Whether the unit's sound device is connected."""

    PRESENT = "present"
    ABSENT = "absent"


class SoundDevice(StateSource[SoundPresence]):
    """Base for sound-device presence (as :class:`~vaka.agent.hw.camera.CameraDevice`)."""

    kind = "sound"

    def __init__(
        self, initial: SoundPresence = SoundPresence.ABSENT, *, name: str | None = None
    ) -> None:
        super().__init__(initial, name=name)


class UsbSoundCards(SoundDevice):
    """Present while ALSA lists a USB sound card (``/proc/asound/cards``); the TV's own HDMI
    sound does not count, since the microphone needs the USB device.

    :meth:`refresh` reads the file: call it off the event loop (hotplug does).
    """

    def __init__(self, cards: Path = Path("/proc/asound/cards"), *, name: str | None = None):
        self.cards = cards
        super().__init__(self._probe(), name=name)

    def _probe(self) -> SoundPresence:
        try:
            text = self.cards.read_text()
        except OSError:
            return SoundPresence.ABSENT
        return SoundPresence.PRESENT if USB_CARD.search(text) else SoundPresence.ABSENT

    def refresh(self) -> SoundPresence:
        """Read the card list and update :attr:`state`."""
        self._check_usable()
        self._set_state(self._probe())
        return self.state


class SimulatedSoundDevice(SoundDevice):
    """A sound device that is present until :meth:`unplug` is called (and back on :meth:`plug`)."""

    def __init__(self, present: bool = True, *, name: str | None = None) -> None:
        super().__init__(SoundPresence.PRESENT if present else SoundPresence.ABSENT, name=name)

    def plug(self) -> None:
        """Connect the device."""
        self._check_usable()
        self._set_state(SoundPresence.PRESENT)

    def unplug(self) -> None:
        """Disconnect the device."""
        self._check_usable()
        self._set_state(SoundPresence.ABSENT)
