"""The pictures of contacts who call: central sends one, signed, for each contact's call.

Central sends a contact's picture (:mod:`vaka.provisioning.caller_picture`) on the ``message``
channel just before the call's offer; it is checked with the pinned config key and kept, as a
decoded image in memory, only for the few most recent calls: the TV shows it beside the caller's
name while that call rings. Nothing is written to disk.
"""

from __future__ import annotations

import io
import logging
from collections import OrderedDict
from collections.abc import Callable

import numpy as np
from joserfc.jwk import OKPKey
from PIL import Image, UnidentifiedImageError

from vaka.agent.media.source import BgrImage
from vaka.protocol.refusals import Refusals
from vaka.provisioning.caller_picture import BadCallerPicture, verify_caller_picture

log = logging.getLogger(__name__)

#: how many calls' pictures are kept (a call rings once; the rest is for a picture that came
#: just before a busy unit's refusal)
KEPT = 4


class CallerPictures:
    """Checks the pictures central sends and hands them out by call id."""

    def __init__(self, device_id: str, config_key: OKPKey | None, refusals: Refusals) -> None:
        self.device_id = device_id
        self.config_key = config_key
        self.refusals = refusals
        self._pictures: OrderedDict[str, BgrImage] = OrderedDict()
        #: called with the call id when a picture arrives (the TV redraws a ringing call)
        self.on_picture: Callable[[str], None] = lambda _cid: None

    def get(self, call_id: str) -> BgrImage | None:
        """The picture of the caller of ``call_id``, if central sent one."""
        return self._pictures.get(call_id)

    def handle(self, token: str) -> None:
        """A caller picture token from the ``message`` channel: checked, decoded, kept."""
        if self.config_key is None:
            return
        try:
            picture = verify_caller_picture(token, self.config_key, self.device_id)
        except BadCallerPicture as err:
            self.refusals.refuse("bad caller picture", str(err), "the message channel")
            return
        image = decode_jpeg(picture.jpeg_bytes())
        if image is None:
            self.refusals.refuse("bad caller picture", "not a JPEG image", "the message channel")
            return
        self._pictures[picture.cid] = image
        while len(self._pictures) > KEPT:
            self._pictures.popitem(last=False)
        log.info("caller picture for call %s (%dx%d)", picture.cid, image.shape[1], image.shape[0])
        self.on_picture(picture.cid)

    def forget(self, call_id: str) -> None:
        """Drop the picture of ``call_id`` (its call no longer rings)."""
        self._pictures.pop(call_id, None)


#: The largest caller picture the unit decodes (central sends 240 x 240).
MAX_SIDE = 1024


def decode_jpeg(jpeg: bytes) -> BgrImage | None:
    """The picture as BGR pixels, or ``None`` if it is not a JPEG of a sane size. Pillow, not
    OpenCV: the TV already draws with it, and OpenCV stays out of an idle unit."""
    try:
        with Image.open(io.BytesIO(jpeg)) as img:
            if img.format != "JPEG" or max(img.size) > MAX_SIDE:
                return None
            rgb = np.asarray(img.convert("RGB"), dtype=np.uint8)
    except (UnidentifiedImageError, OSError, ValueError):
        return None
    return np.ascontiguousarray(rgb[:, :, ::-1])
