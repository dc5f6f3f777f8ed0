"""System updates over HTTP: units fetch bundles (``GET /api/unit/bundles/{sha256}``, the
signed update order as the bearer credential, ``Range`` honoured), technicians make and widen
roll-outs (``/api/updates``), the fleet's versions (``GET /api/fleet/versions``)."""

import asyncio
import re
from typing import Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from vaka.central.http.auth import authenticate
from vaka.central.http.body import json_data
from vaka.central.http.deps import deps
from vaka.central.http.errors import json_error
from vaka.central.http.fleet import FLEET_ROLES
from vaka.central.http.technician import TECHNICIAN_ROLES
from vaka.central.updates.rollouts import BundleSpec, RolloutRefused, Rollouts
from vaka.errors import BadTopic
from vaka.protocol.messages import describe_problems
from vaka.provisioning.updates import (
    MAX_BUNDLE_BYTES,
    BadUpdateOrder,
    Sha256,
    Version,
    verify_update_order,
)

_SHA256 = re.compile(r"[0-9a-f]{64}")


class RolloutRequest(BaseModel):
    """``POST /api/updates`` body: the bundle, the units (or a profile) and the first stage."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    version: Version
    sha256: Sha256
    size: int = Field(gt=0, le=MAX_BUNDLE_BYTES)
    url: str | None = Field(default=None, pattern=r"^https?://", max_length=1024)
    units: list[str] = Field(default_factory=list, max_length=100_000)
    profile: Literal["tv", "nightcam"] | None = None
    percent: int = Field(default=100, ge=1, le=100)

    @model_validator(mode="after")
    def _one_target(self) -> "RolloutRequest":
        if bool(self.units) == (self.profile is not None):
            raise ValueError("name either units or a profile")
        return self


def _rollouts(request: web.Request) -> Rollouts:
    rollouts = deps(request).rollouts
    if rollouts is None:
        raise json_error(409, "central has no config key ([keys] config_key): no updates")
    return rollouts


async def bundle(request: web.Request) -> web.StreamResponse:
    """A bundle for a unit that holds a valid order for it (ranges served by aiohttp)."""
    sha256 = request.match_info["sha256"]
    if not _SHA256.fullmatch(sha256):
        raise json_error(404, "no such bundle")
    rollouts = _rollouts(request)
    assert rollouts.config_key is not None
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer":
        raise json_error(401, "a unit fetches a bundle with its update order as bearer token")
    try:
        order = verify_update_order(token.strip(), rollouts.config_key, None)
    except BadUpdateOrder as err:
        raise json_error(403, str(err)) from None
    if order.sha256 != sha256:
        raise json_error(403, "the update order is for another bundle")
    found = await asyncio.to_thread(rollouts.shelf.find, sha256)
    if found is None:
        raise json_error(404, "central no longer has this bundle")
    return web.FileResponse(found.path, headers={"Content-Type": "application/octet-stream"})


async def create(request: web.Request) -> web.Response:
    """Make a roll-out and order its first stage."""
    member = await authenticate(request, TECHNICIAN_ROLES, action="update units")
    data = await json_data(request, "roll-out")
    try:
        body = RolloutRequest.model_validate(data)
    except ValidationError as err:
        raise json_error(400, f"invalid roll-out: {describe_problems(err)}") from None
    rollouts = _rollouts(request)
    spec = BundleSpec(body.version, body.sha256, body.size, body.url)
    try:
        units = await asyncio.to_thread(rollouts.targets, body.units, body.profile)
        result = await rollouts.create(member.staff_id, spec, units, body.percent)
    except (RolloutRefused, BadTopic) as err:
        raise json_error(409 if isinstance(err, RolloutRefused) else 400, str(err)) from None
    return web.json_response(result)


def _rollout_id(request: web.Request) -> int:
    text = request.match_info["id"]
    if not text.isdigit() or len(text) > 15:
        raise json_error(404, f"no roll-out {text[:20]}")
    return int(text)


async def order_all(request: web.Request) -> web.Response:
    """Order the roll-out's remaining units."""
    member = await authenticate(request, TECHNICIAN_ROLES, action="update units")
    try:
        result = await _rollouts(request).order_all(_rollout_id(request), member.staff_id)
    except RolloutRefused as err:
        raise json_error(404, str(err)) from None
    return web.json_response(result)


async def status(request: web.Request) -> web.Response:
    """Every roll-out, or one with its units."""
    await authenticate(request, FLEET_ROLES, action="see updates")
    rollout_id = _rollout_id(request) if "id" in request.match_info else None
    try:
        result = await asyncio.to_thread(_rollouts(request).status, rollout_id)
    except RolloutRefused as err:
        raise json_error(404, str(err)) from None
    return web.json_response(result)


async def versions(request: web.Request) -> web.Response:
    """The fleet's versions: per unit the root version, slot and agent version."""
    await authenticate(request, FLEET_ROLES, action="see the fleet")
    return web.json_response({"units": await asyncio.to_thread(_rollouts(request).versions)})


def add_update_routes(app: web.Application) -> None:
    """Mount the update routes on ``app``."""
    app.router.add_get("/api/unit/bundles/{sha256}", bundle)
    app.router.add_post("/api/updates", create)
    app.router.add_get("/api/updates", status)
    app.router.add_get("/api/updates/{id}", status)
    app.router.add_post("/api/updates/{id}/all", order_all)
    app.router.add_get("/api/fleet/versions", versions)
