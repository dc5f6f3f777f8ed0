"""Certificates central has issued or registered, and revoking a unit for good.

A CRL stops *new* connections only; a session that is live when its certificate is revoked
would go on. Central cuts it by taking the session over: Mosquitto forces client id = CN, so a
connection with a fresh one-time certificate for the same CN makes the broker close the unit's
connection ("already connected, closing old connection"). That one-time certificate is revoked
right after, and the CRL, which the broker re-reads on SIGHUP, keeps the unit out.
"""

import asyncio
import datetime as dt
import logging
import os
import signal
import ssl
import time
from dataclasses import dataclass
from pathlib import Path

import aiomqtt
from cryptography import x509
from sqlalchemy import select, update
from sqlalchemy.engine import Engine

from vaka.central.storage.tables import certificates
from vaka.errors import CertificateError, ProvisioningError
from vaka.provisioning import pki

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BrokerControl:
    """How central makes the broker load a new CRL: the CRL file it reads and its pid file."""

    crl_path: Path
    pid_file: Path | None = None

    def reload(self) -> None:
        """SIGHUP the broker (Mosquitto re-reads certificates and the CRL)."""
        if self.pid_file is None:
            log.warning("no broker pid file configured: reload the broker to apply the CRL")
            return
        try:
            pid = int(self.pid_file.read_text().strip())
            os.kill(pid, signal.SIGHUP)
        except (OSError, ValueError) as err:
            raise ProvisioningError(f"cannot make the broker reload its CRL: {err}") from err


class CertificateRegistry:
    """Issued certificates and revocations in central's database. Blocking."""

    def __init__(self, engine: Engine, issuing: pki.CertifiedKey) -> None:
        self.engine = engine
        self.issuing = issuing

    def register(self, cert: x509.Certificate, kind: str) -> None:
        """Record a certificate (issued here or by the technician tool)."""
        with self.engine.begin() as conn:
            conn.execute(
                certificates.insert().values(
                    serial=format(cert.serial_number, "x"),
                    cn=pki.common_name(cert),
                    kind=kind,
                    not_after=cert.not_valid_after_utc.timestamp(),
                    issued_at=time.time(),
                )
            )

    def issue(
        self, cn: str, public_key: pki.ec.EllipticCurvePublicKey, lifetime: dt.timedelta, kind: str
    ) -> x509.Certificate:
        """Issue and record a client certificate."""
        cert = pki.issue_client_cert(self.issuing, cn, public_key, lifetime)
        self.register(cert, kind)
        return cert

    def has_active(self, cn: str) -> bool:
        """Whether ``cn`` holds an unrevoked, unexpired certificate issued or registered here."""
        with self.engine.connect() as conn:
            found = conn.execute(
                select(certificates.c.serial).where(
                    certificates.c.cn == cn,
                    certificates.c.kind == "unit",
                    certificates.c.revoked_at.is_(None),
                    certificates.c.not_after > time.time(),
                )
            ).first()
        return found is not None

    def known(self, cn: str) -> bool:
        """Whether any certificate of ``cn`` was issued or registered here."""
        with self.engine.connect() as conn:
            found = conn.execute(select(certificates.c.serial).where(certificates.c.cn == cn))
            return found.first() is not None

    def revoke_cn(self, cn: str, reason: str) -> list[str]:
        """Revoke every unrevoked certificate of ``cn``; returns their serials."""
        now = time.time()
        with self.engine.begin() as conn:
            serials = [
                r[0]
                for r in conn.execute(
                    select(certificates.c.serial).where(
                        certificates.c.cn == cn, certificates.c.revoked_at.is_(None)
                    )
                )
            ]
            conn.execute(
                update(certificates)
                .where(certificates.c.serial.in_(serials))
                .values(revoked_at=now, reason=reason[:200])
            )
        return serials

    def revoke_serial(self, serial: int, reason: str) -> None:
        """Revoke one certificate by serial number."""
        with self.engine.begin() as conn:
            conn.execute(
                update(certificates)
                .where(certificates.c.serial == format(serial, "x"))
                .values(revoked_at=time.time(), reason=reason[:200])
            )

    def revoked(self) -> list[tuple[int, float]]:
        """``(serial, revoked_at)`` of every revoked certificate not yet expired."""
        now = time.time()
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(certificates.c.serial, certificates.c.revoked_at).where(
                    certificates.c.revoked_at.is_not(None), certificates.c.not_after > now
                )
            )
            return [(int(r[0], 16), float(r[1])) for r in rows]

    def write_crl(self, control: BrokerControl) -> None:
        """Write the CRL the broker reads and make it reload."""
        pki.write_crl(self.issuing, self.revoked(), control.crl_path)
        control.reload()

    def renew_crl(self, control: BrokerControl) -> bool:
        """Write the CRL and make the broker reload only if the one it has is not current
        (another issuer, other revocations, or half its validity gone); whether it did.

        A reload is not free: Mosquitto 2.0.11 (Debian 12's) disconnects every offline
        persistent session again on SIGHUP and puts it on its session-expiry list a second
        time; when that client (a central instance starting) connects again, the broker crashes
        (``session_expiry__remove``). So a central that starts while the CRL is current leaves
        the broker alone.
        """
        revoked = self.revoked()
        if pki.crl_is_current(self.issuing, revoked, control.crl_path):
            return False
        pki.write_crl(self.issuing, revoked, control.crl_path)
        control.reload()
        return True


async def cut_session(
    registry: CertificateRegistry, cn: str, host: str, port: int, server_ca: Path, workdir: Path
) -> None:
    """Take over ``cn``'s live session (if any) with a one-time certificate, then revoke it."""
    key = pki.new_key()
    cert = await asyncio.to_thread(
        registry.issue, cn, key.public_key(), dt.timedelta(minutes=5), "takeover"
    )
    cert_path, key_path = workdir / f"takeover-{cn}.crt", workdir / f"takeover-{cn}.key"
    pki.write_cert(cert, cert_path, registry.issuing.cert)
    pki.write_key(key, key_path)
    try:
        ctx = ssl.create_default_context(cafile=str(server_ca))
        ctx.load_cert_chain(str(cert_path), str(key_path))
        async with aiomqtt.Client(
            host,
            port,
            identifier=cn,
            protocol=aiomqtt.ProtocolVersion.V5,
            tls_context=ctx,
            timeout=10,
        ):
            pass  # connecting is the point: the broker closes the unit's session
    except aiomqtt.MqttError as err:
        raise CertificateError(f"could not cut the live session of {cn}: {err}") from err
    finally:
        cert_path.unlink(missing_ok=True)
        key_path.unlink(missing_ok=True)
        await asyncio.to_thread(registry.revoke_serial, cert.serial_number, "one-time takeover")
