"""Reasons that a reader's own language can show: an English sentence with a stable code.

Central (and the unit) explain things in English phrases ("no answer after 30 s", "connection
lost"); the console shows them in Swedish, Danish or English. A :class:`Reason` is that English
phrase *and* a code with its parameters, so a console translates the code from its catalog and
shows the English only for a code it does not know. A ``Reason`` is a ``str`` (the English text),
so every place that logs, joins, stores or compares reasons as text keeps working, and the API
keeps its English ``reason`` beside the new ``reason_code`` and ``params``.
"""

import contextlib
import json
from typing import Any


class Reason(str):
    """An English reason with a stable ``code`` (``None``: not one the console knows) and the
    ``params`` its translations fill in."""

    code: str | None
    params: dict[str, Any]

    def __new__(cls, text: str, code: str | None = None, /, **params: Any) -> "Reason":
        made = super().__new__(cls, text)
        made.code = code
        made.params = params
        return made

    def coded(self) -> dict[str, Any]:
        """``{"code": ..., "params": {...}}`` for a JSON list beside the English texts."""
        return {"code": self.code, "params": self.params}


def code_of(reason: str) -> dict[str, Any]:
    """The code and params of any reason (a plain ``str``: no code)."""
    if isinstance(reason, Reason):
        return reason.coded()
    return {"code": None, "params": {}}


def with_code(reason: str, key: str = "reason") -> dict[str, Any]:
    """The fields of a message that says ``reason``: ``{key: text, key_code: code, key_params:
    params}`` (for ``key="reason"``: ``reason``, ``reason_code``, ``params``); the code fields
    only when there is a code."""
    fields: dict[str, Any] = {key: str(reason)}
    if isinstance(reason, Reason) and reason.code is not None:
        fields[f"{key}_code"] = reason.code
        fields["params" if key == "reason" else f"{key}_params"] = reason.params
    return fields


def from_view(value: Any) -> str:
    """A reason read back from JSON: a plain string, or ``{"text", "code", "params"}``."""
    if isinstance(value, dict):
        params = value.get("params")
        code = value.get("code")
        if not isinstance(params, dict):
            params = {}
        if not isinstance(code, str):
            code = None
        return Reason(str(value.get("text", "")), code, **params)
    return str(value)


def to_view(reason: str) -> dict[str, Any]:
    """A reason as JSON that :func:`from_view` reads back with its code."""
    return {"text": str(reason), **code_of(reason)}


def to_column(reason: str, limit: int = 200) -> str:
    """A reason as a text column keeps it: a person's words as they are (cut to ``limit``);
    a coded one as JSON with its code (:func:`from_column` reads both)."""
    if isinstance(reason, Reason) and reason.code is not None:
        return json.dumps(to_view(reason))
    return reason[:limit]


def from_column(stored: str) -> str:
    """A reason read back from a text column written by :func:`to_column`."""
    if stored.startswith("{"):
        with contextlib.suppress(ValueError):
            value = json.loads(stored)
            if isinstance(value, dict):
                return from_view(value)
    return stored


def reason_of(err: BaseException) -> str:
    """An error's reason: the :class:`Reason` it was raised with (keeping its code), else its
    text."""
    first = err.args[0] if len(err.args) == 1 else None
    return first if isinstance(first, Reason) else str(err)


#: The agent's words for how a call ended or why it was not taken (vaka/agent/call/,
#: vaka/agent/tv/controller.py) and their codes; central records and forwards them as said.
UNIT_WORDS = {
    "hung up by the citizen": "citizen_hung_up",
    "maximum duration reached": "max_duration",
    "agent stopping": "unit_stopping",
    "caller hung up": "caller_hung_up",
    "caller left": "caller_left",
    "cancelled by the caller": "cancelled",
    "ticket expired": "ticket_expired",
    "declined by the citizen": "unit_declined",
    "do not disturb: the citizen does not want calls this evening": "do_not_disturb",
    "busy: another call is in progress": "unit_busy",
    "busy: the citizen is calling the night staff": "unit_busy",
    "hangup": "unit_hung_up",
    "error": "unit_error",
}


def unit_said(text: str) -> Reason:
    """A unit's reason with its code where it is one of the agent's known phrases."""
    return Reason(text, UNIT_WORDS.get(text))
