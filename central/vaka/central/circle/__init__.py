"""The citizen's circle: relatives, friends and other citizens who call the citizen's TV from
their own phone, tablet or PC — the contacts, their invitations, credentials and sessions, and
the rules of their calls.
"""
