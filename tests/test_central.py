"""Central: ingest of unit messages, refusals, status derivation and the HTTP API."""

import asyncio
import time

import aiohttp
import pytest

from tests.conftest import TOTP_SECRET, staff_token
from vaka.central.directory.spec import DirectorySpec
from vaka.central.fleet.presence import Presence
from vaka.central.fleet.status import derive_status
from vaka.central.fleet.store import UnitRecord
from vaka.central.service import CentralService
from vaka.central.settings.fleet import Thresholds
from vaka.devstack.broker import Broker
from vaka.devstack.central import central_config, running_central, unit_status
from vaka.devstack.polling import wait_for
from vaka.protocol import HealthMessage, HealthPayload, StateMessage, StatePayload, encode

HEALTH = HealthPayload(
    interval_s=30,
    uptime_s=100,
    load1=0.2,
    mem_used_pct=30,
    clock_synced=True,
    agent_version="0.1.0",
    config_version=0,
    camera_present=True,
    shutter="closed",
)


SUPPORT = {
    "id": "s-support",
    "name": "Sara Support",
    "role": "support",
    "password": "correct horse battery",
    "totp_secret": TOTP_SECRET,
}
_tokens: dict[str, str] = {}


async def support_headers(central: CentralService) -> dict[str, str]:
    """Log in as support staff (once per central) for the fleet API."""
    key = central.config.database.url
    if key not in _tokens:
        spec = DirectorySpec.model_validate({"staff": [SUPPORT]})
        await asyncio.to_thread(central.directory.load, spec)
        _tokens[key] = await staff_token(central.url, "s-support", SUPPORT["password"])
    return {"Authorization": f"Bearer {_tokens[key]}"}


async def get_json(central: CentralService, path: str) -> tuple[int, dict]:
    headers = await support_headers(central)
    async with (
        aiohttp.ClientSession() as http,
        http.get(central.url + path, headers=headers) as resp,
    ):
        return resp.status, await resp.json(content_type=None)


async def test_health_and_state_reach_the_registry_and_api(
    broker: Broker, central: CentralService, db_url: str
) -> None:
    assert central.config.database.url == db_url  # the registry on each backend
    async with broker.client("u-api") as unit:
        birth = StateMessage(payload=StatePayload(status="online", bdseq=7, profile="nightcam"))
        await unit.publish("vaka/v1/dev/u-api/state", encode(birth), qos=1, retain=True)
        await unit.publish("vaka/v1/dev/u-api/health", encode(HealthMessage(payload=HEALTH)), qos=1)
        await wait_for(lambda: central.ingest.written >= 2, 5, what="registry writes")
    status, body = await get_json(central, "/api/units")
    assert status == 200
    (view,) = body["units"]
    assert view["id"] == "u-api" and view["status"] == "online" and view["profile"] == "nightcam"
    assert view["health"]["camera_present"] is True
    status, one = await get_json(central, "/api/units/u-api")
    assert status == 200 and one["bdseq"] == 7


async def test_bad_unit_messages_are_refused_counted_and_central_keeps_serving(
    broker: Broker, central: CentralService
) -> None:
    bad = [
        b"not json",
        b'{"v":1,"type":"health","payload":{"uptime_s":"x"}}',
        encode(StateMessage(payload=StatePayload(status="online", bdseq=1))),  # wrong channel
        b"{" + b" " * 70_000 + b"}",  # oversize
    ]
    async with broker.client("u-bad") as unit:
        for raw in bad:
            await unit.publish("vaka/v1/dev/u-bad/health", raw, qos=1)
        await wait_for(lambda: central.ingest.refusals.total >= 4, 5, what="refusals")
        # ...and it still takes a good one afterwards.
        await unit.publish("vaka/v1/dev/u-bad/health", encode(HealthMessage(payload=HEALTH)), qos=1)
        await wait_for(lambda: central.ingest.written >= 1, 5, what="good message after bad ones")
    _, stats = await get_json(central, "/api/stats")
    assert stats["refused_total"] == 4
    assert stats["refused"] == {"BadMessage": 4}


