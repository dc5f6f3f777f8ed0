"""The aiohttp application: every route of central on one app, the dependencies under one key,
and the security headers on every answer."""

from aiohttp import web

from vaka.central.http.alerts import add_alert_routes
from vaka.central.http.audit import add_audit_routes
from vaka.central.http.auth import origin_guard
from vaka.central.http.body import MAX_BODY_BYTES
from vaka.central.http.calls import add_call_routes
from vaka.central.http.citizen_calls import add_citizen_call_routes
from vaka.central.http.consent import add_consent_routes
from vaka.central.http.contact_page import add_contact_page_routes
from vaka.central.http.contact_ring import add_contact_ring_routes
from vaka.central.http.contacts import add_contact_routes
from vaka.central.http.deps import DEPS, Deps
from vaka.central.http.duty import add_duty_routes
from vaka.central.http.fleet import add_fleet_routes, security_headers
from vaka.central.http.messages import add_message_routes
from vaka.central.http.round import add_round_routes
from vaka.central.http.staff import add_staff_routes
from vaka.central.http.technician import add_technician_routes
from vaka.central.http.updates import add_update_routes
from vaka.central.http.visits import add_visit_routes


def make_app(deps: Deps) -> web.Application:
    """The application serving the API, the console and the fleet page with ``deps``."""
    app = web.Application(client_max_size=MAX_BODY_BYTES, middlewares=[origin_guard])
    app[DEPS] = deps
    app.on_response_prepare.append(security_headers)
    add_fleet_routes(app)
    add_staff_routes(app)
    add_call_routes(app)
    add_duty_routes(app)
    add_citizen_call_routes(app)
    add_technician_routes(app)
    add_message_routes(app)
    add_alert_routes(app)
    add_round_routes(app)
    add_audit_routes(app)
    add_visit_routes(app)
    add_consent_routes(app)
    add_contact_routes(app)
    add_contact_page_routes(app)
    add_update_routes(app)
    add_contact_ring_routes(app)
    return app
