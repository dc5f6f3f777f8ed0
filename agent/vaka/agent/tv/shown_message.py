"""A staff message or reminder as the TV shows it: its text and, if it has one, its picture."""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass

import numpy as np
from PIL import Image, UnidentifiedImageError

from vaka.agent.media.source import BgrImage
from vaka.provisioning.messages import SignedMessage

log = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)
class ShownMessage:
    """A message or reminder on the TV until the citizen acknowledges it."""

    mid: str
    text: str
    picture: BgrImage | None = None

    @classmethod
    def of(cls, message: SignedMessage) -> ShownMessage:
        """What the screen shows of a verified message (its picture decoded)."""
        data = message.picture_bytes()
        return cls(message.mid, message.text, None if data is None else decode_jpeg(data))


def decode_jpeg(data: bytes) -> BgrImage | None:
    """A JPEG as a BGR picture; ``None`` (logged) if it does not decode."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            rgb = np.asarray(image.convert("RGB"))
    except (OSError, UnidentifiedImageError) as err:
        log.warning("the message's picture cannot be shown: %s", err)
        return None
    return np.ascontiguousarray(rgb[:, :, ::-1])
