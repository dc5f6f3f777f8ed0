"""The webhook notifier against a real loopback HTTP server; URL and secret checks; next check."""

import asyncio
import contextlib
import datetime as dt
import hashlib
import hmac
import json
import logging
import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from aiohttp import web

from vaka.central.alerts.notify import NullNotifier, WebhookNotifier, make_notifier, read_secret
from vaka.central.audit.trail import AuditLog
from vaka.central.directory.policy import next_check
from vaka.central.settings.alerts import AlertSettings, check_webhook_url
from vaka.central.settings.config import load_central_config
from vaka.central.storage.engine import open_engine
from vaka.devstack.polling import wait_for
from vaka.errors import ConfigError

SECRET = b"0123456789abcdef-test-secret"


@dataclass
class Received:
    """One request as the webhook endpoint saw it."""

    body: bytes
    signature: str
    answered: int

    @property
    def event(self) -> dict[str, Any]:
        return dict(json.loads(self.body))

    def signed_with(self, secret: bytes) -> bool:
        expected = "sha256=" + hmac.new(secret, self.body, hashlib.sha256).hexdigest()
        return hmac.compare_digest(expected, self.signature)


@dataclass
class WebhookReceiver:
    """A loopback HTTP endpoint answering with the statuses in ``script`` (then 200)."""

    script: list[int] = field(default_factory=list)
    delay_s: float = 0.0
    requests: list[Received] = field(default_factory=list)
    url: str = ""

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        status = self.script.pop(0) if self.script else 200
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        self.requests.append(Received(body, request.headers.get("X-Vaka-Signature", ""), status))
        return web.Response(status=status, text="ok" if status == 200 else "no")

    def delivered(self, kind: str | None = None) -> list[dict[str, Any]]:
        """Events answered 2xx, optionally of one kind."""
        return [
            r.event
            for r in self.requests
            if 200 <= r.answered < 300 and (kind is None or r.event["kind"] == kind)
        ]


