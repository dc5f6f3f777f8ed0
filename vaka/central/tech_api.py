"""Technician-facing HTTP: revoking units (enrolment approval and decommissioning grow here)."""

from typing import TYPE_CHECKING

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from vaka.central.staff_api import authenticate
from vaka.errors import BadTopic, ProvisioningError
from vaka.protocol.topics import check_device_id

if TYPE_CHECKING:
    from vaka.central.service import CentralService

SERVICE: web.AppKey["CentralService"] = web.AppKey("service")
TECHNICIAN_ROLES = frozenset({"technician", "administrator"})


class RevokeRequest(BaseModel):
    """``POST /api/units/{id}/revoke`` body."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    reason: str = Field(min_length=3, max_length=200)


def _json(cls: type[web.HTTPException], reason: str) -> web.HTTPException:
    return cls(text=web.json_response({"error": reason}).text, content_type="application/json")


async def revoke(request: web.Request) -> web.Response:
    """Revoke a unit's certificates and cut its live session (technicians only)."""
    member = await authenticate(request)
    if member.role not in TECHNICIAN_ROLES:
        raise _json(web.HTTPForbidden, f"the role {member.role} may not revoke units")
    unit = request.match_info["id"]
    try:
        check_device_id(unit)
        body = RevokeRequest.model_validate_json(await request.read())
    except BadTopic as err:
        raise _json(web.HTTPBadRequest, str(err)) from None
    except ValidationError as err:
        fields = ", ".join(".".join(str(p) for p in e["loc"]) for e in err.errors())
        raise _json(web.HTTPBadRequest, f"invalid revoke request: {fields}") from None
    provisioner = request.app[SERVICE].provisioner
    if provisioner is None:
        raise _json(web.HTTPConflict, "central has no [pki] section: it cannot revoke")
    try:
        serials = await provisioner.revoke(unit, body.reason, member.staff_id)
    except ProvisioningError as err:
        raise _json(web.HTTPConflict, str(err)) from None
    return web.json_response({"unit": unit, "revoked": serials})


def add_technician_routes(app: web.Application, service: "CentralService") -> None:
    """Mount the technician API on ``app``."""
    app[SERVICE] = service
    app.router.add_post("/api/units/{id}/revoke", revoke)
