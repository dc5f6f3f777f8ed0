"""The citizen-call desk's test scene, shared by the citizen-call and duty tests: central with a
short ring time and a recording ``notify`` hook, a directory whose night group takes the TV's
calls, staff on duty, and the TV unit played by an MQTT client holding the unit's certificate."""

import asyncio
import contextlib
import json
import secrets
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiomqtt

from tests.conftest import collecting
from vaka.central.directory.spec import DirectorySpec
from vaka.central.service import CentralService
from vaka.central.settings.calls import CallLimits
from vaka.devstack.broker import Broker
from vaka.devstack.central import central_config
from vaka.devstack.polling import wait_for
from vaka.protocol import SignalMessage, SignalPayload, encode
from vaka.staff.client import StaffClient

PASSWORD = "correct horse battery"
UNIT = "u-tv"


def duty_spec() -> DirectorySpec:
    """g-night takes c-tv's calls; s-stranger is night staff elsewhere; s-desk is support."""

    def member(staff_id: str, name: str, role: str, groups: list[str]) -> dict[str, Any]:
        return {"id": staff_id, "name": name, "role": role, "groups": groups, "password": PASSWORD}

    return DirectorySpec.model_validate(
        {
            "group": [
                {"id": "g-night", "name": "Night patrol"},
                {"id": "g-other", "name": "Other patrol"},
            ],
            "staff": [
                member("s-nina", "Nina Night", "night_staff", ["g-night"]),
                member("s-nils", "Nils Night", "night_staff", ["g-night"]),
                member("s-dora", "Dora Day", "day_staff", ["g-night"]),
                member("s-stranger", "Sam Stranger", "night_staff", ["g-other"]),
                member("s-desk", "Sven Support", "support", ["g-night"]),
            ],
            "citizen": [{"id": "c-tv", "units": [UNIT]}],
            "permission": [
                {
                    "group": "g-night",
                    "citizen": "c-tv",
                    "purposes": ["citizen_call"],
                    "direction": "from_unit",
                },
                {"group": "g-night", "citizen": "c-tv", "purposes": ["video_visit"]},
            ],
        }
    )


@dataclass
class Notifications:
    """What the ``notify`` hook was given."""

    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    async def __call__(self, kind: str, detail: dict[str, Any]) -> None:
        self.calls.append((kind, detail))


@dataclass
class Desk:
    central: CentralService
    notified: Notifications


@contextlib.asynccontextmanager
async def desk_central(
    broker: Broker, tmp_path: Path, ring_s: float = 30, database: str | None = None
) -> AsyncIterator[Desk]:
    """Central with a short ring time and a recording ``notify`` hook, directory loaded (on
    ``database`` if given, else a SQLite file of its own)."""
    config = central_config(broker, tmp_path, database=database)
    update: dict[str, Any] = {"calls": CallLimits(citizen_call_ring_s=ring_s)}
    if "staff_access" in type(config).model_fields:  # log in with a password alone
        access = type(config).model_fields["staff_access"].annotation
        update["staff_access"] = access.model_validate({"require_totp": False})  # type: ignore[union-attr]
    config = config.model_copy(update=update)
    notified = Notifications()
    service = CentralService(config, notify=notified)
    await service.start()
    try:
        await asyncio.wait_for(service.link.connected.wait(), 10)
        await asyncio.to_thread(service.directory.load, duty_spec())
        yield Desk(service, notified)
    finally:
        await service.stop()


@dataclass
class FakeTvUnit:
    """The unit's side of the contract, spoken over MQTT with the unit's own certificate."""

    client: aiomqtt.Client
    received: list[aiomqtt.Message]

    def signals(self) -> list[dict[str, Any]]:
        return [json.loads(m.payload)["payload"] for m in list(self.received)]

    async def send(self, **payload: Any) -> None:
        message = SignalMessage(payload=SignalPayload(**payload))
        await self.client.publish(f"vaka/v1/dev/{UNIT}/signal/out", encode(message), qos=1)

    async def press(self) -> str:
        """The citizen presses "call the night staff"; the request id."""
        req = f"{UNIT}.{secrets.token_hex(6)}"
        await self.send(kind="request", call_id=req, state="citizen_call")
        return req

    async def signal(self, match: Callable[[dict[str, Any]], bool], timeout: float = 5) -> Any:
        await wait_for(lambda: any(match(s) for s in self.signals()), timeout, what="a signal")
        return next(s for s in self.signals() if match(s))


@contextlib.asynccontextmanager
async def fake_unit(broker: Broker) -> AsyncIterator[FakeTvUnit]:
    async with broker.client(UNIT) as client:
        async with collecting(client, f"vaka/v1/dev/{UNIT}/signal/in") as received:
            yield FakeTvUnit(client, received)


@contextlib.asynccontextmanager
async def on_duty(central: CentralService, staff_id: str) -> AsyncIterator[StaffClient]:
    """A logged-in staff client that went on duty."""
    async with StaffClient(central.url) as staff:
        await staff.login(staff_id, PASSWORD)
        await staff.duty(True)
        yield staff


async def audit_of(central: CentralService, req: str) -> dict[str, list[Any]]:
    entries = await asyncio.to_thread(central.audit.entries)
    found: dict[str, list[Any]] = {}
    for e in entries:
        if e.call_id == req:
            found.setdefault(e.kind, []).append(e)
    return found
