"""Counting and logging refused input, the same way on every side."""

import logging
from collections import Counter


class Refusals:
    """Counts refused messages by short reason and logs each with its full reason.

    ``category`` groups reasons for the counters (e.g. "bad message", "bad topic");
    ``reason`` is the sentence a support person reads in the log.
    """

    def __init__(self, logger: logging.Logger, what: str = "message") -> None:
        self._log = logger
        self._what = what
        self.by_category: Counter[str] = Counter()

    @property
    def total(self) -> int:
        """How many have been refused since start."""
        return sum(self.by_category.values())

    def refuse(self, category: str, reason: str, source: str) -> None:
        """Count and log one refusal."""
        self.by_category[category] += 1
        self._log.warning("refused %s from %s: %s", self._what, source, reason)