@contextlib.asynccontextmanager
async def webhook_server(receiver: WebhookReceiver) -> AsyncIterator[WebhookReceiver]:
    """Serve ``receiver`` at ``http://127.0.0.1:<free port>/hook``."""
    app = web.Application()
    app.router.add_post("/hook", receiver.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    receiver.url = f"http://127.0.0.1:{port}/hook"
    try:
        yield receiver
    finally:
        await runner.cleanup()


@contextlib.asynccontextmanager
async def running(notifier: WebhookNotifier) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(notifier.run())
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@pytest.fixture
def audit(db_url: str) -> AuditLog:
    return AuditLog(open_engine(db_url))


def kinds(audit: AuditLog, kind: str) -> list[dict[str, Any]]:
    return [e.detail | {"unit": e.unit} for e in audit.entries(kind=kind)]


async def test_event_is_signed_shaped_and_audited(audit: AuditLog) -> None:
    async with webhook_server(WebhookReceiver()) as hook:
        notifier = WebhookNotifier(hook.url, SECRET, audit, retry_min_s=0.01)
        async with running(notifier):
            await notifier.notify("unit_down_before_check", {"unit": "u-1", "n": 1})
            await wait_for(lambda: notifier.sent == 1, 5, what="delivery")
    (request,) = hook.requests
    assert request.signed_with(SECRET)
    assert not request.signed_with(b"another secret of some length")
    event = request.event
    assert set(event) == {"kind", "id", "at", "detail"}
    assert event["kind"] == "unit_down_before_check"
    assert event["detail"] == {"unit": "u-1", "n": 1}
    uuid.UUID(event["id"])
    at = dt.datetime.fromisoformat(event["at"].replace("Z", "+00:00"))
    assert at.utcoffset() == dt.timedelta(0)
    assert abs((dt.datetime.now(dt.UTC) - at).total_seconds()) < 60
    (sent,) = kinds(audit, "notify_sent")
    assert sent["event_id"] == event["id"] and sent["attempts"] == 1 and sent["unit"] == "u-1"


async def test_server_error_is_retried_and_delivered_once(audit: AuditLog) -> None:
    async with webhook_server(WebhookReceiver(script=[500])) as hook:
        notifier = WebhookNotifier(hook.url, SECRET, audit, retry_min_s=0.01, retry_max_s=0.05)
        async with running(notifier):
            await notifier.notify("unit_recovered", {"unit": "u-1"})
            await wait_for(lambda: notifier.sent == 1, 5, what="delivery after a retry")
    assert [r.answered for r in hook.requests] == [500, 200]
    assert hook.requests[0].body == hook.requests[1].body  # the same event, same id
    assert len(hook.delivered()) == 1
    (sent,) = kinds(audit, "notify_sent")
    assert sent["attempts"] == 2 and sent["http_status"] == 200
    assert kinds(audit, "notify_failed") == []


async def test_giving_up_is_audited_and_the_sender_goes_on(audit: AuditLog) -> None:
    async with webhook_server(WebhookReceiver(script=[503] * 3)) as hook:
        notifier = WebhookNotifier(
            hook.url, SECRET, audit, max_attempts=3, retry_min_s=0.01, retry_max_s=0.05
        )
        async with running(notifier) as task:
            await notifier.notify("unit_down_before_check", {"unit": "u-2"})
            await notifier.notify("unit_recovered", {"unit": "u-2"})
            await wait_for(lambda: notifier.sent == 1, 5, what="the next event delivered")
            assert not task.done()
    assert notifier.failed == 1
    (failed,) = kinds(audit, "notify_failed")
    assert failed["reason"] == "HTTP 503" and failed["attempts"] == 3
    assert failed["event"] == "unit_down_before_check"
    assert [e["kind"] for e in hook.delivered()] == ["unit_recovered"]


async def test_client_error_is_not_retried(audit: AuditLog) -> None:
    async with webhook_server(WebhookReceiver(script=[400])) as hook:
        notifier = WebhookNotifier(hook.url, SECRET, audit, retry_min_s=0.01)
        async with running(notifier):
            await notifier.notify("unit_recovered", {})
            await wait_for(lambda: notifier.failed == 1, 5, what="give-up")
    assert len(hook.requests) == 1
    (failed,) = kinds(audit, "notify_failed")
    assert failed["reason"] == "HTTP 400" and failed["attempts"] == 1


async def test_unreachable_and_slow_endpoints_fail_with_a_reason(audit: AuditLog) -> None:
    async with webhook_server(WebhookReceiver(delay_s=1.0)) as hook:
        slow = WebhookNotifier(hook.url, SECRET, audit, max_attempts=2, timeout_s=0.2)
        slow.retry_min_s = slow.retry_max_s = 0.01
        async with running(slow):
            await slow.notify("unit_recovered", {"unit": "u-slow"})
            await wait_for(lambda: slow.failed == 1, 5, what="time-out give-up")
    gone = WebhookNotifier(hook.url, SECRET, audit, max_attempts=2, retry_min_s=0.01)
    async with running(gone):
        await gone.notify("unit_recovered", {"unit": "u-gone"})
        await wait_for(lambda: gone.failed == 1, 5, what="connection give-up")
    reasons = {f["unit"]: f["reason"] for f in kinds(audit, "notify_failed")}
    assert reasons["u-slow"] == "no answer within 0.2 s"
    assert reasons["u-gone"].startswith("ClientConnectorError")


async def test_full_queue_drops_the_oldest_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    notifier = WebhookNotifier("http://127.0.0.1:9/hook", SECRET, None, queue_size=2)
    with caplog.at_level(logging.WARNING, "vaka.central.alerts.notify"):
        for n in range(3):
            await notifier.notify("unit_recovered", {"n": n})
    assert notifier.pending == 2 and notifier.dropped == 1
    assert "notification queue full (2): dropped the oldest event unit_recovered" in caplog.text


async def test_bad_events_are_refused_at_once() -> None:
    notifier = WebhookNotifier("http://127.0.0.1:9/hook", SECRET, None)
    with pytest.raises(ValueError, match="notification kind 'Bad Kind' must match"):
        await notifier.notify("Bad Kind", {})
    with pytest.raises(ValueError, match="notification detail is not JSON"):
        await notifier.notify("ok", {"x": object()})
    assert notifier.pending == 0


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("ftp://alarm.example/hook", "must be an http(s) URL, not 'ftp'"),
        ("alarm.example/hook", "must be an http(s) URL, not 'schemeless'"),
        ("http://alarm.example/hook", "must use https: plain http is allowed only to a loopback"),
        ("http://10.0.0.5/hook", "not '10.0.0.5'"),
        ("https:///hook", "has no host"),
        ("https://alarm.example:99999/", "is not a valid URL"),
    ],
)
def test_webhook_urls_refused(url: str, problem: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(problem)):
        check_webhook_url(url)


