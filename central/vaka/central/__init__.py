"""The thin central service: broker configuration, fleet registry, tickets, audit, staff console."""
