"""HTTP routes only: every handler of the API and the pages, one authentication, one JSON error,
one dependencies object.
"""
