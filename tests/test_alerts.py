"""Alerts before a scheduled night check, end to end: real Mosquitto, central, simulated units, and
a webhook endpoint on loopback."""

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp

from tests.conftest import Broker, central_config, unit_status, wait_for
from tests.nightcheck import PASSWORD, agent_config, hhmm
from tests.test_notify import SECRET, WebhookReceiver, webhook_server
from vaka.agent.app import Agent
from vaka.agent.config import parse_config
from vaka.central.alerts import AlertSettings
from vaka.central.directory import DirectorySpec
from vaka.central.service import CentralService
from vaka.central.status import derive_status

SOON = "u-soon"  # the citizen's night check is a few minutes away
FAR = "u-far"  # the citizen's night check is twelve hours away


def directory_spec() -> DirectorySpec:
    staff = [
        ("s-nurse", "night_staff", ["g-night"]),
        ("s-stranger", "night_staff", ["g-other"]),
        ("s-support", "support", []),
    ]
    return DirectorySpec.model_validate(
        {
            "group": [
                {"id": "g-night", "name": "Night patrol"},
                {"id": "g-other", "name": "Other"},
            ],
            "staff": [
                {"id": i, "name": i, "role": r, "groups": g, "password": PASSWORD}
                for i, r, g in staff
            ],
            "citizen": [{"id": "c-1001", "units": [SOON]}, {"id": "c-2002", "units": [FAR]}],
            "permission": [
                {"group": "g-night", "citizen": "c-1001", "purposes": ["night_check"]},
                {"group": "g-night", "citizen": "c-2002", "purposes": ["night_check"]},
            ],
            "schedule": [
                {"citizen": "c-1001", "times": [hhmm(5)], "tolerance_min": 15},
                {"citizen": "c-2002", "times": [hhmm(12 * 60)], "tolerance_min": 15},
            ],
        }
    )


@contextlib.asynccontextmanager
async def central_with_alerts(
    broker: Broker, tmp_path: Path, url: str, **settings: Any
) -> AsyncIterator[CentralService]:
    secret = tmp_path / "webhook.secret"
    secret.write_bytes(SECRET + b"\n")
    secret.chmod(0o600)
    alerts = AlertSettings(
        webhook_url=url,
        webhook_secret_file=secret,
        lead_min=60,
        check_every_s=1,
        retry_min_s=0.05,
        retry_max_s=0.2,
        **settings,
    )
    config = central_config(broker, tmp_path).model_copy(update={"alerts": alerts})
    if (
        "staff_access" in type(config).model_fields
    ):  # the console's second factor is not tested here
        access = config.staff_access.model_copy(update={"require_totp": False})  # type: ignore[attr-defined]
        config = config.model_copy(update={"staff_access": access})
    service = CentralService(config)
    await service.start()
    await asyncio.wait_for(service.link.connected.wait(), 10)
    await asyncio.to_thread(service.directory.load, directory_spec())
    try:
        yield service
    finally:
        await service.stop()


async def token(http: aiohttp.ClientSession, staff_id: str) -> str:
    """A staff session (changing the password first where the account must)."""
    async with http.post("/api/login", json={"staff_id": staff_id, "password": PASSWORD}) as r:
        assert r.status == 200, await r.text()
        answer = await r.json()
    bearer = str(answer["token"])
    if answer.get("must_change_password"):
        change = {"old_password": PASSWORD, "new_password": f"{PASSWORD} and a new staple 17"}
        async with http.post("/api/password", json=change, headers=_bearer(bearer)) as r:
            assert r.status == 200, await r.text()
    return bearer


@contextlib.asynccontextmanager
async def nightcam(broker: Broker, device_id: str) -> AsyncIterator[Agent]:
    """A simulated nightcam agent on the real broker, stopped cleanly when the block ends."""
    agent = Agent(parse_config(agent_config(broker, device_id)))
    # A unit whose clock is not synchronised is degraded; this machine's clock may not be.
    agent.sampler._clock_synced = lambda: True
    task = asyncio.create_task(agent.run())
    try:
        await agent.link.wait_online(10)
        yield agent
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def open_alerts(http: aiohttp.ClientSession, bearer: str) -> list[dict[str, Any]]:
    headers = {"Authorization": f"Bearer {bearer}"}
    async with http.get("/api/alerts?open=1", headers=headers) as r:
        assert r.status == 200, await r.text()
        body = await r.json()
        assert body["count"] == len(body["alerts"])
        return list(body["alerts"])


async def audit_kinds(central: CentralService, kind: str) -> list[dict[str, Any]]:
    entries = await asyncio.to_thread(central.audit.entries, kind=kind)
    return [e.detail | {"unit": e.unit} for e in entries]


async def online(central: CentralService, unit: str) -> bool:
    """Whether central derives the unit's status as online (not degraded, not offline)."""
    record = await asyncio.to_thread(central.store.unit, unit)
    if record is None:
        return False
    return derive_status(record, time.time(), central.config.fleet).status == "online"


