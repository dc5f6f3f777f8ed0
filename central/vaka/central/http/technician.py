"""Technician-facing HTTP: enrolment approval, config pushes, and a unit's lifecycle (suspend,
resume, revoke, re-enrol, decommission)."""

import asyncio
import time
from typing import Literal, TypeVar

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from vaka.central.access.throttle import RateLimited
from vaka.central.directory.directory import StaffMember
from vaka.central.http.auth import authenticate, client_address, rate_limited
from vaka.central.http.body import json_data
from vaka.central.http.deps import deps
from vaka.central.http.errors import json_error
from vaka.central.units.config_push import (
    UnknownUnit,
    WrongProfile,
    build_bundle,
    check_profile,
    push_config,
)
from vaka.central.units.enrolment import EnrolmentRefused, UnknownCitizen, unknown_citizen
from vaka.central.units.provisioner import Provisioner
from vaka.errors import BadTopic, ProvisioningError
from vaka.protocol.enrolment import display_code, normalise_code
from vaka.protocol.ice import IceServer
from vaka.protocol.messages import CommandMessage, CommandPayload, describe_problems
from vaka.protocol.topics import Channel, check_device_id
from vaka.provisioning.bundles import (
    AutoAnswerRule,
    BadBundle,
    ClockTime,
    PhoneNumber,
)
from vaka.provisioning.orders import sign_order

TECHNICIAN_ROLES = frozenset({"technician", "administrator"})


class RevokeRequest(BaseModel):
    """``POST /api/units/{id}/revoke`` body."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    reason: str = Field(min_length=3, max_length=200)


class ApproveRequest(BaseModel):
    """``POST /api/enrolments/{code}/approve`` body."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    profile: Literal["tv", "nightcam"]
    citizen: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{1,62}$")
    group: str | None = Field(default=None, pattern=r"^[a-z0-9][a-z0-9-]{1,62}$")
    unit_id: str | None = None
    replaces: str | None = Field(default=None, max_length=64)  # the unit whose card it replaces
    #: make ``citizen`` if the directory has no such pseudonym (else that is refused: a typo)
    create_citizen: bool = False


async def _technician(request: web.Request, what: str) -> StaffMember:
    return await authenticate(request, TECHNICIAN_ROLES, action=what)


def _provisioner(request: web.Request) -> Provisioner:
    provisioner = deps(request).provisioner
    if provisioner is None:
        raise json_error(409, "central has no [pki] section: it cannot provision units")
    return provisioner


async def list_enrolments(request: web.Request) -> web.Response:
    """``GET /api/enrolments``: units waiting with a code."""
    await _technician(request, "see enrolments")
    pending = await asyncio.to_thread(_provisioner(request).queue.pending)
    return web.json_response(
        {
            "pending": [
                {
                    "code": display_code(e.code),
                    "profile": e.profile,
                    "agent_version": e.agent_version,
                    "first_seen": e.first_seen,
                    "last_seen": e.last_seen,
                }
                for e in pending
            ]
        }
    )


async def approve(request: web.Request) -> web.Response:
    """``POST /api/enrolments/{code}/approve``: sign the unit's certificate and assign it
    (bounded per client address: ``[staff_access] enrolment_per_minute``)."""
    try:
        await asyncio.to_thread(deps(request).guard.enrolment_action, client_address(request))
    except RateLimited as err:
        raise rate_limited(err) from None
    member = await _technician(request, "approve enrolments")
    data = await json_data(request, "approval")
    try:
        code = normalise_code(request.match_info["code"])
        body = ApproveRequest.model_validate(data)
    except BadTopic as err:
        raise json_error(400, str(err)) from None
    except ValidationError as err:
        fields = ", ".join(".".join(str(p) for p in e["loc"]) for e in err.errors())
        raise json_error(400, f"invalid approval: {fields}") from None
    try:
        result = await _provisioner(request).approve(
            code,
            body.profile,
            body.citizen,
            body.group,
            member.staff_id,
            body.unit_id,
            body.replaces,
            create_citizen=body.create_citizen,
        )
    except UnknownCitizen as err:
        raise json_error(404, str(err)) from None
    except EnrolmentRefused as err:
        status = 404 if str(err).startswith("no unit is waiting") else 409
        raise json_error(status, str(err)) from None
    return web.json_response(result)


M = TypeVar("M", bound=BaseModel)


async def _unit_request(
    request: web.Request, model: type[M], what: str
) -> tuple[StaffMember, str, M]:
    """The technician, the unit id from the path and the validated body, or a 4xx."""
    member = await _technician(request, what)
    unit = request.match_info["id"]
    data = await json_data(request, "request", empty_ok=True)
    try:
        check_device_id(unit)
        body = model.model_validate(data)
    except BadTopic as err:
        raise json_error(400, str(err)) from None
    except ValidationError as err:
        raise json_error(400, f"invalid request: {describe_problems(err, 'request')}") from None
    return member, unit, body


