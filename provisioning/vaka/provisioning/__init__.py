"""Certificates, enrolment and signed bundles: what makes a unit a trusted member of the fleet.

Both sides may import this package: central issues, the agent verifies.
"""
