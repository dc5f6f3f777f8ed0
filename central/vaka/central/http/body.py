"""Request bodies: the one way central's routes read JSON.

A body must be declared ``application/json`` (415 otherwise: an HTML form cannot send that type
cross-site without a CORS preflight, which central never grants), is at most
:data:`MAX_BODY_BYTES` (413), and is parsed by :func:`vaka.protocol.guard.parse_json` with its
nesting limit before the route's model validates it (400), each refusal with a reason.
"""

from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError

from vaka.central.http.errors import json_error
from vaka.errors import BadMessage
from vaka.protocol.guard import parse_json

#: the largest request body any route reads (the application refuses larger ones too)
MAX_BODY_BYTES = 64 * 1024

M = TypeVar("M", bound=BaseModel)


def require_json_type(request: web.Request) -> None:
    """415 unless the body is declared ``application/json``."""
    if request.content_type != "application/json":
        shown = request.content_type or "none"
        raise json_error(415, f"the request body must be application/json (it is {shown})")


async def read_body(request: web.Request, what: str) -> bytes:
    """The raw body, within :data:`MAX_BODY_BYTES` (413 otherwise)."""
    length = request.content_length
    if length is not None and length > MAX_BODY_BYTES:
        raise json_error(413, f"{what} is {length} bytes, over the {MAX_BODY_BYTES}-byte limit")
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise json_error(413, f"{what} is over the {MAX_BODY_BYTES}-byte limit") from None
    if len(raw) > MAX_BODY_BYTES:
        raise json_error(413, f"{what} is {len(raw)} bytes, over the {MAX_BODY_BYTES}-byte limit")
    return raw


async def json_data(request: web.Request, what: str, *, empty_ok: bool = False) -> Any:
    """The body parsed as JSON (not yet validated); 415, 413 or 400 with a reason.

    ``empty_ok``: an empty body (with or without a content type) reads as ``{}``.
    """
    raw = await read_body(request, what)
    if not raw and empty_ok:
        return {}
    require_json_type(request)
    try:
        return parse_json(raw, what=what, max_bytes=MAX_BODY_BYTES)
    except BadMessage as err:
        raise json_error(400, f"invalid {what}: {err}") from None


async def json_body(
    request: web.Request, model: type[M], what: str, *, empty_ok: bool = False
) -> M:
    """The body as ``model``; 415, 413 or 400 with a reason when it is not one."""
    data = await json_data(request, what, empty_ok=empty_ok)
    try:
        return model.model_validate(data)
    except ValidationError as err:
        fields = ", ".join(".".join(str(p) for p in e["loc"]) or "body" for e in err.errors())
        raise json_error(400, f"invalid {what}: {fields}") from None
