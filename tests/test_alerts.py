"""Alerts before a scheduled night check, end to end: real Mosquitto, central, simulated units, and
a webhook endpoint on loopback."""

import asyncio
import contextlib
import datetime as dt
import functools
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
from sqlalchemy.engine import Engine

from tests.nightcheck import PASSWORD, agent_config, hhmm
from tests.test_notify import SECRET, WebhookReceiver, webhook_server
from vaka.agent.app import Agent
from vaka.central.alerts.watch import AlertWatch
from vaka.central.audit.trail import AuditLog
from vaka.central.directory.directory import Directory
from vaka.central.directory.spec import DirectorySpec, ScheduleSpec
from vaka.central.fleet.status import derive_status
from vaka.central.fleet.store import SqlFleetStore
from vaka.central.service import CentralService
from vaka.central.settings.alerts import AlertSettings
from vaka.central.settings.fleet import Thresholds
from vaka.central.storage.engine import open_engine
from vaka.devstack.broker import Broker
from vaka.devstack.central import central_config, unit_status
from vaka.devstack.polling import wait_for
from vaka.devstack.units import running_agent

SOON = "u-soon"  # the citizen's night check is a few minutes away
FAR = "u-far"  # the citizen's night check is twelve hours away


def directory_spec(schedules: bool = True) -> DirectorySpec:
    """Staff, citizens and permissions; with ``schedules`` the two citizens' night checks too
    (without them the watch has nothing to watch: no alert while the units start)."""
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
            ]
            if schedules
            else [],
        }
    )


async def watch_schedules(central: CentralService) -> None:
    """Schedule the two citizens' night checks: call it once the units are online, or the watch
    rightly raises "never connected to central" for a unit still starting."""
    await asyncio.to_thread(central.directory.load, directory_spec())


async def watch_rounds(central: CentralService, rounds: int = 2) -> None:
    """``rounds`` rounds of central's alert watch, run now: what a few of its periods would do,
    without sleeping through them."""
    for _ in range(rounds):
        await central.alerts.check_once()


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
        access = config.staff_access.model_copy(update={"require_totp": False})
        config = config.model_copy(update={"staff_access": access})
    service = CentralService(config)
    await service.start()
    await asyncio.wait_for(service.link.connected.wait(), 10)
    await asyncio.to_thread(service.directory.load, directory_spec(schedules=False))
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

    def clock_synced(agent: Agent) -> None:
        # A unit whose clock is not synchronised is degraded; this machine's clock may not be.
        agent.sampler._clock_synced = lambda: True

    async with running_agent(agent_config(broker, device_id), prepare=clock_synced) as agent:
        yield agent


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
                await wait_for(functools.partial(online, central, unit), 10, what=f"{unit} online")
            await watch_schedules(central)
            support = await token(http, "s-support")
            await watch_rounds(central)  # a couple of rounds with both units online
            assert await open_alerts(http, support) == []
            assert hook.requests == []
        # Both units stopped.

        await wait_for(lambda: open_alerts(http, support), 10, interval=0.2, what="an alert")
        await wait_for(
            lambda: hook.delivered("unit_down_before_check"), 10, what="the webhook event"
        )
        await watch_rounds(central)  # more rounds: still one alert, and none for the far check
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
        await watch_schedules(central)
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


# -- the watch on its own, with a controlled clock (two instances sharing one database) ----------


@dataclass
class Recorder:
    """A notifier that keeps what it was given."""

    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    async def notify(self, kind: str, detail: dict[str, Any]) -> None:
        self.events.append((kind, detail))

    async def run(self) -> None:
        """Nothing to deliver."""


def watch(engine: Engine, recorder: Recorder) -> AlertWatch:
    directory = Directory(engine)
    return AlertWatch(
        engine,
        SqlFleetStore(engine),
        directory,
        AuditLog(engine),
        recorder,
        AlertSettings(lead_min=60),
        Thresholds(),
        "Europe/Stockholm",
    )


async def test_alerts_are_raised_once_across_instances_and_expire(db_url: str) -> None:
    engine = open_engine(db_url)
    spec = directory_spec().model_copy(
        update={"schedule": [ScheduleSpec(citizen="c-1001", times=["00:10"], tolerance_min=20)]}
    )
    Directory(engine).load(spec)
    one, two = Recorder(), Recorder()
    first, second = watch(engine, one), watch(engine, two)
    check = dt.datetime(2025, 1, 11, 0, 10, tzinfo=ZoneInfo("Europe/Stockholm")).timestamp()

    await first.check_once(check - 61 * 60)  # outside the lead time: nothing
    assert first.store.open_alerts() == []
    for w in (first, second, first):  # 23:20 the evening before: both instances see it
        await w.check_once(check - 50 * 60)
    (alert,) = first.store.open_alerts()
    assert (alert.unit, alert.check_at, alert.reasons) == (
        SOON,
        check,
        ["never connected to central"],
    )
    assert [k for k, _ in one.events + two.events] == ["unit_down_before_check"]
    assert one.events[0][1]["check_at"] == "2025-01-11T00:10+01:00"

    await second.check_once(check + 19 * 60)  # the window is still open
    assert len(first.store.open_alerts()) == 1
    await second.check_once(check + 21 * 60)  # closed: the alert expires without an event
    assert first.store.open_alerts() == []
    (closed,) = first.store.recent()
    assert closed.cleared_reason == "check time passed"
    assert [k for k, _ in one.events + two.events] == ["unit_down_before_check"]
    audit = AuditLog(engine)
    assert [e.kind for e in audit.entries() if e.kind.startswith("alert")] == [
        "alert_raised",
        "alert_cleared",
    ]
    # The next occurrence (tomorrow 00:10) is far away: no new alert.
    await first.check_once(check + 22 * 60)
    assert first.store.open_alerts() == []


def test_an_open_alert_says_why_the_unit_is_down_now(db_url: str) -> None:
    """Raised when the unit had never connected, then the unit came and went between two of
    the watch's rounds: the open alert now gives the newer reason, without a second raise."""
    from vaka.central.alerts.store import Alert, AlertStore
    from vaka.central.fleet.status import NEVER_CONNECTED

    store = AlertStore(open_engine(db_url))
    check_at, until = time.time() + 300, time.time() + 1200

    def alert(status: str, reasons: list[str]) -> Alert:
        return Alert(
            str(time.time_ns()), "u-1", "c-1", "g-night", check_at, until, status, reasons,
            time.time(), None, None,
        )  # fmt: skip

    first = store.raise_alert(alert("offline", [NEVER_CONNECTED]))
    assert first is not None
    assert store.raise_alert(alert("stopped", ["agent stopped"])) is None  # told once only
    (still,) = store.open_alerts()
    assert (still.id, still.raised_at) == (first.id, first.raised_at)
    assert (still.status, still.reasons) == ("stopped", ["agent stopped"])
