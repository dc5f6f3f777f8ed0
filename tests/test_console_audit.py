"""The audit and supervision-report API and pages: roles, filters, paging newest first, the
chain's verification (and a tampered entry named), the CSV download with the outcome column."""

import asyncio
import csv
import io
import time
from typing import Any

import aiohttp
import pytest
from playwright.async_api import Browser, expect
from sqlalchemy import update

from tests.conftest import staff_token
from tests.nightcheck import PASSWORD, UNIT
from tests.test_console_round import load_round_directory, log_in
from vaka.central.audit.trail import audit
from vaka.central.service import CentralService
from vaka.devstack.broker import Broker

pytest.register_assert_rewrite("tests.browser")
from tests.browser import new_page, page_errors  # noqa: E402

pytest_plugins = ["tests.browser"]


async def supervision(
    central: CentralService, call_id: str, outcome: str | None, ended_at: float
) -> None:
    """The audit entries of one performed night check (as the relay and the unit write them)."""
    log = central.audit
    await asyncio.to_thread(
        lambda: log.append(
            "ticket_issued",
            actor="s-nurse",
            unit=UNIT,
            purpose="night_check",
            call_id=call_id,
            citizen="c-1001",
            group="g-night",
            ts=ended_at - 60,
        )
    )
    await asyncio.to_thread(
        lambda: log.append(
            "call_ended",
            actor="s-nurse",
            unit=UNIT,
            purpose="night_check",
            call_id=call_id,
            duration_s=42.0,
            reason="caller hung up",
            ts=ended_at,
        )
    )
    if outcome:
        await asyncio.to_thread(
            lambda: log.append(
                "supervision_outcome",
                actor="s-nurse",
                unit=UNIT,
                purpose="night_check",
                call_id=call_id,
                outcome=outcome,
                note="asleep, breathing calmly",
            )
        )


async def get(
    http: aiohttp.ClientSession, central: CentralService, path: str, token: str
) -> tuple[int, Any, aiohttp.ClientResponse]:
    async with http.get(central.url + path, headers={"Authorization": f"Bearer {token}"}) as resp:
        if resp.content_type == "application/json":
            return resp.status, await resp.json(), resp
        return resp.status, await resp.text(), resp


async def test_audit_api_roles_filters_paging_and_verification(
    broker: Broker, central: CentralService
) -> None:
    await load_round_directory(central)
    now = time.time()
    for n in range(7):
        await supervision(central, f"central-1.call{n}", None, now - 3600 + n)
    nurse = await staff_token(central.url, "s-nurse", PASSWORD)
    support = await staff_token(central.url, "s-support", PASSWORD)
    async with aiohttp.ClientSession() as http:
        status, body, _ = await get(http, central, "/api/audit", nurse)
        assert status == 403
        assert body["error"] == "the role night_staff may not read the audit trail"
        status, body, _ = await get(http, central, "/api/audit?limit=5", support)
        assert status == 200
        assert body["verify"]["ok"] is True and body["verify"]["problem"] is None
        seqs = [e["seq"] for e in body["entries"]]
        assert seqs == sorted(seqs, reverse=True) and len(seqs) == 5
        assert body["head"]["seq"] == seqs[0]
        # The next page continues below, without the verification.
        status, older, _ = await get(
            http, central, f"/api/audit?limit=5&before={body['next_before']}", support
        )
        assert status == 200 and "verify" not in older
        assert older["entries"][0]["seq"] == seqs[-1] - 1
        # Filters: kind and unit.
        status, ended, _ = await get(
            http, central, f"/api/audit?kind=call_ended&unit={UNIT}&limit=500", support
        )
        assert status == 200
        assert [e["call_id"] for e in ended["entries"]] == [
            f"central-1.call{n}" for n in reversed(range(7))
        ]
        assert ended["next_before"] is None
        assert ended["entries"][0]["detail"]["duration_s"] == 42.0
        # Time range: nothing before yesterday.
        status, none, _ = await get(http, central, "/api/audit?until=2000-01-01", support)
        assert status == 200 and none["entries"] == []
        # Readable refusals.
        for query, reason in (
            ("limit=0", "limit must be 1 to 500"),
            ("limit=many", "limit and before are whole numbers"),
            ("since=yesterday", "since must be a date (2024-03-01), a date and time"),
            ("kind=DROP TABLE", "kind is a word like call_ended or ticket_issued"),
            ("colour=red", "unknown query parameter(s): colour"),
            ("since=2024-03-02&until=2024-03-01", "since must be before until"),
        ):
            status, body, _ = await get(http, central, f"/api/audit?{query}", support)
            assert status == 400 and body["error"].startswith(reason), (query, body)
        # Someone changes an entry in the database: the first page says which.
        with central.engine.begin() as conn:
            conn.execute(update(audit).where(audit.c.seq == 3).values(detail='{"x":1}'))
        status, body, _ = await get(http, central, "/api/audit", support)
        assert status == 200
        assert body["verify"] == {"ok": False, "entries": 3, "problem": "entry 3 was changed"}


