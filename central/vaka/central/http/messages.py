"""``/api/messages``: staff create messages and reminders for TV units and follow their status
(see :mod:`vaka.central.messages.desk`)."""

import asyncio

from aiohttp import web
from pydantic import ValidationError

from vaka.central.http.auth import authenticate
from vaka.central.http.body import json_data
from vaka.central.http.deps import deps
from vaka.central.http.errors import json_error
from vaka.central.messages.requests import BadMessageRequest, MessageRefused, MessageRequest
from vaka.errors import BadTopic
from vaka.protocol.messages import describe_problems
from vaka.protocol.topics import check_device_id


async def post_message(request: web.Request) -> web.Response:
    """``POST /api/messages``: create (and schedule) a message for a unit."""
    member = await authenticate(request)
    data = await json_data(request, "message request")
    try:
        body = MessageRequest.model_validate(data)
    except ValidationError as err:
        raise json_error(400, f"invalid message request: {describe_problems(err)}") from None
    desk = deps(request).messages
    try:
        created = await asyncio.to_thread(desk.create, member, body)
    except MessageRefused as err:
        raise json_error(403, str(err)) from None
    except BadMessageRequest as err:
        status = 409 if "no config key" in str(err) else 400
        raise json_error(status, str(err)) from None
    desk.wake()
    return web.json_response(created)


async def list_messages(request: web.Request) -> web.Response:
    """``GET /api/messages?unit=...``: the unit's messages and their status."""
    member = await authenticate(request)
    unit = request.query.get("unit", "")
    try:
        check_device_id(unit)
    except BadTopic as err:
        raise json_error(400, f"give ?unit=<unit id>: {err}") from None
    desk = deps(request).messages
    try:
        await asyncio.to_thread(desk.citizen_for, member, unit)
    except MessageRefused as err:
        raise json_error(403, str(err)) from None
    rows = await asyncio.to_thread(desk.statuses, unit)
    return web.json_response({"unit": unit, "messages": rows})


def add_message_routes(app: web.Application) -> None:
    """Mount the message API on ``app``."""
    app.router.add_post("/api/messages", post_message)
    app.router.add_get("/api/messages", list_messages)
