"""A test pattern that survives VP8/H.264 and says which frame it is and when it was taken.

Layout, in fractions of the frame so that it reads the same at any size::

    0.00 ┌────────────────────────────────────────────┐
         │  8 vertical bars (colours, or greys when    │  bars: measured in the middle of each
         │  ``night=True`` as an IR camera gives)      │  bar, away from edges the codec blurs
    0.68 ├────────────────────────────────────────────┤
         │  mid-grey separator                         │
    0.72 ├────────────────────────────────────────────┤
         │  4 rows x 26 black/white blocks = 104 bits  │  code: read at each block's centre
    0.98 └────────────────────────────────────────────┘

The 104 bits are 13 bytes, most significant bit first, row by row: the 32-bit frame counter,
the 48-bit capture time in milliseconds since the epoch, one flags byte (bit 0: night mode;
the other bits must be 0) and a CRC-16/CCITT-FALSE over the first 11 bytes. A block whose
brightness is neither clearly black nor clearly white, a wrong CRC or unknown flags make
:func:`decode_pattern` return ``None`` rather than a wrong reading.

At 320x240 a block is about 12x16 pixels, at 1280x720 about 47x47: large against VP8's
4x4 transform and 16x16 macroblocks, so the bits come through a lossy encode intact.
"""

from __future__ import annotations

import binascii
import functools
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

Image = npt.NDArray[np.uint8]
"""A BGR ``uint8`` image of shape ``(height, width, 3)``."""

BAR_COUNT = 8
CODE_ROWS = 4
CODE_COLUMNS = 26
CODE_BITS = CODE_ROWS * CODE_COLUMNS
MIN_WIDTH = 64
MIN_HEIGHT = 48

_BARS_BOTTOM = 0.68
_CODE_TOP = 0.72
_CODE_BOTTOM = 0.98
_CODE_LEFT = 0.02
_CODE_RIGHT = 0.98
_SEPARATOR_GREY = 128
# A block reads as black below _BLACK_BELOW and white above _WHITE_ABOVE; between is "unsure".
_BLACK_BELOW = 90.0
_WHITE_ABOVE = 165.0
_FLAG_NIGHT = 0x01

# BGR, 100 % colour bars in the usual order.
_DAY_BARS: tuple[tuple[int, int, int], ...] = (
    (255, 255, 255),  # white
    (0, 255, 255),  # yellow
    (255, 255, 0),  # cyan
    (0, 255, 0),  # green
    (255, 0, 255),  # magenta
    (0, 0, 255),  # red
    (255, 0, 0),  # blue
    (0, 0, 0),  # black
)
_NIGHT_BARS: tuple[tuple[int, int, int], ...] = tuple(
    (g, g, g) for g in (round(255 * (BAR_COUNT - 1 - i) / (BAR_COUNT - 1)) for i in range(8))
)


@dataclass(frozen=True)
class BarReading:
    """One colour bar as measured in a received frame."""

    index: int
    expected: tuple[int, int, int]
    measured: tuple[float, float, float]

    @property
    def error(self) -> float:
        """Largest absolute difference over the B, G and R channels (0..255)."""
        return max(abs(m - e) for m, e in zip(self.measured, self.expected, strict=True))


@dataclass(frozen=True)
class PatternReading:
    """What :func:`decode_pattern` read from a frame."""

    counter: int
    timestamp_ms: int
    night: bool
    bars: tuple[BarReading, ...]

    @property
    def max_error(self) -> float:
        """The worst bar's colour error (0..255)."""
        return max(bar.error for bar in self.bars)

    def age_s(self, now: float) -> float:
        """Seconds from capture to ``now`` (a ``time.time()`` value): the glass-to-glass delay."""
        return now - self.timestamp_ms / 1000.0


def expected_bar_colour(i: int, *, night: bool = False) -> tuple[int, int, int]:
    """The BGR colour drawn for bar ``i`` (0 = left), in day or night (greyscale) mode."""
    if not 0 <= i < BAR_COUNT:
        raise ValueError(f"bar index must be 0..{BAR_COUNT - 1}, got {i}")
    return (_NIGHT_BARS if night else _DAY_BARS)[i]


def _edges(start: float, stop: float, count: int) -> list[int]:
    return [round(start + (stop - start) * k / count) for k in range(count + 1)]


@dataclass(frozen=True)
class _Layout:
    bar_x: list[int]
    bars_bottom: int
    code_top: int
    code_x: list[int]
    code_y: list[int]


@functools.lru_cache(maxsize=16)
def _layout(width: int, height: int) -> _Layout:
    if width < MIN_WIDTH or height < MIN_HEIGHT:
        raise ValueError(
            f"pattern needs at least {MIN_WIDTH}x{MIN_HEIGHT} pixels, got {width}x{height}"
        )
    return _Layout(
        bar_x=_edges(0, width, BAR_COUNT),
        bars_bottom=round(height * _BARS_BOTTOM),
        code_top=round(height * _CODE_TOP),
        code_x=_edges(width * _CODE_LEFT, width * _CODE_RIGHT, CODE_COLUMNS),
        code_y=_edges(height * _CODE_TOP, height * _CODE_BOTTOM, CODE_ROWS),
    )


