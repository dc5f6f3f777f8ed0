"""The unit's message inbox in memory (one message at a time, missed reminders, refusals, its
limit) and when a reminder is due; end to end in test_messages.py."""

import datetime as dt
import time
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from joserfc.jwk import OKPKey

from vaka.agent.messages import QUEUE_LIMIT, MessageInbox
from vaka.central.messages.requests import BadMessageRequest, resolve_at
from vaka.devstack.polling import wait_for
from vaka.protocol.messages import EventValue, MessageMessage, MessagePayload
from vaka.provisioning.messages import SignedMessage, make_message, sign_message
from vaka.provisioning.tickets import new_ticket_key

UNIT = "u-tv"
TZ = "Europe/Stockholm"


class Screen:
    """What the inbox asked the screen to do, and what it reported."""

    def __init__(self) -> None:
        self.shown: list[str] = []
        self.hidden: list[str] = []
        self.reports: list[tuple[str, dict[str, EventValue]]] = []

    def show(self, message: SignedMessage) -> None:
        self.shown.append(message.mid)

    def hide(self, mid: str) -> None:
        self.hidden.append(mid)

    async def report(self, action: str, detail: dict[str, EventValue]) -> None:
        self.reports.append((action, detail))

    def actions(self) -> list[tuple[str, Any]]:
        return [(action, detail.get("mid")) for action, detail in self.reports]


@pytest.fixture(scope="module")
def key() -> OKPKey:
    return new_ticket_key()


def envelope(key: OKPKey, mid: str, unit: str = UNIT, **claims: Any) -> MessageMessage:
    now = int(time.time())
    fields: dict[str, Any] = {
        "unit": unit,
        "mid": mid,
        "kind": "reminder",
        "text": f"text of {mid}",
        "sender_name": "Anna",
        "exp": now + 600,
        **claims,
    }
    token = sign_message(make_message(**fields), key)
    return MessageMessage(payload=MessagePayload(token=token))


def inbox(key: OKPKey | None, screen: Screen) -> MessageInbox:
    public = None if key is None else OKPKey.import_key(key.as_pem(private=False))
    return MessageInbox(UNIT, public, screen.report, screen.show, screen.hide)


async def test_inbox_shows_one_at_a_time_in_order(key: OKPKey) -> None:
    screen = Screen()
    box = inbox(key, screen)
    for mid in ("m-a", "m-b", "m-c"):
        await box.handle(envelope(key, mid))
    await box.handle(envelope(key, "m-a"))  # delivered twice: ignored
    assert screen.shown == ["m-a"]
    assert box.current is not None and box.current.mid == "m-a"
    assert [m.mid for m in box.waiting] == ["m-b", "m-c"]

    assert box.acknowledge("m-b") is False  # not on screen
    assert box.acknowledge("m-a") is True
    assert box.acknowledge("m-a") is False  # pressed twice
    await wait_for(lambda: screen.shown == ["m-a", "m-b"], 2, what="next message shown")
    assert box.acknowledge("m-b")
    await wait_for(lambda: screen.shown == ["m-a", "m-b", "m-c"], 2, what="third shown")
    assert box.acknowledge("m-c")
    await wait_for(lambda: box.current is None and len(screen.reports) == 6, 2, what="reports")
    assert screen.hidden == ["m-a", "m-b", "m-c"]
    assert screen.actions() == [
        ("shown", "m-a"),
        ("acknowledged", "m-a"),
        ("shown", "m-b"),
        ("acknowledged", "m-b"),
        ("shown", "m-c"),
        ("acknowledged", "m-c"),
    ]
    await box.handle(envelope(key, "m-b"))  # a repeat after it was shown: still ignored
    assert box.current is None
    box.close()


async def test_inbox_reports_a_missed_reminder_and_shows_the_next(key: OKPKey) -> None:
    screen = Screen()
    box = inbox(key, screen)
    await box.handle(envelope(key, "m-late", ack_within_s=1))
    await box.handle(envelope(key, "m-next"))
    await wait_for(lambda: ("missed", "m-late") in screen.actions(), 5, what="missed")
    assert screen.hidden == ["m-late"]
    assert dict(screen.reports[1][1]) == {
        "mid": "m-late",
        "kind": "reminder",
        "reason": "not acknowledged in time",
    }
    await wait_for(lambda: screen.shown == ["m-late", "m-next"], 2, what="next shown")
    box.close()
    box.close()  # safe twice
    assert screen.hidden == ["m-late", "m-next"]  # taken off the screen on close


async def test_inbox_refuses_and_shows_nothing(key: OKPKey) -> None:
    screen = Screen()
    box = inbox(key, screen)
    await box.handle(envelope(new_ticket_key(), "m-forged"))
    await box.handle(envelope(key, "m-elsewhere", unit="u-tv-next-door"))
    assert screen.shown == []
    assert screen.reports == [
        ("refused", {"reason": "bad signature"}),
        (
            "refused",
            {
                "reason": "message is for unit u-tv-next-door, not this unit (u-tv)",
                "mid": "m-elsewhere",
            },
        ),
    ]
    assert box.refusals.total == 2

    keyless = Screen()
    box = inbox(None, keyless)
    await box.handle(envelope(key, "m-1"))
    assert keyless.shown == []
    assert keyless.reports == [
        ("refused", {"reason": "no pinned config key ([trust] config_key): cannot verify"})
    ]


async def test_inbox_keeps_at_most_twenty_waiting(key: OKPKey) -> None:
    screen = Screen()
    box = inbox(key, screen)
    for n in range(QUEUE_LIMIT + 2):
        await box.handle(envelope(key, f"m-{n}"))
    assert len(box.waiting) == QUEUE_LIMIT
    assert screen.reports[-1] == (
        "refused",
        {"reason": "20 messages are already waiting to be shown", "mid": f"m-{QUEUE_LIMIT + 1}"},
    )
    box.close()
    assert box.waiting == [] and box.current is None


def test_at_is_today_or_tomorrow_local_time() -> None:
    zone = ZoneInfo(TZ)
    noon = dt.datetime(2026, 3, 2, 12, 0, tzinfo=zone).timestamp()
    assert dt.datetime.fromtimestamp(resolve_at("14:00", noon, TZ), zone) == dt.datetime(
        2026, 3, 2, 14, 0, tzinfo=zone
    )
    assert dt.datetime.fromtimestamp(resolve_at("09:30", noon, TZ), zone) == dt.datetime(
        2026, 3, 3, 9, 30, tzinfo=zone
    )
    assert resolve_at(None, noon, TZ) == noon
    assert resolve_at("2026-03-02T12:00:05", noon, TZ) == noon + 5
    for bad, reason in (
        ("25:00", "is neither HH:MM nor an ISO 8601 time"),
        ("soon", "is neither HH:MM nor an ISO 8601 time"),
        ("2026-03-01T12:00:00", "is in the past"),
        ("2026-04-01T12:00:00+00:00", "is more than 7 days ahead"),
    ):
        with pytest.raises(BadMessageRequest, match=reason):
            resolve_at(bad, noon, TZ)
