"""The central service: registry store, MQTT ingest and HTTP, started and stopped together."""

import asyncio
import contextlib
import logging

from aiohttp import web

from vaka.central.config import CentralConfig
from vaka.central.ingest import FleetIngest
from vaka.central.mqtt import CentralLink
from vaka.central.store import SqlFleetStore
from vaka.central.web import make_app

log = logging.getLogger(__name__)


class CentralService:
    """One central instance. ``async with CentralService(config) as svc: ...``."""

    def __init__(self, config: CentralConfig) -> None:
        self.config = config
        self.store = SqlFleetStore(config.database.url)
        self.ingest = FleetIngest(self.store)
        self.link = CentralLink(config.mqtt, self.ingest.handle)
        self._runner: web.AppRunner | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.http_port: int | None = None

    @property
    def url(self) -> str:
        """Where the console and API are served."""
        return f"http://{self.config.http.bind}:{self.http_port}"

    async def start(self) -> "CentralService":
        """Start ingest, the broker session and the HTTP server."""
        self._tasks = [
            asyncio.create_task(self.ingest.run(), name="ingest"),
            asyncio.create_task(self.link.run(), name="central-link"),
        ]
        self._runner = web.AppRunner(
            make_app(self.store, self.ingest, self.config.fleet), access_log=None
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.config.http.bind, self.config.http.port)
        await site.start()
        server = site._server
        sockets = getattr(server, "sockets", None) or []
        self.http_port = sockets[0].getsockname()[1] if sockets else self.config.http.port
        log.info("central serving %s", self.url)
        return self

    async def stop(self) -> None:
        """Stop everything; writes still queued are flushed first. Safe twice."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        await self.ingest.flush()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        self.store.close()

    async def __aenter__(self) -> "CentralService":
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
