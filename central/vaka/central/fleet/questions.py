"""Answering one kind of unit question (an event of ``kind`` on ``events``) off the ingest path:
the ingest hook only queues the unit (bounded: a flood is dropped with a warning, never
blocks ingest), and :meth:`UnitQuestions.run` answers one at a time; a failed answer is logged
and the next one goes on. The TV asks this way for its viewing log and its People list."""

import asyncio
import logging

from vaka.central.fleet.store import EventRecord

log = logging.getLogger(__name__)

#: the most questions waiting for an answer
MAX_WAITING = 1000


class UnitQuestions:
    """A desk for one ``kind`` of question, named ``what`` in logs; :meth:`send` answers."""

    kind = ""
    what = ""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._asked: asyncio.Queue[str] = asyncio.Queue(MAX_WAITING)

    def on_event_record(self, record: EventRecord) -> None:
        """An ingest hook: a unit's question goes to :meth:`run`."""
        if record.kind != self.kind or self._loop is None:
            return
        self._loop.call_soon_threadsafe(self._take, record.device_id)

    def _take(self, unit: str) -> None:
        if self._asked.full():
            log.warning("%s requests pile up: %s's is dropped", self.what, unit)
            return
        self._asked.put_nowait(unit)

    async def run(self) -> None:
        """Answer questions until cancelled."""
        self._loop = asyncio.get_running_loop()
        while True:
            unit = await self._asked.get()
            try:
                await self.send(unit)
            except Exception:
                log.exception("%s for %s could not be sent", self.what, unit)

    async def send(self, unit: str) -> None:
        """Answer ``unit``'s question."""
        raise NotImplementedError
