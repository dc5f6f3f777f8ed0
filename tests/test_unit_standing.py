"""A unit's lifecycle rules on their own (one database shared by two central instances, a
controlled clock): revoking or decommissioning closes the unit's open alerts exactly once, with
the reason, audited; no alert is raised for it afterwards; suspending pauses alerts until it is
resumed; the moves the rules forbid are refused; an enrolling unit becomes active when it first
connects; the health history is a bounded ring."""

import asyncio
import datetime as dt
import threading
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy.engine import Engine

from tests.test_alerts import SOON, Recorder, directory_spec, watch
from vaka.central.alerts.watch import AlertWatch
from vaka.central.audit.trail import AuditLog
from vaka.central.directory.directory import Directory
from vaka.central.directory.spec import ScheduleSpec
from vaka.central.fleet.lifecycle import Lifecycle, LifecycleRefused, LifecycleStore
from vaka.central.fleet.store import HealthUpdate, SqlFleetStore
from vaka.central.settings.fleet import Thresholds
from vaka.central.storage.background import THREAD_NAME, Bookkeeping, Gathered
from vaka.central.storage.engine import open_engine
from vaka.central.units.standing import UnitStanding

CHECK = dt.datetime(2025, 1, 11, 0, 10, tzinfo=ZoneInfo("Europe/Stockholm")).timestamp()
BEFORE = CHECK - 50 * 60  # within the lead time: a unit that is down raises an alert


def scene(db_url: str) -> tuple[Engine, AlertWatch, AlertWatch, Recorder]:
    """Two instances' watches on one database; SOON never connected and is checked at 00:10."""
    engine = open_engine(db_url)
    spec = directory_spec().model_copy(
        update={"schedule": [ScheduleSpec(citizen="c-1001", times=["00:10"], tolerance_min=20)]}
    )
    Directory(engine).load(spec)
    recorder = Recorder()
    first, second = watch(engine, recorder), watch(engine, recorder)
    for w in (first, second):
        w._clock = lambda: BEFORE + 60
    return engine, first, second, recorder


def standing(engine: Engine, w: AlertWatch) -> UnitStanding:
    return UnitStanding(LifecycleStore(engine), AuditLog(engine), w.close_for_unit)


def kinds(engine: Engine, prefix: str) -> list[str]:
    return [e.kind for e in AuditLog(engine).entries() if e.kind.startswith(prefix)]


@pytest.mark.parametrize("state", [Lifecycle.REVOKED, Lifecycle.DECOMMISSIONED])
async def test_leaving_service_closes_open_alerts_once_and_no_new_ones_come(
    db_url: str, state: Lifecycle
) -> None:
    engine, first, second, recorder = scene(db_url)
    await first.check_once(BEFORE)
    (alert,) = first.store.open_alerts()
    assert alert.unit == SOON

    # Both instances take the same change at once: one moves the unit, one closes the alert.
    one, two = standing(engine, first), standing(engine, second)
    results = await asyncio.gather(
        one.move(SOON, state, "t-tech", "stolen from the home"),
        two.move(SOON, state, "t-tech", "stolen from the home"),
    )
    assert sorted(r["alerts_closed"] for r in results) == [0, 1]
    assert first.store.open_alerts() == []
    (closed,) = first.store.recent()
    assert closed.cleared_reason == f"unit {state.value}: stolen from the home"
    cleared = [e for e in AuditLog(engine).entries() if e.kind == "alert_cleared"]
    assert [(e.unit, e.actor, e.detail["reason"]) for e in cleared] == [
        (SOON, "t-tech", f"unit {state.value}: stolen from the home")
    ]

    # Rounds of both watches later, still down before its check: no new alert, nothing notified.
    for w in (first, second, first):
        await w.check_once(BEFORE + 120)
    assert first.store.open_alerts() == []
    assert kinds(engine, "alert") == ["alert_raised", "alert_cleared"]
    assert [k for k, _ in recorder.events] == ["unit_down_before_check"]
    assert await one.close_alerts(SOON, "again", "t-tech") == 0
    assert LifecycleStore(engine).get(SOON).state is state


