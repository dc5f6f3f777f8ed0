"""The TV's viewing log: asks central who looked in, and takes central's signed answer.

The TV asks with a ``viewing_log`` event; central answers on the ``message`` channel with a
viewing log signed by its config key (:mod:`vaka.provisioning.viewing_log`), which is checked
(:mod:`vaka.agent.tv.signed_question`) before anything is shown. Nothing is kept: each showing
asks again, and the answer lives only as long as the screen shows it.
"""

from joserfc.jwk import OKPKey

from vaka.agent.link import UnitLink
from vaka.agent.tv.signed_question import ANSWER_TIMEOUT_S, SignedQuestion
from vaka.provisioning.viewing_log import BadViewingLog, ViewingLog, verify_viewing_log


class ViewingLogClient(SignedQuestion[ViewingLog]):
    """Fetches the viewing log from central (one question at a time)."""

    def __init__(self, link: UnitLink, device_id: str, config_key: OKPKey | None) -> None:
        super().__init__(
            link,
            device_id,
            config_key,
            "viewing_log",
            "viewing log",
            verify_viewing_log,
            BadViewingLog,
        )

    async def fetch(self, timeout_s: float = ANSWER_TIMEOUT_S) -> ViewingLog | None:
        """Central's viewing log for this unit, or ``None`` (offline, no answer in time)."""
        return await self.ask(timeout_s)
