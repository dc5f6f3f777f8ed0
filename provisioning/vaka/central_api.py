"""A small blocking client for central's HTTP API, for the command-line tools.

Errors come back as :class:`ApiError` carrying central's own reason, ready to print.
"""

import json
import os
import sys
import time
import urllib.error
import urllib.request
from typing import Any

from vaka import otp
from vaka.errors import VakaError


class ApiError(VakaError, RuntimeError):
    """Central refused a request or could not be reached; the message says why.

    ``status`` is central's HTTP status (``None`` when central was not reached) and ``reason``
    central's own words.
    """

    def __init__(self, message: str, status: int | None = None, reason: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason if reason is not None else message


class CentralApi:
    """Talks to one central over HTTP(S), with a session token after :meth:`login`."""

    def __init__(self, base_url: str, token: str | None = None, timeout: float = 30) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise ApiError(f"central's address must be an http(s) URL, got {base_url!r}")
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.timeout = timeout

    def request(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        """One request; the decoded JSON answer, or :class:`ApiError` with central's reason."""
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(  # noqa: S310 (scheme checked in __init__)
            self.base_url + path, data=data, method=method
        )
        req.add_header("Content-Type", "application/json")
        if self.token:
            req.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:  # noqa: S310
                return json.load(resp)
        except urllib.error.HTTPError as err:
            try:
                reason = json.loads(err.read()).get("error", err.reason)
            except ValueError:
                reason = err.reason
            raise ApiError(
                f"central refused ({err.code}): {reason}", err.code, str(reason)
            ) from None
        except (urllib.error.URLError, OSError) as err:
            raise ApiError(f"cannot reach central at {self.base_url}: {err}") from None

    def login(
        self,
        staff_id: str,
        password: str,
        totp: str | None = None,
        totp_secret: str | None = None,
    ) -> dict[str, Any]:
        """Log in; keeps the session token for the next requests.

        The one-time code: ``totp``, else computed from ``totp_secret`` or the file
        ``$VAKA_TOTP_SECRET_FILE`` names, else asked on the terminal when central wants one.
        """
        secret = totp_secret or otp.secret_from_env()
        if totp is None and secret is not None:
            answer = self._login_with_secret(staff_id, password, secret)
        else:
            try:
                answer = self._login_once(staff_id, password, totp)
            except ApiError as err:
                if totp is not None or not otp.may_ask(str(err)):
                    raise
                answer = self._login_once(staff_id, password, otp.ask_code(staff_id))
        self.token = answer["token"]
        return answer

    def _login_with_secret(self, staff_id: str, password: str, secret: str) -> dict[str, Any]:
        source = otp.CodeSource(secret, f"{self.base_url} {staff_id}")
        for _attempt in range(8):
            code = source.next()
            if code is None:  # every code of this step was used: wait for the next step
                time.sleep(otp.seconds_to_next_step() + 0.05)
                continue
            try:
                answer = self._login_once(staff_id, password, code)
            except ApiError as err:
                if not source.may_retry(str(err)):
                    raise
            else:
                source.accepted()
                return answer
        raise ApiError("every one-time code of this step was already used")

    def _login_once(self, staff_id: str, password: str, totp: str | None) -> dict[str, Any]:
        body = {"staff_id": staff_id, "password": password}
        if totp:
            body["totp"] = totp
        answer: dict[str, Any] = self.request("POST", "/api/login", body)
        return answer


def password_from_env_or_prompt(user: str) -> str:
    """``VAKA_PASSWORD`` if set (scripts), else asked on the terminal; :class:`ApiError` when
    there is neither (a script must not hang on a prompt nobody sees)."""
    import getpass

    password = os.environ.get("VAKA_PASSWORD")
    if password:
        return password
    if not sys.stdin.isatty():
        raise ApiError(
            f"log in first: no password for {user} (set VAKA_PASSWORD, or run on a terminal)"
        )
    return getpass.getpass(f"password for {user}: ")
