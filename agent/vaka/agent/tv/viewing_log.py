"""The TV's viewing log: asks central who looked in, and takes central's signed answer.

The TV asks with a ``viewing_log`` event; central answers on the ``message`` channel with a
viewing log signed by its config key (:mod:`vaka.provisioning.viewing_log`), which is checked
here before anything is shown. Nothing is kept: each showing asks again, and the answer lives
only as long as the screen shows it.
"""

import asyncio
import logging

from joserfc.jwk import OKPKey

from vaka.agent.link import UnitLink
from vaka.errors import LinkError
from vaka.protocol.messages import EventMessage, EventPayload
from vaka.protocol.topics import Channel
from vaka.provisioning.viewing_log import BadViewingLog, ViewingLog, verify_viewing_log

log = logging.getLogger(__name__)

#: How long the TV waits for central's answer before it says the list cannot be fetched.
ANSWER_TIMEOUT_S = 10.0


class ViewingLogClient:
    """Fetches the viewing log from central (one question at a time)."""

    def __init__(self, link: UnitLink, device_id: str, config_key: OKPKey | None) -> None:
        self.link = link
        self.device_id = device_id
        self.config_key = config_key
        self._waiting: asyncio.Future[ViewingLog] | None = None

    async def fetch(self, timeout_s: float = ANSWER_TIMEOUT_S) -> ViewingLog | None:
        """Central's viewing log for this unit, or ``None`` (offline, no answer in time)."""
        if self.config_key is None:
            log.warning("viewing log: this unit has no pinned config key ([trust] config_key)")
            return None
        waiting = asyncio.get_running_loop().create_future()
        self._waiting = waiting
        ask = EventMessage(payload=EventPayload(kind="viewing_log", detail={"action": "request"}))
        try:
            await self.link.publish(Channel.EVENTS, ask)
            async with asyncio.timeout(timeout_s):
                return await waiting
        except LinkError as err:
            log.warning("viewing log cannot be asked for: %s", err)
        except TimeoutError:
            log.warning("viewing log: central did not answer within %g s", timeout_s)
        finally:
            if self._waiting is waiting:
                self._waiting = None
        return None

    def handle(self, token: str) -> None:
        """A viewing log token from the ``message`` channel: checked, then given to the asker."""
        if self.config_key is None:
            return
        try:
            answer = verify_viewing_log(token, self.config_key, self.device_id)
        except BadViewingLog as err:
            self.link.refusals.refuse("bad viewing log", str(err), "the message channel")
            return
        waiting = self._waiting
        if waiting is None or waiting.done():
            log.info("viewing log arrived with nobody waiting: dropped")
            return
        waiting.set_result(answer)
