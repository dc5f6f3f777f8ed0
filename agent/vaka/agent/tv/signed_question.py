"""Asking central for something signed: the question is an event, the answer a token on the
``message`` channel.

The TV asks this way for its viewing log and for its People list: one question at a time; the
answer is checked with the pinned config key (``[trust] config_key``) and for this unit only
before anyone is given it; ``None`` when the unit is offline or central does not answer in time.
Nothing is kept: each showing asks again.
"""

import asyncio
import logging
from collections.abc import Callable
from typing import Generic, Literal, TypeVar

from joserfc.jwk import OKPKey

from vaka.agent.link import UnitLink
from vaka.errors import LinkError
from vaka.protocol.messages import EventMessage, EventPayload
from vaka.protocol.topics import Channel

log = logging.getLogger(__name__)

#: How long the TV waits for central's answer before it says the answer cannot be fetched.
ANSWER_TIMEOUT_S = 10.0

A = TypeVar("A")
#: ``verify(token, config_key, unit_id)``: the checked answer, or the question's refusal raised
Verify = Callable[[str, OKPKey, str], A]


class SignedQuestion(Generic[A]):
    """One kind of question to central (``kind``: the event's kind), named ``what`` in logs."""

    def __init__(
        self,
        link: UnitLink,
        device_id: str,
        config_key: OKPKey | None,
        kind: Literal["viewing_log", "people"],
        what: str,
        verify: Verify[A],
        refusal: type[Exception],
    ) -> None:
        self.link = link
        self.device_id = device_id
        self.config_key = config_key
        self.kind = kind
        self.what = what
        self._verify = verify
        self._refusal = refusal
        self._waiting: asyncio.Future[A] | None = None

    async def ask(self, timeout_s: float = ANSWER_TIMEOUT_S) -> A | None:
        """Central's checked answer, or ``None`` (no config key, offline, no answer in time)."""
        if self.config_key is None:
            log.warning("%s: this unit has no pinned config key ([trust] config_key)", self.what)
            return None
        waiting: asyncio.Future[A] = asyncio.get_running_loop().create_future()
        self._waiting = waiting
        question = EventMessage(payload=EventPayload(kind=self.kind, detail={"action": "request"}))
        try:
            await self.link.publish(Channel.EVENTS, question)
            async with asyncio.timeout(timeout_s):
                return await waiting
        except LinkError as err:
            log.warning("%s cannot be asked for: %s", self.what, err)
        except TimeoutError:
            log.warning("%s: central did not answer within %g s", self.what, timeout_s)
        finally:
            if self._waiting is waiting:
                self._waiting = None
        return None

    def handle(self, token: str) -> None:
        """An answer token from the ``message`` channel: checked, then given to the asker."""
        if self.config_key is None:
            return
        try:
            answer = self._verify(token, self.config_key, self.device_id)
        except self._refusal as err:
            self.link.refusals.refuse(f"bad {self.what}", str(err), "the message channel")
            return
        waiting = self._waiting
        if waiting is None or waiting.done():
            log.info("%s arrived with nobody waiting: dropped", self.what)
            return
        waiting.set_result(answer)