@pytest.mark.parametrize(
    "url",
    [
        "https://alarm.example/hook",
        "http://127.0.0.1:8080/h",
        "http://[::1]/h",
        "http://localhost/",
    ],
)
def test_webhook_urls_accepted(url: str) -> None:
    assert check_webhook_url(url) == url


def test_secret_file_checks(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "secret"
    with pytest.raises(
        ConfigError, match=r"cannot read alerts\.webhook_secret_file .*No such file"
    ):
        read_secret(path)
    path.write_text("short\n")
    path.chmod(0o600)
    with pytest.raises(ConfigError, match="holds a secret of 5 bytes: use at least 16"):
        read_secret(path)
    path.write_text(SECRET.decode() + "\n")
    with caplog.at_level(logging.WARNING, "vaka.central.alerts.notify"):
        assert read_secret(path) == SECRET
        assert "mode" not in caplog.text
        path.chmod(0o644)
        assert read_secret(path) == SECRET
    assert "has mode 0644: others can read it (expected 0600)" in caplog.text


def test_make_notifier(tmp_path: Path) -> None:
    assert isinstance(make_notifier(None, None, None), NullNotifier)
    with pytest.raises(ConfigError, match=r"needs alerts\.webhook_secret_file"):
        make_notifier("https://alarm.example/hook", None, None)
    secret = tmp_path / "secret"
    secret.write_bytes(SECRET)
    secret.chmod(0o600)
    notifier = make_notifier("https://alarm.example/hook", secret, None, max_attempts=7)
    assert isinstance(notifier, WebhookNotifier) and notifier.max_attempts == 7


def test_alerts_config_refusals(tmp_path: Path) -> None:
    path = tmp_path / "central.toml"
    base = (
        '[mqtt]\nserver_ca = "ca.pem"\ncert = "c.pem"\nkey = "k.pem"\n'
        '[keys]\nticket_key = "t.pem"\n'
    )
    path.write_text(base + '[alerts]\nwebhook_url = "http://alarm.example/hook"\n')
    refusal = "alerts.webhook_url: Value error, alerts.webhook_url must use https"
    with pytest.raises(ConfigError, match=re.escape(refusal)):
        load_central_config(path)
    path.write_text(base + '[alerts]\nwebhook_url = "https://alarm.example/hook"\n')
    with pytest.raises(ConfigError, match="webhook_url needs webhook_secret_file"):
        load_central_config(path)
    path.write_text(base + "[alerts]\ncheck_every_s = 0.5\nlead = 3\n")
    with pytest.raises(ConfigError) as err:
        load_central_config(path)
    assert "alerts.check_every_s" in str(err.value) and "alerts.lead: Extra inputs" in str(
        err.value
    )
    path.write_text(base)
    assert load_central_config(path).alerts == AlertSettings()


# -- the next scheduled check ------------------------------------------------------------------

TZ = ZoneInfo("Europe/Stockholm")


def at(day: int, hhmm: str) -> dt.datetime:
    hours, minutes = map(int, hhmm.split(":"))
    return dt.datetime(2025, 1, day, hours, minutes, tzinfo=TZ)


def minute(hhmm: str) -> int:
    hours, minutes = map(int, hhmm.split(":"))
    return hours * 60 + minutes


@pytest.mark.parametrize(
    ("schedule", "now", "expected"),
    [
        # a late check whose window is still open just before midnight
        ([("23:30", 30)], at(10, "23:50"), at(10, "23:30")),
        # ... and still open just after midnight: yesterday's check
        ([("23:45", 30)], at(11, "00:05"), at(10, "23:45")),
        # yesterday's window closed at midnight: the next one today
        ([("23:30", 30), ("01:00", 15)], at(11, "00:10"), at(11, "01:00")),
        # an early check seen from the evening before
        ([("00:15", 10)], at(10, "23:50"), at(11, "00:15")),
        # every check of today is over: tomorrow's first
        ([("01:00", 15), ("03:00", 15)], at(10, "22:00"), at(11, "01:00")),
        # the earliest of several
        ([("03:00", 15), ("01:00", 15)], at(10, "00:30"), at(10, "01:00")),
    ],
)
def test_next_check(
    schedule: list[tuple[str, int]], now: dt.datetime, expected: dt.datetime
) -> None:
    check = next_check([(minute(t), tol) for t, tol in schedule], now)
    assert check is not None
    assert check.at == expected
    assert check.end - check.at == check.at - check.start
    assert check.end >= now


def test_next_check_empty_schedule() -> None:
    assert next_check([], at(10, "12:00")) is None