@functools.lru_cache(maxsize=8)
def _background(width: int, height: int, night: bool) -> Image:
    layout = _layout(width, height)
    image = np.full((height, width, 3), _SEPARATOR_GREY, dtype=np.uint8)
    for i in range(BAR_COUNT):
        x0, x1 = layout.bar_x[i], layout.bar_x[i + 1]
        image[: layout.bars_bottom, x0:x1] = expected_bar_colour(i, night=night)
    image.setflags(write=False)
    return image


def _payload(counter: int, timestamp_ms: int, night: bool) -> bytes:
    body = (
        counter.to_bytes(4, "big")
        + timestamp_ms.to_bytes(6, "big")
        + bytes([_FLAG_NIGHT if night else 0])
    )
    return body + binascii.crc_hqx(body, 0xFFFF).to_bytes(2, "big")


def draw_pattern(
    width: int, height: int, counter: int, timestamp_ms: int, *, night: bool = False
) -> Image:
    """Draw the pattern for frame ``counter`` captured at ``timestamp_ms`` (ms since the epoch).

    :param counter: taken modulo 2**32.
    :param timestamp_ms: 0 <= timestamp_ms < 2**48 (good until the year 10889).
    :param night: greyscale bars, as an IR camera would deliver.
    :returns: a new BGR ``uint8`` array of shape ``(height, width, 3)``.
    """
    if not 0 <= timestamp_ms < 1 << 48:
        raise ValueError(f"timestamp_ms must fit in 48 bits, got {timestamp_ms}")
    layout = _layout(width, height)
    image = _background(width, height, night).copy()
    payload = _payload(counter % (1 << 32), timestamp_ms, night)
    bits = np.unpackbits(np.frombuffer(payload, dtype=np.uint8))
    for n, bit in enumerate(bits):
        row, column = divmod(n, CODE_COLUMNS)
        y0, y1 = layout.code_y[row], layout.code_y[row + 1]
        x0, x1 = layout.code_x[column], layout.code_x[column + 1]
        image[y0:y1, x0:x1] = 255 if bit else 0
    return image


def _centre_mean(
    image: npt.NDArray[Any], y0: int, y1: int, x0: int, x1: int
) -> npt.NDArray[np.float64]:
    """Mean BGR over the middle half of a rectangle (edges are where codecs smear)."""
    dy, dx = (y1 - y0) // 4, (x1 - x0) // 4
    patch = image[y0 + dy : y1 - dy, x0 + dx : x1 - dx]
    return np.asarray(patch.reshape(-1, 3).mean(axis=0), dtype=np.float64)


def _read_bits(image: npt.NDArray[Any], layout: _Layout) -> bytes | None:
    bits = np.zeros(CODE_BITS, dtype=np.uint8)
    for n in range(CODE_BITS):
        row, column = divmod(n, CODE_COLUMNS)
        mean = _centre_mean(
            image,
            layout.code_y[row],
            layout.code_y[row + 1],
            layout.code_x[column],
            layout.code_x[column + 1],
        )
        level = float(mean.mean())
        if level < _BLACK_BELOW:
            bits[n] = 0
        elif level > _WHITE_ABOVE:
            bits[n] = 1
        else:
            return None
    return np.packbits(bits).tobytes()


def decode_pattern(image: npt.NDArray[Any]) -> PatternReading | None:
    """Read counter, capture time and bar colours from a (possibly decoded) pattern frame.

    ``image`` is BGR, ``(height, width, 3)``, normally ``uint8`` (as from
    ``av.VideoFrame.to_ndarray(format="bgr24")``).

    :returns: the reading, or ``None`` if the frame does not carry a valid code (not a BGR
        image, too small, an unsure block, unknown flags or a CRC mismatch).
    """
    if image.ndim != 3 or image.shape[2] != 3:
        return None
    height, width = image.shape[:2]
    if width < MIN_WIDTH or height < MIN_HEIGHT:
        return None
    layout = _layout(width, height)
    payload = _read_bits(image, layout)
    if payload is None:
        return None
    body, crc = payload[:11], int.from_bytes(payload[11:13], "big")
    if binascii.crc_hqx(body, 0xFFFF) != crc or body[10] & ~_FLAG_NIGHT:
        return None
    night = bool(body[10] & _FLAG_NIGHT)
    bars = []
    for i in range(BAR_COUNT):
        x0, x1 = layout.bar_x[i], layout.bar_x[i + 1]
        mean = _centre_mean(image, 0, layout.bars_bottom, x0, x1)
        measured = (float(mean[0]), float(mean[1]), float(mean[2]))
        bars.append(BarReading(i, expected_bar_colour(i, night=night), measured))
    return PatternReading(
        counter=int.from_bytes(body[0:4], "big"),
        timestamp_ms=int.from_bytes(body[4:10], "big"),
        night=night,
        bars=tuple(bars),
    )
