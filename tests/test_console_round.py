"""The night round in real Chromium: a night nurse logs in with password and code, dials in to a
simulated nightcam over WebRTC, sees its pattern, hangs up (the shutter closes) and records "All
well"; the audit page and the supervision report show the check. A nurse never sees or reaches a
citizen outside her groups."""

import asyncio
import csv
import datetime as dt
import io
import json
import re
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
import pytest
from playwright.async_api import Browser, Page, expect

from tests.conftest import TOTP_SECRET, staff_token
from tests.nightcheck import PASSWORD, UNIT, directory_spec, running_agent
from vaka import otp
from vaka.central.calls.round import night_bounds, tonights_checks
from vaka.central.directory.spec import DirectorySpec
from vaka.central.service import CentralService
from vaka.devstack.broker import Broker
from vaka.devstack.polling import wait_for
from vaka.rtc.pattern import BAR_COUNT, expected_bar_colour

pytest.register_assert_rewrite("tests.browser")
from tests.browser import new_page, page_errors  # noqa: E402

pytest_plugins = ["tests.browser"]

#: Largest per-channel difference between a decoded bar and the drawn one (VP8 shifts colours).
BAR_TOLERANCE = 40
#: a unit of a citizen (c-3003) that only another group may check
FOREIGN_UNIT = "u-cam-three"
#: the unit of a citizen of the nurse's group whose check is not due now
CLOSED_UNIT = "u-cam-four"


def round_spec() -> DirectorySpec:
    """The night-check directory plus an administrator, support, and a citizen of g-other."""
    spec = directory_spec().model_dump(mode="json", exclude_none=True)
    for staff_id, role in (("s-admin", "administrator"), ("s-support", "support")):
        spec["staff"].append(
            {
                "id": staff_id,
                "name": staff_id,
                "role": role,
                "password": PASSWORD,
                "totp_secret": TOTP_SECRET,
            }
        )
    spec["citizen"].append({"id": "c-3003", "units": [FOREIGN_UNIT]})
    spec["permission"].append(
        {"group": "g-other", "citizen": "c-3003", "purposes": ["night_check"]}
    )
    spec["schedule"].append(
        {"citizen": "c-3003", "times": [spec["schedule"][0]["times"][0]], "tolerance_min": 120}
    )
    # c-4004's only check tonight is 90 minutes before or after now: listed, but closed.
    spec["citizen"].append({"id": "c-4004", "units": [CLOSED_UNIT]})
    spec["permission"].append(
        {"group": "g-night", "citizen": "c-4004", "purposes": ["night_check"]}
    )
    spec["schedule"].append({"citizen": "c-4004", "times": [closed_check()], "tolerance_min": 30})
    return DirectorySpec.model_validate(spec)


def closed_check() -> str:
    """HH:MM 90 minutes from now, on the side that stays within tonight (12:00 to 12:00)."""
    local = dt.datetime.now(ZoneInfo("Europe/Stockholm"))
    start, _ = night_bounds(local)
    offset = -90 if local - dt.timedelta(minutes=90) >= start else 90
    return (local + dt.timedelta(minutes=offset)).strftime("%H:%M")


async def load_round_directory(central: CentralService) -> None:
    await asyncio.to_thread(central.directory.load, round_spec())


async def log_in(page: Page, url: str, staff_id: str, first_page: str) -> None:
    """Log in through the console's form with a fresh one-time code; wait for the first page."""
    await page.goto(url + "/")
    await page.fill("#staff_id", staff_id)
    await page.fill("#password", PASSWORD)
    await page.fill("#totp", otp.code_now(TOTP_SECRET))
    await page.click("#login-form button[type=submit]")
    await expect(page.locator("#nav")).to_be_visible()
    await expect(page.locator("h1")).to_have_text(first_page)


async def wait_until_playing(page: Page) -> dict[str, Any]:
    """Wait until #round-video shows decoded frames and time advances; its size."""
    await page.wait_for_function(
        "() => { const v = document.querySelector('#round-video');"
        " return v && v.videoWidth > 0 && v.readyState >= 2 && v.currentTime > 0; }",
        timeout=20_000,
    )
    first = await page.evaluate("document.querySelector('#round-video').currentTime")
    await page.wait_for_function(
        f"() => document.querySelector('#round-video').currentTime > {first}", timeout=10_000
    )
    size: dict[str, Any] = await page.evaluate(
        "(() => { const v = document.querySelector('#round-video');"
        " return {width: v.videoWidth, height: v.videoHeight}; })()"
    )
    return size


