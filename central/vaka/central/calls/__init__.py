"""Calls: the signalling relay, the night watch (duty), citizens' calls and their requests, visits
and the night round.
"""
