"""Why a call ended or was not taken, as a :class:`~vaka.protocol.reasons.Reason` that the
console shows in the reader's language: central's own words carry their code where they are
made; the unit's words (free English text from the agent) get theirs here, from the phrases
the agent sends. A phrase not listed keeps no code, and the console shows it as it is.
"""

from vaka.central.calls.requests import CallRequest
from vaka.protocol.reasons import Reason, unit_said

YOU_HUNG_UP = Reason("you hung up", "you_hung_up")
NO_STAFF = Reason("nobody from the night staff is on duty", "no_staff_on_duty")
CANCELLED = Reason("cancelled", "cancelled")

#: the agent's words for a call it did not take, by the outcome it gives
UNIT_OUTCOMES = {"declined": "unit_declined", "busy": "unit_busy"}


def unit_ended(text: str) -> Reason:
    """The unit's reason for ending a running call, with its code where it is one we know."""
    return unit_said(text)


def unit_refusal(text: str, outcome: str | None, ring_s: float) -> Reason:
    """The unit's refusal of a call (or its giving up ringing), as the staff side is told it."""
    if outcome == "no_answer":
        return Reason(text, "no_answer", seconds=ring_s)
    said = f"the unit refused: {text}"
    code = UNIT_OUTCOMES.get(outcome or "")
    if unit_said(text).code == "do_not_disturb":  # the citizen's evening: the page says so
        code = "do_not_disturb"
    if code is not None:
        return Reason(said, code)
    return Reason(said, "unit_refused", why=text)


def request_ended(request: CallRequest | None) -> Reason:
    """Why a citizen's request no longer rings (or cannot be taken), as staff are told."""
    if request is None:
        return Reason("the citizen's request is unknown", "request_unknown")
    if request.accepted_by is not None:
        name = request.accepted_name
        return Reason(f"already answered by {name}", "already_answered", name=name)
    if request.state == "cancelled":
        return Reason("the citizen cancelled the call", "citizen_cancelled")
    if request.state == "unanswered":
        return Reason(
            "the citizen's call was not answered in time and has been escalated",
            "request_unanswered",
        )
    if request.state == "no_staff":
        return Reason(
            "the citizen's call found nobody on duty and has been escalated", "request_no_staff"
        )
    return Reason(f"the citizen's call is {request.state}", "request_state", state=request.state)


def unanswered(ringing: bool, ring_s: float, answer_s: float) -> Reason:
    """Why central gave up on a unit: it rang and nobody answered, or it never replied."""
    if ringing:
        return Reason(f"no answer after {ring_s:g} s", "no_answer", seconds=ring_s)
    return Reason(
        f"the unit did not answer within {answer_s:.0f} s", "unit_silent", seconds=round(answer_s)
    )


def nobody_to_ring(
    unit: str, citizen: str | None, groups: set[str], watched: bool, live: bool
) -> Reason | None:
    """Why a citizen's call rings nobody (and is escalated at once); ``None`` if someone."""
    if citizen is None:
        return Reason(f"unit {unit} is not assigned to a citizen", "unit_unassigned", unit=unit)
    if not groups:
        return Reason(
            f"no staff group takes citizen calls from citizen {citizen}",
            "no_group_for_citizen",
            citizen=citizen,
        )
    if not watched:
        return NO_STAFF
    if not live:
        return Reason("nobody from the night staff on duty is connected", "no_staff_connected")
    return None
