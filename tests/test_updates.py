"""System updates on central's signed order, on the real stack: Mosquitto, central, real agents
with the recording fake installer (the one part that cannot run here is RAUC writing a slot).

An order reaches the unit, which downloads the bundle from central (only with its order),
installs it, reboots and reports the new version, which central's fleet view shows; a bundle
with the wrong hash, a forged order, and an order during a call; a staged roll-out of four
unit processes; a download cut off half-way that resumes with ``Range``.
"""

import asyncio
import hashlib
import json
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from joserfc.jwk import OKPKey

from tests.nightcheck import hhmm
from tests.test_enrolment import technician
from tests.test_unit_lifecycle import provision
from vaka.agent.app import Agent
from vaka.agent.hw.fake_installer import FakeInstaller
from vaka.central.service import CentralService
from vaka.central.settings.config import UpdatesSection
from vaka.devstack.central import push_unit_config, running_central
from vaka.devstack.polling import wait_for
from vaka.devstack.stack import LocalStack
from vaka.protocol.messages import UpdateMessage, UpdatePayload
from vaka.protocol.topics import Channel, device_topic
from vaka.provisioning.updates import sign_update_order


def make_bundle(directory: Path, version: str, size: int = 300_000) -> tuple[Path, str]:
    """A fake bundle (the fake installer reads its version from the first line)."""
    directory.mkdir(parents=True, exist_ok=True)
    head = f"vaka-bundle {version}\n".encode()
    data = head + os.urandom(size - len(head))
    path = directory / f"vaka-nightcam-{version}.raucb"
    path.write_bytes(data)
    return path, hashlib.sha256(data).hexdigest()


@pytest.fixture
async def central(stack: LocalStack, tmp_path: Path) -> AsyncIterator[CentralService]:
    """Central serving the bundles in ``tmp_path/bundles``."""
    (tmp_path / "bundles").mkdir()
    config = stack.central_config().model_copy(
        update={"updates": UpdatesSection(bundle_dir=tmp_path / "bundles")}
    )
    async with running_central(config) as service:
        yield service


def update_section(tmp_path: Path, name: str, **more: Any) -> dict[str, Any]:
    return {"download_dir": str(tmp_path / f"dl-{name}"), "max_rate_kbps": 0, **more}


async def daytime(central: CentralService, unit: str, version: int = 1) -> None:
    """A signed configuration whose night hours are not now (updates wait for the night's end)."""
    await push_unit_config(
        central, unit, "nightcam", version,
        timezone="Europe/Stockholm", night_from=hhmm(120), night_until=hhmm(180),
        health_interval_s=1,
    )  # fmt: skip


def installer(agent: Agent) -> FakeInstaller:
    fake = agent.hardware.installer
    assert isinstance(fake, FakeInstaller)
    return fake


async def steps(central: CentralService, unit: str) -> list[str]:
    entries = await asyncio.to_thread(central.audit.entries)
    return [e.kind for e in entries if e.unit == unit and e.kind.startswith("update_")]


async def audited(central: CentralService, unit: str, kind: str) -> dict[str, Any] | None:
    entries = await asyncio.to_thread(central.audit.entries, kind=kind)
    found = [e for e in entries if e.unit == unit]
    return found[-1].detail if found else None


