"""Central's side of a unit's life: enrolment approval, renewal, revocation, re-enrolment and
decommissioning. Every step is audited and moves the unit's lifecycle
(:mod:`vaka.central.units.standing`)."""

import asyncio
import datetime as dt
import logging
import re
import tempfile
import time
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from joserfc.jwk import OKPKey

from vaka.central.audit.trail import AuditLog
from vaka.central.broker.mqtt import PublishRaw
from vaka.central.directory.directory import Directory
from vaka.central.fleet.lifecycle import Lifecycle
from vaka.central.settings.config import MqttSection, PkiSection
from vaka.central.units.enrolment import (
    EnrolmentQueue,
    EnrolmentRefused,
    check_csr,
    unknown_citizen,
)
from vaka.central.units.revocation import BrokerControl, CertificateRegistry, cut_session
from vaka.central.units.standing import UnitStanding
from vaka.errors import ProtocolError, ProvisioningError
from vaka.protocol.enrolment import (
    EnrolRequestMessage,
    EnrolResponseMessage,
    EnrolResponsePayload,
    decode_enrolment,
    display_code,
    enrol_topic,
    parse_enrol_topic,
)
from vaka.protocol.inbound import read_unit_message
from vaka.protocol.messages import (
    CertMessage,
    CertPayload,
    CommandMessage,
    CommandPayload,
    RenewMessage,
    encode,
)
from vaka.protocol.reasons import Reason
from vaka.protocol.refusals import Refusals
from vaka.protocol.topics import DEVICE_ID_PATTERN, Channel, device_topic
from vaka.provisioning import pki
from vaka.provisioning.orders import sign_order

log = logging.getLogger(__name__)


