"""Roll-outs of a system update bundle, in stages: ``percent`` of the target units are ordered
first, the rest when staff say "all" (:meth:`Rollouts.order_all`), so a bad bundle reaches a few
homes and not the municipality.

Each target unit gets a signed update order (:mod:`vaka.provisioning.updates`), retained on its
``update`` channel: a unit that is offline gets it when it comes back. The units report each
step as an ``update`` event; :meth:`Rollouts.on_event_record` (an ingest hook) keeps the newest
step per unit and writes it to the audit trail (``update_ordered`` … ``update_running``,
``update_refused`` with the reason). A unit that says "ordered" again after it installed and
rebooted came back on its old system (boot counting went back): ``update_rolled_back``. A unit
whose new system ended its trial well says ``marked_good``: ``update_marked_good``, once, after
``running`` (the state stays ``running``). Once a
unit runs the ordered version, refused the order or rolled back, its retained order is cleared
(:meth:`Rollouts.run`) and the unit stops working on it: it does not install the same bundle
once more.
"""

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from joserfc.jwk import OKPKey
from pydantic import BaseModel
from sqlalchemy import insert, select, update
from sqlalchemy.engine import Engine

from vaka.central.audit.trail import AuditLog
from vaka.central.fleet.store import EventRecord, FleetStore
from vaka.central.storage.tables import rollout_units, rollouts
from vaka.central.updates.bundles import BundleShelf
from vaka.errors import ProvisioningError
from vaka.protocol.messages import UpdateMessage, UpdatePayload
from vaka.protocol.topics import Channel, check_device_id
from vaka.provisioning.updates import ORDER_TTL_S, sign_update_order

log = logging.getLogger(__name__)

#: ``await publish(device_id, channel, message)``: retained, to one unit
PublishRetained = Callable[[str, Channel, BaseModel], Awaitable[None]]
#: the steps a unit reports, in order (``refused`` and ``waiting`` may come at any point;
#: ``rolled_back``, with boot counting's cause, instead of ``running`` from a unit that came
#: back on its old system)
STEPS = (
    "ordered",
    "waiting",
    "downloaded",
    "refused",
    "installed",
    "rebooting",
    "running",
    "marked_good",
    "rolled_back",
)
#: the steps after which a unit's order is done with (``rolled_back`` is central's conclusion)
FINAL = ("refused", "running", "rolled_back")
#: a unit that says "ordered" again after these came back on its old system: boot counting
#: found the new one unhealthy and went back (the unit is a new process that got the retained
#: order again). Units that report ``rolled_back`` themselves say why; older ones do not.
CAME_BACK_AFTER = ("installed", "rebooting")
ROLLED_BACK = (
    "the unit came back on its previous system: the new one was not online within its health "
    "deadline and the unit went back to the old one by itself"
)
#: a unit's roll-out state stays ``running`` after ``marked_good`` (boot counting ended the
#: new system's trial): the reason says it, and that the step was audited already
MARKED_GOOD = "marked good: boot counting ended the new system's trial, it is kept"
#: ``await clear(device_id, channel)``: remove the retained message on a unit's channel
ClearRetained = Callable[[str, Channel], Awaitable[None]]


class RolloutRefused(ProvisioningError, ValueError):
    """A roll-out cannot be made or continued; the message says why."""


@dataclass(frozen=True)
class BundleSpec:
    """The bundle a roll-out installs: its version, hash and size, and a static URL (``None``:
    central serves it from its bundle directory)."""

    version: str
    sha256: str
    size: int
    url: str | None = None


def first_stage(units: list[str], percent: int) -> list[str]:
    """The units ordered first: ``percent`` of ``units`` (at least one), in id order."""
    ordered = sorted(units)
    return ordered[: max(1, math.ceil(len(ordered) * percent / 100))] if ordered else []


