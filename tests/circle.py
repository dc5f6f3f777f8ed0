"""Helpers for the citizen's-circle tests: staff add and invite a contact over the API, and a
contact's own HTTP client (its session is a cookie, like the contact page's)."""

import base64
import io
from typing import Any

import aiohttp
from PIL import Image

from tests.conftest import staff_token
from tests.nightcheck import PASSWORD

#: the contact's rules when a test does not say: may call at any hour
ANY_HOUR = {"from": "00:00", "until": "24:00"}


def picture() -> str:
    """A small PNG as a data: URL (a contact's picture)."""
    out = io.BytesIO()
    Image.new("RGB", (32, 32), (200, 120, 40)).save(out, format="PNG")
    return "data:image/png;base64," + base64.b64encode(out.getvalue()).decode()


class StaffApi:
    """One staff member's bearer-token calls to central's circle routes."""

    def __init__(self, url: str, token: str) -> None:
        self.url = url
        self.headers = {"Authorization": f"Bearer {token}"}

    @classmethod
    async def log_in(cls, url: str, staff_id: str) -> "StaffApi":
        return cls(url, await staff_token(url, staff_id, PASSWORD))

    async def request(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        async with (
            aiohttp.ClientSession() as http,
            http.request(method, self.url + path, json=body, headers=self.headers) as resp,
        ):
            return resp.status, await resp.json()

    async def add_contact(self, citizen: str, **fields: Any) -> dict[str, Any]:
        body = {
            "display_name": "Anna Andersson",
            "citizen_name": "Grandma Greta",
            "relation": "granddaughter",
            "picture": picture(),
            "hours": ANY_HOUR,
            **fields,
        }
        status, answer = await self.request("POST", f"/api/citizens/{citizen}/contacts", body)
        assert status == 201, answer
        return dict(answer)

    async def invite(self, contact: str) -> dict[str, Any]:
        status, answer = await self.request("POST", f"/api/contacts/{contact}/invitations")
        assert status == 201, answer
        return dict(answer)


class ContactApi:
    """A contact's browser-less client: the ``vaka_contact`` cookie, as the page keeps it."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.http = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))

    async def __aenter__(self) -> "ContactApi":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.http.close()

    async def request(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        headers = {"Origin": self.url} if method != "GET" else {}
        async with self.http.request(method, self.url + path, json=body, headers=headers) as resp:
            return resp.status, await resp.json()