class Provisioner:
    """Approves enrolments and revokes units for one central instance."""

    def __init__(
        self,
        settings: PkiSection,
        mqtt: MqttSection,
        certs: CertificateRegistry,
        directory: Directory,
        audit: AuditLog,
        publish: PublishRaw,
        standing: UnitStanding,
    ) -> None:
        self.settings = settings
        self.standing = standing
        self.mqtt = mqtt
        self.certs = certs
        self.directory = directory
        self.audit = audit
        self.publish = publish
        self.control = BrokerControl(settings.broker_crl, settings.broker_pid_file)
        self.queue = EnrolmentQueue(
            certs.engine, settings.code_ttl_s, settings.max_pending, settings.new_pending_per_minute
        )
        self.refusals = Refusals(log, "enrolment request")
        self._tasks: set[asyncio.Task[None]] = set()

    # ------------------------------------------------------------ requests from units

    def on_request(self, topic: str, payload: Any) -> None:
        """An enrolment request arrived (every instance sees it; storing is idempotent)."""
        try:
            code, leaf = parse_enrol_topic(topic)
            if leaf != "csr" or not isinstance(payload, bytes | bytearray):
                raise ProtocolError("not a signing request")
            message = decode_enrolment(payload, "csr")
        except ProtocolError as err:
            self.refusals.refuse(type(err).__name__, str(err), topic[:80])
            return
        except Exception as err:  # the decoder is guarded; this is the last line for a bug
            self.refusals.refuse("unexpected", f"{type(err).__name__}: {err}"[:200], topic[:80])
            return
        assert isinstance(message, EnrolRequestMessage)
        task = asyncio.get_running_loop().create_task(self._admit(code, message))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _admit(self, code: str, message: EnrolRequestMessage) -> None:
        """Check and store a request as it arrives (refused ones are counted, never stored)."""
        p = message.payload
        try:
            new = await asyncio.to_thread(
                self.queue.admit, code, p.csr, p.profile, p.agent_version, time.time()
            )
        except EnrolmentRefused as err:
            self.refusals.refuse("EnrolmentRefused", str(err), display_code(code))
            return
        if new:
            log.info("unit waiting for enrolment with code %s (%s)", display_code(code), p.profile)

    def on_renew(self, topic: str, payload: Any) -> None:
        """A unit asks for a certificate for a new key (shared subscription: one instance)."""
        read = read_unit_message(topic, payload, (Channel.RENEW,), self.refusals)
        if read is None:
            return
        where, message = read
        assert isinstance(message, RenewMessage)
        task = asyncio.get_running_loop().create_task(
            self.renew(where.device_id, message.payload.csr)
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def renew(self, unit: str, csr: str) -> None:
        """Issue a certificate for a unit's new key, if the unit is still in good standing."""
        try:
            key = check_csr(csr, unit, subject=unit)
            if not await asyncio.to_thread(self.certs.has_active, unit):
                raise EnrolmentRefused(f"{unit} has no valid certificate left: enrol it again")
        except Exception as err:  # EnrolmentRefused, or whatever a crafted CSR makes a parser raise
            self.refusals.refuse("renewal", f"{type(err).__name__}: {err}"[:200], unit)
            await asyncio.to_thread(
                self.audit.append, "renewal_refused", unit=unit, reason=str(err)
            )
            return
        cert = await asyncio.to_thread(
            self.certs.issue, unit, key, dt.timedelta(days=self.settings.unit_cert_days), "unit"
        )
        answer = CertMessage(payload=CertPayload(cert_chain=self._chain(cert)))
        await self.publish(device_topic(unit, Channel.CERT), encode(answer), False)
        await asyncio.to_thread(
            self.audit.append,
            "cert_renewed",
            unit=unit,
            serial=format(cert.serial_number, "x"),
            expires_at=cert.not_valid_after_utc.timestamp(),
        )

    # ------------------------------------------------------------ approval

    async def approve(
        self,
        code: str,
        profile: str,
        citizen: str,
        group: str | None,
        actor: str,
        unit_id: str | None = None,
        replaces: str | None = None,
        *,
        create_citizen: bool = False,
    ) -> dict[str, Any]:
        """Check the request, sign its certificate, assign the unit, answer the unit. ``citizen``
        must be in the directory unless ``create_citizen`` (a typo must not create one);
        ``replaces``, the same citizen's unit this one replaces, is revoked in the same step."""
        now = time.time()
        try:
            public_key, unit, new_citizen = await self._approvable(
                code, profile, citizen, group, unit_id, replaces, now, create_citizen
            )
        except EnrolmentRefused as err:
            await asyncio.to_thread(
                self.audit.append, "enrolment_refused", actor=actor, code=code, reason=str(err)
            )
            raise
        lifetime = dt.timedelta(days=self.settings.unit_cert_days)
        cert = await asyncio.to_thread(self.certs.issue, unit, public_key, lifetime, "unit")
        await asyncio.to_thread(self.directory.assign_unit, unit, citizen, group, profile)
        replaced = [replaces] if replaces else []
        if replaces:
            await self._retire(replaces, unit, actor)
        await asyncio.to_thread(self.queue.mark_approved, code, unit, actor, now)
        # Enrolling before the unit has its certificate: its first connection makes it active.
        await self.standing.move(unit, Lifecycle.ENROLLING, actor, _waiting(code))
        answer = EnrolResponseMessage(
            payload=EnrolResponsePayload(unit_id=unit, cert_chain=self._chain(cert))
        )
        await self.publish(enrol_topic(code, "cert"), encode(answer), True)
        await asyncio.to_thread(
            self.audit.append,
            "unit_enrolled",
            actor=actor,
            unit=unit,
            code=code,
            citizen=citizen,
            group=group,
            profile=profile,
            serial=format(cert.serial_number, "x"),
            replaced=replaced,
            citizen_created=new_citizen,
        )
        return {
            "unit": unit,
            "citizen": citizen,
            "profile": profile,
            "replaced": replaced,
            "citizen_created": new_citizen,
            "expires_at": cert.not_valid_after_utc.timestamp(),
        }

    async def _approvable(
        self,
        code: str,
        profile: str,
        citizen: str,
        group: str | None,
        unit_id: str | None,
        replaces: str | None,
        now: float,
        create_citizen: bool,
    ) -> tuple[pki.ec.EllipticCurvePublicKey, str, bool]:
        """The request's key, the unit id and whether the citizen is new, if ``code`` may be
        approved so; else :class:`EnrolmentRefused`."""
        enrolment = await asyncio.to_thread(self.queue.check_approvable, code, now)
        new_citizen = not await asyncio.to_thread(self.directory.citizen_exists, citizen)
        if new_citizen and not create_citizen:
            raise unknown_citizen(citizen)
        public_key = check_csr(enrolment.csr, code)
        if enrolment.profile != profile:
            raise EnrolmentRefused(f"the unit runs the {enrolment.profile} image, not {profile}")
        if group is not None and not await asyncio.to_thread(self.directory.group_exists, group):
            raise EnrolmentRefused(f"there is no staff group {group}")
        unit = unit_id or f"u-{code.lower()}"
        if not re.fullmatch(DEVICE_ID_PATTERN, unit):
            raise EnrolmentRefused(f"{unit!r} is not a unit id (u-...)")
        if replaces is not None:
            owner = await asyncio.to_thread(self.directory.citizen_of, replaces)
            if owner != citizen:
                raise EnrolmentRefused(
                    f"{replaces} is not a unit of citizen {citizen}: nothing to replace"
                )
        return public_key, unit, new_citizen

    async def _retire(self, old: str, unit: str, actor: str) -> None:
        """Take the unit ``unit`` replaces out of the home and revoke it."""
        await asyncio.to_thread(self.directory.unassign_unit, old)
        try:
            await self.revoke(old, f"replaced by {unit}", actor)
        except ProvisioningError as err:
            log.warning("replaced unit %s: %s", old, err)

    def _chain(self, cert: x509.Certificate) -> str:
        """``cert`` and the issuing CA's certificate, PEM."""
        return b"".join(
            c.public_bytes(serialization.Encoding.PEM) for c in (cert, self.certs.issuing.cert)
        ).decode()

    async def refresh_crl(self, every_s: float) -> None:
        """Check the CRL now and every ``every_s`` and re-issue it when it is due: Mosquitto
        refuses every client once the CRL's next update has passed (it is valid for 7 days,
        re-issued with half of that left, or at once if it is not this central's current one)."""
        while True:
            try:
                if await asyncio.to_thread(self.certs.renew_crl, self.control):
                    log.info("CRL re-issued (%d revoked certificates)", len(self.certs.revoked()))
            except ProvisioningError as err:
                log.error("CRL could not be re-issued: %s", err)
            await asyncio.sleep(every_s)

    # ------------------------------------------------------------ decommissioning

    async def decommission(
        self,
        unit: str,
        reason: str,
        actor: str,
        order_key: OKPKey | None,
        wait_s: float = 5.0,
        *,
        reenrol: bool = False,
    ) -> dict[str, Any]:
        """Order the unit to wipe itself, revoke it, take it out of the directory; audited.

        With ``reenrol`` the unit stays assigned and becomes *enrolling*: it shows a new code,
        which a technician approves as this unit again (``unit_id``)."""
        becomes = Lifecycle.ENROLLING if reenrol else Lifecycle.DECOMMISSIONED
        await self.standing.check(unit, becomes)
        topic = device_topic(unit, Channel.COMMAND)
        ordered = order_key is not None
        if order_key is not None:
            order = sign_order(unit, "decommission", order_key, reason)
            message = CommandMessage(payload=CommandPayload(order=order))
            await self.publish(topic, encode(message), True)
            await asyncio.sleep(wait_s)  # the unit reports "wiping" and stops
            await self.publish(topic, b"", True)  # clear the retained order
        what = "re-enrolment" if reenrol else "decommissioned"
        try:
            serials = await self.revoke(unit, f"{what}: {reason}", actor, becomes=None)
        except ProvisioningError as err:
            log.warning("%s of %s: %s", what, unit, err)
            serials = []
        if not reenrol:
            await asyncio.to_thread(self.directory.unassign_unit, unit)
        moved = await self.standing.move(unit, becomes, actor, reason)
        await asyncio.to_thread(
            self.audit.append,
            "unit_reenrol_ordered" if reenrol else "unit_decommissioned",
            actor=actor,
            unit=unit,
            reason=reason,
            wipe_ordered=ordered,
            serials=serials,
        )
        return {
            "unit": unit,
            "wipe_ordered": ordered,
            "revoked": serials,
            "lifecycle": becomes.value,
            "alerts_closed": moved["alerts_closed"],
        }

    # ------------------------------------------------------------ revocation

    async def revoke(
        self, unit_id: str, reason: str, actor: str, becomes: Lifecycle | None = Lifecycle.REVOKED
    ) -> list[str]:
        """Revoke a unit: its certificates into the CRL, its live session cut, all audited; its
        lifecycle ``becomes`` revoked (``None``: the caller moves it)."""
        if becomes is not None:
            await self.standing.check(unit_id, becomes)
        serials = await asyncio.to_thread(self.certs.revoke_cn, unit_id, reason)
        if not serials and not await asyncio.to_thread(self.certs.known, unit_id):
            raise ProvisioningError(f"no certificate of {unit_id} is known to central")
        # With nothing left to revoke (a retry after a failed broker reload) the CRL is written
        # and the session cut again: revoking is idempotent.
        await asyncio.to_thread(self.certs.write_crl, self.control)  # new connections refused...
        await asyncio.sleep(0.5)  # ...once the broker has re-read the CRL
        with tempfile.TemporaryDirectory() as workdir:
            m = self.mqtt
            await cut_session(self.certs, unit_id, m.host, m.port, m.server_ca, Path(workdir))
        await asyncio.to_thread(self.certs.write_crl, self.control)  # the one-time cert too
        await asyncio.to_thread(
            self.audit.append,
            "unit_revoked",
            actor=actor,
            unit=unit_id,
            serials=serials,
            reason=reason,
        )
        if becomes is not None:
            await self.standing.move(unit_id, becomes, actor, reason)
        return serials


def issuing_ca(settings: PkiSection) -> pki.CertifiedKey:
    """Central's issuing CA from its files."""
    return pki.CertifiedKey(
        pki.load_cert(settings.issuing_cert), pki.load_key(settings.issuing_key)
    )


def _waiting(code: str) -> Reason:
    """The lifecycle reason of a unit approved and not yet connected: its enrolment code."""
    shown = display_code(code)
    return Reason(f"enrolment code {shown}", "enrolment_code", code=shown)
