"""Events for an external notifier (the alarm centre, a duty phone gateway) over a signed webhook.

:meth:`WebhookNotifier.notify` puts a JSON event ``{"kind", "id", "at", "detail"}`` on a bounded
in-memory queue and returns at once; a sender task (:meth:`WebhookNotifier.run`) POSTs the events
one at a time, in order, with the header ``X-Vaka-Signature: sha256=<hex HMAC-SHA256 of the
body>`` keyed by a shared secret from a file. Failures are retried with exponential backoff and
jitter up to ``max_attempts``; every delivery is audited ``notify_sent``, every give-up
``notify_failed`` with the reason. When the queue is full the oldest event is dropped with a
warning. Delivery is at least once: a receiver deduplicates by ``id``. Queued events live only in
this process (see docs/alerts.md).

:class:`NullNotifier` stands in when no webhook is configured; it only logs.
"""

import asyncio
import datetime as dt
import hashlib
import hmac
import json
import logging
import random
import re
import stat
import uuid
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

import aiohttp

from vaka.central.audit.trail import AuditLog
from vaka.central.settings.alerts import AlertSettings, check_webhook_url
from vaka.errors import ConfigError
from vaka.protocol.backoff import backoff_delay

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Vaka-Signature"
KIND_PATTERN = "^[a-z][a-z0-9_]{0,47}$"
_KIND = re.compile(KIND_PATTERN)


class Notifier(Protocol):
    """What central's parts call to tell the outside world about something."""

    async def notify(self, kind: str, detail: dict[str, Any]) -> None:
        """Queue one event; never blocks on the network."""

    async def run(self) -> None:
        """Deliver queued events until cancelled."""


def redact_url(url: str) -> str:
    """``url`` without user info or query, for logs."""
    parts = urlsplit(url)
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{parts.hostname}{port}{parts.path}"


def read_secret(path: Path) -> bytes:
    """The webhook secret in ``path`` (surrounding whitespace stripped); warns unless mode 0600."""
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
        secret = path.read_bytes().strip()
    except OSError as err:
        raise ConfigError(
            f"cannot read alerts.webhook_secret_file {path}: {err.strerror}"
        ) from None
    if not secret:
        raise ConfigError(f"alerts.webhook_secret_file {path} is empty")
    if len(secret) < 16:
        raise ConfigError(
            f"alerts.webhook_secret_file {path} holds a secret of {len(secret)} bytes: "
            "use at least 16 (e.g. `openssl rand -hex 32`)"
        )
    if mode & 0o077:
        log.warning(
            "alerts.webhook_secret_file %s has mode %04o: others can read it (expected 0600)",
            path,
            mode,
        )
    return secret


def sign(secret: bytes, body: bytes) -> str:
    """The ``X-Vaka-Signature`` value for ``body``."""
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def make_event(kind: str, detail: dict[str, Any]) -> dict[str, Any]:
    """A notifier event: kind, a fresh id, the time (ISO 8601, UTC) and the detail."""
    if not isinstance(kind, str) or not _KIND.fullmatch(kind):
        raise ValueError(f"notification kind {kind!r} must match {KIND_PATTERN}")
    at = dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return {"kind": kind, "id": str(uuid.uuid4()), "at": at, "detail": detail}


def encode_event(event: dict[str, Any]) -> bytes:
    """The exact bytes POSTed (and signed)."""
    try:
        return json.dumps(event, sort_keys=True, separators=(",", ":")).encode()
    except (TypeError, ValueError) as err:
        raise ValueError(f"notification detail is not JSON: {err}") from None


class NullNotifier:
    """Used when no webhook is configured: events are only logged."""

    async def notify(self, kind: str, detail: dict[str, Any]) -> None:
        """Log the event at info level."""
        event = make_event(kind, detail)
        encode_event(event)
        log.info("notification %s (no webhook configured): %s", kind, detail)

    async def run(self) -> None:
        """Nothing to deliver."""


@dataclass(frozen=True)
class _Queued:
    event: dict[str, Any]
    body: bytes


