"""Rate limits per client address, counted in the database.

Account lock-out (:mod:`vaka.central.access.accounts`) stops guessing one account's password;
it does nothing against one address trying a password on many accounts, or flooding the log-in
and enrolment endpoints. Here each counted event is a row in ``rate_hits``: a limit is a number
of rows for a ``(scope, key)`` within a sliding window. The rows live in the database, not in the
process, so that every central instance behind a load balancer sees the same count (DESIGN:
nothing a second instance would need is kept in memory), and a restart forgives nothing.
Old rows are deleted as new ones are counted.
"""

import time
from dataclasses import dataclass

from sqlalchemy import delete, func, select
from sqlalchemy.engine import Engine

from vaka.central.access.second_factor import AccessRefused
from vaka.central.settings.config import StaffAccessSection
from vaka.central.storage.tables import rate_hits

#: the longest any one answer to a failed log-in is held back
MAX_DELAY_S = 5.0


class RateLimited(AccessRefused):
    """Too many requests from one address; ``retry_after`` is how long to wait (seconds)."""

    def __init__(self, reason: str, retry_after: float) -> None:
        super().__init__(reason, 429)
        self.retry_after = max(1, int(retry_after + 0.999))


@dataclass(frozen=True)
class Limit:
    """At most ``count`` hits of ``scope`` per key within ``window_s`` seconds."""

    scope: str
    count: int
    window_s: float


class RateCounter:
    """Sliding-window counts of hits per ``(scope, key)``. Blocking: call from a worker thread."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def hits(self, scope: str, key: str, window_s: float, now: float) -> tuple[int, float | None]:
        """How many hits within the window, and when the oldest of them was."""
        with self.engine.connect() as conn:
            row = conn.execute(
                select(func.count(), func.min(rate_hits.c.ts)).where(
                    rate_hits.c.scope == scope,
                    rate_hits.c.key == key,
                    rate_hits.c.ts > now - window_s,
                )
            ).one()
        return int(row[0]), None if row[1] is None else float(row[1])

    def add(self, scope: str, key: str, window_s: float, now: float) -> None:
        """Count one hit (and forget this scope's hits older than the window, whoever's, so
        that addresses that stopped leave nothing behind)."""
        with self.engine.begin() as conn:
            conn.execute(
                delete(rate_hits).where(
                    rate_hits.c.scope == scope, rate_hits.c.ts <= now - window_s
                )
            )
            conn.execute(rate_hits.insert().values(scope=scope, key=key, ts=now))

    def take(self, limit: Limit, key: str, what: str, now: float | None = None) -> None:
        """Count a hit of ``limit`` for ``key``, or :class:`RateLimited` if it is used up."""
        now = time.time() if now is None else now
        count, oldest = self.hits(limit.scope, key, limit.window_s, now)
        if count >= limit.count:
            wait = (oldest or now) + limit.window_s - now
            raise RateLimited(
                f"too many {what} from {key}: at most {limit.count} in "
                f"{limit.window_s:.0f} s; try again in {max(1, round(wait))} s",
                wait,
            )
        self.add(limit.scope, key, limit.window_s, now)


class AddressGuard:
    """What one client address may still try: failed log-ins slow it, then block it, and
    log-in and enrolment requests are bounded per minute. Blocking."""

    FAILED = "login_failed"

    def __init__(self, engine: Engine, policy: StaffAccessSection) -> None:
        self.counter = RateCounter(engine)
        self.policy = policy
        self.login = Limit("login", policy.login_per_minute, 60)
        self.enrolment = Limit("enrolment", policy.enrolment_per_minute, 60)

    def before_login(self, address: str, now: float | None = None) -> None:
        """:class:`RateLimited` if ``address`` is blocked or over its log-in rate."""
        now = time.time() if now is None else now
        p = self.policy
        failures, oldest = self.counter.hits(self.FAILED, address, p.address_window_s, now)
        if failures >= p.address_block_after:
            wait = (oldest or now) + p.address_window_s - now
            raise RateLimited(
                f"too many failed log-ins from {address}: try again in {max(1, round(wait))} s",
                wait,
            )
        self.counter.take(self.login, address, "log-in requests", now)

    def failed_login(self, address: str, now: float | None = None) -> float:
        """Count a failed log-in from ``address``; how long to hold its answer back (s)."""
        now = time.time() if now is None else now
        p = self.policy
        self.counter.add(self.FAILED, address, p.address_window_s, now)
        failures, _ = self.counter.hits(self.FAILED, address, p.address_window_s, now)
        over = failures - p.address_slow_after
        return 0.0 if over <= 0 else min(MAX_DELAY_S, over * p.address_delay_s)

    def enrolment_action(self, address: str, now: float | None = None) -> None:
        """Count an enrolment request from ``address``, or :class:`RateLimited`."""
        self.counter.take(self.enrolment, address, "enrolment requests", now)
