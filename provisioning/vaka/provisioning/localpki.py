"""A small PKI kept in one directory, for the demo, the tests and a first installation.

Layout (all PEM)::

    client-root.{crt,key}  root of the client hierarchy; in production kept offline, used only
                           to sign (and re-sign) the issuing CA. The broker trusts only this.
    client-ca.{crt,key}    issuing CA held by central: signs unit and central client
                           certificates and the CRL, nothing else
    client-ca.crl          the revocation list the broker loads
    claim-ca.{crt,key}     a hierarchy of its own that signs only claim identities (the generic
                           image's first-boot certificates): the broker trusts it on the
                           enrolment listener only, so a claim certificate cannot even connect
                           to the main listener, and no unit or central certificate to the other
    server-ca.{crt,key}    a separate hierarchy that signs only the broker's TLS certificate
    broker.{crt,key}       the broker's server certificate
    clients/<cn>.{crt,key} client certificate (leaf + issuing CA) and key; claim identities
                           (``claim`` or ``claim-<n>``) from the claim CA

The enrolment flow (units making their own keys) builds on the same CAs.
"""

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

from vaka.provisioning import pki
from vaka.provisioning.tickets import new_ticket_key, write_ticket_keys

DEFAULT_CLIENT_LIFETIME = dt.timedelta(days=7)


def is_claim_name(cn: str) -> bool:
    """Whether ``cn`` names a claim identity (``claim`` or ``claim-<anything>``)."""
    return cn == "claim" or cn.startswith("claim-")


@dataclass(frozen=True)
class ClientFiles:
    """Where one client identity's files are."""

    cert: Path
    key: Path
    server_ca: Path  # to verify the broker


class LocalPki:
    """A client CA, a server CA and a broker certificate under ``root``; created on first use."""

    def __init__(self, root: Path, broker_names: tuple[str, ...] = ("localhost", "127.0.0.1")):
        self.root = root
        self.broker_names = broker_names

    @property
    def client_ca_cert(self) -> Path:
        """What the broker trusts for client certificates: the client root, nothing else."""
        return self.root / "client-root.crt"

    @property
    def issuing_ca_cert(self) -> Path:
        """The issuing CA's certificate (the intermediate in every client chain)."""
        return self.root / "client-ca.crt"

    @property
    def crl_path(self) -> Path:
        """The CRL of the issuing CA, as the broker loads it."""
        return self.root / "client-ca.crl"

    def write_crl(self, revoked: list[tuple[int, float]], *, days: float = 7) -> Path:
        """(Re)write the CRL with ``(serial, revoked_at)`` entries, valid for ``days``."""
        pki.write_crl(self.client_ca(), revoked, self.crl_path, lifetime=dt.timedelta(days=days))
        return self.crl_path

    @property
    def claim_ca_cert(self) -> Path:
        """What the broker trusts on the enrolment listener: the claim CA, nothing else."""
        return self.root / "claim-ca.crt"

    @property
    def server_ca_cert(self) -> Path:
        """The CA clients trust for the broker."""
        return self.root / "server-ca.crt"

    @property
    def broker_cert(self) -> Path:
        """The broker's certificate."""
        return self.root / "broker.crt"

    @property
    def broker_key(self) -> Path:
        """The broker's private key."""
        return self.root / "broker.key"

    def ensure(self) -> "LocalPki":
        """Create the CAs and the broker certificate if they are missing."""
        self.root.mkdir(parents=True, exist_ok=True)
        self.root.chmod(0o700)
        if not (self.root / "client-root.crt").exists():
            pki.make_ca("Vaka client root", path_length=1).write(
                self.root / "client-root.crt", self.root / "client-root.key"
            )
        if not (self.root / "client-ca.crt").exists():
            issuing = pki.make_ca(
                "Vaka client issuing CA", days=5 * 365, issuer=self._ca("client-root")
            )
            issuing.write(self.root / "client-ca.crt", self.root / "client-ca.key")
        if not self.claim_ca_cert.exists():
            pki.make_ca("Vaka claim CA").write(self.claim_ca_cert, self.root / "claim-ca.key")
        if not (self.root / "server-ca.crt").exists():
            pki.make_ca("Vaka server CA").write(
                self.root / "server-ca.crt", self.root / "server-ca.key"
            )
        if not self.crl_path.exists():
            self.write_crl([])
        if not self.broker_cert.exists():
            key = pki.new_key()
            cert = pki.issue_server_cert(self._ca("server-ca"), list(self.broker_names), key)
            pki.write_cert(cert, self.broker_cert)
            pki.write_key(key, self.broker_key)
        return self

    def _ca(self, name: str) -> pki.CertifiedKey:
        return pki.CertifiedKey(
            pki.load_cert(self.root / f"{name}.crt"), pki.load_key(self.root / f"{name}.key")
        )

    def ticket_keys(self) -> tuple[Path, Path]:
        """Central's ticket-signing key and the public key units pin; created if missing."""
        private, public = self.root / "ticket-key.pem", self.root / "ticket-key.pub.pem"
        if not private.exists():
            write_ticket_keys(new_ticket_key(), private, public)
        return private, public

    def config_keys(self) -> tuple[Path, Path]:
        """Central's config-bundle signing key and the public key units pin; created if missing."""
        private, public = self.root / "config-key.pem", self.root / "config-key.pub.pem"
        if not private.exists():
            write_ticket_keys(new_ticket_key(), private, public)
        return private, public

    def client_ca(self) -> pki.CertifiedKey:
        """The client-signing CA with its key."""
        return self._ca("client-ca")

    def client(
        self, cn: str, lifetime: dt.timedelta = DEFAULT_CLIENT_LIFETIME, *, renew: bool = False
    ) -> ClientFiles:
        """Files of client identity ``cn``, issued now if missing (or if ``renew``).

        Claim identities come from :meth:`claim`, never from here (the main listener would take
        them)."""
        if is_claim_name(cn):
            raise ValueError(f"{cn} is a claim identity: issue it with LocalPki.claim()")
        return self._issue(cn, self.client_ca(), lifetime, renew)

    def claim(
        self, cn: str = "claim", lifetime: dt.timedelta = DEFAULT_CLIENT_LIFETIME
    ) -> ClientFiles:
        """Files of the claim identity ``cn`` (``claim`` or ``claim-<n>``), signed by the claim CA;
        issued now if missing."""
        if not is_claim_name(cn):
            raise ValueError(f"{cn!r} is not a claim identity name (claim or claim-<n>)")
        return self._issue(cn, self._ca("claim-ca"), lifetime, renew=False)

    def _issue(
        self, cn: str, issuing: pki.CertifiedKey, lifetime: dt.timedelta, renew: bool
    ) -> ClientFiles:
        files = ClientFiles(
            self.root / "clients" / f"{cn}.crt",
            self.root / "clients" / f"{cn}.key",
            self.server_ca_cert,
        )
        if renew or not files.cert.exists():
            key = pki.new_key()
            cert = pki.issue_client_cert(issuing, cn, key.public_key(), lifetime)
            pki.write_cert(cert, files.cert, issuing.cert)
            pki.write_key(key, files.key)
        return files