@pytest.mark.parametrize(
    ("path", "status", "reason"),
    [
        ("/api/units?status=sleeping", 400, "status must be one of online, degraded, offline"),
        ("/api/units?colour=red", 400, "unknown query parameter(s): colour"),
        ("/api/units/NOT-A-UNIT", 400, "invalid unit id"),
        ("/api/units/u-nobody", 404, "no unit u-nobody in the registry"),
    ],
)
async def test_bad_http_requests_get_a_clear_error(
    central: CentralService, path: str, status: int, reason: str
) -> None:
    got, body = await get_json(central, path)
    assert got == status
    assert reason in body["error"]


async def test_fleet_page_lists_units(broker: Broker, central: CentralService) -> None:
    async with broker.client("u-page") as unit:
        birth = StateMessage(payload=StatePayload(status="online", bdseq=1, profile="tv"))
        await unit.publish("vaka/v1/dev/u-page/state", encode(birth), qos=1)
        await wait_for(lambda: unit_status(central, "u-page"), 5)
    headers = await support_headers(central)
    async with (
        aiohttp.ClientSession() as http,
        http.get(central.url + "/fleet", headers=headers) as resp,
    ):
        page = await resp.text()
    assert resp.status == 200
    assert "u-page" in page and "1 units: 1 online" in page


def _record(
    status: str = "online", health: dict | None = None, health_age: float = 1.0
) -> UnitRecord:
    now = time.time()
    return UnitRecord(
        device_id="u-x",
        profile="tv",
        agent_version="0.1.0",
        presence=Presence.of(status, 5),
        status_since=now - 600,
        first_seen=now - 600,
        last_seen=now - health_age,
        health=health,
        health_received_at=None if health is None else now - health_age,
    )


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"camera_present": False}, "camera not detected"),
        ({"shutter": "fault"}, "privacy shutter fault"),
        ({"cpu_temp_c": 85.0}, "CPU temperature 85 °C"),
        ({"clock_synced": False}, "clock not synchronised"),
        ({"tv": "absent"}, "TV not detected"),
        ({"cert_expires_at": time.time() + 3600 * 5}, "certificate expires in 5 h"),
    ],
)
def test_degraded_reasons(changes: dict, reason: str) -> None:
    health = {**HEALTH.model_dump(mode="json", exclude_none=True), **changes}
    status = derive_status(_record(health=health), time.time(), Thresholds())
    assert status.status == "degraded"
    assert any(reason in r for r in status.reasons), status.reasons


def test_status_online_offline_and_overdue() -> None:
    health = HEALTH.model_dump(mode="json", exclude_none=True)
    now = time.time()
    assert derive_status(_record(health=health), now, Thresholds()).status == "online"
    offline = derive_status(_record("offline", health), now, Thresholds())
    assert (offline.status, offline.reasons) == ("offline", ["connection lost"])
    stopped = derive_status(_record("stopped", health), now, Thresholds())
    assert stopped.reasons == ["agent stopped"]
    overdue = derive_status(_record(health=health, health_age=200), now, Thresholds())
    assert overdue.status == "degraded" and "health report overdue" in overdue.reasons[0]


async def test_two_central_instances_share_the_load_and_one_registry(
    broker: Broker, central: CentralService, tmp_path, postgres_url: str
) -> None:
    """Both instances of the share group take messages; the shared database (PostgreSQL, as
    several instances run) ends complete."""
    assert central.config.database.url == postgres_url
    second_config = central_config(broker, tmp_path, "central-2", database=postgres_url)
    async with running_central(second_config) as second:
        async with broker.client("u-load") as unit:
            for bdseq in range(1, 41):
                birth = StateMessage(payload=StatePayload(status="online", bdseq=bdseq))
                await unit.publish("vaka/v1/dev/u-load/state", encode(birth), qos=1)
            will = StateMessage(payload=StatePayload(status="offline", bdseq=40))
            await unit.publish("vaka/v1/dev/u-load/state", encode(will), qos=1)
        total = lambda: central.ingest.written + second.ingest.written  # noqa: E731
        await wait_for(lambda: total() >= 41, 10, what="both instances to write")
        assert central.ingest.accepted > 0 and second.ingest.accepted > 0
    record = await asyncio.to_thread(central.store.unit, "u-load")
    assert record is not None and record.presence == Presence.of("offline", 40)
