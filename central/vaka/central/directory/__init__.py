"""Who is who: staff, groups, citizens, permissions and schedules, and the policy of who may call
what, when.
"""
