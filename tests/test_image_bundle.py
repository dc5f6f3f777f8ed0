"""Signed update bundles (image/bundle.sh, ``make image-bundle``): a root file system image in a
RAUC bundle, signed with the project's update key, that a unit's keyring accepts, and that a keyring
of another authority refuses.

Needs ``rauc`` and ``mksquashfs`` (Debian's ``rauc`` and ``squashfs-tools``); skipped without
them. A small ext4 image stands in for a unit's root: what is tested is the signing and the
check, not the size.
"""

import datetime
import hashlib
import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

REPO = Path(__file__).resolve().parent.parent
BUNDLE = REPO / "image" / "bundle.sh"

pytestmark = pytest.mark.skipif(
    shutil.which("rauc") is None or shutil.which("mksquashfs") is None,
    reason="needs rauc and squashfs-tools (apt-get install rauc squashfs-tools)",
)


@dataclass(frozen=True)
class Signer:
    ca: Path  # what a unit's /etc/rauc/keyring.pem holds
    cert: Path
    key: Path


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def make_signer(directory: Path, authority: str) -> Signer:
    """A certificate authority for updates and a signing certificate issued by it."""
    directory.mkdir(parents=True)
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name(authority))
        .issuer_name(_name(authority))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(f"{authority} signer"))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(True, False, False, False, False, False, False, False, False),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    signer = Signer(directory / "ca.pem", directory / "signer.pem", directory / "signer.key")
    signer.ca.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    signer.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    signer.key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    signer.key.chmod(0o600)
    return signer


@pytest.fixture(scope="module")
def root_image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small ext4 image with a root file system's shape."""
    base = tmp_path_factory.mktemp("bundle-root")
    tree = base / "tree"
    (tree / "etc").mkdir(parents=True)
    (tree / "etc/os-release").write_text('PRETTY_NAME="Vaka unit (test)"\n')
    # What image/build.sh --version writes (there /etc/os-release links to this file).
    (tree / "usr/lib").mkdir(parents=True)
    (tree / "usr/lib/os-release").write_text("IMAGE_ID=vaka-amd64\nIMAGE_VERSION=2026.12.1\n")
    (tree / "opt/vaka").mkdir(parents=True)
    (tree / "opt/vaka/version").write_text("2026.12.1\n")
    # Something that does not compress away (RAUC refuses a payload of a single block).
    (tree / "opt/vaka/payload").write_bytes(os.urandom(256 * 1024))
    image = base / "root.ext4"
    with image.open("wb") as blank:
        blank.truncate(8 * 2**20)
    subprocess.run(["mkfs.ext4", "-q", "-L", "vaka-root", "-d", str(tree), str(image)], check=True)
    return image


def bundle(root: Path, out: Path, signer: Signer, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(BUNDLE), str(root), str(out), "--cert", str(signer.cert),
         "--key", str(signer.key), *extra],
        capture_output=True,
        text=True,
        timeout=120,
    )  # fmt: skip


def info(bundle_path: Path, keyring: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["rauc", "info", f"--keyring={keyring}", "--output-format=json", str(bundle_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_bundle_signed_with_the_project_key_is_accepted(root_image: Path, tmp_path: Path) -> None:
    project = make_signer(tmp_path / "project", "Vaka updates (test)")
    out = tmp_path / "vaka-amd64-2026.12.1.raucb"
    run = bundle(root_image, out, project, "--version", "2026.12.1", "--keyring", str(project.ca))
    assert run.returncode == 0, run.stderr
    digest = subprocess.run(
        ["sha256sum", str(out)], capture_output=True, text=True, check=True
    ).stdout.split()[0]
    # The hash that an update order names is printed with the bundle.
    assert "vaka-amd64 2026.12.1" in run.stderr and f"sha256 {digest}" in run.stderr
    assert "warning" not in run.stderr, "the root says the bundle's version"
    checked = info(out, project.ca)
    assert checked.returncode == 0, checked.stderr
    manifest = json.loads(checked.stdout)
    assert manifest["compatible"] == "vaka-amd64"
    assert manifest["version"] == "2026.12.1"
    assert "Verified inline signature by 'CN = Vaka updates (test) signer'" in checked.stderr
    # One image, for the other root slot: the very root file system image, byte for byte.
    (image,) = manifest["images"]
    assert image["rootfs"]["filename"] == "rootfs.ext4"
    assert image["rootfs"]["checksum"] == hashlib.sha256(root_image.read_bytes()).hexdigest()
    # The signing key is not in what goes to the units.
    key_der = serialization.load_pem_private_key(project.key.read_bytes(), None).private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    assert key_der not in out.read_bytes()


def test_a_bundle_from_another_authority_is_refused(root_image: Path, tmp_path: Path) -> None:
    project = make_signer(tmp_path / "project", "Vaka updates (test)")
    stranger = make_signer(tmp_path / "stranger", "Somebody else")
    out = tmp_path / "foreign.raucb"
    run = bundle(root_image, out, stranger, "--version", "2026.12.1")
    assert run.returncode == 0, run.stderr  # a well-formed bundle, by the wrong signer
    refused = info(out, project.ca)  # what a unit with the project's keyring does
    assert refused.returncode != 0
    assert "signature verification failed" in refused.stderr.lower(), refused.stderr
    # And bundle.sh's own check against the project's keyring refuses it too.
    again = bundle(root_image, tmp_path / "again.raucb", stranger, "--version", "1",
                   "--keyring", str(project.ca))  # fmt: skip
    assert again.returncode != 0


def test_a_version_that_would_break_the_manifest_is_refused(
    root_image: Path, tmp_path: Path
) -> None:
    project = make_signer(tmp_path / "project", "Vaka updates (test)")
    run = bundle(root_image, tmp_path / "x.raucb", project, "--version", "1\ncompatible=other")
    assert run.returncode == 2
    assert "may hold only A-Z a-z 0-9 . + ~ _ -" in run.stderr
    assert not (tmp_path / "x.raucb").exists()


def test_a_version_other_than_the_roots_is_warned_about(root_image: Path, tmp_path: Path) -> None:
    # A unit that reboots into a root saying 2026.12.1 would not report this bundle's version.
    project = make_signer(tmp_path / "project", "Vaka updates (test)")
    run = bundle(root_image, tmp_path / "other.raucb", project, "--version", "2027.1.1")
    assert run.returncode == 0, run.stderr
    said = "warning: the root says IMAGE_VERSION=2026.12.1, the bundle --version 2027.1.1"
    assert said in run.stderr