async def test_the_watch_closes_alerts_a_change_left_open(db_url: str) -> None:
    """A change whose alert closing failed (the instance died in between): the next round
    closes the alert with the lifecycle state, once."""
    engine, first, second, _ = scene(db_url)
    await first.check_once(BEFORE)
    LifecycleStore(engine).move(SOON, Lifecycle.REVOKED, actor="t-tech", reason="lost")
    await asyncio.gather(first.check_once(BEFORE + 60), second.check_once(BEFORE + 60))
    (closed,) = first.store.recent()
    assert closed.cleared_reason == "unit revoked"
    assert kinds(engine, "alert") == ["alert_raised", "alert_cleared"]


async def test_a_suspended_unit_raises_no_alert_until_it_is_resumed(db_url: str) -> None:
    engine, first, _, recorder = scene(db_url)
    await first.check_once(BEFORE)
    units = standing(engine, first)
    result = await units.suspend(SOON, "t-tech", "in hospital")
    assert result["alerts_closed"] == 1 and result["was"] == "active"
    await first.check_once(BEFORE + 60)
    assert first.store.open_alerts() == []
    # Suspending twice is refused; resuming brings the alerts back.
    with pytest.raises(LifecycleRefused, match="unit u-soon is suspended already"):
        await units.suspend(SOON, "t-tech", "again")
    await units.resume(SOON, "t-tech", "home again")
    await first.check_once(BEFORE + 120)
    (again,) = first.store.open_alerts()
    assert again.unit == SOON
    assert kinds(engine, "unit_") == ["unit_suspended", "unit_resumed"]
    assert [k for k, _ in recorder.events] == ["unit_down_before_check"] * 2


def test_the_rules_refuse_what_a_state_cannot_become(db_url: str) -> None:
    store = LifecycleStore(open_engine(db_url))
    assert store.get("u-new").state is Lifecycle.ACTIVE and store.get("u-new").since is None
    store.move("u-new", Lifecycle.DECOMMISSIONED, actor="t-tech", reason="gone")
    for refused in (Lifecycle.ACTIVE, Lifecycle.SUSPENDED, Lifecycle.REVOKED):
        with pytest.raises(LifecycleRefused, match="is decommissioned: it cannot be made"):
            store.move("u-new", refused, actor="t-tech", reason="no")
    # Back through enrolment: approving a new code makes it enrolling, connecting active.
    store.move("u-new", Lifecycle.ENROLLING, actor="t-tech", reason="code ABCDE-FGH23")
    assert store.activate("u-new") is True
    assert store.activate("u-new") is False  # once
    record = store.get("u-new")
    assert record.state is Lifecycle.ACTIVE and record.reason is None and record.actor is None


async def test_an_enrolling_unit_becomes_active_on_its_first_connection(db_url: str) -> None:
    engine, first, _, _ = scene(db_url)
    units = standing(engine, first)
    await units.move("u-fresh", Lifecycle.ENROLLING, "t-tech", "code ABCDE-FGH23")
    units.on_unit_online("u-fresh")
    units.on_unit_online("u-fresh")  # a second birth changes nothing
    while units._tasks:
        await asyncio.sleep(0.01)
    assert (await units.get("u-fresh")).state is Lifecycle.ACTIVE
    assert kinds(engine, "unit_activated") == ["unit_activated"]


def test_health_history_is_a_ring_of_one_sample_per_period(db_url: str) -> None:
    settings = Thresholds(health_history_period_s=60, health_history_slots=3)
    store = SqlFleetStore(db_url, settings)
    t0 = 1_700_000_000.0 - 1_700_000_000.0 % 60
    for i in range(10):  # two samples a minute for five minutes
        at = t0 + 30 * i
        store.put_health([HealthUpdate("u-cam", at, at, {"uptime_s": i})])
    kept = store.health_history("u-cam")
    assert [h.payload["uptime_s"] for h in kept] == [9, 7, 5]  # the newest of each minute
    assert store.health_history("u-other") == []


