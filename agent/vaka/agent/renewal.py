"""Certificate renewal on the unit: a new key and certificate at two thirds of the old one's
life (with jitter, so a fleet does not renew in step), over the unit's own subtree.

The live broker session is not touched: TLS checked the certificate when it connected, and the
next connection uses the new files. A call in progress is not disturbed.
"""

import asyncio
import contextlib
import logging
import os
import random
import time
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import NameOID

from vaka.agent.link import UnitLink
from vaka.errors import CertificateError, LinkError
from vaka.protocol.messages import AnyMessage, CertMessage, RenewMessage, RenewPayload
from vaka.protocol.topics import Channel
from vaka.provisioning import pki

log = logging.getLogger(__name__)


def renewal_time(
    cert: x509.Certificate, jitter: float = 0.05, rng: random.Random | None = None
) -> float:
    """When to renew: two thirds into the validity period, plus or minus ``jitter`` of it."""
    start = cert.not_valid_before_utc.timestamp()
    end = cert.not_valid_after_utc.timestamp()
    life = end - start
    return start + life * (2 / 3 + (rng or random).uniform(-jitter, jitter))


class CertificateRenewal:
    """Renews this unit's certificate when due; :meth:`on_cert` takes central's answer."""

    def __init__(self, link: UnitLink, device_id: str, cert_path: Path, key_path: Path) -> None:
        self.link = link
        self.device_id = device_id
        self.cert_path = cert_path
        self.key_path = key_path
        self.renewed = 0
        self._pending_key: pki.PrivateKey | None = None
        self._done = asyncio.Event()
        self._now_requested = asyncio.Event()

    def request_now(self) -> None:
        """Renew at once (a technician's "rotate")."""
        self._now_requested.set()

    async def run(self) -> None:
        """Renew whenever due, until cancelled."""
        while True:
            due = await asyncio.to_thread(self._due)
            wait = max(0.0, due - time.time())
            log.info("certificate renewal due in %.0f s", wait)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._now_requested.wait(), wait)
            self._now_requested.clear()
            await self._renew_once()

    def _due(self) -> float:
        return renewal_time(pki.load_cert(self.cert_path))

    async def _renew_once(self) -> None:
        attempt = 0
        while True:
            key = pki.new_key()
            self._pending_key = key
            self._done.clear()
            csr = (
                x509.CertificateSigningRequestBuilder()
                .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, self.device_id)]))
                .sign(key, hashes.SHA256())
                .public_bytes(serialization.Encoding.PEM)
                .decode()
            )
            try:
                await self.link.publish(Channel.RENEW, RenewMessage(payload=RenewPayload(csr=csr)))
                await asyncio.wait_for(self._done.wait(), 30)
                return
            except (LinkError, TimeoutError) as err:
                delay = min(300.0, 5.0 * 2**attempt)
                attempt += 1
                log.warning("certificate renewal failed (%s); again in %.0f s", err, delay)
                await asyncio.sleep(delay)

    async def on_cert(self, message: AnyMessage) -> None:
        """Central's answer: keep the new key and certificate if they belong together."""
        assert isinstance(message, CertMessage)
        key = self._pending_key
        if key is None:
            raise CertificateError("a certificate arrived that this unit did not ask for")
        chain = x509.load_pem_x509_certificates(message.payload.cert_chain.encode())
        leaf = chain[0]
        if pki.common_name(leaf) != self.device_id:
            raise CertificateError("the renewed certificate names another unit")
        der = serialization.Encoding.DER
        spki = serialization.PublicFormat.SubjectPublicKeyInfo
        if leaf.public_key().public_bytes(der, spki) != key.public_key().public_bytes(der, spki):
            raise CertificateError("the renewed certificate is not for the new key")
        await asyncio.to_thread(self._store, key, chain)
        self._pending_key = None
        self.renewed += 1
        log.info("certificate renewed until %s", leaf.not_valid_after_utc.isoformat())
        self._done.set()

    def _store(self, key: pki.PrivateKey, chain: list[x509.Certificate]) -> None:
        new_key = self.key_path.with_name(self.key_path.name + ".new")
        new_cert = self.cert_path.with_name(self.cert_path.name + ".new")
        pki.write_key(key, new_key)
        pki.write_cert(chain[0], new_cert, *chain[1:])
        os.replace(new_key, self.key_path)
        os.replace(new_cert, self.cert_path)
