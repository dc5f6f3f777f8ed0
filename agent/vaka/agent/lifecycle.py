"""The unit's identity over its life: certificate renewal, and central's signed orders
(renew now, decommission). Decommissioning wipes the credentials and sends the unit back to
enrolment."""

import asyncio
import logging
from pathlib import Path

from joserfc.jwk import OKPKey

from vaka.agent.link import UnitLink
from vaka.agent.renewal import CertificateRenewal
from vaka.errors import CertificateError
from vaka.protocol.messages import AnyMessage, CommandMessage, EventMessage, EventPayload
from vaka.protocol.topics import Channel
from vaka.provisioning.orders import BadOrder, verify_order

log = logging.getLogger(__name__)

#: What decommissioning removes from the credentials directory.
CREDENTIAL_FILES = ("unit.key", "unit.crt", "config.jws")


def wipe_credentials(directory: Path) -> list[str]:
    """Delete the unit's key, certificate and signed config; returns what was removed."""
    removed = []
    for name in CREDENTIAL_FILES:
        path = directory / name
        if path.exists():
            path.unlink()
            removed.append(name)
    return removed


class UnitLifecycle:
    """Renewal and orders for one enrolled unit."""

    def __init__(
        self,
        link: UnitLink,
        device_id: str,
        cert: Path,
        key: Path,
        order_key: OKPKey | None,
        credentials_dir: Path | None,
    ) -> None:
        self.link = link
        self.device_id = device_id
        self.order_key = order_key
        self.credentials_dir = credentials_dir
        self.decommissioned = asyncio.Event()
        self._seen_orders: set[str] = set()
        # Renewal only for an identity the unit owns (in its credentials directory).
        self.renewal: CertificateRenewal | None = None
        if credentials_dir is not None and cert.parent == credentials_dir:
            self.renewal = CertificateRenewal(link, device_id, cert, key)
            link.on(Channel.CERT, self._on_cert)
        link.on(Channel.COMMAND, self.on_command)

    async def run(self) -> None:
        """Renew when due (forever), or wait quietly when renewal is not this unit's business."""
        if self.renewal is not None:
            await self.renewal.run()
        else:
            await asyncio.Event().wait()

    async def _on_cert(self, message: AnyMessage) -> None:
        assert self.renewal is not None
        try:
            await self.renewal.on_cert(message)
        except (CertificateError, ValueError) as err:
            await self._report("refused", {"topic": "cert", "reason": str(err)[:200]})

    async def on_command(self, message: AnyMessage) -> None:
        """A signed order from central."""
        assert isinstance(message, CommandMessage)
        if self.order_key is None:
            await self._report("refused", {"topic": "command", "reason": "no config key pinned"})
            return
        try:
            order = verify_order(message.payload.order, self.order_key, self.device_id)
        except BadOrder as err:
            await self._report("refused", {"topic": "command", "reason": str(err)[:200]})
            return
        if order.jti in self._seen_orders:
            return  # the retained order again after a reconnect
        self._seen_orders.add(order.jti)
        log.warning("central orders: %s (%s)", order.order, order.reason or "no reason given")
        if order.order == "renew" and self.renewal is not None:
            self.renewal.request_now()
        elif order.order == "decommission":
            await self._report("info", {"order": "decommission", "state": "wiping"})
            self.decommissioned.set()

    def wipe(self) -> list[str]:
        """Remove the credentials (after the agent has stopped)."""
        if self.credentials_dir is None:
            return []
        removed = wipe_credentials(self.credentials_dir)
        log.warning("decommissioned: removed %s", ", ".join(removed) or "nothing")
        return removed

    async def _report(self, kind: str, detail: dict[str, str]) -> None:
        event = EventMessage(payload=EventPayload(kind=kind, detail=detail))
        await self.link.publish_reliably(Channel.EVENTS, event)
