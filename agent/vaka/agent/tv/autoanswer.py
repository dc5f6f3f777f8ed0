"""Which calls the TV answers by itself, from the signed configuration's ``auto_answer`` rules.

A call is answered by itself only if a rule names its purpose *and* the caller's permitting group
as central put it in the signed ticket. A call from one of the citizen's contacts has no group:
it answers by itself only when central's signed ticket says so (``aa``, set by staff for that one
contact), after that countdown. Anything else only rings. Central issues tickets only
inside the permission matrix, so a caller outside it never reaches this point; a ticket without a
group never auto-answers, and neither does an emergency (break-glass) call unless a rule names
``break_glass`` explicitly.
"""

from collections.abc import Sequence

from vaka.provisioning.bundles import AutoAnswerRule
from vaka.provisioning.tickets import TicketClaims


def auto_answer_countdown(rules: Sequence[AutoAnswerRule], claims: TicketClaims) -> int | None:
    """Seconds until ``claims``' call is answered by itself, or ``None`` if it only rings.

    The first matching rule wins.
    """
    if claims.purpose == "contact_call":
        return claims.aa
    if claims.grp is None:
        return None
    for rule in rules:
        if rule.purpose == claims.purpose and claims.grp in rule.caller_groups:
            return rule.countdown_s
    return None
