"""Going on and off duty: the API, who sees the watch, the ring socket, ``vaka-staff duty``."""

import asyncio
import json
from pathlib import Path

import pytest

from tests.citizendesk import PASSWORD, UNIT, desk_central, fake_unit, on_duty
from vaka.devstack.broker import Broker
from vaka.staff.cli import main
from vaka.staff.client import StaffClient, StaffError


async def test_duty_on_off_and_the_watch_per_group(broker: Broker, tmp_path: Path) -> None:
    async with desk_central(broker, tmp_path) as desk:
        central = desk.central
        async with (
            StaffClient(central.url) as nina,
            StaffClient(central.url) as stranger,
            StaffClient(central.url) as dora,
        ):
            await nina.login("s-nina", PASSWORD)
            await stranger.login("s-stranger", PASSWORD)
            await dora.login("s-dora", PASSWORD)
            status = await nina.duty_status()
            assert status["me"]["on"] is False and status["me"]["since"] is None
            assert status["watch"] == [{"group": "g-night", "name": "Night patrol", "staff": []}]

            on = await nina.duty(True)
            assert on["on"] is True and on["since"] > 0
            assert (await nina.duty(True))["since"] == on["since"]  # idempotent
            await stranger.duty(True)
            assert (await dora.duty(True))["on"] is True  # day staff take citizen calls too

            watch = (await nina.duty_status())["watch"]
            assert [w["group"] for w in watch] == ["g-night"]  # only my groups
            assert [(s["id"], s["name"]) for s in watch[0]["staff"]] == [
                ("s-nina", "Nina Night"),
                ("s-dora", "Dora Day"),
            ]
            assert watch[0]["staff"][0]["since"] == on["since"]
            other = (await stranger.duty_status())["watch"]
            assert [(w["group"], [s["id"] for s in w["staff"]]) for w in other] == [
                ("g-other", ["s-stranger"])
            ]

            assert await nina.duty(False) == {"on": False, "since": None}
            status = await nina.duty_status()
            assert status["me"]["on"] is False
            assert [s["id"] for s in status["watch"][0]["staff"]] == ["s-dora"]

        kinds = [
            (e.kind, e.actor)
            for e in await asyncio.to_thread(central.audit.entries)
            if e.kind.startswith("duty_")
        ]
        assert kinds == [
            ("duty_on", "s-nina"),
            ("duty_on", "s-stranger"),
            ("duty_on", "s-dora"),
            ("duty_off", "s-nina"),
        ]


async def test_roles_without_citizen_calls_cannot_go_on_duty(
    broker: Broker, tmp_path: Path
) -> None:
    async with desk_central(broker, tmp_path) as desk, StaffClient(desk.central.url) as sven:
        await sven.login("s-desk", PASSWORD)
        with pytest.raises(StaffError, match="the role support does not take citizen calls"):
            await sven.duty(True)
        with pytest.raises(StaffError, match="send"):
            await sven._api("POST", "/api/duty", {"on": "yes"})
        refused = await asyncio.to_thread(desk.central.audit.entries, kind="duty_refused")
        assert [e.actor for e in refused] == ["s-desk"]


async def test_the_ring_socket_needs_duty_and_says_who_can_be_rung(
    broker: Broker, tmp_path: Path
) -> None:
    async with desk_central(broker, tmp_path) as desk, StaffClient(desk.central.url) as nils:
        await nils.login("s-nils", PASSWORD)
        with pytest.raises(StaffError, match="staff s-nils is not on duty"):
            async with nils.ring_socket():
                pass
        await nils.duty(True)
        async with nils.ring_socket():
            watch = (await nils.duty_status())["watch"][0]["staff"]
            assert [(s["id"], s["ringable"]) for s in watch] == [("s-nils", True)]
        await asyncio.sleep(0.2)  # the socket's close reaches central
        watch = (await nils.duty_status())["watch"][0]["staff"]
        assert [(s["id"], s["ringable"]) for s in watch] == [("s-nils", False)]


async def test_vaka_staff_duty_on_status_and_listen(
    broker: Broker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.setenv("VAKA_PASSWORD", PASSWORD)
    async with desk_central(broker, tmp_path) as desk:
        url = desk.central.url

        def cli(*args: str) -> int:
            return main(["--central", url, *args])

        assert await asyncio.to_thread(cli, "duty", "on", "--user", "s-nina") == 0
        assert "s-nina is on duty since" in capsys.readouterr().out
        assert await asyncio.to_thread(cli, "--json", "duty", "status", "--user", "s-nina") == 0
        status = json.loads(capsys.readouterr().out)
        assert status["me"]["on"] and status["watch"][0]["staff"][0]["id"] == "s-nina"
        assert await asyncio.to_thread(cli, "duty", "on", "--user", "s-desk") == 2
        assert "does not take citizen calls" in capsys.readouterr().err

        # `listen` stays connected and prints a ring when the citizen presses.
        async with fake_unit(broker) as unit, on_duty(desk.central, "s-nils"):
            listening = asyncio.create_task(
                asyncio.to_thread(
                    cli, "--json", "duty", "listen", "--user", "s-nina", "--seconds", "4"
                )
            )

            async def ringable() -> bool:
                async with StaffClient(url) as nils:
                    await nils.login("s-nils", PASSWORD)
                    staff = (await nils.duty_status())["watch"][0]["staff"]
                    return any(s["id"] == "s-nina" and s["ringable"] for s in staff)

            for _ in range(100):
                if await ringable():
                    break
                await asyncio.sleep(0.05)
            req = await unit.press()
            assert await listening == 0
        out = capsys.readouterr().out
        result = json.loads(out[out.index("{") :])
        assert [r["request_id"] for r in result["rings"]] == [req]
        assert result["rings"][0]["unit"] == UNIT
        assert await asyncio.to_thread(cli, "duty", "off", "--user", "s-nina") == 0
        assert "s-nina is off duty" in capsys.readouterr().out
