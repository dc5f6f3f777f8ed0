"""The central process: a real :class:`CentralService` answering the orchestrator over a pipe."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import Sequence
from multiprocessing.connection import Connection
from typing import Any

from vaka.central.settings.config import CentralConfig


def central_main(conn: Connection, config_json: str, profile: str | None = None) -> None:
    """Child process: run :class:`CentralService` and answer the orchestrator's requests.

    With ``profile``, the event-loop thread runs under :mod:`cProfile` and its statistics are
    written there at exit (``python -m pstats FILE``).
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    config = CentralConfig.model_validate_json(config_json)
    if profile is None:
        asyncio.run(_central(conn, config))
        return
    import cProfile

    profiler = cProfile.Profile()
    try:
        profiler.runcall(asyncio.run, _central(conn, config))
    finally:
        profiler.dump_stats(profile)


async def _central(conn: Connection, config: CentralConfig) -> None:
    from vaka.central.service import CentralService

    service = CentralService(config)
    # Publish->commit latency of every health sample, measured like FleetIngest does (unit's
    # envelope ts to the commit of its write) but kept in full for the measuring window. The
    # store's own method is wrapped on this instance; central's code is unchanged.
    latencies: list[float] = []
    put_health = service.store.put_health

    def timed_put_health(samples: Sequence[Any]) -> None:
        put_health(samples)
        committed = time.time()
        latencies.extend(committed - s.sent_at for s in samples)

    service.store.put_health = timed_put_health  # type: ignore[method-assign]
    await service.start()
    try:
        # a restart into a large backlog waits for a broker that is busy sending it
        await asyncio.wait_for(service.link.connected.wait(), 180)
        conn.send(("ready", service.http_port))
        loop = asyncio.get_running_loop()
        while True:
            try:
                request = await loop.run_in_executor(None, conn.recv)
            except (EOFError, OSError):
                return
            kind = request[0]
            if kind == "stats":
                conn.send({**service.ingest.stats(), "link": service.link.stats()})
            elif kind == "window":
                window = [v * 1000 for v in latencies]
                latencies.clear()
                conn.send(window)
            elif kind == "unit":
                record = await asyncio.to_thread(service.store.unit, request[1])
                conn.send(None if record is None else record.presence.status)
            elif kind == "directory":
                from vaka.devstack.central import load_directory

                await load_directory(service, request[1])
                conn.send(True)
            elif kind == "event_ids":
                records = await asyncio.to_thread(
                    service.store.recent_events, request[1], 1_000_000
                )
                conn.send(sorted(r.message_id for r in records))
            elif kind == "stop":
                return
    finally:
        await service.stop()
        with contextlib.suppress(OSError):
            conn.send(("stopped", service.ingest.stats()))
