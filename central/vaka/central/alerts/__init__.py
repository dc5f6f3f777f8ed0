"""Alerts before night checks and the webhook notifier that tells the outside world."""
