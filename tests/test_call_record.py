"""The rules that keep a unit from writing history (:mod:`vaka.central.audit.call_record`): a pure
function of central's ticket record, the call's recorded events and the new event."""

import itertools
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from vaka.central.audit.call_record import (
    EVENT_ID,
    RefusalBudget,
    UnitEvent,
    is_call_record,
    judge,
    ticketless_refusal,
)
from vaka.central.audit.trail import AuditEntry

UNIT = "u-cam"
CALL = "central-1.0123456789abcdef"

Step = tuple[str, dict[str, Any]]
#: (kind, detail) of each step of a real night check, in the order a unit reports it
STARTED: Step = ("call", {"action": "started"})
OPEN: Step = ("shutter", {"state": "open"})
CLOSED: Step = ("shutter", {"state": "closed"})
ENDED: Step = ("call", {"action": "ended", "duration_s": 4.2, "reason": "you hung up"})
REAL_ORDERS = [[STARTED, OPEN, CLOSED, ENDED], [OPEN, STARTED, CLOSED, ENDED]]


def ticket(unit: str = UNIT) -> AuditEntry:
    return AuditEntry(
        1, 100.0, "ticket_issued", "s-nurse", unit, "night_check", CALL, {}, "0" * 64, "x"
    )


def event(kind: str, detail: dict[str, Any], n: int = 0, call_id: str | None = CALL) -> UnitEvent:
    full = {**detail, **({"call_id": call_id} if call_id else {})}
    return UnitEvent(f"m-{n}", UNIT, kind, full, unit_ts=5.0, received_at=200.0 + n)


def recorded(so_far: list[AuditEntry], ev: UnitEvent) -> list[AuditEntry]:
    """``so_far`` with ``ev`` recorded as the trail would (only if judged ``record``)."""
    verdict = judge(ticket(), so_far, ev)
    assert verdict.entry is not None, verdict
    e = verdict.entry
    entry = AuditEntry(
        len(so_far) + 2, e.ts, e.kind, e.actor, e.unit, e.purpose, e.call_id, e.detail, "", ""
    )
    return [*so_far, entry]


def test_a_real_night_check_is_recorded_with_the_tickets_caller_and_centrals_time() -> None:
    so_far: list[AuditEntry] = []
    for n, (kind, detail) in enumerate(REAL_ORDERS[0]):
        # The unit claims someone else called for another reason: the ticket wins.
        forged = {**detail, "caller": "s-mallory", "purpose": "break_glass"}
        so_far = recorded(so_far, event(kind, forged, n))
    assert [e.kind for e in so_far] == [
        "call_started",
        "shutter_open",
        "shutter_closed",
        "call_ended",
    ]
    for n, entry in enumerate(so_far):
        assert (entry.actor, entry.purpose, entry.call_id) == ("s-nurse", "night_check", CALL)
        assert entry.ts == 200.0 + n  # central's receive time
        assert entry.detail["unit_ts"] == 5.0  # the unit's clock, kept apart
        assert entry.detail[EVENT_ID] == f"m-{n}"
        assert "caller" not in entry.detail and "purpose" not in entry.detail
    assert so_far[-1].detail["duration_s"] == 4.2


def test_no_ticket_no_record() -> None:
    verdict = judge(None, [], event(*STARTED))
    assert verdict.outcome == "refuse"
    assert verdict.reason == f"central issued no ticket for call {CALL!r}"


def test_a_ticket_for_another_unit_does_not_count() -> None:
    verdict = judge(ticket("u-other"), [], event(*STARTED))
    assert (verdict.outcome, verdict.reason) == (
        "refuse",
        f"call {CALL!r} was issued to another unit",
    )


def test_impossible_orders_are_refused_with_their_reason() -> None:
    started = recorded([], event(*STARTED, n=1))
    ended = recorded(recorded(started, event(*OPEN, n=2)), event(*CLOSED, n=3))
    ended = recorded(ended, event(*ENDED, n=4))
    cases = [
        ([], event(*ENDED, n=9), "an end before the start"),
        (started, event(*STARTED, n=9), "a second start of the same call"),
        (ended, event(*OPEN, n=9), "shutter_open after the call ended"),
        (ended, event(*STARTED, n=9), "call_started after the call ended"),
        (ended, event(*CLOSED, n=9), "shutter_closed after the call ended"),
        (recorded(started, event(*CLOSED, n=2)), event(*CLOSED, n=9), "the shutter closed twice"),
        (recorded(started, event(*OPEN, n=2)), event(*OPEN, n=9), "the shutter opened twice"),
        ([], event("call", {"action": "rewritten"}, 9), "unknown call action 'rewritten'"),
        ([], event("shutter", {"state": "open"}, 9, call_id=None), "shutter opened outside a call"),
    ]
    for so_far, ev, reason in cases:
        verdict = judge(ticket(), so_far, ev)
        assert (verdict.outcome, verdict.reason) == ("refuse", reason)


