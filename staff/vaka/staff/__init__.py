"""Staff-side tools that talk to central's HTTP API (never to units directly)."""
