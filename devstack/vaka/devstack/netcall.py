"""Driving a call between two :mod:`vaka.devstack.netpeer` processes in the test bed.

:class:`PeerProcess` starts one peer inside a namespace and talks to it over its stdin/stdout;
:func:`connect_call` does what central does for a real call — carries the offer to the unit and
the answer back (full SDP after gathering; aiortc has no trickle ICE) — and waits, under a
deadline, until both sides have decoded a first frame. The staff side offers, as in Vaka.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from vaka.devstack.netns import Namespace

Message = dict[str, Any]


@dataclass(frozen=True)
class PeerSettings:
    """What a peer process is told first (see :mod:`vaka.devstack.netpeer`)."""

    host: str
    ice_servers: list[dict[str, str]]
    width: int = 320
    height: int = 240
    fps: float = 15.0
    send: bool = True
    gather_timeout_s: float = 2.0
    consent_interval_s: float = 1.0
    consent_failures: int = 4
    audio_hz: float | None = None
    "Also send a sine tone of this frequency and measure the sound received (``None``: no audio)."


class PeerError(RuntimeError):
    """A peer process died, said something unexpected or missed a deadline."""


class PeerProcess:
    """One :mod:`vaka.devstack.netpeer` process; :meth:`close` stops it by its pid.

    :param ns: the namespace to run in; ``None`` runs it on the host (the loopback baseline).
    :param env: added to this process's environment (``SSL_CERT_FILE`` for a private CA).
    """

    def __init__(
        self,
        ns: Namespace | None,
        name: str,
        settings: PeerSettings,
        log_dir: Path,
        env: dict[str, str] | None = None,
    ) -> None:
        self.ns = ns
        self.env = {**os.environ, **(env or {})}
        self.name = name
        self.settings = settings
        self.log_path = log_dir / f"{name}.log"
        self.events: list[Message] = []
        self._replies: asyncio.Queue[Message] = asyncio.Queue()
        self._changed = asyncio.Event()
        self._proc: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None

    async def start(self, timeout: float = 30.0) -> PeerProcess:
        """Start the process and wait for ``ready`` (importing aiortc takes a moment)."""
        with self.log_path.open("ab") as err:
            command = [sys.executable, "-m", "vaka.devstack.netpeer"]
            if self.ns is not None:
                command = self.ns.exec_args(*command)
            self._proc = await asyncio.create_subprocess_exec(
                *command,
                env=self.env,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=err,
                limit=1 << 22,
            )
        self._reader = asyncio.create_task(self._read())
        await self._write(asdict(self.settings))
        await self._reply(timeout, "ready")
        return self

    async def _write(self, message: Message) -> None:
        assert self._proc is not None and self._proc.stdin is not None
        self._proc.stdin.write((json.dumps(message) + "\n").encode())
        await self._proc.stdin.drain()

    async def _read(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        while line := await self._proc.stdout.readline():
            message = json.loads(line)
            if "event" in message:
                self.events.append(message)
                self._changed.set()
            else:
                await self._replies.put(message)
        self._changed.set()

    def _log_tail(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-1500:]
        except OSError:
            return ""

    async def _reply(self, timeout: float, what: str) -> Message:
        try:
            async with asyncio.timeout(timeout):
                return await self._replies.get()
        except TimeoutError:
            raise PeerError(
                f"{self.name}: no {what} within {timeout} s; log:\n{self._log_tail()}"
            ) from None

    async def request(self, message: Message, timeout: float = 15.0) -> Message:
        """Send a command and return its reply."""
        await self._write(message)
        return await self._reply(timeout, str(message.get("cmd")))

    def first(self, predicate: Callable[[Message], bool]) -> Message | None:
        """The first event so far that ``predicate`` accepts."""
        return next((e for e in self.events if predicate(e)), None)

    async def wait_event(self, predicate: Callable[[Message], bool], timeout: float) -> Message:
        """The first event that ``predicate`` accepts, waiting up to ``timeout`` seconds."""
        try:
            async with asyncio.timeout(timeout):
                while (found := self.first(predicate)) is None:
                    self._changed.clear()
                    if self._reader is not None and self._reader.done():
                        raise PeerError(f"{self.name} exited; log:\n{self._log_tail()}")
                    await self._changed.wait()
                return found
        except TimeoutError:
            raise PeerError(
                f"{self.name}: no such event within {timeout} s; events {self.events}"
            ) from None

    async def report(self) -> Message:
        """What the peer received so far and the pair it selected."""
        reply = await self.request({"cmd": "report"})
        report: Message = reply["report"]
        return report

    async def close(self) -> None:
        """Ask the peer to close; kill it (by its pid) if it does not exit in 5 s. Safe twice."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.returncode is None:
            try:
                assert proc.stdin is not None
                proc.stdin.write(b'{"cmd": "close"}\n')
                await proc.stdin.drain()
                proc.stdin.close()
            except (ConnectionError, RuntimeError):
                pass
            try:
                async with asyncio.timeout(5):
                    await proc.wait()
            except TimeoutError:
                proc.kill()
                await proc.wait()
        if self._reader is not None:
            self._reader.cancel()


def is_first_frame(event: Message) -> bool:
    """A ``first_frame`` event."""
    return event.get("event") == "first_frame"


def is_state(*states: str) -> Callable[[Message], bool]:
    """A predicate for a ``state`` event with one of ``states``."""
    return lambda event: event.get("event") == "state" and event.get("state") in states


@dataclass
class CallSetup:
    """How a call came up: candidates offered, and when each side saw its first frame."""

    started_at: float
    offer_candidates: list[str]
    answer_candidates: list[str]
    staff_first_frame_at: float
    unit_first_frame_at: float | None

    @property
    def setup_s(self) -> float:
        """Staff's ``createOffer`` to the first decoded frame of the unit's picture."""
        return self.staff_first_frame_at - self.started_at


async def connect_call(
    unit: PeerProcess, staff: PeerProcess, deadline_s: float = 10.0
) -> CallSetup:
    """Offer from staff, answer from the unit, and wait for the unit's picture at staff.

    :raises PeerError: no decoded frame within ``deadline_s`` of the offer (the setup deadline).
    """
    offer = await staff.request({"cmd": "offer"}, timeout=deadline_s)
    answer = await unit.request({"cmd": "answer", "sdp": offer["sdp"]}, timeout=deadline_s)
    await staff.request({"cmd": "remote", "sdp": answer["sdp"]}, timeout=deadline_s)
    started_at = float(offer["started_at"])
    staff_frame = await staff.wait_event(is_first_frame, _left(deadline_s, started_at))
    unit_frame = None
    if unit.settings.send and staff.settings.send:
        unit_frame = await unit.wait_event(is_first_frame, _left(deadline_s, started_at))
    return CallSetup(
        started_at=started_at,
        offer_candidates=list(offer["candidates"]),
        answer_candidates=list(answer["candidates"]),
        staff_first_frame_at=float(staff_frame["at"]),
        unit_first_frame_at=float(unit_frame["at"]) if unit_frame else None,
    )


def _left(deadline_s: float, started_at: float) -> float:
    """Seconds left of a deadline that began at ``started_at`` (``time.time()``), at least 0.1."""
    return max(0.1, deadline_s - (time.time() - started_at))
