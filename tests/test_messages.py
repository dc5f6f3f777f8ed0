"""Messages and reminders on the TV: staff send, central signs and schedules, the unit shows,
the citizen acknowledges (or misses), central follows the status.

These run a real Mosquitto, central and a ``tv`` agent in this process (so its inbox's
``show``/``hide`` can be captured); the inbox alone is in test_message_inbox.py.
"""

import asyncio
import contextlib
import datetime as dt
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
import pytest

from tests.nightcheck import PASSWORD, agent_config
from tests.test_message_inbox import envelope
from tests.test_message_tokens import b64, jpeg
from vaka.agent.app import Agent
from vaka.central.directory.spec import DirectorySpec
from vaka.central.service import CentralService
from vaka.devstack.broker import Broker
from vaka.devstack.central import central_config
from vaka.devstack.polling import wait_for
from vaka.devstack.units import running_agent
from vaka.protocol.topics import Channel
from vaka.provisioning.messages import SignedMessage
from vaka.provisioning.tickets import new_ticket_key

UNIT = "u-tv"
TZ = "Europe/Stockholm"

# ---------------------------------------------------------------- end to end


def spec() -> DirectorySpec:
    """s-day (g-day) looks after c-1001, whose TV is u-tv; s-stranger (g-other) does not."""
    return DirectorySpec.model_validate(
        {
            "group": [{"id": "g-day", "name": "Day team"}, {"id": "g-other", "name": "Other"}],
            "staff": [
                {
                    "id": "s-day",
                    "name": "Dana Day",
                    "role": "day_staff",
                    "groups": ["g-day"],
                    "password": PASSWORD,
                },
                {
                    "id": "s-stranger",
                    "name": "Sam Stranger",
                    "role": "day_staff",
                    "groups": ["g-other"],
                    "password": PASSWORD,
                },
            ],
            "citizen": [{"id": "c-1001", "units": [UNIT]}],
            "permission": [{"group": "g-day", "citizen": "c-1001", "purposes": ["video_visit"]}],
        }
    )


def tv_config(broker: Broker, credentials: Path) -> dict[str, Any]:
    data = agent_config(broker, UNIT)
    data["unit"]["profile"] = "tv"
    del data["calls"]
    data["trust"] = {"config_key": str(broker.pki.config_keys()[1])}
    data["storage"] = {"credentials_dir": str(credentials)}
    return data


class Tv:
    """An in-process tv agent with its screen captured."""

    def __init__(self, agent: Agent) -> None:
        self.agent = agent
        self.shown: list[tuple[float, SignedMessage]] = []
        self.hidden: list[str] = []
        assert agent.messages is not None
        self.inbox = agent.messages
        self.inbox.show = lambda m: self.shown.append((time.time(), m))
        self.inbox.hide = self.hidden.append

    def mids(self) -> list[str]:
        return [m.mid for _, m in self.shown]


@contextlib.asynccontextmanager
async def running_tv(broker: Broker, credentials: Path) -> AsyncIterator[Tv]:
    tvs: list[Tv] = []
    async with running_agent(tv_config(broker, credentials), prepare=lambda a: tvs.append(Tv(a))):
        yield tvs[0]


@contextlib.asynccontextmanager
async def staff(central: CentralService, staff_id: str) -> AsyncIterator["Api"]:
    async with aiohttp.ClientSession() as http:
        async with http.post(
            f"{central.url}/api/login", json={"staff_id": staff_id, "password": PASSWORD}
        ) as resp:
            assert resp.status == 200, await resp.text()
            token = (await resp.json())["token"]
        yield Api(http, central.url, token)


class Api:
    def __init__(self, http: aiohttp.ClientSession, url: str, token: str) -> None:
        self.http, self.url = http, url
        self.headers = {"Authorization": f"Bearer {token}"}

    async def send(self, **body: Any) -> tuple[int, dict[str, Any]]:
        async with self.http.post(
            f"{self.url}/api/messages", json={"unit": UNIT, **body}, headers=self.headers
        ) as resp:
            return resp.status, await resp.json()

    async def statuses(self, unit: str = UNIT) -> tuple[int, dict[str, Any]]:
        async with self.http.get(
            f"{self.url}/api/messages", params={"unit": unit}, headers=self.headers
        ) as resp:
            return resp.status, await resp.json()


async def status_of(central: CentralService, mid: str) -> str | None:
    rows = await asyncio.to_thread(central.messages.statuses, UNIT)
    return next((r["status"] for r in rows if r["mid"] == mid), None)


async def audit(central: CentralService) -> list[tuple[str, str | None, Any]]:
    entries = await asyncio.to_thread(central.audit.entries)
    return [(e.kind, e.actor, e.detail.get("mid")) for e in entries if "message" in e.kind]


