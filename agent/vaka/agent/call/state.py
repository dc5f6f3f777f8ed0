"""The unit's call state: one explicit state machine for "idle, ringing, in a call, ...".

Only the call machinery in ``call/`` moves it — the call manager, and the citizen's request
(:mod:`~vaka.agent.call.request`) — through the named transitions below, each going through
:meth:`UnitCall._set_state`; the TV controller reads it and listens to it to decide what the
screen shows, so the two never disagree about whether the unit is ringing or in a call.

::

    idle -> requesting -> connecting -> in_call -> idle     (the citizen's call to the night staff)
    idle -> ringing -> connecting -> in_call -> idle        (a call that rings on the unit first)
    idle -> connecting -> in_call -> idle                   (a call taken at once: the night check)

Any state may go back to ``idle`` (declined, cancelled, refused, failed, ended).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from enum import Enum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from vaka.agent.call.session import CallSession

log = logging.getLogger(__name__)

Listener = Callable[["CallPhase"], None]


class CallPhase(Enum):
    """Where the unit is with calls."""

    IDLE = "idle"
    REQUESTING = "requesting"
    "The citizen's call request (to the staff, or to one of their people) is out, not yet taken."
    RINGING = "ringing"
    "A verified call rings on the unit until the citizen (or the auto-answer) decides."
    CONNECTING = "connecting"
    "A call was taken; its peer connection is being set up."
    IN_CALL = "in_call"
    "The peer connection is up: the shutter opens, the camera streams."


class UnitCall:
    """The unit's one call state, with the call it is about (id, purpose, session) and the result
    of the last call. Listeners are called on the event loop, only on a change of phase."""

    def __init__(self) -> None:
        self._phase = CallPhase.IDLE
        self._listeners: list[Listener] = []
        self.call_id: str | None = None
        "The call (or the citizen's request) the phase is about; ``None`` when idle."
        self.purpose: str | None = None
        "Its purpose (``video_visit``, ``citizen_call``, ...), once known."
        self.session: CallSession | None = None
        "The call's session from ``connecting`` on."
        self.last_result: str | None = None
        "How the last call ended, or why it was refused (for health)."

    @property
    def phase(self) -> CallPhase:
        """The current phase."""
        return self._phase

    @property
    def busy(self) -> bool:
        """Whether a call, or the citizen's request for one, is under way."""
        return self._phase is not CallPhase.IDLE

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Call ``listener(new_phase)`` on every change; returns a function that unsubscribes."""
        self._listeners.append(listener)

        def unsubscribe() -> None:
            with contextlib.suppress(ValueError):
                self._listeners.remove(listener)

        return unsubscribe

    # ------------------------------------------------------------ transitions (the manager's)

    def requesting(self, request_id: str, purpose: str = "citizen_call") -> None:
        """The citizen's call request ``request_id`` went out (``contact_call``: to one of
        their people)."""
        self._set_state(CallPhase.REQUESTING, request_id, purpose, None)

    def ringing(self, call_id: str, purpose: str) -> None:
        """The verified call ``call_id`` rings on the unit."""
        self._set_state(CallPhase.RINGING, call_id, purpose, None)

    def connecting(self, session: CallSession) -> None:
        """The call was taken: its peer connection is being set up."""
        self._set_state(CallPhase.CONNECTING, session.call_id, session.claims.purpose, session)

    def in_call(self, session: CallSession) -> None:
        """The call's peer connection is up."""
        self._set_state(CallPhase.IN_CALL, session.call_id, session.claims.purpose, session)

    def idle(self, result: str | None = None) -> None:
        """Nothing is under way any more; ``result`` (if given) says how the last call ended."""
        if result is not None:
            self.last_result = result[:200]
        self._set_state(CallPhase.IDLE, None, None, None)

    def _set_state(
        self, new: CallPhase, call_id: str | None, purpose: str | None, session: CallSession | None
    ) -> None:
        old, about = self._phase, call_id or self.call_id
        self._phase = new
        self.call_id, self.purpose, self.session = call_id, purpose, session
        if old is new:
            return
        log.info("unit call %s: %s -> %s", about or "-", old.value, new.value)
        for listener in list(self._listeners):
            try:
                listener(new)
            except Exception:
                log.exception("call state listener failed")