def test_a_resent_event_is_a_duplicate_not_a_second_start() -> None:
    so_far = recorded([], event(*STARTED, n=1))
    assert judge(ticket(), so_far, event(*STARTED, n=1)).outcome == "duplicate"
    assert judge(ticket(), so_far, event(*STARTED, n=2)).outcome == "refuse"


def test_the_shutter_may_close_right_after_the_end() -> None:
    so_far = recorded(
        recorded(recorded([], event(*STARTED, n=1)), event(*OPEN, n=2)), event(*ENDED, n=3)
    )
    assert judge(ticket(), so_far, event(*CLOSED, n=4)).outcome == "record"


def test_an_opening_cut_short_closes_without_having_opened() -> None:
    """The call ends while the shutter is still opening: the close wins, and the unit reports
    only the close (movements that end). True and the safe direction: recorded, during the call
    or just after its end."""
    started = recorded([], event(*STARTED, n=1))
    assert judge(ticket(), started, event(*CLOSED, n=2)).outcome == "record"
    ended = recorded(started, event(*ENDED, n=2))
    assert judge(ticket(), ended, event(*CLOSED, n=3)).outcome == "record"


def test_a_refused_offer_is_recorded_without_a_ticket_but_on_the_budget() -> None:
    refused = event("call", {"action": "refused", "reason": "bad signature"}, 1, call_id="forged-1")
    verdict = judge(None, [], refused)
    assert verdict.outcome == "record" and verdict.entry is not None
    assert verdict.entry.kind == "call_refused" and verdict.entry.actor is None
    assert ticketless_refusal(None, refused)
    assert not ticketless_refusal(ticket(), refused)


def test_a_citizens_request_is_not_a_call_record() -> None:
    assert not is_call_record("call", {"action": "requested", "call_id": "r-1"})
    assert is_call_record("call", {"action": "started"})
    assert is_call_record("shutter", {"state": "closed"})
    assert not is_call_record("button", {})


STEPS = [STARTED, OPEN, CLOSED, ENDED]


@given(st.lists(st.sampled_from(range(len(STEPS))), min_size=1, max_size=8))
def test_any_order_records_only_a_possible_prefix(picks: list[int]) -> None:
    """Whatever order a unit sends, what is recorded is one start, a shutter that alternates
    (a first close is an opening cut short), and nothing after the end but a closing shutter."""
    so_far: list[AuditEntry] = []
    for n, i in enumerate(picks):
        kind, detail = STEPS[i]
        verdict = judge(ticket(), so_far, event(kind, detail, n))
        if verdict.outcome == "record":
            so_far = recorded(so_far, event(kind, detail, n))
    kinds = [e.kind for e in so_far]
    assert kinds.count("call_started") <= 1 and kinds.count("call_ended") <= 1
    if "call_ended" in kinds:
        assert "call_started" in kinds[: kinds.index("call_ended")]
        after = kinds[kinds.index("call_ended") + 1 :]
        assert set(after) <= {"shutter_closed"} and len(after) <= 1
    shutter = [k for k in kinds if k.startswith("shutter_")]
    assert all(a != b for a, b in itertools.pairwise(shutter))  # alternate


@given(st.permutations(range(4)))
def test_every_real_order_is_recorded_whole(order: list[int]) -> None:
    """Any permutation that a real unit could send (start and open in either order, then close,
    then end) is recorded whole; and resending the lot changes nothing."""
    steps = [STEPS[i] for i in order]
    so_far: list[AuditEntry] = []
    for n, (kind, detail) in enumerate(steps):
        if judge(ticket(), so_far, event(kind, detail, n)).outcome == "record":
            so_far = recorded(so_far, event(kind, detail, n))
    if steps in REAL_ORDERS:
        assert len(so_far) == 4
    for n, (kind, detail) in enumerate(steps):
        if any(e.detail[EVENT_ID] == f"m-{n}" for e in so_far):
            assert judge(ticket(), so_far, event(kind, detail, n)).outcome == "duplicate"


def test_the_refusal_budget_bounds_what_is_written_per_unit() -> None:
    budget = RefusalBudget(burst=3, refill_s=60.0)
    taken = [budget.take("u-bad", 1000.0 + i * 0.01) for i in range(100)]
    assert taken.count(True) == 3
    assert budget.take("u-good", 1001.0)  # another unit has its own
    assert not budget.take("u-bad", 1030.0)
    assert budget.take("u-bad", 1061.0)  # one more per minute


def test_a_call_that_never_reached_media_ends_without_a_start() -> None:
    """The unit frees itself at the setup deadline with ``media: false`` and no ``started``."""
    ended = event("call", {"action": "ended", "call_id": CALL, "media": False})
    assert judge(ticket(), [], ended).outcome == "record"
    # ... but an end that claims media without a start is still out of order.
    claimed = event("call", {"action": "ended", "call_id": CALL, "media": True}, n=1)
    assert judge(ticket(), [], claimed).reason == "an end before the start"