async def test_unit_down_before_its_check_raises_and_clears_an_alert(
    broker: Broker, tmp_path: Path
) -> None:
    async with (
        webhook_server(WebhookReceiver()) as hook,
        central_with_alerts(broker, tmp_path, hook.url) as central,
        aiohttp.ClientSession(central.url) as http,
    ):
        async with nightcam(broker, SOON), nightcam(broker, FAR):
            for unit in (SOON, FAR):
                await wait_for(lambda u=unit: online(central, u), 10, what=f"{unit} online")
            await asyncio.to_thread(central.directory.load, directory_spec())
            support = await token(http, "s-support")
            await asyncio.sleep(2.5)  # a couple of rounds with both units online
            assert await open_alerts(http, support) == []
            assert hook.requests == []
        # Both units stopped.

        await wait_for(lambda: open_alerts(http, support), 10, interval=0.2, what="an alert")
        await wait_for(
            lambda: hook.delivered("unit_down_before_check"), 10, what="the webhook event"
        )
        await asyncio.sleep(2.5)  # more rounds: still one alert, and none for the far check
        (alert,) = await open_alerts(http, support)
        assert alert["unit"] == SOON and alert["citizen"] == "c-1001"
        assert alert["group"] == "g-night" and alert["status"] == "offline"
        assert alert["reasons"] in (["agent stopped"], ["connection lost"])
        ((minute, _),) = await asyncio.to_thread(central.directory.schedule, "c-1001")
        assert alert["check_at_local"][11:16] == f"{minute // 60:02d}:{minute % 60:02d}"
        (down,) = [r for r in hook.requests if r.event["kind"] == "unit_down_before_check"]
        assert down.signed_with(SECRET)
        detail = down.event["detail"]
        assert detail["unit"] == SOON and detail["alert_id"] == alert["id"]
        assert detail["citizen"] == "c-1001" and detail["check_at_ts"] == alert["check_at"]
        assert 0 <= detail["minutes_left"] <= 6
        assert await unit_status(central, FAR) in ("stopped", "offline")

        # Night staff see their groups' alerts only; a bad query is refused with a reason.
        nurse, stranger = await token(http, "s-nurse"), await token(http, "s-stranger")
        assert [a["id"] for a in await open_alerts(http, nurse)] == [alert["id"]]
        assert await open_alerts(http, stranger) == []
        async with http.get("/api/alerts?open=1") as r:
            assert r.status == 401
        async with http.get("/api/alerts?open=yes", headers=_bearer(support)) as r:
            assert r.status == 400 and (await r.json())["error"] == "open must be 1 or 0"

        async with nightcam(broker, SOON):
            await wait_for(
                lambda: hook.delivered("unit_recovered"), 15, interval=0.2, what="unit_recovered"
            )
        assert await open_alerts(http, support) == []
        (recovered,) = hook.delivered("unit_recovered")
        assert recovered["detail"]["alert_id"] == alert["id"]
        async with http.get("/api/alerts", headers=_bearer(support)) as r:
            (closed,) = (await r.json())["alerts"]
        assert closed["cleared_reason"] == "unit back online" and closed["cleared_at"]
        (raised_entry,) = await audit_kinds(central, "alert_raised")
        (cleared_entry,) = await audit_kinds(central, "alert_cleared")
        assert raised_entry["unit"] == cleared_entry["unit"] == SOON

        async def both_sent() -> list[dict[str, Any]]:
            sent = await audit_kinds(central, "notify_sent")
            return sent if len(sent) == 2 else []

        await wait_for(both_sent, 5, what="both deliveries audited")
        sent = await both_sent()
        assert [e["event"] for e in sent] == ["unit_down_before_check", "unit_recovered"]


def _bearer(token_: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token_}"}


async def test_flaky_webhook_is_retried_and_a_dead_one_is_audited(
    broker: Broker, tmp_path: Path
) -> None:
    flaky = WebhookReceiver(script=[500])
    async with (
        webhook_server(flaky) as hook,
        central_with_alerts(broker, tmp_path, hook.url, max_attempts=3) as central,
    ):
        # A unit that never connected cannot be checked by camera either.
        await asyncio.to_thread(central.directory.load, directory_spec())
        await wait_for(lambda: flaky.delivered("unit_down_before_check"), 10, what="delivery")
        assert [r.answered for r in flaky.requests] == [500, 200]
        assert len(flaky.delivered()) == 1
        await wait_for(lambda: audit_kinds(central, "notify_sent"), 5, what="notify_sent")
        (sent,) = await audit_kinds(central, "notify_sent")
        assert sent["attempts"] == 2 and sent["unit"] == SOON
        (raised,) = await audit_kinds(central, "alert_raised")
        assert raised["reasons"] == ["never connected to central"]

        # The endpoint now fails every time: the event is given up on, central keeps going.
        flaky.script = [503] * 10
        async with nightcam(broker, SOON):
            await wait_for(
                lambda: audit_kinds(central, "notify_failed"), 15, interval=0.2, what="give-up"
            )
            (failed,) = await audit_kinds(central, "notify_failed")
            assert failed["reason"] == "HTTP 503" and failed["attempts"] == 3
            assert failed["event"] == "unit_recovered"
            assert all(not t.done() for t in central._tasks)
            flaky.script = []
        # Down again before the same check: the alert reopens and this time gets through.
        await wait_for(
            lambda: len(flaky.delivered("unit_down_before_check")) == 2, 15, what="second alert"
        )
        first, second = flaky.delivered("unit_down_before_check")
        assert first["detail"]["alert_id"] == second["detail"]["alert_id"]
        assert first["id"] != second["id"]
        assert second["detail"]["reasons"] in (["agent stopped"], ["connection lost"])
