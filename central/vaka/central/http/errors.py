"""The one way central's routes refuse a request: an HTTP error whose body is
``{"error": "<a reason a person can read>"}``."""

import json

from aiohttp import web

_BY_STATUS: dict[int, type[web.HTTPException]] = {
    400: web.HTTPBadRequest,
    401: web.HTTPUnauthorized,
    403: web.HTTPForbidden,
    404: web.HTTPNotFound,
    409: web.HTTPConflict,
    413: web.HTTPRequestEntityTooLarge,
    415: web.HTTPUnsupportedMediaType,
    429: web.HTTPTooManyRequests,
    503: web.HTTPServiceUnavailable,
}


def json_error(
    status: int, reason: str, headers: dict[str, str] | None = None
) -> web.HTTPException:
    """The error to raise (or return) for ``status`` with ``reason`` as its JSON body."""
    cls = _BY_STATUS.get(status)
    if cls is None:
        raise ValueError(f"no JSON error for HTTP status {status}")
    text = json.dumps({"error": reason})
    if cls is web.HTTPRequestEntityTooLarge:
        return web.HTTPRequestEntityTooLarge(
            max_size=0, actual_size=0, text=text, content_type="application/json", headers=headers
        )
    return cls(text=text, content_type="application/json", headers=headers)
