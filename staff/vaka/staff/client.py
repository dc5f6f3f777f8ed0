"""The staff side of a call, in Python: log in to central, dial a unit, receive its video.

This is the reference peer for tests and benchmarks (the browser console speaks the same
WebSocket protocol). Frames are kept in memory only.
"""

import asyncio
import base64
import contextlib
import json
import logging
import time
import urllib.parse
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

import aiohttp
from aiortc import (
    MediaStreamTrack,
    RTCIceServer,
)

from vaka import otp
from vaka.staff.call import CallTimings, PatternVideoTrack, StaffCall, StaffError
from vaka.staff.placing import RelayTransport, Waits, place_call, relay_servers

log = logging.getLogger(__name__)


class StaffClient:
    """A logged-in staff member's connection to central.

    ``ice_servers`` are used for every call, before the relay credential central hands out
    per call (``relay_transport`` picks which of its TURN URLs aiortc uses).
    """

    def __init__(
        self,
        central_url: str,
        ice_servers: Sequence[RTCIceServer] = (),
        relay_transport: RelayTransport = "udp",
    ) -> None:
        self.central_url = central_url.rstrip("/")
        self.ice_servers = list(ice_servers)
        self.relay_transport: RelayTransport = relay_transport
        self._http: aiohttp.ClientSession | None = None
        self._token: str | None = None
        self.staff: dict[str, Any] = {}
        self.must_change_password = False
        self.must_enrol_totp = False

    async def __aenter__(self) -> "StaffClient":
        self._http = aiohttp.ClientSession()
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._http is not None:
            await self._http.close()

    @property
    def token(self) -> str | None:
        """The session's bearer token once logged in."""
        return self._token

    @property
    def http(self) -> aiohttp.ClientSession:
        """The HTTP session (use the client as an async context manager first)."""
        if self._http is None:
            raise StaffError("use `async with StaffClient(...)` first")
        return self._http

    async def login(
        self,
        staff_id: str,
        password: str,
        totp: str | None = None,
        totp_secret: str | None = None,
        *,
        recovery_code: str | None = None,
    ) -> None:
        """Log in; raises :class:`StaffError` with central's reason.

        The second factor: ``totp`` (a code), or ``totp_secret`` (base32) to compute one — a
        code central saw before is replaced by the next one it accepts — or ``recovery_code``;
        without any, the secret in ``$VAKA_TOTP_SECRET_FILE``, else the code is asked on the
        terminal if central wants one and there is a terminal.
        After log-in, :attr:`must_change_password` and :attr:`must_enrol_totp` tell whether
        the session is restricted to that.
        """
        secret = totp_secret or (None if totp or recovery_code else otp.secret_from_env())
        if secret is not None and totp is None:
            body = await self._login_with_secret(staff_id, password, secret)
        else:
            try:
                body = await self._login_once(staff_id, password, totp, recovery_code)
            except StaffError as err:
                if totp or recovery_code or not otp.may_ask(str(err)):
                    raise
                code = await asyncio.to_thread(otp.ask_code, staff_id)
                body = await self._login_once(staff_id, password, code, None)
        self._token = body["token"]
        self.staff = body["staff"]
        self.must_change_password = bool(body.get("must_change_password"))
        self.must_enrol_totp = bool(body.get("must_enrol_totp"))

    async def _login_with_secret(self, staff_id: str, password: str, secret: str) -> Any:
        source = otp.CodeSource(secret, f"{self.central_url} {staff_id}")
        for _attempt in range(8):
            code = source.next()
            if code is None:  # every code of this step was used: wait for the next step
                await asyncio.sleep(otp.seconds_to_next_step() + 0.05)
                continue
            try:
                body = await self._login_once(staff_id, password, code, None)
            except StaffError as err:
                if not source.may_retry(str(err)):
                    raise
            else:
                source.accepted()
                return body
        raise StaffError("log-in refused: every one-time code of this step was already used")

    async def _login_once(
        self, staff_id: str, password: str, totp: str | None, recovery_code: str | None
    ) -> Any:
        request: dict[str, str] = {"staff_id": staff_id, "password": password}
        if totp:
            request["totp"] = totp
        if recovery_code:
            request["recovery_code"] = recovery_code
        return await self._request("POST", "/api/login", request, {}, "log-in refused")

    async def dial(
        self,
        unit: str,
        purpose: str = "night_check",
        reason: str | None = None,
        timeout: float = 15.0,
        ring_timeout: float = 60.0,
        *,
        request: str | None = None,
        send_video: MediaStreamTrack | None = None,
        send_audio: MediaStreamTrack | None = None,
    ) -> StaffCall:
        """Ask central for the call's ICE servers, then for a ticket, and set up the call (a TV
        unit may ring up to ``ring_timeout`` seconds, or as long as central says, before it
        answers).

        Cancelling this coroutine while the unit rings cancels the call: central is told, and
        the unit stops ringing.

        By default the call only receives the unit's video. With ``send_video`` (and
        ``send_audio``) the staff side sends too: video both ways, audio both ways.
        ``request`` names the citizen's request a ``citizen_call`` answers.
        """
        if self._token is None:
            raise StaffError("log in first")
        timings = CallTimings(started=time.perf_counter())
        fields = {
            "unit": unit,
            "purpose": purpose,
            **({"reason": reason} if reason else {}),
            **({"request": request} if request else {}),
        }
        ws = await self._prepare(fields)
        try:
            prepared = await ws.receive_json(timeout=timeout)
        except (TimeoutError, TypeError, ValueError) as err:
            await ws.close()
            raise StaffError(f"no answer from central: {err!r}") from None
        except asyncio.CancelledError:
            await ws.close()  # nothing rings yet: central forgets the prepared call
            raise
        if prepared.get("type") != "prepared":
            await ws.close()
            raise StaffError(f"call refused: {prepared.get('reason', prepared)}")
        timings.prepared = time.perf_counter()
        servers = [
            *self.ice_servers,
            *relay_servers(prepared.get("ice_servers") or [], self.relay_transport),
        ]
        return await place_call(
            ws,
            fields,
            servers,
            timings,
            Waits(timeout, ring_timeout),
            send_video=send_video,
            send_audio=send_audio,
        )

    async def _prepare(self, fields: Mapping[str, str]) -> aiohttp.ClientWebSocketResponse:
        """Open the call's WebSocket and ask for its ICE servers (``prepare``)."""
        try:
            ws = await self.http.ws_connect(
                f"{self.central_url}/api/calls",
                headers={"Authorization": f"Bearer {self._token}"},
                heartbeat=10,
            )
        except aiohttp.ClientError as err:
            raise StaffError(f"cannot open the call channel: {err}") from None
        await ws.send_json({"type": "prepare", **fields})
        return ws

    # ------------------------------------------------------------ duty and citizen calls

    def _headers(self) -> dict[str, str]:
        if self._token is None:
            raise StaffError("log in first")
        return {"Authorization": f"Bearer {self._token}"}

    async def _api(self, method: str, path: str, body: Any = None) -> Any:
        return await self._request(method, path, body, self._headers(), "refused")

    async def _request(
        self, method: str, path: str, body: Any, headers: dict[str, str], refused: str
    ) -> Any:
        """Central's JSON answer; :class:`StaffError` ``"<refused>: <central's reason>"``."""
        try:
            async with self.http.request(
                method, f"{self.central_url}{path}", json=body, headers=headers
            ) as resp:
                data = await resp.json(content_type=None)
        except (aiohttp.ClientError, ValueError) as err:
            raise StaffError(f"cannot reach central at {self.central_url}: {err}") from None
        if resp.status != 200:
            reason = data.get("error", resp.status) if isinstance(data, dict) else resp.status
            raise StaffError(f"{refused}: {reason}")
        return data

    async def duty(self, on: bool) -> dict[str, Any]:
        """Go on or off duty: ``{"on": bool, "since": ts | None}``."""
        result: dict[str, Any] = await self._api("POST", "/api/duty", {"on": on})
        return result

    async def duty_status(self) -> dict[str, Any]:
        """Whether I am on duty, and who holds the watch in each of my groups."""
        result: dict[str, Any] = await self._api("GET", "/api/duty")
        return result

    async def change_consent(
        self,
        citizen: str,
        scope: str,
        action: str,
        person: str = "citizen",
        source: str | None = None,
    ) -> dict[str, Any]:
        """Record (``action="give"``) or withdraw a consent (support and administrators)."""
        body = {"citizen": citizen, "person": person, "scope": scope, "action": action}
        if source is not None:
            body["source"] = source
        result: dict[str, Any] = await self._api("POST", "/api/consent", body)
        return result

    async def escalations(self) -> list[dict[str, Any]]:
        """Recent escalations of citizen calls in my groups, newest first."""
        result: list[dict[str, Any]] = (await self._api("GET", "/api/escalations"))["escalations"]
        return result

    @contextlib.asynccontextmanager
    async def ring_socket(self, timeout: float = 10.0) -> AsyncIterator["RingSocket"]:
        """The ring socket of a staff member on duty (``StaffError`` if central refuses)."""
        try:
            ws = await self.http.ws_connect(
                f"{self.central_url}/api/duty/ring", headers=self._headers(), heartbeat=10
            )
        except aiohttp.ClientError as err:
            raise StaffError(f"cannot open the ring socket: {err}") from None
        rings = RingSocket(ws)
        try:
            hello = await rings.next(timeout)
            if hello.get("type") != "ready":
                raise StaffError(f"ring socket refused: {hello.get('reason', hello)}")
            yield rings
        finally:
            await ws.close()

    async def answer(
        self,
        request_id: str,
        unit: str,
        *,
        send_video: MediaStreamTrack | None = None,
        send_audio: MediaStreamTrack | None = None,
        timeout: float = 15.0,
    ) -> StaffCall:
        """Accept a citizen's call (the first to accept takes it) and set it up, two-way:
        without ``send_video`` a synthetic pattern is sent as the staff member's picture."""
        return await self.dial(
            unit,
            "citizen_call",
            timeout=timeout,
            request=request_id,
            send_video=send_video if send_video is not None else PatternVideoTrack(),
            send_audio=send_audio,
        )

    # ------------------------------------------------------------ messages and reminders

    async def send_message(
        self,
        unit: str,
        text: str,
        *,
        reminder: bool = False,
        at: str | None = None,
        picture: bytes | None = None,
        ack_within_s: int | None = None,
    ) -> dict[str, Any]:
        """``POST /api/messages``: a message (or ``reminder``) for a TV unit, now or ``at``
        ("HH:MM" local time, or an ISO 8601 time); ``picture`` is JPEG bytes. Returns central's
        record (``mid``, ``status``, ``send_at``, ...); :class:`StaffError` with its reason."""
        body: dict[str, Any] = {
            "unit": unit,
            "kind": "reminder" if reminder else "message",
            "text": text,
        }
        if at is not None:
            body["at"] = at
        if picture is not None:
            body["picture"] = base64.b64encode(picture).decode()
        if ack_within_s is not None:
            body["ack_within_s"] = ack_within_s
        record: dict[str, Any] = await self._api("POST", "/api/messages", body)
        return record

    async def messages(self, unit: str) -> list[dict[str, Any]]:
        """``GET /api/messages?unit=...``: the unit's messages with their status, newest first."""
        query = urllib.parse.urlencode({"unit": unit})
        answer = await self._api("GET", f"/api/messages?{query}")
        rows: list[dict[str, Any]] = answer["messages"]
        return rows


class RingSocket:
    """Rings for a staff member on duty: ``ring``, ``stop_ringing`` and ``off_duty`` messages."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws

    async def next(self, timeout: float = 10.0) -> dict[str, Any]:
        """The next message; ``TimeoutError`` if none comes, ``StaffError`` if the socket
        closes."""
        while True:
            msg = await self.ws.receive(timeout=timeout)
            if msg.type is aiohttp.WSMsgType.TEXT:
                with contextlib.suppress(ValueError):
                    data = json.loads(msg.data)
                    if isinstance(data, dict):
                        return data
                continue
            if msg.type in (
                aiohttp.WSMsgType.CLOSE,
                aiohttp.WSMsgType.CLOSING,
                aiohttp.WSMsgType.CLOSED,
                aiohttp.WSMsgType.ERROR,
            ):
                raise StaffError("the ring socket closed")

    async def next_ring(self, timeout: float = 10.0) -> dict[str, Any]:
        """The next ``ring`` (other messages are skipped)."""
        deadline = time.monotonic() + timeout
        while True:
            message = await self.next(max(0.01, deadline - time.monotonic()))
            if message.get("type") == "ring":
                return message
