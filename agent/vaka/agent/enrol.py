"""Enrolment on the unit: from a generic image to an identity of its own.

The unit makes its key pair here (the private key file is 0600 and is never sent anywhere),
derives its enrolment code from the public key, shows the code (text and QR for a label and
the serial console; on a ``tv`` unit large on the TV, with a QR code, see :class:`Enroller`),
and asks for a certificate over the broker's enrolment listener with
the image's claim identity, repeating the request until a technician approves the code. The
answer is checked (our key, a unit id, a chain) and the certificate stored beside the key.
"""

import asyncio
import io
import logging
import os
import ssl
import time
from pathlib import Path

import aiomqtt
import numpy as np
import numpy.typing as npt
import qrcode
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import NameOID

from vaka.agent import __version__
from vaka.agent.config import CERT_FILE, KEY_FILE, AgentConfig, EnrolmentSection
from vaka.agent.profiles.backends import screen_mode
from vaka.agent.ui import (
    ButtonId,
    Catalog,
    Enrolling,
    HeadlessScreen,
    Screen,
    ScreenError,
    TvScreen,
)
from vaka.agent.watchdog import SystemdNotifier, run_watchdog
from vaka.errors import CertificateError, ConfigError, ProtocolError
from vaka.protocol.backoff import backoff_delay
from vaka.protocol.enrolment import (
    EnrolRequestMessage,
    EnrolRequestPayload,
    EnrolResponseMessage,
    decode_enrolment,
    display_code,
    enrol_topic,
    enrolment_code,
)
from vaka.protocol.messages import encode
from vaka.protocol.mqttio import guard_socket_writes
from vaka.protocol.topics import check_device_id
from vaka.provisioning import pki

log = logging.getLogger(__name__)


def unit_code(key: pki.PrivateKey) -> str:
    """The enrolment code of this unit's key."""
    spki = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return enrolment_code(spki)


def signing_request(key: pki.PrivateKey, code: str) -> str:
    """A CSR with subject CN=<code> and no extensions, as PEM."""
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, code)]))
        .sign(key, hashes.SHA256())
    )
    return csr.public_bytes(serialization.Encoding.PEM).decode()


def qr_text(code: str) -> str:
    """The code as a QR code drawn in text (for the serial console and logs)."""
    qr = qrcode.QRCode(border=1)
    qr.add_data(f"VAKA-ENROL:{code}")
    out = io.StringIO()
    qr.print_ascii(out=out, invert=True)
    return out.getvalue()


def qr_modules(code: str) -> npt.NDArray[np.bool_]:
    """The code's QR symbol for the TV screen: ``True`` for a dark module, with the standard
    quiet zone of four light modules (the screen round it is black)."""
    qr = qrcode.QRCode(border=4)
    qr.add_data(f"VAKA-ENROL:{code}")
    qr.make(fit=True)
    return np.array(qr.get_matrix(), dtype=bool)


def _no_buttons(button: ButtonId) -> None:
    log.warning("the enrolment screen has no buttons, yet %s was pressed", button)


