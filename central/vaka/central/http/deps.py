"""What the routes need, in one typed object that the service builds and the application keeps
under one key: the domain services, never the whole service."""

from dataclasses import dataclass

from aiohttp import web
from joserfc.jwk import OKPKey

from vaka.central.access.accounts import Accounts
from vaka.central.access.sessions import StaffSessions
from vaka.central.access.throttle import AddressGuard
from vaka.central.alerts.watch import AlertWatch
from vaka.central.audit.trail import AuditLog
from vaka.central.broker.mqtt import CentralLink
from vaka.central.calls.citizen import CitizenCallDesk
from vaka.central.calls.duty import DutyRoster
from vaka.central.calls.relay import CallRelay
from vaka.central.calls.tv_calls import TvCalls
from vaka.central.circle.calls import ContactCalls
from vaka.central.circle.contacts import ContactBook
from vaka.central.circle.credentials import ContactCredentials
from vaka.central.circle.invitations import Invitations
from vaka.central.circle.sessions import ContactSessions
from vaka.central.directory.directory import Directory
from vaka.central.fleet.ingest import FleetIngest
from vaka.central.fleet.privacy_mode import PrivacyModes
from vaka.central.fleet.store import FleetStore
from vaka.central.messages.desk import MessageDesk
from vaka.central.settings.config import StaffAccessSection
from vaka.central.settings.fleet import Thresholds
from vaka.central.units.provisioner import Provisioner
from vaka.central.units.standing import UnitStanding
from vaka.central.updates.rollouts import Rollouts


@dataclass(frozen=True)
class Deps:
    """The domain services and settings the routes use."""

    directory: Directory
    audit: AuditLog
    sessions: StaffSessions
    accounts: Accounts
    access: StaffAccessSection
    #: per-address limits on log-in and enrolment requests
    guard: AddressGuard
    session_ttl_s: float
    #: the time zone of schedules, reports and the night round (``[calls] timezone``)
    timezone: str
    store: FleetStore
    ingest: FleetIngest
    thresholds: Thresholds
    relay: CallRelay
    duty: DutyRoster
    citizen_calls: CitizenCallDesk
    messages: MessageDesk
    alerts: AlertWatch
    link: CentralLink
    #: ``None`` without a ``[pki]`` section: central cannot provision units
    provisioner: Provisioner | None
    #: the units' lifecycle changes (suspend, resume; the provisioner makes the others)
    standing: UnitStanding
    #: signs config bundles, orders and messages; ``None`` without ``[keys] config_key``
    config_key: OKPKey | None
    #: central's ticket public key (PEM), which config bundles carry to the units
    ticket_public_pem: str
    #: units silent this many days are decommission candidates
    silent_days: float
    #: the citizens' circles: contacts, the rules of their calls, invitations, log-ins
    contacts: ContactBook
    contact_calls: ContactCalls
    tv_calls: TvCalls
    invitations: Invitations
    contact_credentials: ContactCredentials
    contact_sessions: ContactSessions
    #: the citizens' privacy modes, as the units reported them
    privacy: PrivacyModes | None = None
    #: system update roll-outs; ``None`` without a config key to sign orders with
    rollouts: Rollouts | None = None


DEPS: web.AppKey[Deps] = web.AppKey("vaka_deps", Deps)


def deps(request: web.Request) -> Deps:
    """The dependencies of the application serving ``request``."""
    return request.app[DEPS]
