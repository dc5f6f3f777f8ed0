"""Births and wills delivered late, twice or out of order never leave a wrong presence.

The same property is checked on the pure merge and on the database upsert that central uses.
"""

import itertools
from functools import reduce

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vaka.central.fleet.presence import Presence, merge
from vaka.central.fleet.store import SqlFleetStore, StateUpdate

_examples = itertools.count()


@st.composite
def histories(draw: st.DrawFn) -> tuple[list[Presence], Presence]:
    """A unit's true history of sessions, and what was delivered (shuffled, duplicated)."""
    n = draw(st.integers(1, 6))
    gaps = draw(st.lists(st.integers(1, 10**6), min_size=n, max_size=n))
    bdseqs = [sum(gaps[: i + 1]) for i in range(n)]
    messages: list[Presence] = []
    for i, bdseq in enumerate(bdseqs):
        messages.append(Presence.of("online", bdseq))
        last = i == n - 1
        end = draw(
            st.sampled_from(["alive", "offline", "stopped"])
            if last
            else st.sampled_from(["offline", "stopped"])
        )
        if end != "alive":
            messages.append(Presence.of(end, bdseq))
    truth = messages[-1]
    # Delivery: any older message may be lost or duplicated; the final truth arrives at least once.
    delivered = [m for m in messages[:-1] for _ in range(draw(st.integers(0, 3)))]
    delivered += [truth] * draw(st.integers(1, 3))
    return draw(st.permutations(delivered)), truth


@given(histories())
def test_merge_converges_on_the_truth(history: tuple[list[Presence], Presence]) -> None:
    delivered, truth = history
    final = reduce(merge, delivered, None)
    assert final == truth
    assert final.status == truth.status  # a live unit is never offline, a dead one never online


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(histories(), st.integers(1, 5))
def test_database_upsert_converges_on_the_truth(
    db_url: str, history: tuple[list[Presence], Presence], batch: int
) -> None:
    delivered, truth = history
    unit = f"u-prop-{next(_examples)}"  # one database for every example: a unit each
    store = SqlFleetStore(db_url)
    try:
        updates = [StateUpdate(unit, p, float(i)) for i, p in enumerate(delivered)]
        for start in range(0, len(updates), batch):
            store.apply_states(updates[start : start + batch])
        record = store.unit(unit)
        assert record is not None
        assert record.presence == truth
    finally:
        store.close()


def test_late_will_of_old_session_does_not_mark_new_session_offline() -> None:
    new_birth = Presence.of("online", 200)
    old_will = Presence.of("offline", 100)
    assert merge(new_birth, old_will) == new_birth
    assert merge(old_will, new_birth) == new_birth