async def bar_colours(page: Page) -> list[tuple[int, int, int]]:
    """The RGB colour at the middle of each of the pattern's bars in the current video frame."""
    result: list[list[int]] = await page.evaluate(
        """(count) => {
          const v = document.querySelector('#round-video');
          const c = document.createElement('canvas');
          c.width = v.videoWidth; c.height = v.videoHeight;
          const g = c.getContext('2d');
          g.drawImage(v, 0, 0);
          const out = [];
          for (let i = 0; i < count; i++) {
            const x = Math.round((i + 0.5) * c.width / count);
            const y = Math.round(0.34 * c.height);
            const d = g.getImageData(x - 2, y - 2, 5, 5).data;
            const sum = [0, 0, 0];
            for (let p = 0; p < d.length; p += 4) {
              sum[0] += d[p]; sum[1] += d[p + 1]; sum[2] += d[p + 2];
            }
            out.push(sum.map((s) => Math.round(s / (d.length / 4))));
          }
          return out;
        }""",
        BAR_COUNT,
    )
    return [(r[0], r[1], r[2]) for r in result]


def assert_pattern(colours: list[tuple[int, int, int]]) -> None:
    """Each bar is within BAR_TOLERANCE of the drawn one (the nightcam draws IR greys)."""
    for i, (r, g, b) in enumerate(colours):
        blue, green, red = expected_bar_colour(i, night=True)
        error = max(abs(r - red), abs(g - green), abs(b - blue))
        assert error <= BAR_TOLERANCE, (i, (r, g, b), (red, green, blue))


async def dial_and_check(page: Page, unit: Any) -> str:
    """Dial in to UNIT from the open night round, check the picture, hang up; the call id."""
    row = page.locator(f".round-check[data-unit='{UNIT}']")
    await expect(row).to_be_visible()
    # Online, or degraded by a simulated health value: reachable either way.
    await expect(row.locator(".unit-state")).to_have_text(re.compile("^(Online|Degraded)$"))
    dial = row.locator("button.dial")
    box = await dial.bounding_box()
    assert box is not None and box["height"] >= 48 and box["width"] >= 48, box
    await dial.click()
    size = await wait_until_playing(page)
    assert size["width"] > 0 and size["height"] > 0
    await expect(page.locator("#round-call-state")).to_have_text("Connected")
    # The first frames go out with the shutter still closed; it opens right after them.
    await wait_for(lambda: unit.shutter_states[-1] == "open", 5, what="shutter open")
    assert_pattern(await bar_colours(page))
    call_id: str = await page.evaluate(
        "fetch('/api/round').then(r => r.json()).then(b => b.checks.find(c => c.unit === '"
        + UNIT
        + "').calls.slice(-1)[0])"
    )
    assert call_id
    hangup = page.locator("#round-hangup")
    box = await hangup.bounding_box()
    assert box is not None and box["height"] >= 48
    await hangup.click()
    await wait_for(lambda: unit.shutter_states[-1] == "closed", 10, what="shutter closed")
    await expect(page.locator("#round-outcome")).to_be_visible()
    await expect(page.locator("#round-call-state")).to_contain_text("Call ended")
    return call_id


async def ended_in_audit(central: CentralService, call_id: str) -> None:
    async def ended() -> bool:
        entries = await asyncio.to_thread(central.audit.entries, kind="call_ended")
        return any(e.call_id == call_id for e in entries)

    await wait_for(ended, 10, what="call_ended in the audit trail")


