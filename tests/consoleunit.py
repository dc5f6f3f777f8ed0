"""What the console's fleet and unit-page tests share: the words they look for in Swedish and
Danish, the sizes they run at, the log-in, and the checks that a page fits and says no
``null``/``undefined``/``NaN``."""

import re

from playwright.async_api import Page, expect

from tests.nightcheck import PASSWORD

VIEWPORTS = {"phone": (390, 844), "desktop": (1280, 800)}
RUNS = [("sv", "phone"), ("da", "desktop"), ("da", "phone"), ("sv", "desktop")]
NO_WORDS = re.compile(r"\b(null|undefined|NaN)\b")
WORDS = {
    "sv": {
        "fleet": "Enheter",
        "active": "i drift",
        "suspended": "pausad",
        "revoked": "spärrad",
        "decommissioned": "avvecklad",
        "enrolling": "registreras",
        "suspend": "Pausa",
        "resume": "Återuppta",
        "revoke": "Spärra",
        "decommission": "Avveckla",
        "unit": "Enhet",
        "no_alerts": "Inga öppna larm.",
        "no_calls": "Inga samtal än.",
        "round": "Nattillsyn",
        "visit": "Besök behövs",
        "well": "Allt väl",
        "timer": "Samtalstid",
    },
    "da": {
        "fleet": "Enheder",
        "active": "i drift",
        "suspended": "sat på pause",
        "revoked": "spærret",
        "decommissioned": "udfaset",
        "enrolling": "tilmeldes",
        "suspend": "Sæt på pause",
        "resume": "Genoptag",
        "revoke": "Spær",
        "decommission": "Udfas",
        "unit": "Enhed",
        "no_alerts": "Ingen åbne alarmer.",
        "no_calls": "Ingen opkald endnu.",
        "round": "Nattilsyn",
        "visit": "Besøg nødvendigt",
        "well": "Alt vel",
        "timer": "Opkaldstid",
    },
}


async def log_in(page: Page, url: str, staff_id: str, code: str | None = None) -> None:
    await page.goto(url + "/")
    await page.fill("#staff_id", staff_id)
    await page.fill("#password", PASSWORD)
    if code is not None:
        await page.fill("#totp", code)
    await page.click("#login-form button[type=submit]")
    await expect(page.locator("#nav")).to_be_visible()


async def fits(page: Page) -> bool:
    return bool(await page.evaluate("document.documentElement.scrollWidth <= innerWidth"))


async def no_missing_words(page: Page, where: str) -> None:
    text = str(await page.evaluate("document.body.innerText"))
    found = NO_WORDS.search(text)
    assert found is None, f"{found.group(0)!r} on {where}: {text[:400]!r}"


async def assert_cards(page: Page, selector: str) -> None:
    """The table at ``selector`` is drawn as cards: no header row, each row a bordered block as
    wide as the screen allows, one under the other."""
    layout = await page.evaluate(
        """(sel) => {
          const table = document.querySelector(sel);
          const head = table.querySelector('thead');
          const rows = [...table.querySelectorAll('tbody tr')];
          return {
            head: getComputedStyle(head).display,
            rows: rows.map((r) => {
              const s = getComputedStyle(r); const b = r.getBoundingClientRect();
              return { display: s.display, border: parseFloat(s.borderTopWidth),
                       left: b.left, right: b.right, top: b.top, bottom: b.bottom };
            }),
            width: innerWidth,
          };
        }""",
        selector,
    )
    assert layout["head"] == "none", layout
    assert layout["rows"], layout
    for row in layout["rows"]:
        assert row["display"] == "block" and row["border"] >= 2, row
        assert row["left"] >= 0 and row["right"] <= layout["width"], row
    tops = [r["top"] for r in layout["rows"]]
    assert tops == sorted(tops) and all(
        a["bottom"] <= b["top"] for a, b in zip(layout["rows"], layout["rows"][1:], strict=False)
    ), layout
