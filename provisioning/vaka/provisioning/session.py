"""The technician's log-in kept between ``vaka-provision`` commands, so that the password and
the one-time code are asked once per sitting, not once per command.

The file (``$XDG_STATE_HOME/vaka/provision-session.json``, else
``~/.local/state/vaka/provision-session.json``) holds central's address, the staff id, central's
session token and the session's expiry — never the password or the TOTP secret. It is written
with mode 0600 in a 0700 directory, and a file that others may read (or that another user owns)
is refused, not used: its token may have leaked. Central decides how long the session lasts (its
absolute expiry and its idle time-out); a token central no longer accepts is deleted and the
technician logs in again. ``vaka-provision logout`` ends the session in central and deletes the
file.
"""

import contextlib
import json
import os
import stat
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from vaka.errors import ProvisioningError

FILE_NAME = "provision-session.json"


class SessionFileRefused(ProvisioningError, PermissionError):
    """The session file may not be used (others can read it, or it is not ours)."""


def session_path() -> Path:
    """Where the session is kept: ``$XDG_STATE_HOME/vaka/``, else ``~/.local/state/vaka/``."""
    state = os.environ.get("XDG_STATE_HOME", "").strip()
    root = Path(state) if state else Path.home() / ".local" / "state"
    return root / "vaka" / FILE_NAME


@dataclass(frozen=True)
class StoredSession:
    """One session with one central."""

    central: str
    user: str
    token: str
    expires_at: float


class SessionFile:
    """The session file at ``path``; every method is safe when the file does not exist."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path or session_path()

    def read(self) -> StoredSession | None:
        """The stored session, or ``None`` (no file, or one that is not a session: deleted).

        Raises :class:`SessionFileRefused` for a file with wider permissions than 0600 or
        another owner.
        """
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_NOFOLLOW)
        except FileNotFoundError:
            return None
        except OSError as err:
            raise SessionFileRefused(
                f"cannot read the session file {self.path}: {err.strerror}"
            ) from None
        with os.fdopen(fd, encoding="utf-8") as file:
            info = os.fstat(file.fileno())
            self._check(info)
            text = file.read(64 * 1024)
        try:
            data = json.loads(text)
            return StoredSession(
                central=str(data["central"]),
                user=str(data["user"]),
                token=str(data["token"]),
                expires_at=float(data["expires_at"]),
            )
        except (ValueError, KeyError, TypeError):
            self.delete()
            return None

    def _check(self, info: os.stat_result) -> None:
        mode = stat.S_IMODE(info.st_mode)
        if info.st_uid != os.geteuid():
            raise SessionFileRefused(
                f"refused: the session file {self.path} belongs to another user; delete it"
            )
        if mode & 0o077:
            raise SessionFileRefused(
                f"refused: the session file {self.path} may be read by others (mode "
                f"{mode:04o}, expected 0600): delete it and log in again"
            )

    def session_for(
        self, central: str, user: str, now: float | None = None
    ) -> StoredSession | None:
        """The stored session if it is ``user``'s at ``central`` and not past its expiry (an
        expired one is deleted)."""
        stored = self.read()
        if stored is None or (stored.central, stored.user) != (central, user):
            return None
        if stored.expires_at <= (time.time() if now is None else now):
            self.delete()
            return None
        return stored

    def save(self, session: StoredSession) -> None:
        """Write the session (mode 0600, replacing the file in one step)."""
        directory = self.path.parent
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        temp = directory / f".{self.path.name}.{os.getpid()}"
        with contextlib.suppress(FileNotFoundError):
            temp.unlink()
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as file:
                json.dump(asdict(session), file)
            os.replace(temp, self.path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                temp.unlink()
            raise

    def delete(self) -> bool:
        """Remove the file; whether there was one."""
        try:
            self.path.unlink()
        except FileNotFoundError:
            return False
        return True
