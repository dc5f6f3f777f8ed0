"""The agent's logging: structured journal entries under systemd, plain lines on stderr otherwise.

Under systemd (``JOURNAL_STREAM`` names the agent's stderr) log records go to the journal through
systemd-python's :class:`systemd.journal.JournalHandler`, each with these fields where known:

``UNIT_ID``
    the unit's device id (set once by :func:`setup_logging`; a record may override it);
``CALL_ID``, ``REASON``
    from the record's ``extra=``: ``log.warning("call refused", extra={"call_id": cid,
    "reason": why})``.

so that support can ask ``journalctl -u vaka-agent CALL_ID=c-42``. The journal also gets
``PRIORITY``, ``LOGGER``, ``CODE_*`` and ``SYSLOG_IDENTIFIER=vaka-agent``.

Otherwise (a terminal, a test, a container, or systemd-python missing, which is logged as a
warning) records go to stderr as ``time level logger: message [unit_id=... call_id=...
reason=...]``; under systemd without systemd-python those lines still reach the journal, only
without the separate fields.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import re
import sys
from collections.abc import Callable, Mapping
from typing import Any, TextIO

#: Record attributes (``extra=`` keys) that become journal fields, and their field names.
FIELDS: Mapping[str, str] = {"unit_id": "UNIT_ID", "call_id": "CALL_ID", "reason": "REASON"}
SYSLOG_IDENTIFIER = "vaka-agent"
PLAIN_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_FIELD_NAME = re.compile(r"[A-Z][A-Z0-9_]{0,63}")

Sender = Callable[..., Any]


def journal_stream_is_stderr(environ: Mapping[str, str] | None = None, fd: int = 2) -> bool:
    """Whether ``JOURNAL_STREAM`` (``device:inode``) names ``fd``: stderr is the journal.

    systemd sets the variable for a service whose output goes to the journal; a child whose
    stderr was redirected inherits the variable but not the stream, hence the comparison.
    """
    env = os.environ if environ is None else environ
    value = env.get("JOURNAL_STREAM", "")
    device, sep, inode = value.partition(":")
    if not sep:
        return False
    try:
        stat = os.fstat(fd)
        return (stat.st_dev, stat.st_ino) == (int(device), int(inode))
    except (OSError, ValueError):
        return False


def structured_sender(send: Sender) -> Sender:
    """Wrap ``systemd.journal.send``: map our record attributes to journal fields, drop the rest.

    :class:`~systemd.journal.JournalHandler` passes every record attribute as a keyword; journal
    field names must be upper case, so ``call_id`` is renamed to ``CALL_ID`` here and the other
    lower-case attributes (``msg``, ``args``, ``levelname``...) are left out.
    """

    def sender(message: str, /, **fields: Any) -> Any:
        out: dict[str, Any] = {}
        for key, value in fields.items():
            if key in FIELDS:
                if value is not None:
                    out[FIELDS[key]] = str(value)
            elif _FIELD_NAME.fullmatch(key) and key not in out and value is not None:
                out[key] = value
        return send(message, **out)

    return sender


class PlainFormatter(logging.Formatter):
    """``PLAIN_FORMAT`` followed by ``[unit_id=... call_id=... reason=...]`` where present."""

    def __init__(self, unit_id: str | None = None) -> None:
        super().__init__(PLAIN_FORMAT)
        self.unit_id = unit_id

    def format(self, record: logging.LogRecord) -> str:
        """The plain line, with the structured fields appended."""
        line = super().format(record)
        values = {key: getattr(record, key, None) for key in FIELDS}
        if values["unit_id"] is None:
            values["unit_id"] = self.unit_id
        extra = " ".join(f"{key}={value}" for key, value in values.items() if value is not None)
        if not extra:
            return line
        head, sep, tail = line.partition("\n")  # keep a traceback below the fields
        return f"{head} [{extra}]{sep}{tail}"


def journal_handler(unit_id: str | None, send: Sender | None = None) -> logging.Handler:
    """A :class:`~systemd.journal.JournalHandler` that sends our structured fields.

    ``send`` defaults to ``systemd.journal.send``; raises :class:`ImportError` without
    systemd-python.
    """
    journal = importlib.import_module("systemd.journal")  # by name: see vaka.agent.watchdog

    fields: dict[str, str] = {"SYSLOG_IDENTIFIER": SYSLOG_IDENTIFIER}
    if unit_id is not None:
        fields["UNIT_ID"] = unit_id
    handler: logging.Handler = journal.JournalHandler(
        sender_function=structured_sender(send or journal.send), **fields
    )
    return handler


def setup_logging(
    level: int | str,
    unit_id: str | None = None,
    *,
    journal: bool | None = None,
    stream: TextIO | None = None,
) -> logging.Handler:
    """Send the root logger's records to the journal or to stderr; returns the handler.

    ``journal`` defaults to :func:`journal_stream_is_stderr`. Replaces a handler that an earlier
    call installed (so it may be called again once the unit id is known) and sets ``level``.
    """
    if journal is None:
        journal = journal_stream_is_stderr()
    handler: logging.Handler | None = None
    if journal:
        with contextlib.suppress(ImportError):
            handler = journal_handler(unit_id)
    fell_back = journal and handler is None
    if handler is None:
        handler = logging.StreamHandler(stream or sys.stderr)
        handler.setFormatter(PlainFormatter(unit_id))
    handler.set_name("vaka")
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == "vaka"]:
        root.removeHandler(old)
        old.close()
    root.addHandler(handler)
    root.setLevel(level)
    if fell_back:
        logging.getLogger(__name__).warning(
            "systemd-python is not installed: logging to stderr without journal fields"
        )
    return handler
