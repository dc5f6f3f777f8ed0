"""Presence merging: which of two state messages about one unit wins.

A unit's presence is ordered by ``(bdseq, rank)`` where ``rank`` is 0 for ``online``, 1 for
``offline`` (the will) and 2 for ``stopped`` (a clean exit). The newer session wins; within one
session the end wins over the beginning. Taking the maximum is commutative, associative and
idempotent, so births and wills that arrive late, twice or out of order, or at different central
instances, converge on the same answer. The database applies the same rule in its upsert (see
:mod:`vaka.central.fleet.store`).
"""

from dataclasses import dataclass

RANK = {"online": 0, "offline": 1, "stopped": 2}


@dataclass(frozen=True, order=True)
class Presence:
    """A unit's presence as carried by one state message."""

    bdseq: int
    rank: int
    status: str

    @classmethod
    def of(cls, status: str, bdseq: int) -> "Presence":
        """The presence of a state message."""
        return cls(bdseq, RANK[status], status)


def merge(current: Presence | None, incoming: Presence) -> Presence:
    """The presence after ``incoming`` has been seen."""
    if current is None:
        return incoming
    return max(current, incoming, key=lambda p: (p.bdseq, p.rank))
