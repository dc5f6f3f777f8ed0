"""Technician-facing HTTP: enrolment approval and revocation (decommissioning grows here)."""

import asyncio
from typing import TYPE_CHECKING, Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from vaka.central.directory import StaffMember
from vaka.central.enrolment import EnrolmentRefused
from vaka.central.staff_api import authenticate
from vaka.errors import BadTopic, ProvisioningError
from vaka.protocol.enrolment import display_code, normalise_code
from vaka.protocol.topics import check_device_id

if TYPE_CHECKING:
    from vaka.central.provisioner import Provisioner
    from vaka.central.service import CentralService

SERVICE: web.AppKey["CentralService"] = web.AppKey("service")
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


def _json(cls: type[web.HTTPException], reason: str) -> web.HTTPException:
    return cls(text=web.json_response({"error": reason}).text, content_type="application/json")


async def _technician(request: web.Request, what: str) -> StaffMember:
    member = await authenticate(request)
    if member.role not in TECHNICIAN_ROLES:
        raise _json(web.HTTPForbidden, f"the role {member.role} may not {what}")
    return member


def _provisioner(request: web.Request) -> "Provisioner":
    provisioner = request.app[SERVICE].provisioner
    if provisioner is None:
        raise _json(web.HTTPConflict, "central has no [pki] section: it cannot provision units")
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
    """``POST /api/enrolments/{code}/approve``: sign the unit's certificate and assign it."""
    member = await _technician(request, "approve enrolments")
    try:
        code = normalise_code(request.match_info["code"])
        body = ApproveRequest.model_validate_json(await request.read())
    except BadTopic as err:
        raise _json(web.HTTPBadRequest, str(err)) from None
    except ValidationError as err:
        fields = ", ".join(".".join(str(p) for p in e["loc"]) for e in err.errors())
        raise _json(web.HTTPBadRequest, f"invalid approval: {fields}") from None
    try:
        result = await _provisioner(request).approve(
            code, body.profile, body.citizen, body.group, member.staff_id, body.unit_id
        )
    except EnrolmentRefused as err:
        status = web.HTTPNotFound if str(err).startswith("no unit is waiting") else web.HTTPConflict
        raise _json(status, str(err)) from None
    return web.json_response(result)


async def revoke(request: web.Request) -> web.Response:
    """Revoke a unit's certificates and cut its live session (technicians only)."""
    member = await _technician(request, "revoke units")
    unit = request.match_info["id"]
    try:
        check_device_id(unit)
        body = RevokeRequest.model_validate_json(await request.read())
    except BadTopic as err:
        raise _json(web.HTTPBadRequest, str(err)) from None
    except ValidationError as err:
        fields = ", ".join(".".join(str(p) for p in e["loc"]) for e in err.errors())
        raise _json(web.HTTPBadRequest, f"invalid revoke request: {fields}") from None
    try:
        serials = await _provisioner(request).revoke(unit, body.reason, member.staff_id)
    except ProvisioningError as err:
        raise _json(web.HTTPConflict, str(err)) from None
    return web.json_response({"unit": unit, "revoked": serials})


def add_technician_routes(app: web.Application, service: "CentralService") -> None:
    """Mount the technician API on ``app``."""
    app[SERVICE] = service
    app.router.add_post("/api/units/{id}/revoke", revoke)
    app.router.add_get("/api/enrolments", list_enrolments)
    app.router.add_post("/api/enrolments/{code}/approve", approve)
