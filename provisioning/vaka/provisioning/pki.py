"""X.509 primitives on top of ``cryptography``: CAs, client and server certificates.

Keys are ECDSA P-256 (supported by every TLS stack the units and the broker use). A CA made here
signs exactly one kind of certificate: the *client* CA signs unit and central identities and nothing
else, because Mosquitto accepts a client certificate from any CA in its ``cafile``.
"""

import datetime as dt
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from vaka.errors import CertificateError

PrivateKey = ec.EllipticCurvePrivateKey


def new_key() -> PrivateKey:
    """A fresh P-256 private key."""
    return ec.generate_private_key(ec.SECP256R1())


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass(frozen=True)
class CertifiedKey:
    """A certificate and its private key."""

    cert: x509.Certificate
    key: PrivateKey

    @property
    def common_name(self) -> str:
        """The subject CN."""
        return common_name(self.cert)

    def write(self, cert_path: Path, key_path: Path) -> None:
        """Write PEM files; the key file is created 0600 before anything is written to it."""
        write_cert(self.cert, cert_path)
        write_key(self.key, key_path)


def common_name(cert: x509.Certificate) -> str:
    """The subject common name of ``cert``."""
    attrs = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if not attrs:
        raise CertificateError("certificate has no common name")
    return str(attrs[0].value)


def _name(cn: str, org: str = "Vaka") -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, org),
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
        ]
    )


def make_ca(
    cn: str, *, days: int = 3650, issuer: CertifiedKey | None = None, path_length: int = 0
) -> CertifiedKey:
    """A CA certificate: self-signed, or signed by ``issuer``."""
    key = new_key()
    subject = _name(cn)
    now = _now()
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.cert.subject if issuer else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    signer = issuer.key if issuer else key
    return CertifiedKey(builder.sign(signer, hashes.SHA256()), key)


def _leaf_builder(
    ca: CertifiedKey, cn: str, public_key: ec.EllipticCurvePublicKey, lifetime: dt.timedelta
) -> x509.CertificateBuilder:
    now = _now()
    return (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(ca.cert.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + lifetime)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=True,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()), critical=False
        )
    )


def issue_client_cert(
    ca: CertifiedKey, cn: str, public_key: ec.EllipticCurvePublicKey, lifetime: dt.timedelta
) -> x509.Certificate:
    """A TLS client certificate whose CN is the MQTT identity."""
    builder = _leaf_builder(ca, cn, public_key, lifetime).add_extension(
        x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False
    )
    return builder.sign(ca.key, hashes.SHA256())


def issue_server_cert(
    ca: CertifiedKey,
    hostnames: list[str],
    key: PrivateKey,
    lifetime: dt.timedelta = dt.timedelta(days=825),
) -> x509.Certificate:
    """A TLS server certificate for the broker, valid for the given names and IP addresses."""
    alt: list[x509.GeneralName] = []
    for name in hostnames:
        try:
            alt.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            alt.append(x509.DNSName(name))
    builder = (
        _leaf_builder(ca, hostnames[0], key.public_key(), lifetime)
        .add_extension(x509.SubjectAlternativeName(alt), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
    )
    return builder.sign(ca.key, hashes.SHA256())


def write_cert(cert: x509.Certificate, path: Path, *chain: x509.Certificate) -> None:
    """Write a certificate (and optionally its chain) as PEM."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pem = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in (cert, *chain))
    path.write_bytes(pem)


def write_key(key: PrivateKey, path: Path) -> None:
    """Write a private key as unencrypted PKCS#8 PEM with mode 0600 from the start."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(pem)


def write_crl(
    ca: CertifiedKey,
    revoked: list[tuple[int, float]],
    path: Path,
    lifetime: dt.timedelta = dt.timedelta(days=7),
) -> None:
    """Write a CRL signed by ``ca`` listing ``(serial, revoked_at)``; valid for ``lifetime``.

    Mosquitto refuses every client once the CRL's ``nextUpdate`` has passed: whoever keeps the
    CRL must re-issue it well before then.
    """
    now = _now()
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca.cert.subject)
        .last_update(now - dt.timedelta(minutes=5))
        .next_update(now + lifetime)
    )
    for serial, revoked_at in revoked:
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder()
            .serial_number(serial)
            .revocation_date(dt.datetime.fromtimestamp(revoked_at, dt.UTC))
            .build()
        )
    crl = builder.sign(ca.key, hashes.SHA256())
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(crl.public_bytes(serialization.Encoding.PEM))
    os.replace(tmp, path)


def crl_is_current(
    ca: CertifiedKey,
    revoked: list[tuple[int, float]],
    path: Path,
    lifetime: dt.timedelta = dt.timedelta(days=7),
) -> bool:
    """Whether the CRL at ``path`` is ``ca``'s, lists exactly the serials of ``revoked`` and
    stays valid for more than half of ``lifetime``: then writing it again would change nothing
    the broker needs."""
    try:
        crl = x509.load_pem_x509_crl(path.read_bytes())
    except (OSError, ValueError):
        return False
    public_key = ca.cert.public_key()
    if crl.issuer != ca.cert.subject or not isinstance(public_key, ec.EllipticCurvePublicKey):
        return False
    if not crl.is_signature_valid(public_key):
        return False
    next_update = crl.next_update_utc
    if next_update is None or next_update - _now() <= lifetime / 2:
        return False
    return {r.serial_number for r in crl} == {serial for serial, _ in revoked}


def load_cert(path: Path) -> x509.Certificate:
    """Read one PEM certificate, translating errors into :class:`CertificateError`."""
    try:
        return x509.load_pem_x509_certificate(path.read_bytes())
    except (OSError, ValueError) as err:
        raise CertificateError(f"cannot read certificate {path}: {err}") from err


def load_key(path: Path) -> PrivateKey:
    """Read one PEM EC private key."""
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as err:
        raise CertificateError(f"cannot read private key {path}: {err}") from err
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise CertificateError(f"private key {path} is not an EC key")
    return key


def cert_expiry(path: Path) -> float:
    """The ``notAfter`` of the certificate at ``path`` as a Unix timestamp."""
    return load_cert(path).not_valid_after_utc.timestamp()
