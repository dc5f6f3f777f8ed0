"""Vaka: software for municipal welfare-technology units (TV video visits, night-check cameras)."""

__version__ = "0.1.0"
