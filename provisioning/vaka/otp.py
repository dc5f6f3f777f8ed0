"""One-time codes (TOTP, RFC 6238) on the client side, for tools that hold a staff member's
secret (tests, the demo, scripted night rounds): the codes to offer central, and reading the
secret from a file.

Central accepts the codes of the previous, current and next 30 s step, each once; a client
that logs in several times within a step offers the next unused one (see :class:`CodeSource`).
Central's refusal of a log-in does not say what was wrong (password, code, lock-out, network:
one answer, so that a password cannot be confirmed before the second factor), so a client
cannot tell a reused code from a wrong password: it remembers which steps it used itself and
retries a bounded number of times.
"""

import getpass
import hashlib
import os
import sys
import time
from pathlib import Path
from typing import ClassVar

import pyotp

STEP_S = 30
#: part of central's one refusal of a log-in (the client may offer one more code)
REFUSAL_MARK = "one-time code"
#: codes offered after a refusal, at most: the rest of the window central accepts (the next and
#: the previous step's), then the next step's
RETRIES = 3
SECRET_FILE_ENV = "VAKA_TOTP_SECRET_FILE"  # noqa: S105 (a variable name)


def code_now(secret: str, now: float | None = None) -> str:
    """The current 6-digit code for ``secret`` (base32)."""
    return pyotp.TOTP(secret).at(time.time() if now is None else now)


class CodeSource:
    """The codes one log-in offers central, one at a time, each step at most once.

    :meth:`next` gives the current step's code first, then the next and the previous step's
    (``None`` when all three were tried: wait :func:`seconds_to_next_step`), skipping the steps
    whose code this process already had accepted (:meth:`accepted`; a process that logs in
    several times within a step: tests, the demo, a scripted round). After a refusal,
    :meth:`may_retry` allows another code while :data:`RETRIES` last: another process may have
    used this step's (a technician running the CLI twice within 30 s), or it went stale on the
    way. Not more, because a refusal may as well mean a wrong password, and every such refusal
    counts towards the account's lock-out: a wrong password costs a tool 1 + :data:`RETRIES`
    counted failures.
    """

    #: the last step whose code central accepted from this process, per secret and account
    _accepted: ClassVar[dict[str, int]] = {}

    def __init__(self, secret: str, account: str = "") -> None:
        """``account`` names whose codes these are at which central (central remembers used
        codes per staff member), e.g. ``"https://central.example n-nurse"``."""
        self._totp = pyotp.TOTP(secret)
        self._key = hashlib.sha256(f"{secret}\n{account}".encode()).hexdigest()
        self._tried: set[int] = set()
        self._last: int | None = None
        self._retries = 0

    def next(self, now: float | None = None) -> str | None:
        """The next code to offer, or ``None`` if every code central accepts now was tried."""
        step = int((time.time() if now is None else now) // STEP_S)
        used = self._accepted.get(self._key, -1)
        for candidate in (step, step + 1, step - 1):
            if candidate not in self._tried and candidate > used:
                self._tried.add(candidate)
                self._last = candidate
                return self._totp.generate_otp(candidate)
        return None

    def may_retry(self, refusal: str, now: float | None = None) -> bool:
        """Whether to offer one more code after central refused the log-in with ``refusal``."""
        if REFUSAL_MARK not in refusal or self._retries >= RETRIES:
            return False
        self._retries += 1
        return True

    def accepted(self) -> None:
        """Central accepted the last code offered: no log-in of this process offers it again."""
        if self._last is not None:
            previous = self._accepted.get(self._key, -1)
            self._accepted[self._key] = max(previous, self._last)


def seconds_to_next_step(now: float | None = None) -> float:
    """How long until the next 30 s step starts."""
    now = time.time() if now is None else now
    return STEP_S - now % STEP_S


def read_secret(path: str | os.PathLike[str]) -> str:
    """A TOTP secret from a file (base32, spaces and case ignored)."""
    text = Path(path).read_text().strip().replace(" ", "").upper()
    if not text:
        raise ValueError(f"{path} holds no TOTP secret")
    return text


def secret_from_env() -> str | None:
    """The secret in the file ``$VAKA_TOTP_SECRET_FILE`` names, if it is set."""
    path = os.environ.get(SECRET_FILE_ENV)
    return read_secret(path) if path else None


def may_ask(refusal: str) -> bool:
    """Whether to ask the user for a code: central wants one and there is a terminal."""
    return "one-time code" in refusal and sys.stdin.isatty()


def ask_code(user: str) -> str:
    """The code typed on the terminal."""
    return getpass.getpass(f"one-time code for {user}: ").strip()


def main(argv: list[str] | None = None) -> int:
    """``python -m vaka.otp SECRET``: print the current code (for the demo's accounts)."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m vaka.otp BASE32-SECRET", file=sys.stderr)
        return 2
    secret = args[0].replace(" ", "").upper()
    try:
        code = code_now(secret)
    except (ValueError, TypeError) as err:  # binascii.Error is a ValueError
        print(f"not a base32 TOTP secret: {err}", file=sys.stderr)
        return 2
    print(f"{code}  (valid {seconds_to_next_step():.0f} s more)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