@pytest.mark.parametrize("viewport", ["desktop", "phone"])
async def test_dial_in_see_the_unit_hang_up_and_record_all_well(
    broker: Broker, central: CentralService, browser: Browser, viewport: str
) -> None:
    await load_round_directory(central)
    page = await new_page(browser, viewport)
    async with running_agent(broker) as unit:
        await wait_for(
            lambda: asyncio.to_thread(central.store.unit, UNIT), 10, what="unit registered"
        )
        await log_in(page, central.url, "s-nurse", "Night round")
        await expect(page.locator(".round-check[data-citizen='c-1001']")).to_have_count(1)
        assert await page.evaluate("document.documentElement.scrollWidth <= innerWidth")
        call_id = await dial_and_check(page, unit)
        well = page.locator("#outcome-all-well")
        box = await well.bounding_box()
        assert box is not None and box["height"] >= 48
        await well.click()
        await expect(page.locator("#round-ok")).to_have_text("Recorded for c-1001: All well.")
        row = page.locator(f".round-check[data-unit='{UNIT}']")
        await expect(row.locator(".check-status")).to_have_text("Done: All well")
        # One outcome per call.
        again = await page.evaluate(
            """async (body) => {
              const { api } = await import('/console/api.js');
              try { await api('POST', '/api/round/outcome', body); return 'recorded'; }
              catch (err) { return `${err.status} ${err.message}`; }
            }""",
            {"call_id": call_id, "unit": UNIT, "outcome": "visit_needed"},
        )
        assert again == f"409 an outcome is already recorded for the call {call_id}"
    await ended_in_audit(central, call_id)
    outcome = [
        e
        for e in await asyncio.to_thread(central.audit.entries, kind="supervision_outcome")
        if e.call_id == call_id
    ]
    assert len(outcome) == 1 and outcome[0].actor == "s-nurse"
    assert outcome[0].detail["outcome"] == "all_well"
    assert page_errors(page) == []
    if viewport != "desktop":
        return
    # The administrator's view: the audit page lists the session, the report has it.
    admin = await new_page(browser, "desktop")
    await log_in(admin, central.url, "s-admin", "Night round")
    await admin.goto(central.url + "/#/audit")
    await expect(admin.locator("#audit-chain")).to_contain_text("intact")
    await admin.fill("#audit-unit", UNIT)
    await admin.click("#audit-filters button[type=submit]")
    rows = f"#audit-rows tr[data-call-id='{call_id}']"
    for kind in ("ticket_issued", "call_started", "call_ended", "supervision_outcome"):
        await expect(admin.locator(f"{rows}[data-kind='{kind}']")).to_have_count(1)
    response = await admin.request.get(central.url + "/api/reports/supervisions.csv")
    assert response.status == 200
    assert "attachment" in response.headers["content-disposition"]
    report = list(csv.DictReader(io.StringIO(await response.text())))
    mine = [r for r in report if r["call_id"] == call_id]
    assert len(mine) == 1, report
    assert mine[0]["outcome"] == "all_well" and mine[0]["staff"] == "s-nurse"
    assert mine[0]["citizen"] == "c-1001" and mine[0]["unit"] == UNIT
    await admin.goto(central.url + "/#/supervision-report")
    await admin.click("#report-form button[type=submit]")
    line = admin.locator(f"#report-rows tr[data-call-id='{call_id}']")
    await expect(line).to_contain_text("All well")
    await expect(line).to_contain_text("c-1001")
    assert page_errors(admin) == []


async def test_a_nurse_sees_and_reaches_only_her_groups_citizens(
    broker: Broker, central: CentralService, browser: Browser
) -> None:
    await load_round_directory(central)
    page = await new_page(browser, "phone")
    await log_in(page, central.url, "s-nurse", "Night round")
    await expect(page.locator(".round-check[data-citizen='c-1001']")).to_have_count(1)
    await expect(page.locator(".round-check[data-citizen='c-3003']")).to_have_count(0)
    # A check that is not due now: central's refusal in plain words, nothing else happens.
    closed = page.locator(f".round-check[data-unit='{CLOSED_UNIT}']")
    await expect(closed.locator(".check-status")).to_have_text(
        re.compile("^(Not yet|Window closed)$")
    )
    at = (await closed.locator(".card-title").inner_text()).split(" ")[0]
    await closed.locator("button.dial").click()
    await expect(page.locator("#round-call-error")).to_have_text(
        f"Outside the night-check schedule for citizen c-4004: {at} (±30 min)."
    )
    await expect(page.locator("#round-hangup")).to_be_hidden()
    await page.click("#round-close")
    await expect(page.locator("#round-call")).to_be_hidden()
    # The other group's nurse sees c-3003 and not c-1001.
    other = await new_page(browser, "phone")
    await log_in(other, central.url, "s-stranger", "Night round")
    await expect(other.locator(".round-check[data-citizen='c-3003']")).to_have_count(1)
    await expect(other.locator(".round-check[data-citizen='c-1001']")).to_have_count(0)
    # The API lists only her citizens, and the call channel refuses the other's unit.
    token = await staff_token(central.url, "s-nurse", PASSWORD)
    headers = {"Authorization": f"Bearer {token}"}
    async with aiohttp.ClientSession() as http:
        async with http.get(central.url + "/api/round", headers=headers) as resp:
            assert resp.status == 200
            body = await resp.json()
        assert {c["citizen"] for c in body["checks"]} >= {"c-1001"}
        assert "c-3003" not in {c["citizen"] for c in body["checks"]}
        async with http.ws_connect(central.url + "/api/calls", headers=headers) as ws:
            from tests.nightcheck import make_offer

            pc, sdp, _ = await make_offer()
            await ws.send_json(
                {"type": "dial", "unit": FOREIGN_UNIT, "purpose": "night_check", "sdp": sdp}
            )
            reply = await ws.receive_json(timeout=10)
            await pc.close()
        assert reply["type"] == "refused"
        assert reply["reason"] == (
            "staff s-nurse is not in a group allowed night_check calls to citizen c-3003"
        )
        # Support may not see the night round.
        support = await staff_token(central.url, "s-support", PASSWORD)
        async with http.get(
            central.url + "/api/round", headers={"Authorization": f"Bearer {support}"}
        ) as resp:
            assert resp.status == 403
            assert "may not see the night round" in (await resp.json())["error"]
    # In the browser: dialling a unit outside her groups shows central's reason in plain words.
    shown = await page.evaluate(
        """async (unit) => {
          const { startCall } = await import('/console/rtc.js');
          try { await startCall({ unit, purpose: 'night_check' }); return 'answered'; }
          catch (err) { return err.message; }
        }""",
        FOREIGN_UNIT,
    )
    assert shown == "Staff s-nurse is not in a group allowed night_check calls to citizen c-3003."
    assert page_errors(page) == []
    assert page_errors(other) == []


