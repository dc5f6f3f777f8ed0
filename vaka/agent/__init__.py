"""The device agent: one process per unit."""
