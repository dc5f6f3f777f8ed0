"""The central service, and the only place its parts are put together: it builds every part,
hands each its dependencies in its constructor, starts the tasks and the HTTP server, and stops
them in order."""

import asyncio
import logging

from aiohttp import web
from joserfc.jwk import OKPKey
from pydantic import BaseModel
from sqlalchemy.engine import Engine

from vaka.central.access.accounts import Accounts
from vaka.central.access.secret_box import SecretBox
from vaka.central.access.sessions import StaffSessions
from vaka.central.access.throttle import AddressGuard
from vaka.central.alerts.notify import notifier_for
from vaka.central.alerts.privacy_visit import PrivacyVisits
from vaka.central.alerts.unplaced import UnplacedCallAlerts
from vaka.central.alerts.watch import AlertWatch
from vaka.central.audit.trail import AuditLog
from vaka.central.broker.calls_first import CallsFirst
from vaka.central.broker.mqtt import CentralLink
from vaka.central.calls.citizen import CitizenCallDesk, Notify
from vaka.central.calls.duty import DutyRoster
from vaka.central.calls.relay import CallRelay
from vaka.central.calls.requests import RequestBook
from vaka.central.calls.turn import RelayCredentials
from vaka.central.calls.tv_calls import TvCalls
from vaka.central.calls.tv_to_tv import TvToTv
from vaka.central.circle.calls import ContactCalls
from vaka.central.circle.contacts import ContactBook
from vaka.central.circle.credentials import ContactCredentials
from vaka.central.circle.invitations import Invitations
from vaka.central.circle.people import PeopleDesk
from vaka.central.circle.sessions import ContactSessions
from vaka.central.directory.directory import Directory
from vaka.central.fleet.ingest import FleetIngest
from vaka.central.fleet.lifecycle import LifecycleStore
from vaka.central.fleet.privacy_mode import PrivacyModes
from vaka.central.fleet.store import SqlFleetStore
from vaka.central.http.app import make_app
from vaka.central.http.deps import Deps
from vaka.central.messages.desk import MessageDesk
from vaka.central.messages.viewing_log import ViewingLogDesk
from vaka.central.settings.config import CentralConfig
from vaka.central.storage.background import Bookkeeping
from vaka.central.storage.engine import open_engine
from vaka.central.storage.migrate import require_current
from vaka.central.units.provisioner import Provisioner, issuing_ca
from vaka.central.units.revocation import CertificateRegistry
from vaka.central.units.standing import UnitStanding
from vaka.central.updates.bundles import BundleShelf
from vaka.central.updates.rollouts import Rollouts
from vaka.protocol.messages import ReceiptMessage, ReceiptPayload
from vaka.protocol.topics import Channel, device_topic
from vaka.provisioning.bundles import load_config_key
from vaka.provisioning.tickets import load_ticket_key
from vaka.tasks import cancel_and_wait

log = logging.getLogger(__name__)


def _database(config: CentralConfig) -> Engine:
    """The database, upgraded at start or checked to be current (``[database]``)."""
    engine = open_engine(config.database.url, upgrade=config.database.upgrade_at_start)
    if not config.database.upgrade_at_start:
        require_current(engine)
    return engine


def _config_key(config: CentralConfig) -> OKPKey | None:
    return load_config_key(config.keys.config_key) if config.keys.config_key else None