def listing(directory: Path) -> list[tuple[str, int, int]]:
    return sorted(
        (str(p.relative_to(directory)), p.stat().st_size, p.stat().st_mtime_ns)
        for p in directory.rglob("*")
    )


@pytest.fixture
async def directory_loaded(broker: Broker, tmp_path: Path) -> AsyncIterator[CentralService]:
    """Central with the directory loaded; staff log in with a password alone."""
    config = central_config(broker, tmp_path)
    if "staff_access" in type(config).model_fields:
        access = type(config).model_fields["staff_access"].annotation
        update = {"staff_access": access.model_validate({"require_totp": False})}  # type: ignore[union-attr]
        config = config.model_copy(update=update)
    service = CentralService(config)
    await service.start()
    try:
        await asyncio.wait_for(service.link.connected.wait(), 10)
        await asyncio.to_thread(service.directory.load, spec())
        yield service
    finally:
        await service.stop()


async def test_message_shown_acknowledged_and_nothing_stored(
    broker: Broker, directory_loaded: CentralService, tmp_path: Path
) -> None:
    central = directory_loaded
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    (credentials / "unit.key").write_text("stand-in for the unit's key")
    async with running_tv(broker, credentials) as tv, staff(central, "s-day") as api:
        before = listing(credentials)
        picture = jpeg()
        status, created = await api.send(
            kind="message", text="Hej! Vi kommer kl. 15.", picture=b64(picture)
        )
        assert status == 200, created
        mid = created["mid"]
        assert created["has_picture"] is True
        await wait_for(lambda: tv.mids() == [mid], 10, what="message on the TV")
        message = tv.shown[0][1]
        assert (message.text, message.sender_name, message.kind) == (
            "Hej! Vi kommer kl. 15.",
            "Dana Day",
            "message",
        )
        assert message.picture_bytes() == picture
        await wait_for(lambda: status_of(central, mid), 10, what="status")
        await wait_for(lambda: _is(status_of(central, mid), "shown"), 10, what="shown at central")

        assert tv.inbox.acknowledge(mid)
        await wait_for(
            lambda: _is(status_of(central, mid), "acknowledged"), 10, what="acknowledged"
        )
        assert tv.hidden == [mid]
        assert listing(credentials) == before  # nothing written to the unit's storage

        status, listed = await api.statuses()
        assert status == 200
        assert [(m["mid"], m["status"], m["sender"]) for m in listed["messages"]] == [
            (mid, "acknowledged", "s-day")
        ]
    assert await audit(central) == [
        ("message_created", "s-day", mid),
        ("message_shown", None, mid),
        ("message_acknowledged", None, mid),
    ]
    rows = await asyncio.to_thread(_tokens, central)
    assert rows == [None]  # the signed token (and the picture in it) is gone once sent


def _tokens(central: CentralService) -> list[Any]:
    from vaka.central.messages.desk import messages

    with central.engine.connect() as conn:
        return [r[0] for r in conn.execute(messages.select().with_only_columns(messages.c.token))]


async def _is(value: Any, expected: str) -> bool:
    return (await value) == expected


async def test_scheduled_reminder_arrives_at_its_time_and_is_missed(
    broker: Broker, directory_loaded: CentralService, tmp_path: Path
) -> None:
    central = directory_loaded
    async with running_tv(broker, tmp_path) as tv, staff(central, "s-day") as api:
        at = dt.datetime.now(ZoneInfo(TZ)) + dt.timedelta(seconds=2)
        status, created = await api.send(
            kind="reminder", text="Medicin kl. 14", at=at.isoformat(), ack_within_s=1
        )
        assert status == 200, created
        mid = created["mid"]
        assert created["status"] == "scheduled"
        assert abs(created["send_at"] - at.timestamp()) < 0.01
        assert tv.shown == []
        await wait_for(lambda: tv.mids() == [mid], 10, what="reminder delivered")
        assert tv.shown[0][0] >= created["send_at"]  # not before its time
        assert tv.shown[0][1].ack_within_s == 1
        await wait_for(lambda: _is(status_of(central, mid), "missed"), 10, what="missed")
        assert tv.hidden == [mid]
        rows = await asyncio.to_thread(central.messages.statuses, UNIT)
        assert rows[0]["reason"] == "not acknowledged in time"
    kinds = [k for k, _, m in await audit(central) if m == mid]
    assert kinds == ["message_created", "message_shown", "message_missed"]


