"""The device agent: one process per unit."""

__version__ = "0.1.0"