async def test_a_call_channel_from_another_site_is_refused(
    broker: Broker, central: CentralService, browser: Browser
) -> None:
    await load_round_directory(central)
    page = await new_page(browser, "desktop")
    await log_in(page, central.url, "s-nurse", "Night round")
    cookies = {c["name"]: c["value"] for c in await page.context.cookies()}
    jar = {"Cookie": f"vaka_session={cookies['vaka_session']}"}
    async with aiohttp.ClientSession() as http:
        for origin, allowed in (("https://evil.example", False), (central.url, True)):
            try:
                async with http.ws_connect(
                    central.url + "/api/calls", headers={**jar, "Origin": origin}
                ) as ws:
                    await ws.send_json({"type": "dial", "unit": UNIT, "purpose": "night_check"})
                    reply = await ws.receive_json(timeout=10)
                    assert allowed, reply
                    assert reply["type"] == "refused"  # the dial itself lacks an offer
            except aiohttp.WSServerHandshakeError as err:
                assert not allowed
                assert err.status == 403


async def test_outcome_is_refused_with_reasons(broker: Broker, central: CentralService) -> None:
    await load_round_directory(central)
    token = await staff_token(central.url, "s-nurse", PASSWORD)
    # a JSON body must say so (anything else is 415)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    async with aiohttp.ClientSession() as http:

        async def post(body: dict[str, Any]) -> tuple[int, str]:
            async with http.post(
                central.url + "/api/round/outcome", data=json.dumps(body), headers=headers
            ) as resp:
                return resp.status, (await resp.json())["error"]

        assert await post({"call_id": "x", "unit": UNIT, "outcome": "fine"}) == (
            400,
            "invalid outcome: outcome (outcome is all_well or visit_needed)",
        )
        assert await post({"call_id": "central-1.nope", "unit": UNIT, "outcome": "all_well"}) == (
            404,
            "no call central-1.nope was started",
        )
    refused = await asyncio.to_thread(central.audit.entries, kind="outcome_refused")
    assert [e.actor for e in refused] == ["s-nurse", "s-nurse"]


def test_tonight_runs_noon_to_noon_and_keeps_an_open_window() -> None:
    zone = ZoneInfo("Europe/Stockholm")
    evening = dt.datetime(2024, 3, 1, 21, 0, tzinfo=zone)
    schedule = [(23 * 60, 30), (2 * 60, 15), (11 * 60 + 50, 30)]
    checks = tonights_checks(schedule, evening)
    assert [c.at.strftime("%d %H:%M") for c in checks] == ["01 23:00", "02 02:00", "02 11:50"]
    assert (checks[1].start.strftime("%H:%M"), checks[1].end.strftime("%H:%M")) == (
        "01:45",
        "02:15",
    )
    # Just after noon, the 11:50 check (window until 12:20) still belongs to the night.
    noon = dt.datetime(2024, 3, 2, 12, 10, tzinfo=zone)
    assert night_bounds(noon)[0] == dt.datetime(2024, 3, 2, 12, 0, tzinfo=zone)
    at = [c.at.strftime("%d %H:%M") for c in tonights_checks(schedule, noon)]
    assert at == ["02 11:50", "02 23:00", "03 02:00", "03 11:50"]
