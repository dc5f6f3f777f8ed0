"""Messages and reminders for TV units: requests, the desk that signs, schedules, sends and follows
them up.
"""
