"""The vocabulary of a screen description: rectangles, buttons, texts, videos and colours.

:mod:`vaka.agent.ui.layout` builds these from a screen state; :mod:`vaka.agent.ui.drawing` paints
them. Nothing here draws or knows about states.
"""

from __future__ import annotations

from dataclasses import dataclass

from vaka.agent.media.source import BgrImage
from vaka.agent.ui.states import ButtonId

Rgb = tuple[int, int, int]
Size = tuple[int, int]

BASE: Size = (1280, 720)
"""The design canvas: every position in :mod:`~vaka.agent.ui.layout` is on it."""

BLACK: Rgb = (0, 0, 0)
WHITE: Rgb = (255, 255, 255)
GREY: Rgb = (221, 221, 221)
# Button faces are light, saturated colours with black labels: each stands out from the black
# screen (at least 7:1, so no button looks switched off) and carries its label at 7:1 or more.
YELLOW: Rgb = (255, 212, 0)
GREEN: Rgb = (72, 200, 96)
RED: Rgb = (255, 112, 102)
BLUE: Rgb = (140, 200, 255)

EDGE_PX = 14
"""How far a button's raised edge shows below its face (design-canvas pixels), so that a button
looks like a key to press, not like a flat label."""
EDGE_SHADE = 0.55
"""The edge's colour: the face's colour darkened to this share."""


@dataclass(frozen=True)
class Rect:
    """An axis-aligned rectangle in screen pixels; ``x``/``y`` is its top-left corner."""

    x: int
    y: int
    w: int
    h: int

    def contains(self, px: int, py: int) -> bool:
        """Whether the pixel ``(px, py)`` is inside."""
        return self.x <= px < self.x + self.w and self.y <= py < self.y + self.h

    @property
    def center(self) -> tuple[int, int]:
        """The middle pixel."""
        return self.x + self.w // 2, self.y + self.h // 2

    def overlaps(self, other: Rect) -> bool:
        """Whether the two rectangles share at least one pixel."""
        return (
            self.x < other.x + other.w
            and other.x < self.x + self.w
            and self.y < other.y + other.h
            and other.y < self.y + self.h
        )

    def inset(self, d: int) -> Rect:
        """The rectangle shrunk by ``d`` pixels on every side."""
        return Rect(self.x + d, self.y + d, max(0, self.w - 2 * d), max(0, self.h - 2 * d))


class Scale:
    """Maps the 1280x720 design canvas onto a real screen size: uniformly, centred."""

    def __init__(self, size: Size) -> None:
        self.size = size
        self.s = min(size[0] / BASE[0], size[1] / BASE[1])
        self.ox = round((size[0] - BASE[0] * self.s) / 2)
        self.oy = round((size[1] - BASE[1] * self.s) / 2)

    def rect(self, x: int, y: int, w: int, h: int) -> Rect:
        """A design-canvas rectangle on the real screen."""
        s = self.s
        return Rect(self.ox + round(x * s), self.oy + round(y * s), round(w * s), round(h * s))

    def px(self, v: float) -> int:
        """A design-canvas length on the real screen (at least 1)."""
        return max(1, round(v * self.s))


@dataclass(frozen=True)
class ButtonSpec:
    """One touch target: where it is, the catalog key of its label, and its colours."""

    id: ButtonId
    rect: Rect
    "The whole touch target (face and the raised edge below it)."
    label_key: str
    fill: Rgb
    "The colour of the face."
    ink: Rgb
    edge: int = 0
    "How many pixels of :attr:`rect`'s bottom are the raised edge."

    @property
    def face(self) -> Rect:
        """The top of the key, where its label is written."""
        r = self.rect
        return Rect(r.x, r.y, r.w, r.h - self.edge)


@dataclass(frozen=True)
class TextSpec:
    """Text centred in ``box``: at ``size`` px if it fits, else smaller but never below
    ``min_size``, wrapped to at most ``max_lines`` lines; ``background`` is what is behind it."""

    text: str
    box: Rect
    size: int
    min_size: int
    ink: Rgb
    background: Rgb
    max_lines: int = 1


@dataclass(frozen=True, eq=False)
class VideoSpec:
    """A picture scaled to fit ``rect`` (in proportion, centred), with an optional white border."""

    frame: BgrImage
    rect: Rect
    border: int = 0
    above: bool = False
    "Drawn over the buttons (a person's picture on their button), not under them."

    def placed(self) -> Rect:
        """Where the picture lands inside :attr:`rect` once scaled (empty if it has no pixels)."""
        h, w = self.frame.shape[:2]
        box = self.rect
        if not (h and w and box.w and box.h):
            return Rect(box.x, box.y, 0, 0)
        s = min(box.w / w, box.h / h)
        tw, th = max(1, round(w * s)), max(1, round(h * s))
        return Rect(box.x + (box.w - tw) // 2, box.y + (box.h - th) // 2, tw, th)


@dataclass(frozen=True, eq=False)
class Layout:
    """Everything one screen is made of, in drawing order: videos, buttons, texts, frame."""

    size: Size
    background: Rgb
    videos: tuple[VideoSpec, ...]
    buttons: tuple[ButtonSpec, ...]
    texts: tuple[TextSpec, ...]
    frame: Rgb | None = None
    "A coloured border around the whole screen (the trouble screen)."


def _luminance(rgb: Rgb) -> float:
    def channel(c: int) -> float:
        v = c / 255
        return v / 12.92 if v <= 0.04045 else ((v + 0.055) / 1.055) ** 2.4

    r, g, b = (channel(c) for c in rgb)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast_ratio(a: Rgb, b: Rgb) -> float:
    """WCAG 2 contrast ratio of two sRGB colours: 1 (none) to 21 (black on white)."""
    light, dark = sorted((_luminance(a), _luminance(b)), reverse=True)
    return (light + 0.05) / (dark + 0.05)