class Rollouts:
    """Roll-outs in the database; orders through ``publish``."""

    def __init__(
        self,
        engine: Engine,
        audit: AuditLog,
        store: FleetStore,
        shelf: BundleShelf,
        config_key: OKPKey | None,
        publish: PublishRetained,
        public_url: Callable[[], str],
        clear: ClearRetained | None = None,
    ) -> None:
        self.engine = engine
        self.audit = audit
        self.store = store
        self.shelf = shelf
        self.config_key = config_key
        self.publish = publish
        self.public_url = public_url
        self.clear = clear
        self._loop: asyncio.AbstractEventLoop | None = None
        self._done: asyncio.Queue[str] = asyncio.Queue(maxsize=10_000)

    def targets(self, units: list[str], profile: str | None) -> list[str]:
        """The units a roll-out is for: those named, or every registered unit of ``profile``."""
        if units:
            return sorted({check_device_id(u) for u in units})
        chosen = [u.device_id for u in self.store.units() if u.profile == profile]
        if not chosen:
            raise RolloutRefused(f"no registered unit has the profile {profile!r}")
        return sorted(chosen)

    async def create(
        self, actor: str, spec: BundleSpec, units: list[str], percent: int
    ) -> dict[str, Any]:
        """Make a roll-out for ``units`` and order its first stage."""
        if self.config_key is None:
            raise RolloutRefused("central has no config key ([keys] config_key): it cannot sign")
        url = spec.url
        if url is None:
            found = await asyncio.to_thread(self.shelf.find, spec.sha256)
            if found is None:
                where = self.shelf.directory or "no [updates] bundle_dir"
                raise RolloutRefused(
                    f"central has no bundle with SHA-256 {spec.sha256[:12]}… ({where}): copy "
                    "the bundle there, or give its URL"
                )
            if found.size != spec.size:
                raise RolloutRefused(f"the bundle is {found.size} bytes, not {spec.size}")
            url = f"{self.public_url().rstrip('/')}/api/unit/bundles/{spec.sha256}"
        first = set(first_stage(units, percent))
        rollout_id = await asyncio.to_thread(self._insert, actor, spec, url, units, first, percent)
        await asyncio.to_thread(
            self.audit.append,
            "update_rollout",
            actor=actor,
            rollout=rollout_id,
            version=spec.version,
            sha256=spec.sha256,
            units=len(units),
            percent=percent,
        )
        await self._order(rollout_id, sorted(first))
        return await asyncio.to_thread(self.status, rollout_id)

    def _insert(
        self,
        actor: str,
        spec: BundleSpec,
        url: str,
        units: list[str],
        first: set[str],
        percent: int,
    ) -> int:
        now = time.time()
        with self.engine.begin() as conn:
            result = conn.execute(
                insert(rollouts).values(
                    version=spec.version,
                    sha256=spec.sha256,
                    size=spec.size,
                    url=url,
                    percent=percent,
                    created_by=actor,
                    created_at=now,
                )
            )
            rollout_id = int(result.inserted_primary_key[0])  # type: ignore[index]
            conn.execute(
                insert(rollout_units),
                [
                    {
                        "rollout_id": rollout_id,
                        "device_id": unit,
                        "stage": 1 if unit in first else 2,
                        "state": "held",
                        "updated_at": now,
                    }
                    for unit in units
                ],
            )
        return rollout_id

    async def order_all(self, rollout_id: int, actor: str) -> dict[str, Any]:
        """Order the rest of the roll-out's units (the second stage)."""
        held = await asyncio.to_thread(self._held, rollout_id, actor)
        append = self.audit.append
        await asyncio.to_thread(
            append, "update_rollout_all", actor=actor, rollout=rollout_id, units=len(held)
        )
        await self._order(rollout_id, held)
        return await asyncio.to_thread(self.status, rollout_id)

    def _held(self, rollout_id: int, actor: str) -> list[str]:
        with self.engine.begin() as conn:
            row = conn.execute(select(rollouts).where(rollouts.c.rollout_id == rollout_id)).first()
            if row is None:
                raise RolloutRefused(f"no roll-out {rollout_id}")
            conn.execute(
                update(rollouts)
                .where(rollouts.c.rollout_id == rollout_id, rollouts.c.all_at.is_(None))
                .values(all_at=time.time())
            )
            held = conn.execute(
                select(rollout_units.c.device_id).where(
                    rollout_units.c.rollout_id == rollout_id, rollout_units.c.state == "held"
                )
            )
            return sorted(r[0] for r in held)

    async def _order(self, rollout_id: int, units: list[str]) -> None:
        assert self.config_key is not None
        row = await asyncio.to_thread(self._rollout, rollout_id)
        for unit in units:
            token = sign_update_order(
                unit, rollout_id, row["version"], row["url"], row["sha256"], row["size"],
                self.config_key, ORDER_TTL_S,
            )  # fmt: skip
            message = UpdateMessage(payload=UpdatePayload(order=token))
            await self.publish(unit, Channel.UPDATE, message)
            await asyncio.to_thread(self._set_state, rollout_id, unit, "ordered", None)

    def _rollout(self, rollout_id: int) -> dict[str, Any]:
        with self.engine.connect() as conn:
            row = conn.execute(select(rollouts).where(rollouts.c.rollout_id == rollout_id)).first()
        if row is None:
            raise RolloutRefused(f"no roll-out {rollout_id}")
        return dict(row._mapping)

    def _state(self, rollout_id: int, unit: str) -> str | None:
        with self.engine.connect() as conn:
            return conn.execute(
                select(rollout_units.c.state).where(
                    rollout_units.c.rollout_id == rollout_id, rollout_units.c.device_id == unit
                )
            ).scalar_one_or_none()

    def _set_state(self, rollout_id: int, unit: str, state: str, reason: str | None) -> bool:
        with self.engine.begin() as conn:
            done = conn.execute(
                update(rollout_units)
                .where(rollout_units.c.rollout_id == rollout_id, rollout_units.c.device_id == unit)
                .values(state=state, reason=reason, updated_at=time.time())
            )
            return bool(done.rowcount)

    def status(self, rollout_id: int | None = None) -> dict[str, Any]:
        """One roll-out with its units' states, or (``None``) every roll-out in short."""
        with self.engine.connect() as conn:
            query = select(rollouts).order_by(rollouts.c.rollout_id)
            if rollout_id is not None:
                query = query.where(rollouts.c.rollout_id == rollout_id)
            found = [dict(r._mapping) for r in conn.execute(query)]
            of_units = select(rollout_units).order_by(rollout_units.c.device_id)
            if rollout_id is not None:
                of_units = of_units.where(rollout_units.c.rollout_id == rollout_id)
            states = conn.execute(of_units).fetchall()
        if rollout_id is not None and not found:
            raise RolloutRefused(f"no roll-out {rollout_id}")
        by_rollout: dict[int, list[dict[str, Any]]] = {}
        for s in states:
            by_rollout.setdefault(s.rollout_id, []).append(
                {"unit": s.device_id, "stage": s.stage, "state": s.state, "reason": s.reason}
            )
        out = []
        for r in found:
            units = by_rollout.get(r["rollout_id"], [])
            counts: dict[str, int] = {}
            for u in units:
                counts[u["state"]] = counts.get(u["state"], 0) + 1
            out.append({**r, "counts": counts, "units": units})
        return out[0] if rollout_id is not None else {"rollouts": out}

    def versions(self) -> list[dict[str, Any]]:
        """The fleet's versions: per unit, the root it runs, its slot and its agent."""
        rows = []
        for u in self.store.units():
            health = u.health or {}
            rows.append(
                {
                    "unit": u.device_id,
                    "profile": u.profile,
                    "system_version": health.get("system_version"),
                    "slot": health.get("slot"),
                    "agent_version": health.get("agent_version") or u.agent_version,
                    "status": u.presence.status,
                }
            )
        return sorted(rows, key=lambda r: r["unit"])

    async def run(self) -> None:
        """Clear the retained order of each unit that has finished with it, until cancelled."""
        self._loop = asyncio.get_running_loop()
        while True:
            unit = await self._done.get()
            if self.clear is None:
                continue
            try:
                await self.clear(unit, Channel.UPDATE)
            except Exception as err:  # the unit would only report its step once more
                log.warning("the update order of %s stays retained: %s", unit, err)

    def _finished(self, unit: str) -> None:
        if not self._done.full():
            self._done.put_nowait(unit)

    def on_event_record(self, record: EventRecord) -> None:
        """An ingest hook: a unit's ``update`` step, kept per roll-out and audited."""
        if record.kind != "update":
            return
        d = record.detail
        step, rollout = d.get("step"), d.get("rollout")
        if step not in STEPS:
            log.warning("unit %s sent an update event without a step: %s", record.device_id, d)
            return
        reason = d.get("reason")
        reason = str(reason)[:200] if reason is not None else None
        if isinstance(rollout, int) and not isinstance(rollout, bool):
            if step in ("running", "marked_good") and self._said_again(rollout, record, step):
                return
            if step == "ordered" and self._state(rollout, record.device_id) in CAME_BACK_AFTER:
                step, reason = "rolled_back", ROLLED_BACK
                d = {**d, "reason": reason}
            elif step == "rolled_back":
                reason = f"the unit came back on its previous system: {reason or 'no cause given'}"
                reason = reason[:200]
                d = {**d, "reason": reason}
            if step == "marked_good":  # the state stays running; the reason says it
                reason = MARKED_GOOD
                d = {**d, "reason": reason}
                step_state = "running"
            else:
                step_state = str(step)
            self._set_state(rollout, record.device_id, step_state, reason)
            if step in FINAL and self._loop is not None:
                self._loop.call_soon_threadsafe(self._finished, record.device_id)
        elif step == "marked_good":
            return  # belongs to no roll-out: nothing to conclude, nothing to audit
        detail = {k: v for k, v in d.items() if k != "step"}
        self.audit.append(f"update_{step}", unit=record.device_id, ts=record.received_at, **detail)

    def _said_again(self, rollout_id: int, record: EventRecord, step: str) -> bool:
        """``running`` or ``marked_good`` said once more (an agent restarted with the order
        still retained): audited once only. ``marked_good`` counts only after ``running``.
        Central clears the order again after a repeated ``running``."""
        with self.engine.connect() as conn:
            row = conn.execute(
                select(rollout_units.c.state, rollout_units.c.reason).where(
                    rollout_units.c.rollout_id == rollout_id,
                    rollout_units.c.device_id == record.device_id,
                )
            ).first()
        if row is None or row.state != "running":
            return step == "marked_good"
        if step == "running" and self._loop is not None:
            self._loop.call_soon_threadsafe(self._finished, record.device_id)
        return step == "running" or row.reason == MARKED_GOOD
