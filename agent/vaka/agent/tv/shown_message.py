"""A staff message or reminder as the TV shows it (its text and, if it has one, its picture), and
the board that holds the one on screen."""

from __future__ import annotations

import contextlib
import io
import logging
from collections.abc import Callable
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


Listener = Callable[[ShownMessage | None], None]


class MessageBoard:
    """The message on the TV now, between the inbox (which decides what is shown and for how
    long: :meth:`show`, :meth:`hide`) and the TV controller (which listens and draws it)."""

    def __init__(self) -> None:
        self.current: ShownMessage | None = None
        self._listeners: list[Listener] = []

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Call ``listener(current)`` on every change; returns a function that unsubscribes."""
        self._listeners.append(listener)

        def unsubscribe() -> None:
            with contextlib.suppress(ValueError):
                self._listeners.remove(listener)

        return unsubscribe

    def show(self, message: SignedMessage) -> None:
        """Put a verified message on the board (the inbox's ``show``)."""
        self._change(ShownMessage.of(message))

    def hide(self, mid: str) -> None:
        """Take message ``mid`` off the board, if it is the one shown (the inbox's ``hide``)."""
        if self.current is not None and self.current.mid == mid:
            self._change(None)

    def _change(self, shown: ShownMessage | None) -> None:
        self.current = shown
        for listener in list(self._listeners):
            try:
                listener(shown)
            except Exception:
                log.exception("message board listener failed")