def prepare_key(directory: Path, rotate_after_s: float, now: float | None = None) -> pki.PrivateKey:
    """This unit's key: made on first boot (0600), made anew when its code may have expired."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / KEY_FILE
    now = time.time() if now is None else now
    if path.exists() and now - path.stat().st_mtime < rotate_after_s:
        return pki.load_key(path)
    if path.exists():
        log.info("enrolment code not approved in time: making a new key and code")
    key = pki.new_key()
    pki.write_key(key, path)
    return key


def check_answer(answer: EnrolResponseMessage, key: pki.PrivateKey) -> list[x509.Certificate]:
    """The certificate chain of an answer if it is for our key, else :class:`CertificateError`."""
    chain = x509.load_pem_x509_certificates(answer.payload.cert_chain.encode())
    if not chain:
        raise CertificateError("the answer carries no certificate")
    leaf = chain[0]
    ours = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    theirs = leaf.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    if ours != theirs:
        raise CertificateError("the certificate in the answer is not for this unit's key")
    if pki.common_name(leaf) != check_device_id(answer.payload.unit_id):
        raise CertificateError("the certificate's name is not the unit id in the answer")
    return chain


class Enroller:
    """Runs the enrolment of one unit until it has a certificate.

    A ``tv`` unit shows its code on the TV while it waits (:class:`~vaka.agent.ui.Enrolling`):
    on ``screen`` if one is given (its owner closes it), else on a screen of its own as
    ``[tv] screen`` says, closed again once the unit is enrolled.
    """

    def __init__(self, config: AgentConfig, screen: Screen | None = None) -> None:
        if config.enrolment is None or config.storage.credentials_dir is None:
            raise ConfigError(
                "this unit has no certificate and cannot enrol: its configuration needs "
                "[enrolment] (claim identity) and [storage] credentials_dir"
            )
        self.config = config
        self.settings: EnrolmentSection = config.enrolment
        self.directory: Path = config.storage.credentials_dir
        self.key = prepare_key(self.directory, self.settings.rotate_after_s)
        self.code = unit_code(self.key)
        self.screen = screen
        self.notifier = SystemdNotifier()
        self._own_screen = False

    def announce(self) -> None:
        """Show the code where the support function can read it: the journal, the console and
        (on a TV unit) the TV."""
        shown = display_code(self.code)
        log.warning("this unit is not enrolled; enrolment code %s", shown)
        print(f"\nEnrolment code: {shown}\n{qr_text(self.code)}", flush=True)
        self.notifier.ready(f"waiting for enrolment, code {shown}")
        if self.screen is not None:
            self.screen.show(Enrolling(shown, qr_modules(self.code)))

    async def _open_screen(self) -> None:
        """Open the TV screen for the code (a ``tv`` unit given none)."""
        if self.screen is not None or self.config.unit.profile != "tv":
            return
        tv = self.config.tv
        catalog, size = Catalog(tv.language), (tv.width, tv.height)
        if screen_mode(self.config) == "window":
            window = TvScreen(catalog, _no_buttons, size=size)
            try:
                self.screen = await asyncio.to_thread(window.start)
            except ScreenError as err:
                log.warning("the enrolment code is not shown on the TV: %s", err)
        if self.screen is None:
            self.screen = HeadlessScreen(catalog, _no_buttons, size=size)
        self._own_screen = True

    async def _close_screen(self) -> None:
        if self._own_screen and self.screen is not None:
            await asyncio.to_thread(self.screen.close)

    def _tls(self) -> ssl.SSLContext:
        s = self.settings
        ctx = ssl.create_default_context(cafile=str(self.config.broker.server_ca))
        ctx.load_cert_chain(str(s.claim_cert), str(s.claim_key))
        return ctx

    async def run(self) -> tuple[str, Path, Path]:
        """Ask until answered; returns ``(unit id, certificate path, key path)``.

        Under systemd a unit waiting for its technician counts as started (``READY=1`` with the
        code as ``STATUS=``) and feeds the watchdog meanwhile: waiting may take days, and
        ``TimeoutStartSec=`` would otherwise kill and restart it every 90 s."""
        watchdog = asyncio.create_task(run_watchdog(self.notifier), name="enrolment watchdog")
        await self._open_screen()
        try:
            return await self._ask()
        finally:
            watchdog.cancel()
            await asyncio.gather(watchdog, return_exceptions=True)
            self.notifier.close()
            await self._close_screen()

    async def _ask(self) -> tuple[str, Path, Path]:
        self.announce()
        request = encode(
            EnrolRequestMessage(
                payload=EnrolRequestPayload(
                    csr=signing_request(self.key, self.code),
                    profile=self.config.unit.profile,
                    agent_version=__version__,
                )
            )
        )
        attempt = 0
        while True:
            # A code that nobody approved expires at central: make a new key (and code) then.
            key_age = time.time() - (self.directory / KEY_FILE).stat().st_mtime
            remaining = self.settings.rotate_after_s - key_age
            if remaining <= 0:
                self.key = prepare_key(self.directory, self.settings.rotate_after_s)
                self.code = unit_code(self.key)
                return await self._ask()  # announces the new code
            try:
                return await asyncio.wait_for(self._session(request), remaining)
            except TimeoutError:
                continue
            except aiomqtt.MqttError as err:
                log.warning("enrolment listener not reachable: %s", err)
            delay = backoff_delay(attempt, 1.0, 60.0)
            attempt += 1
            await asyncio.sleep(delay)

    async def _session(self, request: bytes) -> tuple[str, Path, Path]:
        async with guard_socket_writes(
            aiomqtt.Client(
                self.config.broker.host,
                self.settings.port,
                identifier=self.code,
                protocol=aiomqtt.ProtocolVersion.V5,
                tls_context=self._tls(),
                timeout=10,
            )
        ) as client:
            await client.subscribe(enrol_topic(self.code, "cert"), qos=1)
            repeat = asyncio.create_task(self._repeat(client, request))
            try:
                async for message in client.messages:
                    result = self._accept(message.payload)
                    if result is not None:
                        return result
            finally:
                repeat.cancel()
        raise aiomqtt.MqttError("enrolment session ended")

    async def _repeat(self, client: aiomqtt.Client, request: bytes) -> None:
        while True:
            await client.publish(enrol_topic(self.code, "csr"), request, qos=1)
            await asyncio.sleep(self.settings.repeat_s)

    def _accept(self, payload: object) -> tuple[str, Path, Path] | None:
        if not isinstance(payload, bytes | bytearray):
            return None
        try:
            answer = decode_enrolment(payload, "cert")
            assert isinstance(answer, EnrolResponseMessage)
            chain = check_answer(answer, self.key)
        except (ProtocolError, CertificateError, ValueError) as err:
            log.warning("enrolment answer refused: %s", err)
            return None
        cert_path = self.directory / CERT_FILE
        tmp = cert_path.with_suffix(".tmp")
        pki.write_cert(chain[0], tmp, *chain[1:])
        os.replace(tmp, cert_path)
        log.info("enrolled as %s", answer.payload.unit_id)
        return answer.payload.unit_id, cert_path, self.directory / KEY_FILE