async def revoke(request: web.Request) -> web.Response:
    """Revoke a unit's certificates and cut its live session (technicians only)."""
    member, unit, body = await _unit_request(request, RevokeRequest, "revoke units")
    try:
        serials = await _provisioner(request).revoke(unit, body.reason, member.staff_id)
    except ProvisioningError as err:
        raise json_error(409, str(err)) from None
    return web.json_response({"unit": unit, "revoked": serials})


async def decommission(request: web.Request) -> web.Response:
    """Order the unit to wipe itself, revoke it and take it out of the directory."""
    member, unit, body = await _unit_request(request, RevokeRequest, "decommission units")
    service = deps(request)
    try:
        result = await _provisioner(request).decommission(
            unit, body.reason, member.staff_id, service.config_key
        )
    except ProvisioningError as err:
        raise json_error(409, str(err)) from None
    return web.json_response(result)


async def reenrol(request: web.Request) -> web.Response:
    """Order the unit to forget its key and show a new enrolment code, revoke its certificates;
    it stays assigned and is *enrolling* until that code is approved as this unit again."""
    member, unit, body = await _unit_request(request, RevokeRequest, "re-enrol units")
    service = deps(request)
    if service.config_key is None:
        raise json_error(409, "central has no config key: it cannot sign orders")
    try:
        result = await _provisioner(request).decommission(
            unit, body.reason, member.staff_id, service.config_key, reenrol=True
        )
    except ProvisioningError as err:
        raise json_error(409, str(err)) from None
    return web.json_response(result)


async def _known(request: web.Request, unit: str) -> None:
    """404 unless central has seen, enrolled or assigned ``unit``."""
    d = deps(request)
    if (
        await asyncio.to_thread(d.store.unit, unit) is None
        and (await d.standing.get(unit)).since is None
        and await asyncio.to_thread(d.directory.citizen_of, unit) is None
    ):
        raise json_error(404, f"no unit {unit} in the registry")


class ReasonRequest(BaseModel):
    """``POST /api/units/{id}/suspend`` and ``/resume`` body."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    reason: str = Field(default="", max_length=200)


async def suspend(request: web.Request) -> web.Response:
    """Take a unit out of service for a while: no alerts for it until it is resumed."""
    member, unit, body = await _unit_request(request, RevokeRequest, "suspend units")
    await _known(request, unit)
    try:
        result = await deps(request).standing.suspend(unit, member.staff_id, body.reason)
    except ProvisioningError as err:
        raise json_error(409, str(err)) from None
    return web.json_response(result)


async def resume(request: web.Request) -> web.Response:
    """Put a suspended unit back in service."""
    member, unit, body = await _unit_request(request, ReasonRequest, "resume units")
    try:
        result = await deps(request).standing.resume(
            unit, member.staff_id, body.reason or "resumed"
        )
    except ProvisioningError as err:
        raise json_error(409, str(err)) from None
    return web.json_response(result)


class NoBody(BaseModel):
    """An empty body."""

    model_config = ConfigDict(extra="forbid", frozen=True)


async def rotate(request: web.Request) -> web.Response:
    """Ask the unit to renew its key and certificate now."""
    member, unit, _ = await _unit_request(request, NoBody, "rotate unit keys")
    service = deps(request)
    if service.config_key is None:
        raise json_error(409, "central has no config key: it cannot sign orders")
    order = sign_order(unit, "renew", service.config_key, f"requested by {member.staff_id}")
    await service.link.publish_to_unit(
        unit, Channel.COMMAND, CommandMessage(payload=CommandPayload(order=order))
    )
    await asyncio.to_thread(
        service.audit.append, "rotate_ordered", actor=member.staff_id, unit=unit
    )
    return web.json_response({"unit": unit, "ordered": "renew"})


class AssignRequest(BaseModel):
    """``POST /api/units/{id}/assign`` body."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    citizen: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{1,62}$")
    group: str | None = Field(default=None, pattern=r"^[a-z0-9][a-z0-9-]{1,62}$")
    profile: Literal["tv", "nightcam"]
    #: make ``citizen`` if the directory has no such pseudonym (else that is refused: a typo)
    create_citizen: bool = False


async def assign(request: web.Request) -> web.Response:
    """Assign a unit to a citizen (and the staff group responsible for it)."""
    member, unit, body = await _unit_request(request, AssignRequest, "assign units")
    service = deps(request)
    if not body.create_citizen and not await asyncio.to_thread(
        service.directory.citizen_exists, body.citizen
    ):
        raise json_error(404, str(unknown_citizen(body.citizen)))
    await asyncio.to_thread(
        service.directory.assign_unit, unit, body.citizen, body.group, body.profile
    )
    await asyncio.to_thread(
        service.audit.append,
        "unit_assigned",
        actor=member.staff_id,
        unit=unit,
        citizen=body.citizen,
        group=body.group,
    )
    return web.json_response({"unit": unit, "citizen": body.citizen, "group": body.group})


