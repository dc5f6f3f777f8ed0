"""The typed configuration of central: every section and settings model, read from TOML once at
start.
"""
