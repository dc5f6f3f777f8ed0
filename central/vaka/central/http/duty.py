"""``/api/duty``: staff log on and off duty, and see who holds the watch in their groups (see
:mod:`vaka.central.calls.duty`)."""

import asyncio

from aiohttp import web
from pydantic import BaseModel, ConfigDict, ValidationError

from vaka.central.calls.duty import DutyRefused, duty_status
from vaka.central.http.auth import authenticate
from vaka.central.http.body import json_data
from vaka.central.http.deps import deps
from vaka.central.http.errors import json_error


class DutyRequest(BaseModel):
    """``POST /api/duty`` body."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    on: bool


async def set_duty(request: web.Request) -> web.Response:
    """``POST /api/duty``: ``{"on": true|false}`` -> ``{"on": bool, "since": ts|null}``."""
    member = await authenticate(request)
    roster, audit = deps(request).duty, deps(request).audit
    data = await json_data(request, "duty request")
    try:
        body = DutyRequest.model_validate(data)
    except ValidationError:
        raise json_error(400, 'send {"on": true} or {"on": false}') from None
    if body.on:
        try:
            since, went_on = await asyncio.to_thread(roster.go_on, member)
        except DutyRefused as err:
            await asyncio.to_thread(
                audit.append, "duty_refused", actor=member.staff_id, reason=str(err)
            )
            raise json_error(403, str(err)) from None
        if went_on:
            await asyncio.to_thread(audit.append, "duty_on", actor=member.staff_id, since=since)
        return web.json_response({"on": True, "since": since})
    was_on = await asyncio.to_thread(roster.go_off, member.staff_id)
    if was_on:
        await asyncio.to_thread(audit.append, "duty_off", actor=member.staff_id)
    return web.json_response({"on": False, "since": None})


async def get_duty(request: web.Request) -> web.Response:
    """``GET /api/duty``: am I on duty, and who holds the watch in each of my groups."""
    member = await authenticate(request)
    return web.json_response(await asyncio.to_thread(duty_status, deps(request).duty, member))


def add_duty_routes(app: web.Application) -> None:
    """Mount ``/api/duty`` on ``app``."""
    app.router.add_post("/api/duty", set_duty)
    app.router.add_get("/api/duty", get_duty)
