"""The central service: registry store, MQTT ingest and HTTP, started and stopped together."""

import asyncio
import logging

from aiohttp import web
from pydantic import BaseModel

from vaka.central.alerts import AlertWatch, notifier_for
from vaka.central.alerts_api import add_alert_routes
from vaka.central.audit import AuditLog
from vaka.central.audit_api import add_audit_routes
from vaka.central.calls import CallRelay
from vaka.central.citizen_calls import CitizenCallDesk, Notify, add_citizen_call_routes
from vaka.central.config import CentralConfig
from vaka.central.db import open_engine
from vaka.central.directory import Directory
from vaka.central.duty import DutyRoster, add_duty_routes
from vaka.central.ingest import FleetIngest
from vaka.central.messages import MessageDesk, add_message_routes
from vaka.central.mqtt import CentralLink
from vaka.central.provisioner import Provisioner, issuing_ca
from vaka.central.revocation import CertificateRegistry
from vaka.central.round_api import add_round_routes
from vaka.central.secret_box import SecretBox
from vaka.central.staff_api import add_staff_routes
from vaka.central.store import SqlFleetStore
from vaka.central.tech_api import add_technician_routes
from vaka.central.visits_api import add_visit_routes
from vaka.central.web import make_app
from vaka.protocol.topics import Channel
from vaka.provisioning.bundles import load_config_key
from vaka.provisioning.tickets import load_ticket_key
from vaka.tasks import cancel_and_wait

log = logging.getLogger(__name__)


class CentralService:
    """One central instance. ``async with CentralService(config) as svc: ...``."""

    def __init__(self, config: CentralConfig, notify: Notify | None = None) -> None:
        self.config = config
        self.engine = open_engine(config.database.url)
        self.store = SqlFleetStore(self.engine)
        self.directory = Directory(
            self.engine, SecretBox.from_file(config.staff_access.totp_key_file)
        )
        self.audit = AuditLog(self.engine)
        #: ``await service.notifier.notify(kind, detail)``: events for the external notifier
        self.notifier = notifier_for(config.alerts, self.audit)
        self.alerts = AlertWatch(
            self.engine,
            self.store,
            self.directory,
            self.audit,
            self.notifier,
            config.alerts,
            config.fleet,
            config.calls.timezone,
        )
        self.ingest = FleetIngest(self.store, self.audit)
        self.relay = CallRelay(
            config.mqtt.identity,
            self.directory,
            self.audit,
            load_ticket_key(config.keys.ticket_key),
            config.calls,
            self._publish,
        )
        self.duty = DutyRoster(self.engine, self.directory)
        self.citizen_calls = CitizenCallDesk(
            config.mqtt.identity,
            self.directory,
            self.duty,
            self.audit,
            config.calls,
            self._publish,
            notify or self.notifier.notify,  # escalations go to the external notifier
        )
        self.relay.citizen_calls = self.citizen_calls
        ticket_key = load_ticket_key(config.keys.ticket_key)
        #: central's ticket public key (PEM), which config bundles carry to the units
        self.ticket_public_pem = ticket_key.as_pem(private=False).decode()
        self.config_key = (
            load_config_key(config.keys.config_key) if config.keys.config_key else None
        )
        self.messages = MessageDesk(
            self.engine, self.directory, self.audit, self.config_key, self._publish,
            config.calls.timezone,
        )  # fmt: skip
        self.ingest.event_hooks.append(self.messages.on_event_record)
        self.ingest.online_hooks.append(self.messages.on_unit_online)
        self.certs: CertificateRegistry | None = None
        self.provisioner: Provisioner | None = None
        if config.pki is not None:
            self.certs = CertificateRegistry(self.engine, issuing_ca(config.pki))
            self.provisioner = Provisioner(
                config.pki,
                config.mqtt,
                self.certs,
                self.directory,
                self.audit,
                self._publish_raw,
            )
        self.link = CentralLink(
            config.mqtt,
            self.ingest.handle,
            self.relay.on_signal_out,
            self.provisioner.on_request if self.provisioner else None,
            self.provisioner.on_renew if self.provisioner else None,
        )
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
            asyncio.create_task(self.citizen_calls.run(), name="citizen-call-sweep"),
            asyncio.create_task(self.ingest.run(), name="ingest"),
            asyncio.create_task(self.link.run(), name="central-link"),
            asyncio.create_task(self.messages.run(), name="messages"),
            asyncio.create_task(self.notifier.run(), name="notifier"),
            asyncio.create_task(self.alerts.run(), name="alert-watch"),
        ]
        if self.provisioner is not None:
            self._tasks.append(
                asyncio.create_task(self.provisioner.refresh_crl(6 * 3600), name="crl-refresh")
            )
        app = make_app(self.store, self.ingest, self.config.fleet)
        add_staff_routes(
            app,
            self.directory,
            self.audit,
            self.relay,
            self.config.session_ttl_s,
            self.config.staff_access,
            self.config.calls.timezone,
        )
        add_duty_routes(app, self.duty, self.audit)
        add_citizen_call_routes(app, self.citizen_calls)
        add_technician_routes(app, self)
        add_message_routes(app, self.messages)
        add_alert_routes(app, self.alerts)
        add_round_routes(app)
        add_audit_routes(app)
        add_visit_routes(app, self.directory, self.store, self.config.fleet)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.config.http.bind, self.config.http.port)
        await site.start()
        server = site._server
        sockets = getattr(server, "sockets", None) or []
        self.http_port = sockets[0].getsockname()[1] if sockets else self.config.http.port
        log.info("central serving %s", self.url)
        return self

    async def _publish(self, device_id: str, channel: Channel, message: BaseModel) -> None:
        await self.link.publish_to_unit(device_id, channel, message)

    async def _publish_raw(self, topic: str, payload: bytes, retain: bool) -> None:
        await self.link.publish_raw(topic, payload, retain=retain)

    async def stop(self) -> None:
        """Stop everything; writes still queued are flushed first. Safe twice."""
        await cancel_and_wait(self._tasks)  # a plain cancel may be swallowed: see there
        self._tasks = []
        await self.citizen_calls.close()
        await self.ingest.flush()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        self.store.close()

    async def __aenter__(self) -> "CentralService":
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