class PushConfigRequest(BaseModel):
    """``POST /api/units/{id}/config`` body: the settings to change (others keep defaults)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    profile: Literal["tv", "nightcam"]
    health_interval_s: float | None = Field(default=None, ge=1, le=3600)
    call_max_duration_s: int | None = Field(default=None, gt=0, le=4 * 3600)
    #: the TV's screen language
    language: Literal["sv", "da", "en"] | None = None
    #: which calls a TV answers by itself (see docs/tv.md); only for ``tv`` units
    auto_answer: list[AutoAnswerRule] | None = Field(default=None, max_length=16)
    #: STUN/TURN servers for calls beyond the municipality's network
    ice_servers: list[IceServer] | None = Field(default=None, max_length=8)
    #: the care provider's night hours on the TV (``HH:MM``, local time; see docs/tv.md)
    night_from: ClockTime | None = None
    night_until: ClockTime | None = None
    #: whether the TV's button rings the staff on duty by day (else it shows ``day_phone``)
    day_calls: bool | None = None
    #: the care provider's daytime number, shown on the TV by day
    day_phone: PhoneNumber | None = None
    #: the unit's time zone (IANA); central's ``[calls] timezone`` when not given
    timezone: str | None = Field(default=None, max_length=64)


async def push(request: web.Request) -> web.Response:
    """Sign and publish the unit's next config version."""
    member, unit, body = await _unit_request(request, PushConfigRequest, "push configs")
    service = deps(request)
    if service.config_key is None:
        raise json_error(409, "central has no config key: it cannot sign configs")
    pushed = await asyncio.to_thread(service.audit.entries, kind="config_pushed")
    version = 1 + max((e.detail.get("version", 0) for e in pushed if e.unit == unit), default=0)
    if body.auto_answer and body.profile != "tv":
        raise json_error(400, "auto-answer rules apply to tv units only")
    for rule in body.auto_answer or []:
        for group in rule.caller_groups:
            if not await asyncio.to_thread(service.directory.group_exists, group):
                raise json_error(400, f"auto-answer rule names unknown group {group}")
    citizen = await asyncio.to_thread(service.directory.citizen_of, unit)
    running = await asyncio.to_thread(service.store.unit, unit)
    assigned = await asyncio.to_thread(service.directory.assigned_profile, unit)
    try:
        check_profile(
            unit,
            body.profile,
            None if running is None else running.profile,
            assigned,
            known=running is not None or citizen is not None,
        )
    except WrongProfile as err:
        raise json_error(409, str(err)) from None
    except UnknownUnit as err:
        raise json_error(404, str(err)) from None
    settings: dict[str, object] = body.model_dump(exclude_none=True, exclude={"profile"})
    if citizen is not None:
        checks = await asyncio.to_thread(service.directory.schedule, citizen)
        settings["schedules"] = [
            {"at": f"{m // 60:02d}:{m % 60:02d}", "tolerance_min": t} for m, t in checks
        ]
    settings.setdefault("timezone", service.timezone)
    try:
        bundle = build_bundle(unit, version, body.profile, service.ticket_public_pem, **settings)  # type: ignore[arg-type]
    except BadBundle as err:
        raise json_error(400, str(err)) from None
    await push_config(service, unit, bundle, service.config_key, actor=member.staff_id)
    return web.json_response({"unit": unit, "version": version})


async def candidates(request: web.Request) -> web.Response:
    """``GET /api/decommission-candidates``: units silent long enough to be decommissioned."""
    await _technician(request, "see decommission candidates")
    service = deps(request)
    days = service.silent_days
    since = time.time() - days * 86400
    units = await asyncio.to_thread(service.store.units)
    silent = [
        {
            "id": u.device_id,
            "last_seen": u.last_seen,
            "silent_days": round((time.time() - u.last_seen) / 86400, 1),
        }
        for u in units
        if u.last_seen < since
    ]
    return web.json_response(
        {
            "silent_days": days,
            "candidates": silent,
            "warning": (
                f"{len(silent)} unit(s) silent for more than {days:g} days: decommission them or "
                "find out why"
                if silent
                else None
            ),
        }
    )


def add_technician_routes(app: web.Application) -> None:
    """Mount the technician API on ``app``."""
    app.router.add_get("/api/decommission-candidates", candidates)
    app.router.add_post("/api/units/{id}/revoke", revoke)
    app.router.add_post("/api/units/{id}/decommission", decommission)
    app.router.add_post("/api/units/{id}/reenrol", reenrol)
    app.router.add_post("/api/units/{id}/suspend", suspend)
    app.router.add_post("/api/units/{id}/resume", resume)
    app.router.add_post("/api/units/{id}/rotate", rotate)
    app.router.add_post("/api/units/{id}/assign", assign)
    app.router.add_post("/api/units/{id}/config", push)
    app.router.add_get("/api/enrolments", list_enrolments)
    app.router.add_post("/api/enrolments/{code}/approve", approve)
