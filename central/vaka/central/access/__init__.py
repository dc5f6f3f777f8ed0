"""Staff access: accounts and log-in checks, the second factor, sessions, and the box that seals
secrets at rest.
"""
