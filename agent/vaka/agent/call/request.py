"""The citizen's call to the night staff (the TV's one button), or to one of their people (the
People screen), as far as the unit goes.

:meth:`CitizenRequest.open` puts the unit into ``requesting`` (so the screen shows the call at
once and a second press does nothing), :meth:`CitizenRequest.send` sends the request to central.
Central answers with ``state``/``error`` messages and, when a night-staff member accepts, with a
``citizen_call`` offer naming the request, which the call manager takes at once. A call to one
of the citizen's people is the same request with ``state="contact_call"`` and the contact as
``callee``; the contact who answers dials a ``contact_call`` naming the request.
"""

import logging
import secrets

from vaka.agent.call.signals import CallSignals
from vaka.agent.call.state import CallPhase, UnitCall
from vaka.errors import LinkError
from vaka.protocol.messages import SignalPayload

log = logging.getLogger(__name__)

#: the purpose of a call between the citizen and one of their people (either way)
CONTACT_CALL = "contact_call"


class CitizenRequest:
    """Opens, sends and withdraws the citizen's call request."""

    def __init__(self, device_id: str, state: UnitCall, signals: CallSignals) -> None:
        self.device_id = device_id
        self.state = state
        self.signals = signals
        self._callee: str | None = None

    @property
    def pending(self) -> str | None:
        """The open request's id, if the unit is ``requesting``."""
        return self.state.call_id if self.state.phase is CallPhase.REQUESTING else None

    @property
    def callee(self) -> str | None:
        """The contact the open request calls (``None``: the staff)."""
        return self._callee if self.pending is not None else None

    def open(self, callee: str | None = None) -> str:
        """Start a request (to the staff, or to the contact ``callee``): the unit is
        ``requesting`` from now on; returns its id.

        :raises LinkError: busy with a call or another request.
        """
        if self.state.busy:
            raise LinkError("busy: a call is in progress")
        request_id = f"{self.device_id}.{secrets.token_hex(6)}"
        self._callee = callee
        self.state.requesting(request_id, "citizen_call" if callee is None else CONTACT_CALL)
        return request_id

    async def send(self, request_id: str) -> None:
        """Send the opened request to central.

        :raises LinkError: the unit is offline (the unit is ``idle`` again then).
        """
        callee = self._callee
        purpose = "citizen_call" if callee is None else CONTACT_CALL
        payload = SignalPayload(kind="request", call_id=request_id, state=purpose, callee=callee)
        try:
            await self.signals.send(payload)
        except LinkError:
            if self.pending == request_id:
                self.state.idle()
            raise
        log.info("%s request %s sent", purpose, request_id)
        detail = {"action": "requested", "call_id": request_id, "purpose": purpose}
        await self.signals.event("call", detail if callee is None else {**detail, "to": callee})

    async def request_staff(self) -> str:
        """:meth:`open` and :meth:`send` in one; returns the request's id."""
        request_id = self.open()
        await self.send(request_id)
        return request_id

    async def cancel(self, reason: str) -> None:
        """Withdraw the open request (the citizen pressed Cancel, or the unit gave up)."""
        request_id = self.pending
        if request_id is None:
            return
        self.state.idle()
        await self.signals.hangup(request_id, reason)
        await self.signals.event(
            "call", {"action": "cancelled", "call_id": request_id, "reason": reason[:200]}
        )
