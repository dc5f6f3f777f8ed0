"""Painting a :class:`~vaka.agent.ui.spec.Layout` into a BGR image: numpy and Pillow, no window.

Text is drawn by Pillow's FreeType renderer with DejaVu Sans Bold (Debian's ``fonts-dejavu-core``)
because OpenCV's own Hershey fonts have no å, ä, ö, æ or ø. Pillow only makes coverage masks (of
glyphs and button shapes), cached per text and size; they are blended into the BGR canvas with
numpy, so a frame of a call costs a resize and a few small blends (see the report in the tests).
"""

from __future__ import annotations

import functools
import logging
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
from PIL import Image, ImageDraw, ImageFont

from vaka.agent.media.source import BgrImage
from vaka.agent.ui.spec import (
    EDGE_SHADE,
    WHITE,
    Layout,
    Rgb,
    Scale,
    TextSpec,
    VideoSpec,
)

log = logging.getLogger(__name__)

FONT_DIRS = (Path("/usr/share/fonts/truetype/dejavu"), Path("/usr/share/fonts/dejavu"))
"""Where DejaVu Sans is looked for (Debian's ``fonts-dejavu-core``, then Fedora and Arch)."""
FONT_FILE = "DejaVuSans-Bold.ttf"

Font = ImageFont.FreeTypeFont | ImageFont.ImageFont


@functools.cache
def font_path() -> Path | None:
    """DejaVu Sans Bold, or ``None`` (with a warning, once) when it is not installed."""
    for directory in FONT_DIRS:
        path = directory / FONT_FILE
        if path.is_file():
            return path
    log.warning(
        "%s not found in %s: falling back to Pillow's built-in font (install fonts-dejavu-core)",
        FONT_FILE,
        ", ".join(map(str, FONT_DIRS)),
    )
    return None


@functools.lru_cache(maxsize=64)
def font(size: int) -> Font:
    """The screen's font at ``size`` pixels (cached)."""
    path = font_path()
    if path is None:
        return ImageFont.load_default(size)
    return ImageFont.truetype(str(path), size)


def _wrap(text: str, f: Font, width: int) -> list[str]:
    lines: list[str] = []
    for paragraph in text.splitlines() or [""]:
        line = ""
        for word in paragraph.split():
            candidate = f"{line} {word}" if line else word
            if line and f.getlength(candidate) > width:
                lines.append(line)
                line = word
            else:
                line = candidate
        lines.append(line)
    return lines


def _line_height(f: Font, size: int) -> int:
    if isinstance(f, ImageFont.FreeTypeFont):
        ascent, descent = f.getmetrics()
        return int(ascent + descent)
    return round(size * 1.2)


@dataclass(frozen=True)
class FittedText:
    """A :class:`TextSpec` laid out: its lines and the size they are drawn at."""

    lines: tuple[str, ...]
    size: int
    line_height: int