async def test_an_order_is_downloaded_installed_and_the_unit_runs_the_new_version(
    stack: LocalStack, central: CentralService, tmp_path: Path
) -> None:
    path, sha = make_bundle(tmp_path / "bundles", "2.0")
    http = await technician(central)
    unit = "u-upd-one"
    async with stack.running_unit(
        unit, interval_s=1, update=update_section(tmp_path, unit)
    ) as agent:
        await daytime(central, unit)
        await wait_for(lambda: agent.config_store.version == 1, 10, what="the config")
        assert installer(agent).installed == []  # no order, no install
        made = await asyncio.to_thread(
            provision, central, "update", unit, "--bundle", str(path), "--version", "2.0", "--json"
        )
        assert made.returncode == 0, made.stderr
        rollout = json.loads(made.stdout)
        assert rollout["units"] == [{"unit": unit, "stage": 1, "state": "ordered", "reason": None}]
        await wait_for(lambda: installer(agent).reboots, 20, what="the reboot")
        done = installer(agent).installed
        assert [(i.sha256, i.size) for i in done] == [(sha, path.stat().st_size)]
        assert installer(agent).running().version == "2.0"
        assert installer(agent).running().slot == "B"

        async def fleet_shows_it() -> bool:
            async with http.get("/api/fleet/versions") as response:
                rows = (await response.json())["units"]
            mine = [r for r in rows if r["unit"] == unit]
            return bool(mine) and (mine[0]["system_version"], mine[0]["slot"]) == ("2.0", "B")

        await wait_for(fleet_shows_it, 15, what="the fleet view showing 2.0 on slot B")
        await wait_for(lambda: audited(central, unit, "update_running"), 10, what="running audited")
        kinds = await steps(central, unit)
        for kind in ("ordered", "downloaded", "installed", "rebooting", "running"):
            assert f"update_{kind}" in kinds
        assert kinds.index("update_downloaded") < kinds.index("update_installed")
        shown = await asyncio.to_thread(
            provision, central, "update", "--status", str(rollout["rollout_id"])
        )
        assert shown.returncode == 0, shown.stderr
        assert f"{unit:<24} stage 1  running" in shown.stdout
        fleet = await asyncio.to_thread(provision, central, "update", "--versions")
        assert f"{unit:<24} nightcam  2.0" in fleet.stdout
        # The downloaded file is gone once installed.
        assert not list((tmp_path / f"dl-{unit}").glob("*"))
        # Central clears the order once the unit runs it (a unit back on an older root later
        # does not install it again), and the unit takes the cleared topic for no refusal.
        topic = device_topic(unit, Channel.UPDATE)
        await wait_for(lambda: no_retained(stack, topic), 10, what="the order cleared")
        assert agent.link.refusals.total == 0
    await http.close()


async def test_central_serves_a_bundle_only_with_an_order_for_it_and_honours_ranges(
    stack: LocalStack, central: CentralService, tmp_path: Path
) -> None:
    path, sha = make_bundle(tmp_path / "bundles", "2.0", size=10_000)
    assert central.config_key is not None
    url = f"{central.url}/api/unit/bundles/{sha}"
    order = sign_update_order("u-any", 1, "2.0", url, sha, 10_000, central.config_key)
    forged = sign_update_order("u-any", 1, "2.0", url, sha, 10_000, OKPKey.generate_key("Ed25519"))
    other = sign_update_order("u-any", 1, "2.0", url, "0" * 64, 10_000, central.config_key)
    data = path.read_bytes()
    async with aiohttp.ClientSession() as client:
        async with client.get(url) as response:
            assert response.status == 401
        for token, reason in ((forged, "bad signature"), (other, "another bundle")):
            headers = {"Authorization": f"Bearer {token}"}
            async with client.get(url, headers=headers) as response:
                assert response.status == 403
                assert reason in (await response.json())["error"]
        headers = {"Authorization": f"Bearer {order}", "Range": "bytes=4000-"}
        async with client.get(url, headers=headers) as response:
            assert response.status == 206
            assert await response.read() == data[4000:]


async def test_a_bundle_with_the_wrong_hash_is_refused_and_reported(
    stack: LocalStack, central: CentralService, tmp_path: Path
) -> None:
    unit = "u-upd-hash"
    payload = b"vaka-bundle 2.0\n" + os.urandom(50_000)
    async with (
        static_server(payload) as (url, _),
        stack.running_unit(unit, update=update_section(tmp_path, unit)) as agent,
    ):
        await daytime(central, unit)
        await wait_for(lambda: agent.config_store.version == 1, 10, what="the config")
        wrong = hashlib.sha256(b"another bundle").hexdigest()
        result = await central.rollouts.create(
            "t-tech", bundle_spec("2.0", wrong, len(payload), url), [unit], 100
        )
        rollout = result["rollout_id"]
        detail = await wait_for_audit(central, unit, "update_refused")
        assert "does not match the order" in str(detail["reason"])
        assert installer(agent).installed == []
        status = await asyncio.to_thread(central.rollouts.status, rollout)
        assert status["units"][0]["state"] == "refused"
        assert "does not match" in status["units"][0]["reason"]
        assert not list((tmp_path / f"dl-{unit}").glob("*"))  # nothing half-kept


