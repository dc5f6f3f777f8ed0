"""The one guarded JSON parser: size and nesting limits first, then any parser failure refused.

Everything that arrives from outside as JSON (MQTT payloads on both sides, signalling on the
staff WebSocket, HTTP request bodies) is parsed here. ``json.loads`` fails in more ways than
``JSONDecodeError``: ``RecursionError`` on deep nesting, ``ValueError`` on an integer of more than
4 300 digits (Python 3.11's int-to-str limit), ``UnicodeDecodeError``, ``MemoryError`` on a huge
payload. A caller that catches only some of them lets one message stop its loop. Here each one
becomes a :class:`~vaka.errors.BadMessage` whose text a support person can act on, and the limits
are checked before the parser runs, so a hostile payload costs no more than its bytes.
"""

import json
import re
from typing import Any

from vaka.errors import BadMessage

#: the largest JSON document accepted anywhere (MQTT's own limit is larger so apps can count it)
MAX_JSON_BYTES = 64 * 1024
#: objects and arrays nested deeper than this are refused before parsing (messages use < 8)
MAX_JSON_DEPTH = 32

_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")


def nesting_depth(raw: bytes) -> int:
    """How deeply objects and arrays nest in ``raw`` (strings skipped; need not be valid JSON)."""
    if raw.count(b"[") + raw.count(b"{") <= 1:
        return 1 if (b"[" in raw or b"{" in raw) else 0
    brackets = _STRING.sub(b"", raw).translate(None, _NOT_BRACKETS)
    depth = deepest = 0
    for byte in brackets:
        if byte in b"[{":
            depth += 1
            deepest = max(deepest, depth)
        else:
            depth = max(depth - 1, 0)
    return deepest


def parse_json(
    raw: bytes | bytearray | memoryview | str,
    *,
    what: str = "message",
    max_bytes: int = MAX_JSON_BYTES,
    max_depth: int = MAX_JSON_DEPTH,
) -> Any:
    """Parse ``raw`` as JSON within the limits; anything wrong raises :class:`BadMessage`.

    ``what`` names the input in the error ("message", "request body", ...).
    """
    try:
        data = raw.encode() if isinstance(raw, str) else bytes(raw)
    except (UnicodeEncodeError, MemoryError, TypeError, ValueError) as err:
        raise BadMessage(f"{what} could not be read: {type(err).__name__}") from None
    size = len(data)
    if size > max_bytes:
        raise BadMessage(f"{what} is {size} bytes, over the {max_bytes}-byte limit")
    if size == 0:
        raise BadMessage(f"{what} is empty")
    depth = nesting_depth(data)
    if depth > max_depth:
        raise BadMessage(f"{what} nests {depth} levels deep, over the limit of {max_depth}")
    try:
        return json.loads(data)
    except UnicodeDecodeError as err:
        raise BadMessage(
            f"{what} is not valid UTF-8 JSON: {err.reason} at byte {err.start}"
        ) from None
    except json.JSONDecodeError as err:
        raise BadMessage(f"{what} is not valid UTF-8 JSON: {err}") from None
    except ValueError as err:  # e.g. an integer of more than 4 300 digits
        raise BadMessage(f"{what} has a value that cannot be read: {str(err)[:120]}") from None
    except (RecursionError, MemoryError, OverflowError, TypeError) as err:
        raise BadMessage(f"{what} could not be parsed: {type(err).__name__}") from None
