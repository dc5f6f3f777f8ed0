"""Two questions to the X server, through libX11 with ctypes (OpenCV's GUI needs libX11 anyway).

- :func:`window_manager_running`: is there an EWMH window manager (one that honours fullscreen)?
- :func:`screen_pixels`: what is on the screen's top-left corner, to check that OpenCV's window
  really shows what was drawn (see :data:`vaka.agent.ui.screen.SETTLE_MS`).

Both answer ``None``/``False`` rather than fail when libX11 or the display is missing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

from vaka.agent.media.source import BgrImage

_ALL_PLANES = 0xFFFFFFFF
_Z_PIXMAP = 2


class _XImage(ctypes.Structure):
    """The start of Xlib's ``XImage``, up to its function table (``f.destroy_image`` first)."""

    _fields_ = [
        ("width", ctypes.c_int),
        ("height", ctypes.c_int),
        ("xoffset", ctypes.c_int),
        ("format", ctypes.c_int),
        ("data", ctypes.c_void_p),
        ("byte_order", ctypes.c_int),
        ("bitmap_unit", ctypes.c_int),
        ("bitmap_bit_order", ctypes.c_int),
        ("bitmap_pad", ctypes.c_int),
        ("depth", ctypes.c_int),
        ("bytes_per_line", ctypes.c_int),
        ("bits_per_pixel", ctypes.c_int),
        ("red_mask", ctypes.c_ulong),
        ("green_mask", ctypes.c_ulong),
        ("blue_mask", ctypes.c_ulong),
        ("obdata", ctypes.c_void_p),
        ("create_image", ctypes.c_void_p),
        ("destroy_image", ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p)),
    ]


@functools.cache
def _libx11() -> Any:
    name = ctypes.util.find_library("X11")
    if name is None:
        return None
    x = ctypes.CDLL(name)
    vp, ul = ctypes.c_void_p, ctypes.c_ulong
    x.XOpenDisplay.restype, x.XOpenDisplay.argtypes = vp, [ctypes.c_char_p]
    x.XCloseDisplay.argtypes = [vp]
    x.XDefaultRootWindow.restype, x.XDefaultRootWindow.argtypes = ul, [vp]
    x.XDefaultScreen.argtypes = [vp]
    x.XDisplayWidth.argtypes = x.XDisplayHeight.argtypes = [vp, ctypes.c_int]
    x.XInternAtom.restype, x.XInternAtom.argtypes = ul, [vp, ctypes.c_char_p, ctypes.c_int]
    x.XGetWindowProperty.argtypes = [vp, ul, ul, ctypes.c_long, ctypes.c_long, ctypes.c_int, ul]
    x.XGetWindowProperty.argtypes += [vp] * 5
    x.XFree.argtypes = [vp]
    x.XGetImage.restype = ctypes.POINTER(_XImage)
    x.XGetImage.argtypes = [vp, ul, ctypes.c_int, ctypes.c_int, ctypes.c_uint, ctypes.c_uint]
    x.XGetImage.argtypes += [ul, ctypes.c_int]
    return x


@contextmanager
def _connection(display: str) -> Iterator[tuple[Any, int] | None]:
    x = _libx11()
    dpy = x.XOpenDisplay(display.encode()) if x is not None else None
    if not dpy:
        yield None
        return
    try:
        yield x, dpy
    finally:
        x.XCloseDisplay(dpy)


def window_manager_running(display: str) -> bool:
    """Whether an EWMH window manager runs on ``display`` (``_NET_SUPPORTING_WM_CHECK`` is set
    on the root window)."""
    with _connection(display) as conn:
        if conn is None:
            return False
        x, dpy = conn
        atom = x.XInternAtom(dpy, b"_NET_SUPPORTING_WM_CHECK", 1)  # only if it exists
        if not atom:
            return False
        kind, fmt = ctypes.c_ulong(), ctypes.c_int()
        count, after, data = ctypes.c_ulong(), ctypes.c_ulong(), ctypes.c_void_p()
        outs = (kind, fmt, count, after, data)
        root = x.XDefaultRootWindow(dpy)
        status = x.XGetWindowProperty(dpy, root, atom, 0, 1, 0, 0, *map(ctypes.byref, outs))
        if data:
            x.XFree(data)
        return bool(status == 0 and count.value > 0)


def screen_pixels(display: str, width: int, height: int) -> BgrImage | None:
    """The top-left ``width`` x ``height`` of the screen (clipped to it) as BGR, or ``None`` if it
    cannot be read (no libX11, no display, not a 24/32-bit true-colour screen)."""
    with _connection(display) as conn:
        if conn is None:
            return None
        x, dpy = conn
        screen = x.XDefaultScreen(dpy)
        w = min(width, x.XDisplayWidth(dpy, screen))
        h = min(height, x.XDisplayHeight(dpy, screen))
        if w <= 0 or h <= 0:
            return None
        root = x.XDefaultRootWindow(dpy)
        image = x.XGetImage(dpy, root, 0, 0, w, h, _ALL_PLANES, _Z_PIXMAP)
        if not image:
            return None
        try:
            im = image.contents
            masks = (im.red_mask, im.green_mask, im.blue_mask)
            if im.bits_per_pixel != 32 or masks != (0xFF0000, 0xFF00, 0xFF) or im.byte_order:
                return None  # not little-endian BGRX: not worth decoding for a check
            raw = ctypes.string_at(im.data, im.bytes_per_line * h)
            rows = np.frombuffer(raw, np.uint8).reshape(h, im.bytes_per_line // 4, 4)
            return np.ascontiguousarray(rows[:, :w, :3])
        finally:
            image.contents.destroy_image(ctypes.addressof(image.contents))