@functools.lru_cache(maxsize=256)
def fit_text(spec: TextSpec) -> FittedText:
    """The largest size from ``spec.size`` down to ``spec.min_size`` at which the text fits its
    box in ``spec.max_lines`` lines; if it does not fit even then, it is cut with an ellipsis."""
    size = spec.size
    while True:
        f = font(size)
        lines = _wrap(spec.text, f, spec.box.w)
        height = _line_height(f, size)
        fits = all(f.getlength(line) <= spec.box.w for line in lines)
        if fits and len(lines) <= spec.max_lines and len(lines) * height <= spec.box.h:
            return FittedText(tuple(lines), size, height)
        if size <= spec.min_size:
            break
        size = max(spec.min_size, size - max(2, size // 16))
    lines = lines[: max(1, min(spec.max_lines, spec.box.h // height))]
    last = lines[-1]
    while last and f.getlength(last + "…") > spec.box.w:
        last = last[:-1]
    lines[-1] = last.rstrip() + "…"
    log.debug("text cut to fit its box: %r", spec.text)
    return FittedText(tuple(lines), size, height)


def _bgr(rgb: Rgb) -> Rgb:
    return rgb[2], rgb[1], rgb[0]


def _resize(picture: BgrImage, width: int, height: int) -> BgrImage:
    cv2 = sys.modules.get("cv2")  # already loaded where there is a window: ~10x faster
    if cv2 is not None:
        resized: BgrImage = cv2.resize(picture, (width, height), interpolation=cv2.INTER_LINEAR)
        return resized
    # Channel order does not matter to a resize: BGR goes through Pillow as if it were RGB.
    image = Image.fromarray(np.ascontiguousarray(picture))
    return np.asarray(image.resize((width, height), Image.Resampling.BILINEAR))


def _paste_video(canvas: BgrImage, video: VideoSpec) -> None:
    h, w = video.frame.shape[:2]
    placed = video.placed()
    x, y, tw, th = placed.x, placed.y, placed.w, placed.h
    if not (tw and th):
        return
    picture = video.frame[..., :3]
    if (tw, th) != (w, h):
        picture = _resize(picture, tw, th)
    if b := video.border:
        canvas[max(0, y - b) : y + th + b, max(0, x - b) : x + tw + b] = 255
    canvas[y : y + th, x : x + tw] = picture


Mask = npt.NDArray[np.uint8]


@dataclass(frozen=True, eq=False)
class _Stamp:
    """A coverage mask prepared for fast painting: cropped to what it covers, split into the
    pixels it covers fully (copied) and the anti-aliased edge pixels (blended)."""

    top: int
    left: int
    solid: npt.NDArray[np.bool_]
    "Fully covered pixels, shape ``(h, w, 3)``."
    soft: tuple[npt.NDArray[np.intp], npt.NDArray[np.intp]]
    "Rows and columns of the partly covered pixels."
    alpha: npt.NDArray[np.uint16]
    "Their coverage, 1..254, shape ``(n, 1)``."

    @classmethod
    def of(cls, mask: Mask) -> _Stamp:
        ys, xs = np.nonzero(mask)
        if not len(ys):
            empty = np.zeros(0, np.intp)
            return cls(0, 0, np.zeros((0, 0, 3), bool), (empty, empty), np.zeros((0, 1), np.uint16))
        top, left = int(ys.min()), int(xs.min())
        crop = mask[top : ys.max() + 1, left : xs.max() + 1]
        solid = np.ascontiguousarray(np.repeat((crop == 255)[..., None], 3, axis=2))
        rows, cols = np.nonzero((crop > 0) & (crop < 255))
        alpha = crop[rows, cols].astype(np.uint16)[:, None]
        return cls(top, left, solid, (rows, cols), alpha)


def _row(rgb: Rgb, width: int) -> BgrImage:
    return np.tile(np.array(_bgr(rgb), np.uint8), (width, 1))


def _paint(canvas: BgrImage, x: int, y: int, stamp: _Stamp, rgb: Rgb) -> None:
    """Paint ``rgb`` into ``canvas`` through ``stamp`` placed at ``(x, y)``."""
    h, w = stamp.solid.shape[:2]
    y0, x0 = y + stamp.top, x + stamp.left
    region = canvas[y0 : y0 + h, x0 : x0 + w]
    if region.shape[:2] != (h, w) or y0 < 0 or x0 < 0:
        log.warning("not drawn: %dx%d at (%d, %d) is off the screen", w, h, x0, y0)
        return
    colour = np.broadcast_to(_row(rgb, w), (h, w, 3))
    np.copyto(region, colour, where=stamp.solid)
    rows, cols = stamp.soft
    if len(rows):
        under = region[rows, cols].astype(np.uint16)
        ink = colour[0, :1].astype(np.uint16)
        region[rows, cols] = (
            (under * (255 - stamp.alpha) + ink * stamp.alpha + 127) // 255
        ).astype(np.uint8)


@functools.lru_cache(maxsize=256)
def _text_stamp(spec: TextSpec) -> _Stamp:
    """The glyphs of ``spec`` over its box, as fitted by :func:`fit_text`."""
    fitted = fit_text(spec)
    f = font(fitted.size)
    mask = Image.new("L", (spec.box.w, spec.box.h), 0)
    pen = ImageDraw.Draw(mask)
    top = (spec.box.h - fitted.line_height * len(fitted.lines)) // 2
    for i, line in enumerate(fitted.lines):
        pen.text(
            (spec.box.w // 2, top + i * fitted.line_height), line, font=f, fill=255, anchor="ma"
        )
    return _Stamp.of(np.asarray(mask))


@dataclass(frozen=True, eq=False)
class _ButtonStamps:
    body: _Stamp
    "The whole button: painted in the edge colour, it shows below the face as its raised edge."
    face: _Stamp
    "The top of the key, where the label is."
    outline: _Stamp
    "A white frame round the whole button, which sets it off from a dark screen or video."


@functools.lru_cache(maxsize=32)
def _button_stamps(width: int, height: int, radius: int, border: int, edge: int) -> _ButtonStamps:
    """A rounded button drawn as a raised key: face, the edge below it, and its outline."""
    body, face, outline = (Image.new("L", (width, height), 0) for _ in range(3))
    whole = (0, 0, width - 1, height - 1)
    ImageDraw.Draw(body).rounded_rectangle(whole, radius=radius, fill=255)
    top = (0, 0, width - 1, height - 1 - edge)
    ImageDraw.Draw(face).rounded_rectangle(top, radius=radius, fill=255)
    ImageDraw.Draw(outline).rounded_rectangle(whole, radius=radius, outline=255, width=border)
    return _ButtonStamps(*(_Stamp.of(np.asarray(m)) for m in (body, face, outline)))


def _shade(rgb: Rgb, factor: float) -> Rgb:
    r, g, b = (round(c * factor) for c in rgb)
    return r, g, b


def draw(layout: Layout) -> BgrImage:
    """Paint ``layout`` into a new BGR ``uint8`` image of its size."""
    width, height = layout.size
    s = Scale(layout.size).s
    canvas = np.empty((height, width, 3), np.uint8)
    canvas[:] = _row(layout.background, width)
    for video in layout.videos:
        if not video.above:
            _paste_video(canvas, video)
    radius, border = round(24 * s), max(2, round(5 * s))
    for button in layout.buttons:
        r = button.rect
        stamps = _button_stamps(r.w, r.h, radius, border, button.edge)
        _paint(canvas, r.x, r.y, stamps.body, _shade(button.fill, EDGE_SHADE))
        _paint(canvas, r.x, r.y, stamps.face, button.fill)
        _paint(canvas, r.x, r.y, stamps.outline, WHITE)
    for video in layout.videos:
        if video.above:
            _paste_video(canvas, video)
    for spec in layout.texts:
        _paint(canvas, spec.box.x, spec.box.y, _text_stamp(spec), spec.ink)
    if layout.frame is not None:
        b, edge = max(4, round(16 * s)), _row(layout.frame, width)
        canvas[:b] = canvas[-b:] = edge
        canvas[:, :b] = canvas[:, -b:] = edge[:b]
    return canvas