async def test_an_order_not_signed_by_central_is_refused(
    stack: LocalStack, central: CentralService, tmp_path: Path
) -> None:
    unit = "u-upd-forged"
    async with stack.running_unit(unit, update=update_section(tmp_path, unit)) as agent:
        forged = sign_update_order(
            unit, 7, "6.6.6", "https://evil.example/b", "a" * 64, 1000,
            OKPKey.generate_key("Ed25519"),
        )  # fmt: skip
        message = UpdateMessage(payload=UpdatePayload(order=forged))
        await central.link.publish_to_unit(unit, Channel.UPDATE, message)
        detail = await wait_for_audit(central, unit, "update_refused")
        assert detail["reason"] == "bad signature"
        assert installer(agent).installed == [] and installer(agent).reboots == []


async def test_no_install_while_a_call_is_up_the_order_waits(
    stack: LocalStack, central: CentralService, tmp_path: Path
) -> None:
    path, sha = make_bundle(tmp_path / "bundles", "2.0")
    unit = "u-upd-call"
    async with stack.running_unit(unit, update=update_section(tmp_path, unit, **{})) as agent:
        agent.unit.common.updater.settings = dataclass_replace(
            agent.unit.common.updater.settings, recheck_s=0.2
        )
        await daytime(central, unit)
        await wait_for(lambda: agent.config_store.version == 1, 10, what="the config")
        call = agent.unit.common.call
        call.requesting("r-1")  # the citizen's call to the night staff is under way
        await central.rollouts.create(
            "t-tech", bundle_spec("2.0", sha, path.stat().st_size), [unit], 100
        )
        detail = await wait_for_audit(central, unit, "update_waiting")
        assert "a call is under way" in str(detail["reason"])
        await asyncio.sleep(1.0)  # the order is held for as long as the call lasts
        assert installer(agent).installed == []
        call.idle("ended")
        await wait_for(lambda: installer(agent).reboots, 20, what="the install after the call")
        assert installer(agent).running().version == "2.0"


async def test_no_update_in_the_night_hours_of_the_unit_s_configuration(
    stack: LocalStack, central: CentralService, tmp_path: Path
) -> None:
    path, sha = make_bundle(tmp_path / "bundles", "2.0")
    unit = "u-upd-night"
    async with stack.running_unit(unit, update=update_section(tmp_path, unit)) as agent:
        agent.unit.common.updater.settings = dataclass_replace(
            agent.unit.common.updater.settings, recheck_s=0.2
        )
        night_from, night_until = hhmm(-60), hhmm(60)
        await push_unit_config(
            central, unit, "nightcam", 1,
            timezone="Europe/Stockholm", night_from=night_from, night_until=night_until,
        )  # fmt: skip
        await wait_for(lambda: agent.config_store.version == 1, 10, what="the config")
        await central.rollouts.create(
            "t-tech", bundle_spec("2.0", sha, path.stat().st_size), [unit], 100
        )
        detail = await wait_for_audit(central, unit, "update_waiting")
        assert detail["reason"] == (
            f"night-check hours {night_from}-{night_until}: the update waits until {night_until}"
        )
        await asyncio.sleep(1.0)
        assert installer(agent).installed == []
        await daytime(central, unit, version=2)  # the night is over, as far as the unit knows
        await wait_for(lambda: installer(agent).reboots, 20, what="the install by day")


async def test_a_roll_out_orders_half_the_units_then_all(
    stack: LocalStack, central: CentralService, tmp_path: Path
) -> None:
    path, sha = make_bundle(tmp_path / "bundles", "2.0")
    units = [f"u-upd-stage-{n}" for n in range(4)]
    for unit in units:
        stack.spawn_unit(unit, interval_s=1, update=update_section(tmp_path, unit))
    assert await stack.wait_online(central, units, 30)
    for unit in units:
        await daytime(central, unit)
    http = await technician(central)

    async def versions() -> dict[str, str | None]:
        async with http.get("/api/fleet/versions") as response:
            rows = (await response.json())["units"]
        return {r["unit"]: r["system_version"] for r in rows if r["unit"] in units}

    async def running(which: list[str], version: str = "2.0") -> bool:
        now = await versions()
        return all(now.get(u) == version for u in which)

    # Online is the units' state; their version comes with their first health report.
    await wait_for(lambda: running(units, "1.0"), 30, what="every unit's version reported")
    body = {"version": "2.0", "sha256": sha, "size": path.stat().st_size}
    async with http.post("/api/updates", json={**body, "profile": "nightcam", "percent": 50}) as r:
        assert r.status == 200, await r.text()
        rollout = await r.json()
    first = [u["unit"] for u in rollout["units"] if u["stage"] == 1]
    assert first == units[:2]

    await wait_for(lambda: running(first), 40, what="the first stage on 2.0")
    now = await versions()
    assert [now[u] for u in units[2:]] == ["1.0", "1.0"]  # the rest is held
    async with http.get(f"/api/updates/{rollout['rollout_id']}") as response:
        states = {u["unit"]: u["state"] for u in (await response.json())["units"]}
    assert [states[u] for u in units[2:]] == ["held", "held"]
    async with http.post(f"/api/updates/{rollout['rollout_id']}/all") as response:
        assert response.status == 200
    await wait_for(lambda: running(units), 40, what="every unit on 2.0")
    entries = await asyncio.to_thread(central.audit.entries, kind="update_rollout_all")
    assert entries and entries[0].actor == "t-tech"
    await http.close()


