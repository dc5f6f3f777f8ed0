"""Alembic's migrations of central's schema (:mod:`vaka.central.storage.migrate` runs them)."""