def test_health_moves_last_seen_at_most_once_a_minute(db_url: str) -> None:
    store = SqlFleetStore(db_url)
    t0 = 1_700_000_000.0
    store.put_health([HealthUpdate("u-new", t0, t0, {"uptime_s": 1})])
    first = store.unit("u-new")
    assert first is not None  # known from its health alone, its birth missed
    assert first.last_seen == t0
    store.put_health([HealthUpdate("u-new", t0 + 30, t0 + 30, {"uptime_s": 31})])
    unit = store.unit("u-new")
    assert unit is not None and unit.last_seen == t0  # within the minute: not moved
    assert unit.health == {"uptime_s": 31} and unit.health_received_at == t0 + 30
    store.put_health([HealthUpdate("u-new", t0 + 61, t0 + 61, {"uptime_s": 62})])
    unit = store.unit("u-new")
    assert unit is not None and unit.last_seen == t0 + 61


def test_two_instances_keep_one_ring_of_the_newest_sample_per_period(db_url: str) -> None:
    settings = Thresholds(health_history_period_s=60, health_history_slots=3)
    first, second = SqlFleetStore(db_url, settings), SqlFleetStore(db_url, settings)
    t0 = 1_700_000_000.0 - 1_700_000_000.0 % 60
    for i in range(10):  # two samples a minute, taken by the instances in turn
        at = t0 + 30 * i
        (first if i % 2 == 0 else second).put_health([HealthUpdate("u-cam", at, at, {"n": i})])
    for store in (first, second):
        assert [h.payload["n"] for h in store.health_history("u-cam")] == [9, 7, 5]


class _SlowActivation:
    """A lifecycle store whose ``activate_many`` waits until released, counting who runs it
    where, how often and for how many units."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.lock = threading.Lock()
        self.running = self.most = self.done = self.calls = 0
        self.threads: set[str] = set()

    def activate_many(self, units: list[str]) -> dict[str, bool]:
        with self.lock:
            self.running += 1
            self.calls += 1
            self.most = max(self.most, self.running)
            self.threads.add(threading.current_thread().name)
        self.release.wait(30)
        with self.lock:
            self.running -= 1
            self.done += len(units)
        return {}


async def test_units_coming_online_by_the_thousand_leave_the_default_executor_free(
    db_url: str,
) -> None:
    """A restart hands central every unit's "online" at once; their activations wait their turn
    on one thread of their own, gathered into a statement or two, and a night check's permission
    check (on asyncio's default executor) is not queued behind them."""
    engine, first, _, _ = scene(db_url)
    store = _SlowActivation()
    unit_standing = UnitStanding(store, AuditLog(engine), first.close_for_unit)  # type: ignore[arg-type]
    try:
        for n in range(200):  # far more than the default executor's threads
            unit_standing.on_unit_online(f"u-{n:04d}")
        # Every default-executor thread would be waiting in activate() if the activations ran
        # there; this would then never come back.
        assert await asyncio.wait_for(asyncio.to_thread(lambda: "answered"), 20) == "answered"
        assert store.done == 0  # the first activation still holds its thread
    finally:
        store.release.set()
    for _ in range(600):
        if store.done == 200:
            break
        await asyncio.sleep(0.05)
    assert store.done == 200
    assert store.most == 1, "activations ran side by side"
    assert store.calls <= 2, f"200 units in {store.calls} statements"
    (thread,) = store.threads
    assert thread.startswith(THREAD_NAME)
    unit_standing.bookkeeping.close()


async def test_units_asked_about_together_go_to_the_database_in_one_call() -> None:
    """What units ask while the bookkeeping thread is busy (or in one turn of the loop) goes in
    one call; a unit asked twice gets the answer once; a failure reaches every caller."""
    calls: list[list[str]] = []

    def many(units: list[str]) -> dict[str, str]:
        calls.append(units)
        if "u-bad" in units:
            raise RuntimeError("the database is away")
        return {unit: unit.upper() for unit in units if unit != "u-none"}

    bookkeeping = Bookkeeping()
    gathered = Gathered(bookkeeping, many, "-")
    try:
        answers = await asyncio.gather(*(gathered(u) for u in ["u-a", "u-b", "u-a", "u-none"]))
        assert answers == ["U-A", "U-B", "-", "-"]
        assert calls == [["u-a", "u-b", "u-none"]]
        failed = await asyncio.gather(gathered("u-c"), gathered("u-bad"), return_exceptions=True)
        assert [str(f) for f in failed] == ["the database is away"] * 2
        assert await gathered("u-d") == "U-D"  # and the next ones are asked again
        assert gathered.calls == 3
    finally:
        bookkeeping.close()
