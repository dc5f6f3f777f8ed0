"""Central behind a trusted proxy, as the door tests attack it, and how they read its answers."""

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp

from tests.test_staff_access import PASSWORD, access_spec
from vaka.central.service import CentralService
from vaka.central.settings.calls import CallLimits
from vaka.central.settings.config import StaffAccessSection
from vaka.devstack.broker import Broker
from vaka.devstack.central import central_config

ATTACKER = "198.51.100.66"


@contextlib.asynccontextmanager
async def door_central(
    broker: Broker,
    tmp_path: Path,
    identity: str = "central-1",
    *,
    access: dict[str, Any] | None = None,
    calls: dict[str, Any] | None = None,
    pki_settings: dict[str, Any] | None = None,
    database: Path | str | None = None,
) -> AsyncIterator[CentralService]:
    """Central (behind a trusted proxy on loopback, so tests can speak from other addresses)
    with the staff of :func:`tests.test_staff_access.access_spec`."""
    config = central_config(broker, tmp_path, identity, database=database)
    settings = {"trusted_proxies": ["127.0.0.1/32"], **(access or {})}
    update: dict[str, Any] = {"staff_access": StaffAccessSection.model_validate(settings)}
    if calls:
        update["calls"] = CallLimits.model_validate(calls)
    if pki_settings:
        assert config.pki is not None
        update["pki"] = config.pki.model_copy(update=pki_settings)
    async with CentralService(config.model_copy(update=update)) as central:
        await asyncio.to_thread(central.directory.load, access_spec())
        yield central


async def raw_post(
    url: str,
    *,
    body: bytes | None = None,
    json_body: Any = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], bytes]:
    """One POST; status, headers and the exact body bytes."""
    async with (
        aiohttp.ClientSession() as http,
        http.post(url, data=body, json=json_body, headers=headers or {}) as resp,
    ):
        return resp.status, dict(resp.headers), await resp.read()


def login(staff_id: str, password: str = PASSWORD, **extra: str) -> dict[str, str]:
    return {"staff_id": staff_id, "password": password, **extra}


def error(raw: bytes) -> str:
    return str(json.loads(raw)["error"])


async def audit_kinds(central: CentralService, kind: str) -> list[dict[str, Any]]:
    entries = await asyncio.to_thread(central.audit.entries, kind=kind)
    return [{"actor": e.actor, **e.detail} for e in entries]