async def test_supervision_report_api_and_csv(broker: Broker, central: CentralService) -> None:
    await load_round_directory(central)
    now = time.time()
    await supervision(central, "central-1.well", "all_well", now - 600)
    await supervision(central, "central-1.visit", "visit_needed", now - 300)
    await supervision(central, "central-1.none", None, now - 100)
    await supervision(central, "central-1.old", "all_well", now - 30 * 86400)
    admin = await staff_token(central.url, "s-admin", PASSWORD)
    support = await staff_token(central.url, "s-support", PASSWORD)
    async with aiohttp.ClientSession() as http:
        status, body, _ = await get(http, central, "/api/reports/supervisions.csv", support)
        assert status == 403
        assert body["error"] == "the role support may not read the supervision report"
        status, body, _ = await get(http, central, "/api/reports/supervisions", admin)
        assert status == 200
        by_call = {s["call_id"]: s for s in body["supervisions"]}
        assert set(by_call) == {"central-1.well", "central-1.visit", "central-1.none"}
        assert by_call["central-1.visit"]["outcome"] == "visit_needed"
        assert by_call["central-1.visit"]["outcome_note"] == "asleep, breathing calmly"
        assert by_call["central-1.none"]["outcome"] == ""
        status, text, resp = await get(
            http, central, "/api/reports/supervisions.csv?since=2000-01-01", admin
        )
        assert status == 200
        assert resp.headers["Content-Type"].startswith("text/csv")
        disposition = resp.headers["Content-Disposition"]
        assert disposition.startswith('attachment; filename="supervisions-2000-01-01-')
        rows = list(csv.DictReader(io.StringIO(text)))
        assert {r["call_id"]: r["outcome"] for r in rows} == {
            "central-1.old": "all_well",
            "central-1.well": "all_well",
            "central-1.visit": "visit_needed",
            "central-1.none": "",
        }
        assert {r["citizen"] for r in rows} == {"c-1001"}
        status, body, _ = await get(
            http, central, "/api/reports/supervisions?since=tomorrow", admin
        )
        assert status == 400 and body["error"].startswith("since must be a date")


@pytest.mark.parametrize("viewport", ["phone", "tablet"])
async def test_audit_and_report_pages_at_phone_and_tablet_size(
    broker: Broker, central: CentralService, browser: Browser, viewport: str
) -> None:
    await load_round_directory(central)
    await supervision(central, "central-1.well", "all_well", time.time() - 600)
    page = await new_page(browser, viewport)
    await log_in(page, central.url, "s-admin", "Night round")
    await page.goto(central.url + "/#/audit")
    await expect(page.locator("#audit-chain")).to_contain_text("The audit trail is intact")
    row = page.locator("#audit-rows tr[data-kind='supervision_outcome']")
    await expect(row).to_have_count(1)
    await expect(row).to_contain_text("s-nurse recorded the night check of unit u-cam: All well.")
    assert await page.evaluate("document.documentElement.scrollWidth <= innerWidth")
    if viewport == "phone":  # stacked cards: no table header, each value labelled
        await expect(page.locator(".audit-table thead")).to_be_hidden()
    await page.goto(central.url + "/#/supervision-report")
    line = page.locator("#report-rows tr[data-call-id='central-1.well']")
    await expect(line).to_contain_text("All well")
    await expect(line).to_contain_text("42 s")
    href = await page.locator("#report-csv").get_attribute("href")
    assert href is not None and href.startswith("/api/reports/supervisions.csv?since=")
    box = await page.locator("#report-csv").bounding_box()
    assert box is not None and box["height"] >= 48
    assert await page.evaluate("document.documentElement.scrollWidth <= innerWidth")
    # A support account sees the audit page but not the report.
    other = await new_page(browser, viewport)
    await log_in(other, central.url, "s-support", "Fleet")
    await expect(other.locator("#nav a[data-page='audit']")).to_be_visible()
    await expect(other.locator("#nav a[data-page='supervision-report']")).to_have_count(0)
    assert page_errors(page) == []
    assert page_errors(other) == []