async def test_an_interrupted_download_resumes_and_no_half_file_reaches_the_installer(
    stack: LocalStack, central: CentralService, tmp_path: Path
) -> None:
    unit = "u-upd-resume"
    payload = b"vaka-bundle 2.0\n" + os.urandom(400_000)
    sha = hashlib.sha256(payload).hexdigest()
    async with (
        static_server(payload, cut_first_at=150_000) as (url, seen),
        stack.running_unit(unit, update=update_section(tmp_path, unit)) as agent,
    ):
        await daytime(central, unit)
        await wait_for(lambda: agent.config_store.version == 1, 10, what="the config")
        await central.rollouts.create(
            "t-tech", bundle_spec("2.0", sha, len(payload), url), [unit], 100
        )
        await wait_for(lambda: installer(agent).reboots, 30, what="the install")
        assert len(seen) >= 2
        assert seen[0] is None  # the first request asks for the whole file
        resumed_at = int(str(seen[1]).removeprefix("bytes=").removesuffix("-"))
        assert 0 < resumed_at <= 150_000  # and the second only for the rest
        assert [(i.sha256, i.size) for i in installer(agent).installed] == [(sha, len(payload))]


# ---------------------------------------------------------------- helpers


def dataclass_replace(settings: Any, **changes: Any) -> Any:
    import dataclasses

    return dataclasses.replace(settings, **changes)


def bundle_spec(version: str, sha: str, size: int, url: str | None = None) -> Any:
    from vaka.central.updates.rollouts import BundleSpec

    return BundleSpec(version, sha, size, url)


async def no_retained(stack: LocalStack, topic: str) -> bool:
    """Whether the broker holds no retained message on ``topic`` (a fresh subscriber gets none
    within half a second)."""
    async with stack.broker.client("central-probe") as client:
        await client.subscribe(topic, qos=1)
        try:
            async with asyncio.timeout(0.5):
                async for message in client.messages:
                    return not message.payload
        except TimeoutError:
            return True
    return True


async def wait_for_audit(central: CentralService, unit: str, kind: str) -> dict[str, Any]:
    found: list[dict[str, Any]] = []

    async def there() -> bool:
        detail = await audited(central, unit, kind)
        if detail is not None:
            found.append(detail)
        return detail is not None

    await wait_for(there, 20, what=f"{kind} from {unit}")
    return found[-1]


@asynccontextmanager
async def static_server(
    payload: bytes, cut_first_at: int | None = None
) -> AsyncIterator[tuple[str, list[str | None]]]:
    """A static bundle server on loopback; with ``cut_first_at`` its first answer breaks off
    after that many bytes. Yields the URL and the ``Range`` header of every request."""
    seen: list[str | None] = []

    async def serve(request: web.Request) -> web.StreamResponse:
        asked = request.headers.get("Range")
        seen.append(asked)
        start = int(asked.removeprefix("bytes=").removesuffix("-")) if asked else 0
        body = payload[start:]
        response = web.StreamResponse(status=206 if start else 200)
        response.content_length = len(body)
        if start:
            response.headers["Content-Range"] = f"bytes {start}-{len(payload) - 1}/{len(payload)}"
        await response.prepare(request)
        if cut_first_at is not None and len(seen) == 1:
            await response.write(body[:cut_first_at])
            assert request.transport is not None
            request.transport.close()  # the connection drops half-way
            return response
        await response.write(body)
        await response.write_eof()
        return response

    app = web.Application()
    app.router.add_get("/bundle", serve)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}/bundle", seen
    finally:
        await runner.cleanup()
