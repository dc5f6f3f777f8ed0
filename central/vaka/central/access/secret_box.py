"""The staff's TOTP secrets sealed at rest: encrypted with a key central reads from a file
outside its database, so a copy of the database (a backup, a stolen disk) holds no usable
second factor.

``[staff_access] totp_key_file`` names the key (``vaka-central totp-key FILE`` makes one, mode
0600). Without it secrets are stored as they are — with a warning at start. Sealed values carry a
version prefix; plain ones still open, so a key can be introduced on a running installation:
secrets are sealed as they are next written (enrolment, directory load).
"""

import logging
import os
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken

from vaka.errors import ConfigError

log = logging.getLogger(__name__)

PREFIX = "v1:"


class SecretBoxError(ValueError):
    """A sealed secret cannot be opened with this key."""


class SecretBox:
    """Seals and opens short secrets with a Fernet key (AES-128-CBC + HMAC-SHA256), or passes
    them through unchanged when there is no key."""

    def __init__(self, key: bytes | None = None) -> None:
        self._fernet = Fernet(key) if key is not None else None

    @property
    def sealing(self) -> bool:
        """Whether secrets are sealed (a key is configured)."""
        return self._fernet is not None

    @classmethod
    def from_file(cls, path: Path | None) -> "SecretBox":
        """The box for the key in ``path`` (``None``: no key, secrets stay as they are)."""
        if path is None:
            log.warning(
                "no [staff_access] totp_key_file: staff one-time code secrets are stored "
                "unencrypted in central's database"
            )
            return cls()
        try:
            key = path.read_bytes().strip()
            box = cls(key)
        except OSError as err:
            raise ConfigError(f"cannot read the TOTP key {path}: {err.strerror}") from None
        except ValueError:
            raise ConfigError(
                f"{path} is not a TOTP key (make one with `vaka-central totp-key {path}`)"
            ) from None
        if path.stat().st_mode & 0o077:
            log.warning("%s is readable by others than its owner: chmod 600 it", path)
        return box

    def seal(self, secret: str) -> str:
        """``secret`` as it is stored."""
        if self._fernet is None:
            return secret
        return PREFIX + self._fernet.encrypt(secret.encode()).decode()

    def open(self, stored: str) -> str:
        """The secret of a stored value (sealed or, from before the key, plain).

        :raises SecretBoxError: it was sealed with another key, or there is no key.
        """
        if not stored.startswith(PREFIX):
            return stored
        if self._fernet is None:
            raise SecretBoxError("a sealed one-time code secret, but no totp_key_file is set")
        try:
            return self._fernet.decrypt(stored[len(PREFIX) :].encode()).decode()
        except InvalidToken:
            raise SecretBoxError("a one-time code secret was sealed with another key") from None


def write_new_key(path: Path) -> None:
    """Make a new key file, readable by its owner only; never overwrites one."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(Fernet.generate_key() + b"\n")