async def test_a_message_signed_with_another_key_is_refused(
    broker: Broker, directory_loaded: CentralService, tmp_path: Path
) -> None:
    central = directory_loaded
    async with running_tv(broker, tmp_path) as tv:
        forged = envelope(new_ticket_key(), "m-forged")
        await central.link.publish_to_unit(UNIT, Channel.MESSAGE, forged)

        async def refused() -> list[dict[str, Any]]:
            events = await asyncio.to_thread(central.store.recent_events, UNIT)
            return [
                e.detail
                for e in events
                if e.kind == "message" and e.detail.get("action") == "refused"
            ]

        await wait_for(refused, 10, what="refusal reported")
        assert await refused() == [{"action": "refused", "reason": "bad signature"}]
        assert tv.shown == [] and tv.inbox.current is None
        assert tv.agent.link.refusals.by_category["message"] == 1


async def test_staff_outside_the_citizens_groups_are_refused(
    directory_loaded: CentralService,
) -> None:
    central = directory_loaded
    reason = "staff s-stranger is not in a group assigned to citizen c-1001"
    async with staff(central, "s-stranger") as api:
        assert await api.send(text="Hej") == (403, {"error": reason})
        assert await api.statuses() == (403, {"error": reason})
    assert await audit(central) == [("message_refused", "s-stranger", None)]
    entries = await asyncio.to_thread(central.audit.entries, kind="message_refused")
    assert entries[0].detail["reason"] == reason and entries[0].unit == UNIT
    assert await asyncio.to_thread(central.messages.statuses, UNIT) == []


async def test_bad_requests_are_refused_with_a_reason(directory_loaded: CentralService) -> None:
    central = directory_loaded
    async with staff(central, "s-day") as api:
        status, body = await api.send(text="Hej", picture=b64(b"GIF89a" + bytes(100)))
        assert (status, body["error"]) == (
            400,
            "message is invalid: picture: Value error, picture is not a JPEG image",
        )
        status, body = await api.send(text="Hej", at="yesterday")
        assert status == 400 and "is neither HH:MM nor an ISO 8601 time" in body["error"]
        status, body = await api.send(text="", colour="red")
        assert status == 400 and body["error"].startswith("invalid message request: ")
        status, body = await api.send(unit="u-unknown", text="Hej")
        assert (status, body["error"]) == (403, "unit u-unknown is not assigned to a citizen")

        key, central.messages.config_key = central.messages.config_key, None
        try:
            assert await api.send(text="Hej") == (
                409,
                {"error": "central has no config key: messages cannot be signed"},
            )
        finally:
            central.messages.config_key = key
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{central.url}/api/messages", json={"unit": UNIT}) as resp:
            assert resp.status == 401


async def test_vaka_staff_message_command(
    directory_loaded: CentralService,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from vaka.staff.cli import main

    central = directory_loaded
    monkeypatch.setenv("VAKA_PASSWORD", PASSWORD)
    picture = tmp_path / "photo.jpg"
    picture.write_bytes(jpeg())
    at = (dt.datetime.now(ZoneInfo(TZ)) + dt.timedelta(minutes=2)).strftime("%H:%M")
    argv = ["--central", central.url, "--json", "message", UNIT, "Medicin kl. 14", "--user"]
    options = ["--reminder", "--at", at, "--picture", str(picture), "--ack-within", "300"]
    assert await asyncio.to_thread(main, [*argv, "s-day", *options]) == 0
    created = json.loads(capsys.readouterr().out)
    assert (created["kind"], created["status"], created["has_picture"]) == (
        "reminder",
        "scheduled",
        True,
    )
    assert dt.datetime.fromtimestamp(created["send_at"], ZoneInfo(TZ)).strftime("%H:%M") == at

    assert await asyncio.to_thread(main, [*argv, "s-stranger"]) == 2
    assert capsys.readouterr().err == (
        "vaka-staff: refused: staff s-stranger is not in a group assigned to citizen c-1001\n"
    )
    assert (
        await asyncio.to_thread(main, [*argv, "s-day", "--picture", str(tmp_path / "no.jpg")]) == 2
    )
    assert "cannot read" in capsys.readouterr().err


async def test_a_message_for_an_offline_unit_is_missed_once_expired(
    directory_loaded: CentralService,
) -> None:
    central = directory_loaded
    async with staff(central, "s-day") as api:
        status, created = await api.send(kind="reminder", text="Medicin", ack_within_s=60)
        assert status == 200, created
    mid = created["mid"]
    await wait_for(lambda: _is(status_of(central, mid), "sent"), 10, what="sent (nobody listens)")
    assert await central.messages.send_due(now=created["exp"] + 60) == 0  # still within slack
    assert await status_of(central, mid) == "sent"
    await central.messages.send_due(now=created["exp"] + 600)
    (row,) = await asyncio.to_thread(central.messages.statuses, UNIT)
    assert (row["status"], row["reason"]) == (
        "missed",
        "the unit did not report it before it expired (offline?)",
    )
    assert [k for k, _, m in await audit(central) if m == mid] == [
        "message_created",
        "message_missed",
    ]