class _Undelivered(Exception):
    def __init__(self, reason: str, retry: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry = retry


class WebhookNotifier:
    """Delivers events to one webhook URL, signed, retried, audited."""

    def __init__(
        self,
        url: str,
        secret: bytes,
        audit: AuditLog | None = None,
        *,
        max_attempts: int = 5,
        queue_size: int = 1000,
        timeout_s: float = 5.0,
        retry_min_s: float = 1.0,
        retry_max_s: float = 60.0,
        rng: random.Random | None = None,
    ) -> None:
        self.url = check_webhook_url(url)
        if not secret:
            raise ConfigError("the webhook secret is empty")
        if max_attempts < 1 or queue_size < 1:
            raise ConfigError("max_attempts and queue_size must be at least 1")
        self._secret = secret
        self._audit = audit
        self.max_attempts = max_attempts
        self.timeout_s = timeout_s
        self.retry_min_s = retry_min_s
        self.retry_max_s = retry_max_s
        self._rng = rng
        self._queue: deque[_Queued] = deque()
        self._queue_size = queue_size
        self._ready = asyncio.Event()
        #: counters for stats and tests
        self.sent = 0
        self.failed = 0
        self.dropped = 0

    @property
    def pending(self) -> int:
        """Events queued and not yet taken by the sender."""
        return len(self._queue)

    async def notify(self, kind: str, detail: dict[str, Any]) -> None:
        """Queue one event (dropping the oldest when full); raises ``ValueError`` on bad input."""
        event = make_event(kind, detail)
        body = encode_event(event)
        if len(self._queue) >= self._queue_size:
            old = self._queue.popleft()
            self.dropped += 1
            log.warning(
                "notification queue full (%d): dropped the oldest event %s %s",
                self._queue_size,
                old.event["kind"],
                old.event["id"],
            )
        self._queue.append(_Queued(event, body))
        self._ready.set()

    async def run(self) -> None:
        """Deliver events until cancelled (what is still queued then is logged and lost)."""
        timeout = aiohttp.ClientTimeout(total=self.timeout_s)
        try:
            async with aiohttp.ClientSession(timeout=timeout) as session:
                while True:
                    while not self._queue:
                        self._ready.clear()
                        await self._ready.wait()
                    item = self._queue.popleft()
                    await self._deliver(session, item)
        except asyncio.CancelledError:
            if self._queue:
                log.warning("stopping with %d notifications undelivered", len(self._queue))
            raise

    async def _deliver(self, session: aiohttp.ClientSession, item: _Queued) -> None:
        event = item.event
        reason = "not attempted"
        for attempt in range(1, self.max_attempts + 1):
            try:
                status = await self._post(session, item.body)
            except _Undelivered as err:
                reason = err.reason
                log.warning(
                    "notification %s %s attempt %d/%d to %s failed: %s",
                    event["kind"],
                    event["id"],
                    attempt,
                    self.max_attempts,
                    redact_url(self.url),
                    reason,
                )
                if not err.retry or attempt == self.max_attempts:
                    break
                await asyncio.sleep(
                    backoff_delay(attempt - 1, self.retry_min_s, self.retry_max_s, self._rng)
                )
                continue
            log.info("notification %s %s delivered (HTTP %d)", event["kind"], event["id"], status)
            await self._record("notify_sent", event, attempts=attempt, http_status=status)
            self.sent += 1  # counted once recorded, so that the count implies the audit entry
            return
        log.error("notification %s %s not delivered: %s", event["kind"], event["id"], reason)
        await self._record("notify_failed", event, attempts=attempt, reason=reason)
        self.failed += 1

    async def _post(self, session: aiohttp.ClientSession, body: bytes) -> int:
        headers = {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: sign(self._secret, body),
        }
        try:
            async with session.post(self.url, data=body, headers=headers) as response:
                await response.read()
                status = response.status
        except TimeoutError:
            raise _Undelivered(f"no answer within {self.timeout_s:g} s", True) from None
        except aiohttp.ClientError as err:
            raise _Undelivered(f"{type(err).__name__}: {err}", True) from None
        if 200 <= status < 300:
            return status
        # Client errors other than timeout/rate limit will not change by retrying.
        retry = status >= 500 or status in (408, 429)
        raise _Undelivered(f"HTTP {status}", retry)

    async def _record(self, kind: str, event: dict[str, Any], **detail: Any) -> None:
        if self._audit is None:
            return
        unit = event["detail"].get("unit")
        try:
            await asyncio.to_thread(
                self._audit.append,
                kind,
                unit=unit if isinstance(unit, str) else None,
                event=event["kind"],
                event_id=event["id"],
                **detail,
            )
        except Exception:  # the sender must outlive a database hiccup
            log.exception("could not audit %s for notification %s", kind, event["id"])


def make_notifier(
    url: str | None,
    secret_file: Path | None,
    audit: AuditLog | None,
    *,
    max_attempts: int = 5,
    queue_size: int = 1000,
    retry_min_s: float = 1.0,
    retry_max_s: float = 60.0,
) -> WebhookNotifier | NullNotifier:
    """A :class:`WebhookNotifier` for ``url``, or a :class:`NullNotifier` when there is none."""
    if url is None:
        log.info("no alerts.webhook_url configured: notifications are only logged")
        return NullNotifier()
    if secret_file is None:
        raise ConfigError("alerts.webhook_url needs alerts.webhook_secret_file (to sign events)")
    notifier = WebhookNotifier(
        url,
        read_secret(secret_file),
        audit,
        max_attempts=max_attempts,
        queue_size=queue_size,
        retry_min_s=retry_min_s,
        retry_max_s=retry_max_s,
    )
    log.info("notifications go to %s", redact_url(url))
    return notifier


def notifier_for(settings: AlertSettings, audit: AuditLog) -> WebhookNotifier | NullNotifier:
    """The notifier ``[alerts]`` describes (a webhook, or one that only logs)."""
    return make_notifier(
        settings.webhook_url,
        settings.webhook_secret_file,
        audit,
        max_attempts=settings.max_attempts,
        queue_size=settings.queue_size,
        retry_min_s=settings.retry_min_s,
        retry_max_s=settings.retry_max_s,
    )