class CentralService:
    """One central instance. ``async with CentralService(config) as svc: ...``."""

    def __init__(self, config: CentralConfig, notify: Notify | None = None) -> None:
        self.config = config
        self.engine = _database(config)
        self.store = SqlFleetStore(self.engine, config.fleet)
        self.directory = Directory(
            self.engine, SecretBox.from_file(config.staff_access.totp_key_file), config.passwords
        )
        self.audit = AuditLog(self.engine)
        ticket_key = load_ticket_key(config.keys.ticket_key)
        #: central's ticket public key (PEM), which config bundles carry to the units
        self.ticket_public_pem = ticket_key.as_pem(private=False).decode()
        #: the key that signs configuration bundles, messages, viewing logs and the pictures of
        #: contacts who call (if configured)
        self.config_key = _config_key(config)
        self.contacts, self.contact_calls = self._circle()
        #: the TV's calls to contacts, and its People screen
        self.tv_calls, self.people = self._tv_circle(ticket_key)
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
        #: health and the units' bookkeeping give way to calls being set up
        self.calls_first = CallsFirst(config.mqtt.calls_first_s)
        #: the database work of units coming online, off the default executor
        self.bookkeeping = Bookkeeping(may_run=self.calls_first.free)
        #: the units' lifecycle changes (closing alerts through the watch)
        self.standing = UnitStanding(
            LifecycleStore(self.engine), self.audit, self.alerts.close_for_unit, self.bookkeeping
        )
        self.privacy, privacy_visits, self.viewing_log = self._privacy()
        self.duty, self.citizen_calls, self.relay = self._calls(ticket_key, notify)
        self.messages = MessageDesk(
            self.engine, self.directory, self.audit, self.config_key, self._publish,
            config.calls.timezone, bookkeeping=self.bookkeeping,
        )  # fmt: skip
        #: system update roll-outs (orders are signed with the config key)
        self.rollouts = self._rollouts()
        self.ingest = self._ingest(privacy_visits)
        self.certs, self.provisioner = self._provisioning()
        self.link = CentralLink(
            config.mqtt,
            self.ingest.receive,
            self.relay.on_signal_out,
            self.provisioner.on_request if self.provisioner else None,
            self.provisioner.on_renew if self.provisioner else None,
            self.calls_first,
        )
        self._runner: web.AppRunner | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.http_port: int | None = None

    def _ingest(self, privacy_visits: PrivacyVisits) -> FleetIngest:
        """The ingest of the units' messages, with what each stored event or first connection
        sets off."""
        config = self.config
        return FleetIngest(
            self.store,
            self.audit,
            # Commit when half the broker's window has arrived: the other half keeps coming
            # while the batch is written, and its PUBACKs open the window again.
            max_batch=max(1, config.mqtt.receive_maximum // 2),
            event_hooks=[
                self.messages.on_event_record,
                self.privacy.on_event_record,
                privacy_visits.on_event_record,
                self.viewing_log.on_event_record,
                self.rollouts.on_event_record,
                self.people.on_event_record,
            ],
            online_hooks=[self.messages.on_unit_online, self.standing.on_unit_online],
            receipts=self._receipt,
            on_forged=UnplacedCallAlerts(self.alerts).raise_once,
        )

    def _circle(self) -> tuple[ContactBook, ContactCalls]:
        """The citizens' circles (their contacts) and the rules of contacts' calls."""
        book = ContactBook(self.engine, self.directory.consent)
        rules = ContactCalls(
            book,
            self.directory,
            self.store,
            self.config.calls,
            self._publish,
            require_consent=self.config.privacy.require_consent,
            config_key=self.config_key,
        )
        return book, rules

    def _rollouts(self) -> Rollouts:
        """System update roll-outs: bundles from ``[updates] bundle_dir``, orders retained."""
        updates = self.config.updates
        return Rollouts(
            self.engine,
            self.audit,
            self.store,
            BundleShelf(updates.bundle_dir),
            self.config_key,
            self._publish_retained,
            lambda: updates.public_url or self.url,
            self._clear_retained,
        )

    def _tv_circle(self, ticket_key: OKPKey) -> tuple[TvCalls, PeopleDesk]:
        """The TV's calls to the citizen's contacts (another citizen's TV among them), and the
        list its People screen shows."""
        config = self.config

        def between_tvs(book: RequestBook) -> TvToTv:
            return TvToTv(
                config.mqtt.identity,
                self.contact_calls,
                book,
                self.audit,
                config.calls,
                self._publish,
                ticket_key,
                RelayCredentials(config.turn),
            )

        calls = TvCalls(
            config.mqtt.identity,
            self.contact_calls,
            self.audit,
            config.calls,
            self._publish,
            between_tvs,
        )
        return calls, PeopleDesk(self.contact_calls, self.config_key, self._publish)

    def _calls(
        self, ticket_key: OKPKey, notify: Notify | None
    ) -> tuple[DutyRoster, CitizenCallDesk, CallRelay]:
        """The duty roster, the citizen-call desk and the call relay that hands it requests."""
        config = self.config
        duty = DutyRoster(self.engine, self.directory)
        desk = CitizenCallDesk(
            config.mqtt.identity,
            self.directory,
            duty,
            self.audit,
            config.calls,
            self._publish,
            notify or self.notifier.notify,  # escalations go to the external notifier
        )
        relay = CallRelay(
            config.mqtt.identity,
            self.directory,
            self.audit,
            ticket_key,
            config.calls,
            self._publish,
            desk,
            RelayCredentials(config.turn),
            require_consent=config.privacy.require_consent,
            privacy=self.privacy,
            contacts=self.contact_calls,
            tv_calls=self.tv_calls,
            calls_first=self.calls_first,
        )
        return duty, desk, relay

    def _privacy(self) -> tuple[PrivacyModes, PrivacyVisits, ViewingLogDesk]:
        """The privacy modes, the physical visits they call for, and the viewing logs."""
        config, tz = self.config, self.config.calls.timezone
        modes = PrivacyModes(self.engine, self.audit, tz)
        visits = PrivacyVisits(
            self.alerts.store,
            self.directory,
            self.audit,
            modes,
            config.privacy.privacy_mode_visit,
            tz,
        )
        viewing_log = ViewingLogDesk(self.audit, self.directory, self.config_key, self._publish)
        return modes, visits, viewing_log

    def _provisioning(self) -> tuple[CertificateRegistry | None, Provisioner | None]:
        """The certificate registry and the provisioner, if ``[pki]`` is configured."""
        pki = self.config.pki
        if pki is None:
            return None, None
        certs = CertificateRegistry(self.engine, issuing_ca(pki))
        provisioner = Provisioner(
            pki,
            self.config.mqtt,
            certs,
            self.directory,
            self.audit,
            self._publish_raw,
            self.standing,
        )
        return certs, provisioner

    def _deps(self) -> Deps:
        """What the routes need."""
        config = self.config
        access = config.staff_access
        return Deps(
            directory=self.directory,
            audit=self.audit,
            sessions=StaffSessions(self.engine, self.directory, access.idle_timeout_s),
            accounts=Accounts(
                self.engine, self.directory, self.audit, access, config.calls.timezone
            ),
            access=access,
            guard=AddressGuard(self.engine, access),
            session_ttl_s=config.session_ttl_s,
            timezone=config.calls.timezone,
            store=self.store,
            ingest=self.ingest,
            thresholds=config.fleet,
            relay=self.relay,
            duty=self.duty,
            citizen_calls=self.citizen_calls,
            messages=self.messages,
            alerts=self.alerts,
            link=self.link,
            provisioner=self.provisioner,
            standing=self.standing,
            config_key=self.config_key,
            ticket_public_pem=self.ticket_public_pem,
            silent_days=config.pki.silent_days if config.pki else 30.0,
            privacy=self.privacy,
            contacts=self.contacts,
            contact_calls=self.contact_calls,
            tv_calls=self.tv_calls,
            invitations=Invitations(self.engine),
            contact_credentials=ContactCredentials(
                self.engine, self.directory.secret_box, self.config.passwords
            ),
            contact_sessions=ContactSessions(self.engine),
            rollouts=self.rollouts if self.config_key is not None else None,
        )

    @property
    def url(self) -> str:
        """Where the console and API are served."""
        return f"http://{self.config.http.bind}:{self.http_port}"

    async def start(self) -> "CentralService":
        """Start ingest, the broker session and the HTTP server."""
        self._tasks = [
            asyncio.create_task(self.citizen_calls.run(), name="citizen-call-sweep"),
            asyncio.create_task(self.tv_calls.run(), name="contact-call-sweep"),
            asyncio.create_task(self.ingest.run(), name="ingest"),
            asyncio.create_task(self.link.run(), name="central-link"),
            asyncio.create_task(self.messages.run(), name="messages"),
            asyncio.create_task(self.viewing_log.run(), name="viewing-log"),
            asyncio.create_task(self.people.run(), name="people"),
            asyncio.create_task(self.notifier.run(), name="notifier"),
            asyncio.create_task(self.alerts.run(), name="alert-watch"),
            asyncio.create_task(self.rollouts.run(), name="rollouts"),
        ]
        if self.provisioner is not None:
            self._tasks.append(
                asyncio.create_task(self.provisioner.refresh_crl(6 * 3600), name="crl-refresh")
            )
        self._runner = web.AppRunner(make_app(self._deps()), access_log=None)
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

    async def _publish_retained(self, device_id: str, channel: Channel, message: BaseModel) -> None:
        await self.link.publish_to_unit(device_id, channel, message, retain=True)

    async def _clear_retained(self, device_id: str, channel: Channel) -> None:
        await self.link.publish_raw(device_topic(device_id, channel), b"", retain=True)

    async def _receipt(self, device_id: str, event_ids: list[str]) -> None:
        receipt = ReceiptMessage(payload=ReceiptPayload(events=event_ids))
        await self.link.publish_to_unit(device_id, Channel.RECEIPT, receipt)

    async def _publish_raw(self, topic: str, payload: bytes, retain: bool) -> None:
        await self.link.publish_raw(topic, payload, retain=retain)

    async def stop(self) -> None:
        """Stop everything; writes still queued are flushed first. Safe twice."""
        await cancel_and_wait(self._tasks)  # a plain cancel may be swallowed: see there
        self._tasks = []
        await self.citizen_calls.close()
        await self.tv_calls.close()
        await self.ingest.flush()
        self.bookkeeping.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        self.store.close()

    async def __aenter__(self) -> "CentralService":
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
