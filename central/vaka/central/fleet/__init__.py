"""The fleet registry: storage of units, presence merging, derived status and the ingest of unit
messages.
"""
