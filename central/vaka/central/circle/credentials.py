"""A contact's ways to log in: passkeys (WebAuthn, py_webauthn) and a password (argon2, as staff
passwords are hashed).

Passkeys are discoverable (resident) credentials, so a contact logs in later without typing a
name: the browser offers the passkey it holds for this site. The relying party is central's
own host as the browser sees it (``rp_id``: the host without port; ``origin``: scheme, host and
port), which the route takes from the request. A password log-in names the contact's log-in name
(the contact id, shown once the password is set); a contact who wants a second factor adds a
one-time code app (TOTP, as staff do), and the password then logs in only with a fresh code.
Revoking a contact's credentials (a lost phone) ends them all; staff then invite again.

Blocking: call from a worker thread.
"""

import hmac
import json
import re
import time
from dataclasses import dataclass
from typing import Any

import pyotp
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import delete, select
from sqlalchemy.engine import Engine
from webauthn import (
    generate_authentication_options,
    generate_registration_options,
    options_to_json,
    verify_authentication_response,
    verify_registration_response,
)
from webauthn.helpers import base64url_to_bytes, bytes_to_base64url
from webauthn.helpers.exceptions import WebAuthnException
from webauthn.helpers.structs import (
    AuthenticatorSelectionCriteria,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

from vaka.central.access.second_factor import ISSUER, TOTP_STEP_S, qr_svg
from vaka.central.directory.directory import Sealer
from vaka.central.settings.passwords import PasswordHashing
from vaka.central.storage.tables import contact_challenges, contact_credentials
from vaka.errors import VakaError

#: a contact's password is at least this long (they type it on their own device, rarely)
PASSWORD_MIN_LENGTH = 10
CHALLENGE_TTL_S = 300


class CredentialRefused(VakaError, PermissionError):
    """A credential could not be set or did not log in; the message says why."""


@dataclass(frozen=True)
class RelyingParty:
    """Central as the browser sees it."""

    rp_id: str
    origin: str


def _b64(data: bytes) -> str:
    return bytes_to_base64url(data)


class ContactCredentials:
    """Registers and checks contacts' passkeys and passwords."""

    def __init__(
        self,
        engine: Engine,
        sealer: Sealer | None = None,
        passwords: PasswordHashing | None = None,
    ) -> None:
        self.engine = engine
        #: seals one-time code secrets at rest, as the staff's are (``None``: stored as they are)
        self.sealer = sealer
        #: hashes the passwords set from now on (``[passwords]``; default: argon2's own cost)
        self.hasher = (passwords or PasswordHashing()).hasher()

    # ------------------------------------------------------------ passkeys

    def registration_options(
        self, rp: RelyingParty, contact_id: str, display_name: str
    ) -> tuple[dict[str, Any], str]:
        """The ``navigator.credentials.create`` options (JSON) and their challenge (base64url)."""
        options = generate_registration_options(
            rp_id=rp.rp_id,
            rp_name="Vaka",
            user_name=contact_id,
            user_id=contact_id.encode(),
            user_display_name=display_name,
            authenticator_selection=AuthenticatorSelectionCriteria(
                resident_key=ResidentKeyRequirement.REQUIRED,
                user_verification=UserVerificationRequirement.PREFERRED,
            ),
        )
        return json.loads(options_to_json(options)), _b64(options.challenge)

    def register_passkey(
        self, rp: RelyingParty, contact_id: str, challenge: str, credential: dict[str, Any]
    ) -> str:
        """Verify the browser's new credential and keep its public key; its id."""
        try:
            verified = verify_registration_response(
                credential=credential,
                expected_challenge=base64url_to_bytes(challenge),
                expected_rp_id=rp.rp_id,
                expected_origin=rp.origin,
            )
        except (WebAuthnException, ValueError, KeyError, TypeError) as err:
            raise CredentialRefused(f"the passkey could not be set: {err}") from None
        credential_id = _b64(verified.credential_id)
        with self.engine.begin() as conn:
            conn.execute(
                contact_credentials.insert().values(
                    credential_id=credential_id,
                    contact_id=contact_id,
                    kind="passkey",
                    public_key=_b64(verified.credential_public_key),
                    sign_count=verified.sign_count,
                    created_at=time.time(),
                )
            )
        return credential_id

    def login_options(self, rp: RelyingParty, now: float | None = None) -> dict[str, Any]:
        """The ``navigator.credentials.get`` options (any of this site's passkeys)."""
        at = time.time() if now is None else now
        options = generate_authentication_options(
            rp_id=rp.rp_id, user_verification=UserVerificationRequirement.PREFERRED
        )
        with self.engine.begin() as conn:
            conn.execute(delete(contact_challenges).where(contact_challenges.c.expires_at < at))
            conn.execute(
                contact_challenges.insert().values(
                    challenge=_b64(options.challenge), expires_at=at + CHALLENGE_TTL_S
                )
            )
        return dict(json.loads(options_to_json(options)))

    def check_passkey(
        self, rp: RelyingParty, credential: dict[str, Any], now: float | None = None
    ) -> str:
        """The contact a passkey assertion logs in; :class:`CredentialRefused` otherwise."""
        at = time.time() if now is None else now
        try:
            client_data = json.loads(base64url_to_bytes(credential["response"]["clientDataJSON"]))
            challenge = str(client_data["challenge"])
            credential_id = str(credential["id"])
        except (ValueError, KeyError, TypeError):
            raise CredentialRefused("not a passkey answer") from None
        with self.engine.begin() as conn:
            used = conn.execute(
                delete(contact_challenges).where(
                    contact_challenges.c.challenge == challenge,
                    contact_challenges.c.expires_at >= at,
                )
            )
            row = (
                conn.execute(
                    select(contact_credentials).where(
                        contact_credentials.c.credential_id == credential_id,
                        contact_credentials.c.kind == "passkey",
                    )
                )
                .mappings()
                .first()
            )
        if used.rowcount != 1:
            raise CredentialRefused("the log-in took too long or was already used: try again")
        if row is None:
            raise CredentialRefused("this passkey is not known (it may have been revoked)")
        if row["revoked_at"] is not None:
            raise CredentialRefused(
                "this passkey was revoked: ask the care staff for a new invitation"
            )
        try:
            verified = verify_authentication_response(
                credential=credential,
                expected_challenge=base64url_to_bytes(challenge),
                expected_rp_id=rp.rp_id,
                expected_origin=rp.origin,
                credential_public_key=base64url_to_bytes(row["public_key"]),
                credential_current_sign_count=row["sign_count"],
            )
        except (WebAuthnException, ValueError, KeyError, TypeError) as err:
            raise CredentialRefused(f"the passkey did not log in: {err}") from None
        with self.engine.begin() as conn:
            conn.execute(
                contact_credentials.update()
                .where(contact_credentials.c.credential_id == credential_id)
                .values(sign_count=verified.new_sign_count)
            )
        return str(row["contact_id"])

    # ------------------------------------------------------------ passwords

    def set_password(self, contact_id: str, password: str) -> None:
        """Set (or replace) the contact's password."""
        if len(password) < PASSWORD_MIN_LENGTH:
            raise CredentialRefused(
                f"the password must be at least {PASSWORD_MIN_LENGTH} characters long"
            )
        self._replace(
            contact_id, "password", password_hash=self.hasher.hash(password), created_at=time.time()
        )

    def _replace(
        self, contact_id: str, kind: str, also: tuple[str, ...] = (), **values: Any
    ) -> None:
        """Write the contact's one credential of ``kind`` (its id ``<kind>:<contact>``, the
        pending TOTP's ``totp-pending:``) in place of the one before, and drop ``also``."""
        key = f"{kind.replace('_', '-')}:{contact_id}"
        with self.engine.begin() as conn:
            conn.execute(
                delete(contact_credentials).where(
                    contact_credentials.c.credential_id.in_([key, *also])
                )
            )
            conn.execute(
                contact_credentials.insert().values(
                    credential_id=key, contact_id=contact_id, kind=kind, **values
                )
            )

    def check_password(self, contact_id: str, password: str) -> bool:
        """Whether ``password`` is the contact's live password."""
        with self.engine.connect() as conn:
            row = conn.execute(
                select(contact_credentials.c.password_hash).where(
                    contact_credentials.c.credential_id == f"password:{contact_id}",
                    contact_credentials.c.revoked_at.is_(None),
                )
            ).first()
        if row is None or row[0] is None:
            return False
        try:
            return self.hasher.verify(row[0], password)
        except (VerificationError, InvalidHashError):
            return False

    # ------------------------------------------------------------ one-time codes (TOTP)

    def _seal(self, secret: str) -> str:
        return secret if self.sealer is None else self.sealer.seal(secret)

    def _unseal(self, stored: str) -> str:
        return stored if self.sealer is None else self.sealer.open(stored)

    def start_totp(self, contact_id: str) -> dict[str, str]:
        """A new secret waiting for its first code: ``{secret, uri, qr_svg}``."""
        if not self._has(contact_id, "password"):
            raise CredentialRefused("a one-time code goes with a password: set a password first")
        secret = pyotp.random_base32()
        uri = pyotp.TOTP(secret).provisioning_uri(name=contact_id, issuer_name=ISSUER)
        self._replace(
            contact_id, "totp_pending", public_key=self._seal(secret), created_at=time.time()
        )
        return {"secret": secret, "uri": uri, "qr_svg": qr_svg(uri)}

    def confirm_totp(self, contact_id: str, code: str, now: float | None = None) -> None:
        """Enrol the waiting secret with its first code; :class:`CredentialRefused` if wrong."""
        at = time.time() if now is None else now
        with self.engine.connect() as conn:
            stored = conn.execute(
                select(contact_credentials.c.public_key).where(
                    contact_credentials.c.credential_id == f"totp-pending:{contact_id}"
                )
            ).scalar()
        if stored is None:
            raise CredentialRefused("start setting up the one-time code first")
        counter = _matching_counter(self._unseal(stored), code, at, after=-1)
        if counter is None:
            raise CredentialRefused("wrong one-time code")
        self._replace(
            contact_id,
            "totp",
            also=(f"totp-pending:{contact_id}",),
            public_key=stored,
            sign_count=counter,
            created_at=at,
        )

    def check_totp(self, contact_id: str, code: str, now: float | None = None) -> bool:
        """Whether ``code`` is a fresh code of the contact's secret (each code counts once)."""
        at = time.time() if now is None else now
        key = f"totp:{contact_id}"
        with self.engine.connect() as conn:
            row = conn.execute(
                select(contact_credentials.c.public_key, contact_credentials.c.sign_count).where(
                    contact_credentials.c.credential_id == key,
                    contact_credentials.c.revoked_at.is_(None),
                )
            ).first()
        if row is None:
            return False
        counter = _matching_counter(self._unseal(row[0]), code, at, after=int(row[1]))
        if counter is None:
            return False
        with self.engine.begin() as conn:
            done = conn.execute(
                contact_credentials.update()
                .where(
                    contact_credentials.c.credential_id == key,
                    contact_credentials.c.sign_count < counter,
                )
                .values(sign_count=counter)
            )
        return done.rowcount == 1  # another request used this code at the same moment

    def _has(self, contact_id: str, kind: str) -> bool:
        return kind in self.kinds(contact_id)

    def needs_totp(self, contact_id: str) -> bool:
        """Whether the contact's password logs in only with a one-time code."""
        return self._has(contact_id, "totp")

    # ------------------------------------------------------------ revocation

    def revoke_all(self, contact_id: str, now: float | None = None) -> int:
        """Revoke every credential of the contact (a lost device); how many."""
        at = time.time() if now is None else now
        with self.engine.begin() as conn:
            done = conn.execute(
                contact_credentials.update()
                .where(
                    contact_credentials.c.contact_id == contact_id,
                    contact_credentials.c.revoked_at.is_(None),
                )
                .values(revoked_at=at)
            )
        return int(done.rowcount)

    def kinds(self, contact_id: str) -> list[str]:
        """The kinds of live credential the contact has (``passkey``, ``password``)."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(contact_credentials.c.kind).where(
                    contact_credentials.c.contact_id == contact_id,
                    contact_credentials.c.revoked_at.is_(None),
                )
            ).scalars()
            return sorted(set(rows))


def _matching_counter(secret: str, code: str, now: float, after: int) -> int | None:
    """The time step (of now ±1) whose code ``code`` is, if it is later than ``after``."""
    code = re.sub(r"\s", "", code)
    if not re.fullmatch(r"\d{6}", code):
        return None
    totp = pyotp.TOTP(secret)
    current = int(now // TOTP_STEP_S)
    for counter in (current - 1, current, current + 1):
        if counter > after and hmac.compare_digest(totp.generate_otp(counter), code):
            return counter
    return None
